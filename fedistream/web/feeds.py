"""Atom and JSON Feed (placeholder: filled in with the feed builders)."""

from __future__ import annotations

from starlette.routing import Route

routes: list[Route] = []
