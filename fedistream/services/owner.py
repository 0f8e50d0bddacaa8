"""The owner: first-run account creation, password, login sessions and the profile."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from fedistream.core.models import Profile, ProfileLink
from fedistream.core.passwords import hash_password, verify_password
from fedistream.core.render import render_markdown
from fedistream.core.timefmt import to_iso
from fedistream.errors import BadInput
from fedistream.settings import Settings
from fedistream.store import meta
from fedistream.store import sessions as session_store
from fedistream.store.db import Database

SESSION_LIFETIME = timedelta(days=30)
MIN_PASSWORD_LENGTH = 10
MAX_LINKS = 4


async def set_password(db: Database, password: str) -> None:
    """Set the owner password and end every session (a reset locks out whoever had one)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadInput(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    hashed = await asyncio.to_thread(hash_password, password, secrets.token_bytes(16))
    async with db.transaction() as conn:
        await meta.put(conn, meta.PASSWORD_HASH, hashed)
    await session_store.delete_all(db)


async def ensure_owner(db: Database, settings: Settings) -> str | None:
    """Create the owner on first run. Returns a generated password to print once, else None.

    `owner_password` from the settings (FEDISTREAM_OWNER_PASSWORD) sets the password every start,
    so a deployment can manage it non-interactively.
    """
    existing = await meta.get(db, meta.PASSWORD_HASH)
    if await meta.get(db, meta.PROFILE) is None:
        profile = Profile(display_name=settings.display_name_or_username())
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        async with db.transaction() as conn:
            await meta.put_json(conn, meta.PROFILE, profile_to_json(profile))
            # The actor's `published` (R12): the account's creation date at midnight.
            await meta.put(conn, meta.CREATED_AT, to_iso(today))
    if settings.owner_password:
        if existing is None or not await check_password(db, settings.owner_password):
            await set_password(db, settings.owner_password)
        return None
    if existing is None:
        generated = secrets.token_urlsafe(15)
        await set_password(db, generated)
        return generated
    return None


async def check_password(db: Database, password: str) -> bool:
    stored = await meta.get(db, meta.PASSWORD_HASH)
    if stored is None:
        return False
    return await asyncio.to_thread(verify_password, password, stored)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(db: Database, now: datetime | None = None) -> tuple[str, str]:
    """A fresh session (new id at every login). Returns (cookie token, CSRF token)."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    await session_store.delete_expired(db, to_iso(now))
    await session_store.insert(
        db, _hash_token(token), csrf, to_iso(now), to_iso(now + SESSION_LIFETIME)
    )
    return token, csrf


async def session_csrf(db: Database, token: str, now: datetime | None = None) -> str | None:
    """The CSRF token of a live session, or None when the cookie names no live session."""
    row = await session_store.find(db, _hash_token(token), to_iso(now or datetime.now(UTC)))
    return row["csrf_token"] if row else None


async def end_session(db: Database, token: str) -> None:
    await session_store.delete(db, _hash_token(token))


def profile_to_json(profile: Profile) -> dict[str, object]:
    return {
        "display_name": profile.display_name,
        "bio_source": profile.bio_source,
        "bio_html": profile.bio_html,
        "avatar": profile.avatar,
        "header": profile.header,
        "links": [{"label": link.label, "url": link.url} for link in profile.links],
    }


def profile_from_json(data: dict[str, object] | None, fallback_name: str) -> Profile:
    if not data:
        return Profile(display_name=fallback_name)
    links = data.get("links")
    return Profile(
        display_name=str(data.get("display_name") or fallback_name),
        bio_source=str(data.get("bio_source") or ""),
        bio_html=str(data.get("bio_html") or ""),
        avatar=data.get("avatar") or None,  # type: ignore[arg-type]
        header=data.get("header") or None,  # type: ignore[arg-type]
        links=tuple(
            ProfileLink(label=str(item["label"]), url=str(item["url"]))
            for item in (links if isinstance(links, list) else [])
            if isinstance(item, dict)
        ),
    )


async def get_profile(db: Database, settings: Settings) -> Profile:
    return profile_from_json(
        await meta.get_json(db, meta.PROFILE), settings.display_name_or_username()
    )


def validate_links(pairs: list[tuple[str, str]]) -> tuple[ProfileLink, ...]:
    links: list[ProfileLink] = []
    for label, url in pairs:
        label, url = label.strip(), url.strip()
        if not label and not url:
            continue
        if not url.startswith(("https://", "http://")):
            raise BadInput(
                f"Profile link {label or url!r}: the address must start with https:// or http://."
            )
        if len(label) > 100 or len(url) > 500:
            raise BadInput("Profile links: labels are at most 100 and addresses 500 characters.")
        links.append(ProfileLink(label=label or url, url=url))
    if len(links) > MAX_LINKS:
        raise BadInput(f"At most {MAX_LINKS} profile links.")
    return tuple(links)


def profile_text(display_name: str, bio_source: str) -> tuple[str, str]:
    """The display name and bio as they will be saved; BadInput says what to change. Callers
    check this before storing the form's images, so a refused form leaves none behind."""
    name = " ".join(display_name.split())
    if not name:
        raise BadInput("The display name cannot be empty.")
    if len(name) > 100:
        raise BadInput("The display name is at most 100 characters.")
    bio = bio_source.replace("\r\n", "\n").strip()
    if len(bio) > 5000:
        raise BadInput("The bio is at most 5,000 characters.")
    return name, bio


async def update_profile(
    db: Database,
    current: Profile,
    *,
    display_name: str,
    bio_source: str,
    links: tuple[ProfileLink, ...],
    avatar: str | None,
    header: str | None,
) -> Profile:
    name, bio = profile_text(display_name, bio_source)
    profile = Profile(
        display_name=name,
        bio_source=bio,
        bio_html=render_markdown(bio).html if bio else "",
        avatar=avatar if avatar is not None else current.avatar,
        header=header if header is not None else current.header,
        links=links,
    )
    async with db.transaction() as conn:
        await meta.put_json(conn, meta.PROFILE, profile_to_json(profile))
        await meta.bump_stream_version(conn)
    return profile
