"""Discovery: WebFinger (R1–R8), host-meta (R5) and NodeInfo (R88–R89), all CORS-open (R7)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import fedistream
from fedistream.core import discovery
from fedistream.services import owner
from fedistream.services.actor import media_ref
from fedistream.store import posts as post_store
from fedistream.web.context import context

_CORS = {"Access-Control-Allow-Origin": "*"}


def _json(document: Any, media_type: str, *, status: int = 200, max_age: int = 3600) -> Response:
    return Response(
        json.dumps(document, ensure_ascii=False),
        status_code=status,
        media_type=media_type,
        headers={**_CORS, "Cache-Control": f"public, max-age={max_age}"},
    )


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=_CORS)


async def webfinger(request: Request) -> Response:
    ctx = context(request)
    resource = request.query_params.get("resource", "").strip()
    if not resource:
        return _error(400, "The 'resource' parameter is required, e.g. acct:user@domain.")
    try:
        ours = discovery.match_webfinger_resource(
            resource, username=ctx.settings.username, domain=ctx.settings.domain, urls=ctx.urls
        )
    except ValueError as exc:
        return _error(400, f"Unusable resource {resource!r}: {exc}")
    if not ours:
        return _error(404, f"No account {resource!r} here.")
    profile = await owner.get_profile(ctx.db, ctx.settings)
    document = discovery.webfinger_document(
        ctx.urls, ctx.settings.username, ctx.settings.domain, media_ref(ctx.urls, profile.avatar)
    )
    return _json(document, "application/jrd+json", max_age=3 * 24 * 3600)


async def host_meta(request: Request) -> Response:
    ctx = context(request)
    if "json" in request.headers.get("accept", "") or request.url.path.endswith(".json"):
        return _json(discovery.host_meta_json(ctx.settings.base_url), "application/json")
    return Response(
        discovery.host_meta_xml(ctx.settings.base_url),
        media_type="application/xrd+xml",
        headers={**_CORS, "Cache-Control": "public, max-age=86400"},
    )


async def nodeinfo_links(request: Request) -> Response:
    return _json(discovery.nodeinfo_links(context(request).settings.base_url), "application/json")


async def nodeinfo(request: Request) -> Response:
    ctx = context(request)
    version = request.path_params["version"]
    if version not in ("2.0", "2.1"):
        return _error(404, "NodeInfo is served in versions 2.0 and 2.1.")
    document = discovery.nodeinfo(
        version,
        software_version=fedistream.__version__,
        local_posts=await post_store.count_live(ctx.db),
        metadata={"nodeName": ctx.settings.display_name_or_username()},
    )
    profile = f"http://nodeinfo.diaspora.software/ns/schema/{version}#"
    return _json(document, f'application/json; profile="{profile}"', max_age=1800)


routes = [
    Route("/.well-known/webfinger", webfinger, methods=["GET", "HEAD"]),
    Route("/.well-known/host-meta", host_meta, methods=["GET", "HEAD"]),
    Route("/.well-known/host-meta.json", host_meta, methods=["GET", "HEAD"]),
    Route("/.well-known/nodeinfo", nodeinfo_links, methods=["GET", "HEAD"]),
    Route("/nodeinfo/{version}", nodeinfo, methods=["GET", "HEAD"]),
]
