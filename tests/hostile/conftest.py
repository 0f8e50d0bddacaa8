"""Fixtures shared by files of the hostile suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.xss_world import World, build_world


@pytest.fixture(scope="package")
def xss_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server full of XSS payloads (tests/hostile/xss_world.py), built once for the HTML
    audit (test_xss.py) and the Chromium run (test_xss_browser.py)."""
    with build_world(tmp_path_factory.mktemp("xss")) as world:
        yield world
