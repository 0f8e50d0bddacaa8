"""Owner page `/admin/federation`: delivery health per instance, and "Retry now". Layer: web.

What an operator asks when a peer seems deaf: when did a delivery there last succeed, when did
one last fail and why, how many are waiting or were given up, and when the next try is due (the
back-off state). "Retry now" makes that host's queued deliveries due at once and wakes the worker;
optionally it revives deliveries given up in the last three days (the retry policy's horizon).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedistream.errors import BadInput
from fedistream.services import moderation
from fedistream.store import deliveries as delivery_store
from fedistream.web.admin import admin_context, owner_form
from fedistream.web.context import context
from fedistream.web.security import require_owner
from fedistream.web.templating import render

HOST_LIMIT = 1000
MAX_HOST_CHARS = 300


def relative(when: datetime | None, now: datetime) -> str:
    """How far `when` is from `now`, roughly: "3 min ago", "in 2 h", "just now", "never"."""
    if when is None:
        return "never"
    delta = when - now
    seconds = abs(delta.total_seconds())
    if seconds < 45:
        return "now" if delta >= timedelta(0) else "just now"
    if seconds < 5400:
        amount = f"{max(1, round(seconds / 60))} min"
    elif seconds < 129600:
        amount = f"{round(seconds / 3600)} h"
    else:
        amount = f"{round(seconds / 86400)} d"
    return f"in {amount}" if delta > timedelta(0) else f"{amount} ago"


@dataclass(frozen=True, slots=True)
class _Row:
    health: delivery_store.InstanceHealth
    last_success: str
    last_failure: str
    next_attempt: str


async def federation_page(request: Request) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    now = datetime.now(UTC)
    hosts = await delivery_store.instance_health(ctx.db, limit=HOST_LIMIT)
    rows = [
        _Row(
            health=h,
            last_success=relative(h.last_success, now),
            last_failure=relative(h.last_failure, now) if h.last_failure else "",
            next_attempt=relative(h.next_attempt_at, now) if h.pending else "",
        )
        for h in hosts
    ]
    page = await admin_context(request, session)
    params = request.query_params
    if params.get("done") == "retried":
        page["notice"] = (
            f"{params.get('host', '')}: {_count(params.get('rescheduled'))} queued "
            f"deliveries due now, {_count(params.get('revived'))} given-up ones revived."
        )
    return render(
        request,
        "admin/federation.html",
        {
            **page,
            "rows": rows,
            "totals": await delivery_store.counts(ctx.db),
            "truncated": len(hosts) >= HOST_LIMIT,
        },
    )


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


async def retry_host(request: Request) -> Response:
    ctx = context(request)
    _session, form = await owner_form(request)
    host = form.get("host")
    if not isinstance(host, str) or not host.strip() or len(host) > MAX_HOST_CHARS:
        raise BadInput("The form names no instance.")
    host = host.strip().lower()
    revive = form.get("revive") == "1"
    if revive and await moderation.domain_blocked_reason(ctx.db, f"https://{host}/"):
        raise BadInput(f"{host} is blocked: unblock it before sending to it again.")
    result = await delivery_store.retry_host_now(
        ctx.db, host, datetime.now(UTC), revive_dead=revive
    )
    ctx.wake_delivery()
    query = urlencode(
        {
            "done": "retried",
            "host": host,
            "rescheduled": result.rescheduled,
            "revived": result.revived,
        }
    )
    return RedirectResponse(f"/admin/federation?{query}", status_code=303)


routes = [
    Route("/admin/federation", federation_page, methods=["GET", "HEAD"]),
    Route("/admin/federation/retry", retry_host, methods=["POST"]),
]
