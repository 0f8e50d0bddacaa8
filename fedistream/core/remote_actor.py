"""Remote actors as we keep them: the fields delivery, verification and display need. Pure.

`parse_actor` reads the actor documents peers really serve (Mastodon, Misskey, Pleroma,
GoToSocial, Friendica, Lemmy…) into a `RemoteActor`; INTEROP.md R10–R15.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fedistream.core.as2 import as_list, id_of, ids_of


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


ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization"})


def parse_actor(doc: dict[str, Any], *, key_id: str | None = None) -> RemoteActor:
    """Read an actor document as peers really serve it; ValueError says why one is unusable.

    Needs an http(s) `id`, an actor `type` (R10) and an `inbox` (Mastodon ignores actors
    without one, and so must we: a GoToSocial key stub has none). `publicKey` may be an object
    or an array (R11): with `key_id` given, that key is chosen if listed, else the first one
    carrying a PEM whose `owner`, when stated, is this actor. FEP-521a `assertionMethod`
    keys are ignored: the RSA `publicKey` is what HTTP signatures use (R19).
    """
    if not isinstance(doc, dict):
        raise ValueError("an actor must be a JSON object")
    actor_id = doc.get("id")
    if not isinstance(actor_id, str) or not _is_http_url(actor_id):
        raise ValueError("the actor has no http(s) id")
    actor_type = next((t for t in as_list(doc.get("type")) if t in ACTOR_TYPES), None)
    if actor_type is None:
        raise ValueError(f"type {doc.get('type')!r} is not an actor type")
    inbox = id_of(doc.get("inbox"))
    if not inbox or not _is_http_url(inbox):
        raise ValueError("the actor has no inbox")
    key = _choose_key(doc, actor_id, key_id)
    return RemoteActor(
        id=actor_id,
        type=actor_type,
        inbox=inbox,
        shared_inbox=_shared_inbox(doc),
        key_id=key[0] if key else None,
        public_key_pem=key[1] if key else None,
        username=_username(doc),
        domain=domain_of(actor_id),
        name=_text(doc.get("name")),
        url=_link_url(doc.get("url")),
        icon_url=_image_url(doc.get("icon")),
        summary=_text(doc.get("summary")),
    )


def actor_key_ids(doc: dict[str, Any]) -> list[str]:
    """Every key id the actor document lists under `publicKey` (objects or bare ids)."""
    return ids_of(doc.get("publicKey"))


def domain_of(url: str) -> str:
    """The host of `url`, lower-cased, with the port when it is not the scheme's default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host += f":{port}"
    return host


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme.lower() in _DEFAULT_PORTS and bool(parts.hostname)


def _choose_key(doc: dict[str, Any], actor_id: str, wanted: str | None) -> tuple[str, str] | None:
    usable: list[tuple[str, str]] = []
    for entry in as_list(doc.get("publicKey")):
        if not isinstance(entry, dict):
            continue  # a bare key id gives us no PEM to verify with
        key_id, pem, owner = entry.get("id"), entry.get("publicKeyPem"), entry.get("owner")
        if not isinstance(key_id, str) or not isinstance(pem, str) or not pem.strip():
            continue
        # Mastodon only trusts an embedded key whose owner is this actor (R11).
        if owner is not None and id_of(owner) != actor_id:
            continue
        usable.append((key_id, pem))
    if wanted is not None:
        for key in usable:
            if key[0] == wanted:
                return key
    return usable[0] if usable else None


def _shared_inbox(doc: dict[str, Any]) -> str | None:
    endpoints = doc.get("endpoints")
    candidates = [endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None]
    candidates.append(doc.get("sharedInbox"))  # Misskey also publishes it top-level (R101)
    for candidate in candidates:
        url = id_of(candidate)
        if url and _is_http_url(url):
            return url
    return None


def _username(doc: dict[str, Any]) -> str | None:
    name = _text(doc.get("preferredUsername"))
    if name:
        return name
    # FEP-2c59: `webfinger: "user@domain"` stands in for preferredUsername (R10).
    finger = _text(doc.get("webfinger"))
    if finger and "@" in finger.lstrip("@"):
        return finger.lstrip("@").split("@", 1)[0] or None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _link_url(value: Any) -> str | None:
    # `url` is a string, a Link, or a list of them; Mastodon prefers the text/html one.
    links = as_list(value)
    for link in links:
        if isinstance(link, dict) and link.get("mediaType") == "text/html":
            href = id_of(link.get("href") or link)
            if href and _is_http_url(href):
                return href
    for link in links:
        href = link if isinstance(link, str) else _href(link)
        if href and _is_http_url(href):
            return href
    return None


def _href(link: Any) -> str | None:
    if isinstance(link, dict):
        for key in ("href", "url", "id"):
            value = link.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _image_url(value: Any) -> str | None:
    # icon: an Image (whose `url` is a string, a Link or a list), a list of Images, or a URL (R15).
    for image in as_list(value):
        if isinstance(image, str):
            url: str | None = image
        elif isinstance(image, dict):
            url = _link_url(image.get("url")) if image.get("url") is not None else _href(image)
        else:
            url = None
        if url and _is_http_url(url):
            return url
    return None
