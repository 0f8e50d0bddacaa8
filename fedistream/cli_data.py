"""CLI commands that move data in and out: import, export, backup."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from fedistream.settings import Settings

COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {}


def add_parsers(sub: Any) -> None:
    """Register the data commands on the main parser's subcommands."""
