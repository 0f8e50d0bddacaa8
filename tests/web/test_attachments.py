"""Images on thoughts through HTTP: the multipart composer, the alt-text warning, refused uploads,
edit and delete, the public pages (lazy, sized, described, hidden behind a content warning), the
Note's Documents, the media routes and the image policy of the CSP."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Iterator

import pytest
from PIL import Image
from starlette.testclient import TestClient

from fedistream.app import build_app
from fedistream.services import remote_media
from fedistream.settings import Settings
from tests.conftest import log_in

AS2 = {"Accept": "application/activity+json"}
ALT = "A heron standing in shallow water"


def image_file(
    name: str = "heron.jpg", fmt: str = "JPEG", size: tuple[int, int] = (120, 80)
) -> tuple[str, bytes, str]:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 140, 160)).save(out, fmt)
    return (name, out.getvalue(), f"image/{fmt.lower()}")


def compose(
    client: TestClient,
    *,
    source: str = "At the pond",
    action: str = "publish",
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
    url: str = "/admin/posts",
    **fields: str,
):  # type: ignore[no-untyped-def]
    data = {"csrf": client.csrf, "source": source, "title": "", "summary": "", "action": action}  # type: ignore[attr-defined]
    data.update(fields)
    return client.post(url, data=data, files=files or [], follow_redirects=False)


def published_id(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


def media_names(settings: Settings) -> list[str]:
    folder = settings.media_dir
    return sorted(p.name for p in folder.glob("attachment-*")) if folder.is_dir() else []


def img_tags(html: str) -> list[str]:
    return re.findall(r"<img [^>]*>", html)


def test_the_composer_is_multipart_with_four_described_slots(owner_client: TestClient) -> None:
    page = owner_client.get("/admin").text
    assert 'enctype="multipart/form-data"' in page
    for n in range(1, 5):
        assert f'<input id="image_{n}" name="image_{n}" type="file"' in page
        assert f'<label for="alt_{n}">Image {n} description (alt text)</label>' in page
    assert 'name="image_5"' not in page


def test_publish_with_described_image_shows_everywhere(
    owner_client: TestClient, settings: Settings
) -> None:
    post_id = published_id(compose(owner_client, files=[("image_1", image_file())], alt_1=ALT))
    [name] = media_names(settings)
    for path in (f"/p/{post_id}", "/"):
        [tag] = [t for t in img_tags(owner_client.get(path).text) if "/media/attachment-" in t]
        assert f'src="/media/{name}"' in tag and f'alt="{ALT}"' in tag
        assert 'width="120" height="80"' in tag and 'loading="lazy"' in tag
    served = owner_client.get(f"/media/{name}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert "immutable" in served.headers["cache-control"]

    note = owner_client.get(f"/p/{post_id}", headers=AS2).json()
    assert note["attachment"][0]["type"] == "Document"
    assert note["attachment"][0]["url"] == f"{settings.base_url}/media/{name}"
    assert note["attachment"][0]["name"] == ALT and note["attachment"][0]["blurhash"]
    create = owner_client.get(f"/p/{post_id}/activity", headers=AS2).json()
    assert create["object"]["attachment"] == note["attachment"]
    outbox = owner_client.get("/outbox?page=true", headers=AS2).json()
    assert outbox["orderedItems"][0]["object"]["attachment"] == note["attachment"]


def test_preview_warns_about_missing_alt_and_publishing_needs_a_second_word(
    owner_client: TestClient, settings: Settings
) -> None:
    preview = compose(owner_client, action="preview", files=[("image_1", image_file())])
    assert preview.status_code == 200
    assert "Image 1 has no description (alt text)" in preview.text
    [name] = media_names(settings)
    assert f'name="media_1" value="{name}"' in preview.text  # no second upload needed
    assert f'src="/media/{name}"' in preview.text  # the preview shows it
    assert 'value="publish_without_alt"' in preview.text

    # Plain "Publish" stops on the warning again; nothing is published.
    again = compose(owner_client, media_1=name)
    assert again.status_code == 200 and "Image 1 has no description" in again.text
    assert name not in owner_client.get("/").text

    post_id = published_id(compose(owner_client, action="publish_without_alt", media_1=name))
    [tag] = [t for t in img_tags(owner_client.get(f"/p/{post_id}").text) if name in t]
    assert 'alt=""' in tag


def test_alt_text_added_after_the_warning_is_kept(
    owner_client: TestClient, settings: Settings
) -> None:
    compose(owner_client, action="preview", files=[("image_1", image_file())])
    [name] = media_names(settings)
    post_id = published_id(compose(owner_client, media_1=name, alt_1=ALT))
    assert f'alt="{ALT}"' in owner_client.get(f"/p/{post_id}").text


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("image_1", ("notes.txt", b"just some text", "text/plain"))], "not an image"),
        ([(f"image_{n}", image_file(f"{n}.jpg")) for n in range(1, 6)], "at most 4 images"),
    ],
)
def test_refused_images_change_nothing(
    owner_client: TestClient,
    settings: Settings,
    files: list[tuple[str, tuple[str, bytes, str]]],
    message: str,
) -> None:
    response = compose(owner_client, source="Should not appear", files=files, alt_1=ALT)
    assert response.status_code == 400
    assert message in response.text and "Not saved." in response.text
    assert "Should not appear" in response.text  # the text is kept in the form
    assert media_names(settings) == []
    assert "Should not appear" not in owner_client.get("/").text


@pytest.fixture
def small_limit_client(settings: Settings) -> Iterator[TestClient]:
    limited = dataclasses.replace(settings, max_upload_bytes=2000)
    with TestClient(build_app(limited), base_url=limited.base_url) as client:
        client.csrf = log_in(client)  # type: ignore[attr-defined]
        yield client


def test_an_image_over_the_limit_is_refused(
    small_limit_client: TestClient, settings: Settings
) -> None:
    noise = io.BytesIO()
    Image.frombytes("RGB", (60, 60), os.urandom(60 * 60 * 3)).save(noise, "PNG")
    big = ("big.png", noise.getvalue(), "image/png")  # noise does not compress: ~10 kB
    response = compose(small_limit_client, files=[("image_1", big)], alt_1=ALT)
    assert response.status_code == 413
    assert "Image 1: The file is larger than the upload limit" in response.text
    assert media_names(settings) == []


def test_content_warning_hides_the_images_too(owner_client: TestClient) -> None:
    post_id = published_id(
        compose(owner_client, files=[("image_1", image_file())], alt_1=ALT, summary="pond life")
    )
    html = owner_client.get(f"/p/{post_id}").text
    details = html[html.index('<details class="cw">') : html.index("</details>")]
    assert "/media/attachment-" in details
    note = owner_client.get(f"/p/{post_id}", headers=AS2).json()
    assert note["sensitive"] is True and note["attachment"]


def test_edit_changes_alt_text_and_removes_images(
    owner_client: TestClient, settings: Settings
) -> None:
    post_id = published_id(
        compose(
            owner_client,
            files=[("image_1", image_file("a.jpg")), ("image_2", image_file("b.png", "PNG"))],
            alt_1="first",
            alt_2="second",
        )
    )
    first, second = (
        re.search(
            rf'name="media_{n}" value="([^"]+)"',
            owner_client.get(f"/admin/posts/{post_id}/edit").text,
        ).group(1)  # type: ignore[union-attr]
        for n in (1, 2)
    )
    form = owner_client.get(f"/admin/posts/{post_id}/edit").text
    assert 'enctype="multipart/form-data"' in form and 'name="remove_1"' in form
    assert ">first</textarea>" in form

    url = f"/admin/posts/{post_id}/edit"
    response = compose(
        owner_client, url=url, action="save", source="At the pond, edited",
        media_1=first, alt_1="first, better", media_2=second, alt_2="second", remove_2="1",
    )  # fmt: skip
    assert response.status_code == 303, response.text
    page = owner_client.get(f"/p/{post_id}").text
    assert 'alt="first, better"' in page and second not in page
    assert media_names(settings) == [first]  # the removed file is gone
    assert owner_client.get(f"/media/{second}").status_code == 404
    note = owner_client.get(f"/p/{post_id}", headers=AS2).json()
    assert [a["name"] for a in note["attachment"]] == ["first, better"]


def test_an_edit_form_without_image_fields_keeps_the_images(owner_client: TestClient) -> None:
    post_id = published_id(compose(owner_client, files=[("image_1", image_file())], alt_1=ALT))
    response = owner_client.post(
        f"/admin/posts/{post_id}/edit",
        data={"csrf": owner_client.csrf, "source": "only text", "action": "save"},  # type: ignore[attr-defined]
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert f'alt="{ALT}"' in owner_client.get(f"/p/{post_id}").text


def test_delete_removes_the_files(owner_client: TestClient, settings: Settings) -> None:
    post_id = published_id(compose(owner_client, files=[("image_1", image_file())], alt_1=ALT))
    [name] = media_names(settings)
    owner_client.post(
        f"/admin/posts/{post_id}/delete",
        data={"csrf": owner_client.csrf},  # type: ignore[attr-defined]
        follow_redirects=False,
    )
    assert media_names(settings) == []
    assert owner_client.get(f"/media/{name}").status_code == 404


def test_images_come_only_from_our_origin(client: TestClient) -> None:
    policy = client.get("/").headers["content-security-policy"]
    img_src = next(d for d in policy.split(";") if d.strip().startswith("img-src"))
    assert img_src.split() == ["img-src", "'self'", "data:"]


def test_remote_media_route_serves_only_cached_hash_names(
    client: TestClient, settings: Settings
) -> None:
    url = "https://127.0.0.1:9/avatars/bird.png"
    name = remote_media.url_key(url) + ".png"
    folder = remote_media.remote_dir(settings.media_dir)
    folder.mkdir(parents=True)
    (folder / name).write_bytes(image_file("x.png", "PNG")[1])
    served = client.get(f"/media/remote/{name}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert "max-age=31536000" in served.headers["cache-control"]
    assert client.get("/media/remote/" + "0" * 64 + ".png").status_code == 404
    assert client.get("/media/remote/..%2Ffedistream.sqlite3").status_code == 404
    assert client.get("/media/remote/" + name[:-4] + ".svg").status_code == 404
