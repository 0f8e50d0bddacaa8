"""One negotiation step per shared URL: browsers get HTML, servers get ActivityStreams (R91–R94)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from fedistream.core.negotiation import wants_activity_json

Endpoint = Callable[[Request], Awaitable[Response]]


def negotiated(html: Endpoint, activity_json: Endpoint) -> Endpoint:
    """An endpoint that dispatches on Accept and marks the response `Vary: Accept`."""

    async def endpoint(request: Request) -> Response:
        chosen = activity_json if wants_activity_json(request.headers.get("accept")) else html
        response = await chosen(request)
        response.headers.append("Vary", "Accept")
        return response

    endpoint.__name__ = f"negotiated_{html.__name__}"
    return endpoint
