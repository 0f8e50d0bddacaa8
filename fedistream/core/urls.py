"""The URL shapes of our ActivityPub objects (stable: peers store them). Pure.

The site is the person: the actor id is the base URL with a trailing slash, and every object id
lives under it. Transient activities use fragment ids, as Mastodon does (R111).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Urls:
    base: str  # e.g. "https://example.com" (no trailing slash)

    @property
    def actor(self) -> str:
        return self.base + "/"

    @property
    def key_id(self) -> str:
        return self.base + "/#main-key"

    @property
    def inbox(self) -> str:
        return self.base + "/inbox"

    @property
    def outbox(self) -> str:
        return self.base + "/outbox"

    @property
    def followers(self) -> str:
        return self.base + "/followers"

    @property
    def following(self) -> str:
        return self.base + "/following"

    @property
    def featured(self) -> str:
        return self.base + "/featured"

    @property
    def featured_tags(self) -> str:
        return self.base + "/featured/tags"

    def post(self, post_id: str) -> str:
        return f"{self.base}/p/{post_id}"

    def replies(self, post_id: str) -> str:
        return f"{self.base}/p/{post_id}/replies"

    def create_activity(self, post_id: str) -> str:
        return f"{self.base}/p/{post_id}/activity"

    def update_activity(self, post_id: str, unix_seconds: int) -> str:
        return f"{self.base}/p/{post_id}#updates/{unix_seconds}"

    def delete_activity(self, post_id: str) -> str:
        return f"{self.base}/p/{post_id}#delete"

    def actor_update_activity(self, unix_seconds: int) -> str:
        return f"{self.base}/#updates/{unix_seconds}"

    def accept_activity(self, token: str) -> str:
        return f"{self.base}/#accepts/{token}"

    def reject_activity(self, token: str) -> str:
        return f"{self.base}/#rejects/{token}"

    def follow_activity(self, token: str) -> str:
        return f"{self.base}/#follows/{token}"

    def undo_activity(self, token: str) -> str:
        return f"{self.base}/#undo/{token}"

    def tag(self, tag: str) -> str:
        return f"{self.base}/tags/{quote(tag, safe='')}"

    def media(self, name: str) -> str:
        return f"{self.base}/media/{name}"
