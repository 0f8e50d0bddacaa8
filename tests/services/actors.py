"""A remote actor as the services tests cache it (no key: these tests never verify signatures)."""

from __future__ import annotations

from fedistream.core.remote_actor import RemoteActor


def cached_actor(actor_id: str) -> RemoteActor:
    return RemoteActor(
        id=actor_id,
        type="Person",
        inbox=actor_id + "/inbox",
        shared_inbox="http://127.0.0.1:9/inbox",
        key_id=actor_id + "#main-key",
        public_key_pem=None,
        username=actor_id.rsplit("/", 1)[-1],
        domain="127.0.0.1:9",
        name=None,
        url=None,
        icon_url=None,
        summary=None,
    )
