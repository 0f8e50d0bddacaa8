"""What request handlers reach through `request.app.state.ctx`: built once in the app lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import jinja2
from starlette.requests import Request

from fedistream.settings import Settings
from fedistream.store.db import Database
from fedistream.web.throttle import LoginThrottle


@dataclass(slots=True)
class WebContext:
    settings: Settings
    db: Database
    templates: jinja2.Environment
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx
