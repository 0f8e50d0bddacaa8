"""Fixtures shared by the federation tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.federation.peer import Peer, running_peer


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    """A fake remote server on 127.0.0.1 (routes by exact path; see tests/federation/peer.py)."""
    async with running_peer() as running:
        yield running
