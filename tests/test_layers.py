"""The layer rule from DESIGN.md, read from every module's imports: dependencies only flow down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fedistream"

# What each part of the package may import from inside the package.
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "errors": set(),
    "core": {"core", "errors"},
    "store": {"core", "store", "errors"},
    "services": {"core", "store", "services", "errors", "settings"},
    "federation": {"core", "store", "services", "federation", "errors", "settings"},
    "web": {"core", "store", "services", "web", "errors", "settings"},
}


def _part(module: Path) -> str:
    relative = module.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _package_imports(module: Path) -> set[str]:
    tree = ast.parse(module.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{module}: use absolute imports")
            names = [node.module]
            if node.module == "fedistream":
                names = [f"fedistream.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fedistream" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _part(p) in ALLOWED)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_lower_layers(module: Path) -> None:
    imported = _package_imports(module) - {"__init__"}
    forbidden = imported - ALLOWED[_part(module)]
    assert not forbidden, f"{module.relative_to(PACKAGE)} imports {sorted(forbidden)}"


def test_the_rule_sees_every_layer() -> None:
    assert {_part(m) for m in MODULES} >= {"core", "store", "services", "web", "settings", "errors"}


def test_core_does_no_io() -> None:
    for module in (PACKAGE / "core").glob("*.py"):
        text = module.read_text("utf-8")
        for pattern in (
            r"import httpx",
            r"import aiosqlite",
            r"import sqlite3",
            r"(?<![\w.])open\(",
            r"datetime\.now\(",
            r"time\.time\(",
        ):
            assert not re.search(pattern, text), f"{module.name} matches {pattern!r}: core is pure"
