"""Values the layers pass to each other. Pure data, no behaviour that needs I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Visibility(StrEnum):
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Mention:
    """A fediverse account named in a thought as @user@domain, resolved when it was written."""

    handle: str  # "user@domain", lower-case
    actor_id: str
    url: str  # their profile page (what the link in the text points to)


@dataclass(frozen=True, slots=True)
class Post:
    """One thought. `source` is the owner's Markdown; `html` and `text` are derived from it."""

    id: str
    source: str
    html: str
    text: str
    title: str | None
    summary: str | None  # content warning
    created_at: datetime
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    visibility: Visibility = Visibility.PUBLIC
    in_reply_to: str | None = None
    tags: tuple[str, ...] = ()
    mentions: tuple[Mention, ...] = ()

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class SearchHit:
    post: Post
    snippet_html: str  # escaped text with <mark> around matches


@dataclass(frozen=True, slots=True)
class ProfileLink:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class Profile:
    display_name: str
    bio_source: str = ""
    bio_html: str = ""
    avatar: str | None = None  # media file name under /media/
    header: str | None = None
    links: tuple[ProfileLink, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Page:
    """A keyset page: `older` is the `before=` cursor for the next page, or None at the end."""

    posts: list[Post]
    older: str | None
