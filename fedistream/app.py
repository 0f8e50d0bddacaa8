"""Composition root: builds the Starlette application from Settings and wires every layer.

The lifespan opens the database, ensures the owner and key pair, builds the outgoing HTTP client,
the signer, the actor directory, the delivery worker and the inbox processor, and stops them in
reverse order. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

import fedistream
from fedistream.core.urls import Urls
from fedistream.errors import FedistreamError
from fedistream.federation.delivery import DeliveryWorker
from fedistream.federation.delivery_client import DeliveryClient
from fedistream.federation.http import build_http_client
from fedistream.federation.media_fetch import MediaFetcher
from fedistream.federation.resolver import ActorResolver
from fedistream.federation.signing import Signer
from fedistream.services import follows, owner
from fedistream.services.housekeeping import Housekeeper
from fedistream.services.inbox import InboxPolicy, InboxProcessor
from fedistream.services.keys import ensure_keypair
from fedistream.settings import Settings
from fedistream.store.db import Database
from fedistream.web import (
    activitypub,
    admin,
    admin_conversations,
    admin_federation,
    admin_moderation,
    admin_ops,
    feeds,
    inbox,
    public,
    wellknown,
)
from fedistream.web.access_log import AccessLogMiddleware
from fedistream.web.context import WebContext
from fedistream.web.errors import on_app_error, on_http_error, on_login_required, on_unexpected
from fedistream.web.negotiation import negotiated
from fedistream.web.security import LoginRequired, SecurityHeadersMiddleware
from fedistream.web.templating import build_environment, templates_dir


def _routes() -> list[BaseRoute]:
    # The site is the person and each thought's page is its Note: one URL, two renderings.
    shared = [
        Route("/", negotiated(public.stream, activitypub.actor), methods=["GET", "HEAD"]),
        Route(
            "/p/{post_id}", negotiated(public.permalink, activitypub.note), methods=["GET", "HEAD"]
        ),
    ]
    html_only = [r for r in public.routes if getattr(r, "path", None) not in ("/", "/p/{post_id}")]
    # Starlette tries routes in order: the inbox, the busiest POST, comes first (~5 % of its
    # time went to matching the hundred routes before it, bench/README.md). Its POSTs skip the
    # router altogether (web.inbox.InboxFirst); other methods still meet this route (405).
    return [
        *inbox.routes,
        *shared,
        *html_only,
        *activitypub.routes,
        *wellknown.routes,
        *feeds.routes,
        *admin.routes,
        *admin_federation.routes,
        *admin_ops.routes,
        *admin_moderation.routes,
        *admin_conversations.routes,
    ]


def build_app(
    settings: Settings, *, access_log: Callable[[dict[str, Any]], None] | None = None
) -> Starlette:
    """The ASGI app. The database opens in the lifespan (start-up), not at import or build time.

    `access_log` writes each request's line (web.access_log); by default through `logging`.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = await Database.open(settings.db_path)
        urls = Urls(settings.base_url)
        tasks: list[asyncio.Task[None]] = []
        try:
            await owner.ensure_owner(db, settings)
            keys = await ensure_keypair(db)
            signer = Signer(urls.key_id, keys.private_pem)
            user_agent = f"fedistream/{fedistream.__version__} (+{settings.base_url}/)"
            client = build_http_client(
                allow_private_networks=settings.allow_private_networks, user_agent=user_agent
            )
            directory = ActorResolver(
                db, client, signer, allow_private_networks=settings.allow_private_networks
            )
            await directory.load_known()

            async def follower_gone(actor_id: str) -> None:
                await follows.forget_follower(db, actor_id)

            delivery_client = DeliveryClient(
                allow_private_networks=settings.allow_private_networks, user_agent=user_agent
            )
            # Its own random source for retry jitter: never the process-global one.
            worker = DeliveryWorker(
                db, delivery_client, signer, on_gone=follower_gone, rand=random.Random().random
            )
            media_fetcher = MediaFetcher(db, client, settings.media_dir)
            housekeeper = Housekeeper(db)

            def inbox_changed() -> None:
                worker.wake()  # queued Accepts
                media_fetcher.wake()  # images of stored notes, new avatars

            processor = InboxProcessor(
                db,
                InboxPolicy(urls, settings.manually_approves_followers),
                on_change=inbox_changed,
            )
            app.state.ctx = WebContext(
                settings=settings,
                db=db,
                templates=build_environment(templates_dir()),
                public_key_pem=keys.public_pem,
                directory=directory,
                wake_inbox=processor.wake,
                wake_delivery=worker.wake,
            )
            tasks = [
                asyncio.create_task(worker.run(), name="delivery-worker"),
                asyncio.create_task(processor.run(), name="inbox-processor"),
                asyncio.create_task(media_fetcher.run(), name="media-fetcher"),
                asyncio.create_task(housekeeper.run(), name="housekeeping"),
            ]
            try:
                yield
            finally:
                processor.stop()
                media_fetcher.stop()
                housekeeper.stop()
                await worker.stop()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await client.aclose()
                await delivery_client.aclose()
                signer.close()
        finally:
            await db.close()

    return Starlette(
        routes=_routes(),
        # Access log outermost: its line has the status and time the client really saw.
        middleware=[
            Middleware(AccessLogMiddleware, write=access_log),
            Middleware(SecurityHeadersMiddleware),
            Middleware(inbox.InboxFirst),  # innermost: the busiest POST skips the router
        ],
        exception_handlers={
            FedistreamError: on_app_error,
            HTTPException: on_http_error,
            LoginRequired: on_login_required,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
