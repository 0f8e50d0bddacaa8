"""The owner UI under /admin: login, compose with preview, edit, delete, profile.

Every handler starts with `require_owner` (or is the login form); every POST checks the CSRF token
before it reads anything else. Bad input re-renders the form with the message and the owner's text.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedistream.core.ids import looks_like_id
from fedistream.core.images import PreparedImage
from fedistream.core.render import render_markdown
from fedistream.errors import BadInput, NotFound, TooManyRequests
from fedistream.services import actor as actor_service
from fedistream.services import attachments as attachment_service
from fedistream.services import media as media_service
from fedistream.services import owner
from fedistream.services import pins as pin_service
from fedistream.services import posts as post_service
from fedistream.services.posts import Draft
from fedistream.store import notifications as notification_store
from fedistream.store import posts as post_store
from fedistream.web import bodylimit, composer
from fedistream.web.context import context
from fedistream.web.public import site_context
from fedistream.web.security import (
    OwnerSession,
    check_csrf,
    clear_session_cookie,
    client_address,
    current_session,
    login_csrf_token,
    require_owner,
    set_login_csrf_cookie,
    set_session_cookie,
)
from fedistream.web.templating import render

ADMIN_PAGE_SIZE = 30
NOTICES = {
    "published": "Published.",
    "saved": "Saved.",
    "deleted": "Deleted.",
    "profile": "Profile saved.",
    "approved": "Follower approved.",
    "removed": "Follower removed.",
    "followed": "Follow request sent.",
    "unfollowed": "Unfollowed.",
    "pinned": "Pinned: it now leads your stream.",
    "unpinned": "Unpinned.",
    "blocked": "Blocked.",
}


MAX_FORM_BYTES = 1024 * 1024  # an owner form without images (a thought is far smaller)
MAX_LOGIN_BYTES = 64 * 1024  # a password and two tokens: anyone may send this form


async def _read_form(
    request: Request, max_part_size: int = 1024 * 1024, *, max_bytes: int = MAX_FORM_BYTES
) -> FormData:
    """The form, refused (413) as soon as the body passes `max_bytes`: Starlette would spool
    file parts of any size to disk, even on the login form."""
    limited = bodylimit.within(
        request, max_bytes, f"The form is larger than {max_bytes // 1024} KiB: nothing was saved."
    )
    try:
        return await limited.form(max_files=4, max_fields=50, max_part_size=max_part_size)
    except (MultiPartException, HTTPException) as exc:
        raise BadInput("The form could not be read; it may be too large.") from exc


async def owner_form(
    request: Request, max_part_size: int = 1024 * 1024
) -> tuple[OwnerSession, FormData]:
    session = await require_owner(request)
    form = await _read_form(request, max_part_size)
    check_csrf(session.csrf_token, form.get("csrf"))
    return session, form


def _safe_next(value: object) -> str:
    """Only same-site admin paths: never an open redirect."""
    if isinstance(value, str) and value.startswith("/admin") and "//" not in value:
        return value
    return "/admin"


# --- login -----------------------------------------------------------------------------------


def _login_page(
    request: Request,
    *,
    error: str = "",
    status: int = 200,
    next_path: str = "/admin",
    headers: dict[str, str] | None = None,
) -> Response:
    ctx = context(request)
    token, is_new = login_csrf_token(request)
    response = render(
        request,
        "admin/login.html",
        {"settings": ctx.settings, "csrf": token, "error": error, "next": next_path},
        status_code=status,
        headers=headers,
    )
    if is_new:
        set_login_csrf_cookie(response, ctx.settings, token)
    return response


async def login_form(request: Request) -> Response:
    if await current_session(request):
        return RedirectResponse("/admin", status_code=303)
    return _login_page(request, next_path=_safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    ctx = context(request)
    form = await _read_form(request, max_bytes=MAX_LOGIN_BYTES)
    cookie_token = request.cookies.get("fedistream_login_csrf", "")
    next_path = _safe_next(form.get("next"))
    if not cookie_token:
        return _login_page(
            request,
            status=403,
            next_path=next_path,
            error="Your browser did not send the login cookie. "
            "Enable cookies for this site and try again.",
        )
    check_csrf(cookie_token, form.get("csrf"))
    client = client_address(request, ctx.settings)
    now = time.monotonic()
    wait = ctx.login_throttle.retry_after(client, now)
    if wait:
        raise TooManyRequests(
            f"Too many failed logins. Try again in {wait // 60 + 1} minutes.", retry_after=wait
        )
    password = form.get("password")
    if not isinstance(password, str) or not await owner.check_password(ctx.db, password):
        ctx.login_throttle.record_failure(client, now)
        return _login_page(
            request, status=401, next_path=next_path, error="That password is not right."
        )
    ctx.login_throttle.reset(client)
    old = request.cookies.get("fedistream_session")
    if old:
        await owner.end_session(ctx.db, old)
    token, _csrf = await owner.start_session(ctx.db)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, ctx.settings, token)
    return response


async def logout(request: Request) -> Response:
    ctx = context(request)
    session, _form = await owner_form(request)
    await owner.end_session(ctx.db, session.token)
    response = RedirectResponse("/admin/login", status_code=303)
    clear_session_cookie(response, ctx.settings)
    return response


# --- compose, edit, delete -------------------------------------------------------------------


async def unread_notifications(request: Request) -> int:
    """The header's badge: one count over a partial index, cheap on every admin page."""
    return await notification_store.unread_count(context(request).db)


