"""Remote actors as we keep them: the fields delivery, verification and display need. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RemoteActor:
    id: str
    type: str  # Person, Service, Application, Group, Organization
    inbox: str
    shared_inbox: str | None
    key_id: str | None
    public_key_pem: str | None
    username: str | None  # preferredUsername
    domain: str  # host of the actor id
    name: str | None
    url: str | None
    icon_url: str | None
    summary: str | None  # remote HTML, sanitised before display

    @property
    def handle(self) -> str:
        return f"@{self.username}@{self.domain}" if self.username else self.id

    @property
    def delivery_inbox(self) -> str:
        """Where a public activity goes: the shared inbox when the peer has one."""
        return self.shared_inbox or self.inbox
