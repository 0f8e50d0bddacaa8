"""What request handlers reach through `request.app.state.ctx`: built once in the app lifespan."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from starlette.requests import Request

from fedistream.core.urls import Urls
from fedistream.services.ports import ActorDirectory
from fedistream.settings import Settings
from fedistream.store.db import Database
from fedistream.web.throttle import LoginThrottle


def _nothing() -> None:
    return None


@dataclass(slots=True)
class WebContext:
    settings: Settings
    db: Database
    templates: jinja2.Environment
    public_key_pem: str = ""
    directory: ActorDirectory | None = None  # remote actors/keys (federation edge)
    wake_inbox: Callable[[], None] = _nothing  # new inbound activity stored
    wake_delivery: Callable[[], None] = _nothing  # new deliveries queued
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # Parsed public keys by PEM (key objects are immutable), bounded; see web/inbox.py.
    public_keys: OrderedDict[str, Any] = field(default_factory=OrderedDict)

    @property
    def urls(self) -> Urls:
        return Urls(self.settings.base_url)


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx
