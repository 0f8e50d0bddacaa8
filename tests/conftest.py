"""Shared test fixtures: paths to the shared interop fixtures and per-test settings."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """The real-world payloads in ../shared/fixtures (skip when that folder is absent)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared interop fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
