"""Collaborators the services and web edge need from the network edge, as Protocols.

federation/ implements them; app.py wires the implementations in. This keeps web/ and
federation/ from importing each other (DESIGN.md).
"""

from __future__ import annotations

from typing import Protocol

from fedistream.core.remote_actor import RemoteActor


class ActorDirectory(Protocol):
    """Remote actors by id, cached in the `actors` table and fetched (signed) when needed."""

    async def get_actor(self, actor_id: str, *, refresh: bool = False) -> RemoteActor: ...

    async def actor_for_key(self, key_id: str, *, refresh: bool = False) -> RemoteActor: ...

    async def lookup_handle(self, handle: str) -> RemoteActor: ...

    def known_actor(self, actor_id: str) -> bool: ...


class DeliveryWaker(Protocol):
    """Tells the delivery worker that new rows are due (it also polls, so this is a hint)."""

    def wake(self) -> None: ...