async def admin_context(request: Request, session: OwnerSession) -> dict[str, Any]:
    return {
        **await site_context(request),
        "csrf": session.csrf_token,
        "notice": NOTICES.get(request.query_params.get("done", ""), ""),
        "unread_notifications": await unread_notifications(request),
    }


def _draft_from(form: FormData) -> Draft:
    def text(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    return Draft(source=text("source"), title=text("title"), summary=text("summary"))


async def dashboard(
    request: Request,
    *,
    draft: Draft | None = None,
    error: str = "",
    preview: str = "",
    status: int = 200,
    media: dict[str, Any] | None = None,
) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    before = request.query_params.get("before")
    page = await post_store.latest_page(
        ctx.db, before if before and looks_like_id(before) else None, ADMIN_PAGE_SIZE
    )
    return render(
        request,
        "admin/dashboard.html",
        {
            **await admin_context(request, session),
            "page": page,
            "pinned_ids": await pin_service.pinned_ids(ctx.db),
            "draft": draft or Draft(""),
            "error": error,
            "preview": preview,
            **(media or composer.composer_context([], warn=False)),
        },
        status_code=status,
    )


async def dashboard_page(request: Request) -> Response:
    return await dashboard(request)


def _preview_html(draft: Draft) -> str:
    return render_markdown(draft.source).html if draft.source.strip() else ""


async def _compose_form(request: Request) -> tuple[OwnerSession, FormData]:
    """The composer's multipart form (text and up to four images), CSRF checked."""
    session = await require_owner(request)
    form = await composer.read_form(request, context(request).settings)
    check_csrf(session.csrf_token, form.get("csrf"))
    return session, form


def _wants_warning(action: object, images: list[attachment_service.ImageAttachment] | None) -> bool:
    """Publishing with an image that has no alt text stops once on the warning; the owner can
    then publish as it is (a decorative image needs none) with the `*_without_alt` button."""
    if not images or not attachment_service.missing_alt(images):
        return False
    return not (isinstance(action, str) and action.endswith(composer.WITHOUT_ALT))


async def create_post(request: Request) -> Response:
    ctx = context(request)
    try:
        _session, form = await _compose_form(request)
    except BadInput as exc:  # unreadable or oversized: the form could not be read at all
        return await dashboard(request, error=exc.public_message, status=exc.status)
    draft = _draft_from(form)
    images, refused = await composer.images_from(ctx.db, ctx.settings, form)
    if refused is not None:
        media = composer.composer_context(images or [], warn=False)
        return await dashboard(
            request, draft=draft, error=refused.public_message, status=refused.status, media=media
        )
    action = form.get("action")
    if action == "preview" or _wants_warning(action, images):
        media = composer.composer_context(images or [], warn=True)
        return await dashboard(request, draft=draft, preview=_preview_html(draft), media=media)
    try:
        post = await post_service.publish(
            ctx.db,
            draft,
            max_chars=ctx.settings.max_post_chars,
            urls=ctx.urls,
            directory=ctx.directory,
            attachments=images or (),
        )
    except BadInput as exc:
        media = composer.composer_context(images or [], warn=False)
        return await dashboard(
            request, draft=draft, error=exc.public_message, status=400, media=media
        )
    ctx.wake_delivery()
    await attachment_service.prune_abandoned(ctx.db, ctx.settings, post.created_at)
    return RedirectResponse(f"/p/{post.id}", status_code=303)


async def _post_for_edit(request: Request):  # type: ignore[no-untyped-def]
    post_id = request.path_params["post_id"]
    if not looks_like_id(post_id):
        raise NotFound("No thought has this address.")
    return await post_service.get_live(context(request).db, post_id)


async def _edit_page(
    request: Request,
    session: OwnerSession,
    draft: Draft,
    *,
    error: str = "",
    preview: str = "",
    status: int = 200,
    media: dict[str, Any] | None = None,
) -> Response:
    post = await _post_for_edit(request)
    if media is None:
        images = await attachment_service.for_post(context(request).db, post.id)
        media = composer.composer_context(images, warn=False)
    return render(
        request,
        "admin/edit.html",
        {
            **await admin_context(request, session),
            "post": post,
            "pinned_ids": await pin_service.pinned_ids(context(request).db),
            "draft": draft,
            "error": error,
            "preview": preview,
            **media,
        },
        status_code=status,
    )


async def edit_form(request: Request) -> Response:
    session = await require_owner(request)
    post = await _post_for_edit(request)
    draft = Draft(source=post.source, title=post.title or "", summary=post.summary or "")
    return await _edit_page(request, session, draft)


async def edit_post(request: Request) -> Response:
    ctx = context(request)
    session, form = await _compose_form(request)
    post = await _post_for_edit(request)
    draft = _draft_from(form)
    images, refused = await composer.images_from(ctx.db, ctx.settings, form, post_id=post.id)
    if refused is not None:
        media = composer.composer_context(images or [], warn=False)
        return await _edit_page(
            request, session, draft, error=refused.public_message, status=refused.status,
            media=media,
        )  # fmt: skip
    action = form.get("action")
    if action == "preview" or _wants_warning(action, images):
        shown = images if images is not None else await attachment_service.for_post(ctx.db, post.id)
        media = composer.composer_context(shown, warn=True)
        return await _edit_page(request, session, draft, preview=_preview_html(draft), media=media)
    before = await attachment_service.for_post(ctx.db, post.id)
    try:
        await post_service.edit(
            ctx.db,
            post.id,
            draft,
            max_chars=ctx.settings.max_post_chars,
            urls=ctx.urls,
            directory=ctx.directory,
            attachments=images,
        )
    except BadInput as exc:
        form_media = None if images is None else composer.composer_context(images, warn=False)
        return await _edit_page(
            request, session, draft, error=exc.public_message, status=400, media=form_media
        )
    ctx.wake_delivery()
    if images is not None:  # images the owner removed: their files go now
        kept = {image.name for image in images}
        removed = [image.name for image in before if image.name not in kept]
        await attachment_service.discard(ctx.db, ctx.settings, removed)
    return RedirectResponse(f"/p/{post.id}", status_code=303)


async def delete_form(request: Request) -> Response:
    session = await require_owner(request)
    post = await _post_for_edit(request)
    return render(
        request, "admin/delete.html", {**await admin_context(request, session), "post": post}
    )


async def delete_post(request: Request) -> Response:
    ctx = context(request)
    _session, _form = await owner_form(request)
    post = await _post_for_edit(request)
    images = await attachment_service.for_post(ctx.db, post.id)
    await post_service.delete(ctx.db, post.id, urls=ctx.urls)
    ctx.wake_delivery()
    await attachment_service.discard(ctx.db, ctx.settings, [image.name for image in images])
    return RedirectResponse("/admin?done=deleted", status_code=303)


# --- profile ---------------------------------------------------------------------------------


async def _profile_page(
    request: Request,
    session: OwnerSession,
    *,
    error: str = "",
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "admin/profile.html",
        {
            **await admin_context(request, session),
            "error": error,
            "form": form or {},
            "max_links": owner.MAX_LINKS,
        },
        status_code=status,
    )


async def profile_form(request: Request) -> Response:
    session = await require_owner(request)
    return await _profile_page(request, session)


async def _upload(form: FormData, field: str) -> bytes | None:
    value = form.get(field)
    if isinstance(value, UploadFile) and value.filename:
        data = await value.read()
        return data or None
    return None


async def save_profile(request: Request) -> Response:
    ctx = context(request)
    session = await require_owner(request)
    limit = ctx.settings.max_upload_bytes
    try:  # an avatar and a header within the limit, and the text fields
        form = await _read_form(request, max_part_size=limit + 1, max_bytes=2 * limit + 256 * 1024)
    except BadInput:
        return await _profile_page(
            request, session, status=413, error=media_service.too_large_message(limit)
        )
    check_csrf(session.csrf_token, form.get("csrf"))
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    current = await owner.get_profile(ctx.db, ctx.settings)
    try:
        links = owner.validate_links(
            [
                (values.get(f"link_label_{i}", ""), values.get(f"link_url_{i}", ""))
                for i in range(owner.MAX_LINKS)
            ]
        )
        owner.profile_text(values.get("display_name", ""), values.get("bio", ""))  # before images
        # Both images are checked before either is saved: a refused header keeps no avatar.
        prepared: dict[str, PreparedImage] = {}
        for kind in ("avatar", "header"):
            data = await _upload(form, kind)
            if data:
                prepared[kind] = await media_service.prepare(ctx.settings, data, kind)
        saved = {
            kind: await media_service.save_prepared(ctx.db, ctx.settings, image, kind)
            for kind, image in prepared.items()
        }
        avatar, header = saved.get("avatar"), saved.get("header")
        await owner.update_profile(
            ctx.db,
            current,
            display_name=values.get("display_name", ""),
            bio_source=values.get("bio", ""),
            links=links,
            avatar=avatar,
            header=header,
        )
    except BadInput as exc:
        return await _profile_page(
            request, session, error=exc.public_message, form=values, status=exc.status
        )
    await actor_service.announce_profile_update(ctx.db, ctx.settings, ctx.public_key_pem)
    ctx.wake_delivery()
    return RedirectResponse("/admin/profile?done=profile", status_code=303)


routes = [
    Route("/admin/login", login_form, methods=["GET", "HEAD"]),
    Route("/admin/login", login, methods=["POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
    Route("/admin", dashboard_page, methods=["GET", "HEAD"]),
    Route("/admin/posts", create_post, methods=["POST"]),
    Route("/admin/posts/{post_id}/edit", edit_form, methods=["GET", "HEAD"]),
    Route("/admin/posts/{post_id}/edit", edit_post, methods=["POST"]),
    Route("/admin/posts/{post_id}/delete", delete_form, methods=["GET", "HEAD"]),
    Route("/admin/posts/{post_id}/delete", delete_post, methods=["POST"]),
    Route("/admin/profile", profile_form, methods=["GET", "HEAD"]),
    Route("/admin/profile", save_profile, methods=["POST"]),
]
