"""Jinja2 templates from the top-level `templates/` folder (or the copy a built wheel carries)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

import fedistream
from fedistream.core.render import tag_path
from fedistream.core.timefmt import human_date, human_datetime, to_iso
from fedistream.services import remote_media


def templates_dir() -> Path:
    """Installed wheel: fedistream/templates. Source checkout or editable install: ../templates."""
    package = Path(fedistream.__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise RuntimeError(f"fedistream templates not found next to {package}")


@jinja2.pass_context
def remote_media_url(context: jinja2.runtime.Context, url: object) -> str:
    """`{{ actor.icon_url|remote_media_url }}`: our `/media/remote/…` URL when the image is cached,
    else "" (render nothing or a placeholder). Never returns the remote URL: readers' browsers must
    not be sent to other servers. Looks at the disk only; fetching happens in the background."""
    request = context.get("request")
    if request is None:
        return ""
    return remote_media.local_url(request.app.state.ctx.settings.media_dir, url)


def remote_attachments(column: object) -> list[remote_media.RemoteImage]:
    """`{% set images = note.attachments|remote_attachments %}`: a remote_posts row's stored
    attachments, ready for `_attachments.html` (with `sensitive = note.sensitive`)."""
    return remote_media.parse_attachments(column)


def build_environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(("html", "xml"), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["iso"] = lambda when: to_iso(when) if isinstance(when, datetime) else ""
    env.filters["human_date"] = human_date
    env.filters["human_datetime"] = human_datetime
    env.filters["tag_path"] = tag_path
    env.filters["remote_media_url"] = remote_media_url
    env.filters["remote_attachments"] = remote_attachments
    return env


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    env: jinja2.Environment = request.app.state.ctx.templates
    html = env.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=headers)
