"""Basic accessibility on the real pages: language, landmarks, labels, alt text, contrast."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.conftest import publish

STYLESHEET = Path(__file__).resolve().parents[2] / "templates" / "static" / "style.css"


class _PageAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.landmarks: set[str] = set()
        self.images_without_alt: list[str] = []
        self.label_targets: set[str] = set()
        self.inputs: list[tuple[str, str | None]] = []  # (type, id)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag in ("main", "header", "footer", "nav"):
            self.landmarks.add(tag)
        if tag == "img" and a.get("alt") is None:
            self.images_without_alt.append(a.get("src") or "?")
        if tag == "label" and a.get("for"):
            self.label_targets.add(str(a["for"]))
        if tag in ("input", "textarea", "select"):
            kind = a.get("type") or tag
            if kind not in ("hidden", "submit", "button"):
                self.inputs.append((str(kind), a.get("id")))


def _audit(html: str) -> _PageAudit:
    audit = _PageAudit()
    audit.feed(html)
    return audit


PUBLIC_PAGES = ["/", "/search", "/search?q=garden", "/tags/garden", "/admin/login"]
ADMIN_PAGES = ["/admin", "/admin/profile", "/admin/followers", "/admin/following"]


@pytest.mark.parametrize("path", PUBLIC_PAGES + ADMIN_PAGES)
def test_pages_have_language_landmarks_labels_and_alt(owner_client: TestClient, path: str) -> None:
    post_id = publish(owner_client, "A #garden note")
    for page in (path, f"/p/{post_id}"):
        audit = _audit(owner_client.get(page).text)
        assert audit.lang == "en", page
        assert {"main", "header", "footer"} <= audit.landmarks, page
        assert audit.images_without_alt == [], page
        unlabelled = [
            kind for kind, id_ in audit.inputs if not id_ or id_ not in audit.label_targets
        ]
        assert unlabelled == [], f"{page}: form fields without a <label for>: {unlabelled}"


def _variables(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", block))


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_meets_wcag_aa_in_light_and_dark() -> None:
    css = STYLESHEET.read_text()
    light = _variables(css.split("@media (prefers-color-scheme: dark)")[0])
    dark = {
        **light,
        **_variables(css.split("@media (prefers-color-scheme: dark)")[1].split("}")[0]),
    }
    for name, scheme in (("light", light), ("dark", dark)):
        for fg, bg in [("fg", "bg"), ("muted", "bg"), ("accent", "bg"), ("error", "error-bg"),
                       ("fg", "accent-bg"), ("muted", "accent-bg")]:  # fmt: skip
            ratio = contrast(scheme[fg], scheme[bg])
            assert ratio >= 4.5, f"{name}: --{fg} on --{bg} is {ratio:.2f}:1 (AA needs 4.5)"
    # Button text on the accent colour.
    assert contrast("#ffffff", light["accent"]) >= 4.5
    assert contrast("#1b120c", dark["accent"]) >= 4.5


def test_contrast_helper_matches_known_values() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48
