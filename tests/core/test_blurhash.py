"""The BlurHash encoder (core/blurhash.py): base 83, the hash layout, known vectors, images."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from fedistream.core.blurhash import ALPHABET, base83, encode, encode_image

# An 8×6 gradient (r grows along x, g along y); the hashes were produced by the reference
# `blurhash` package from PyPI (Python port of Wolt's encoder) for the same pixels.
GRADIENT = [(x * 30, y * 40, 128) for y in range(6) for x in range(8)]
GRADIENT_4X3 = "LcE.-D3Ba|%2zONLfQnTeqf7fQf7"
GRADIENT_5X5 = "ecE.-D3Ba|%2JlzONLfQnTWpeqf7fQf7fQ%fOXfQofWpd_e;fQe;fQ"


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _decode_dc(hash_: str) -> tuple[int, int, int]:
    value = 0
    for char in hash_[2:6]:
        value = value * 83 + ALPHABET.index(char)
    return value >> 16, (value >> 8) & 255, value & 255


def test_base83_digits() -> None:
    assert len(ALPHABET) == 83 and len(set(ALPHABET)) == 83
    assert base83(0, 1) == "0"
    assert base83(82, 1) == "~"
    assert base83(83, 2) == "10"
    assert base83(83**4 - 1, 4) == "~~~~"
    with pytest.raises(ValueError):
        base83(83, 1)


def test_known_vectors_from_the_reference_encoder() -> None:
    assert encode(8, 6, GRADIENT, 4, 3) == GRADIENT_4X3
    assert encode(8, 6, GRADIENT, 5, 5) == GRADIENT_5X5


def test_one_component_is_just_the_colour() -> None:
    # Size flag 0 (1×1), no AC so maximum 0, then (10 << 16 | 20 << 8 | 30) in four digits.
    assert encode(1, 1, [(10, 20, 30)], 1, 1) == "00" + base83((10 << 16) + (20 << 8) + 30, 4)


@pytest.mark.parametrize(("nx", "ny"), [(1, 1), (4, 3), (3, 4), (9, 9)])
def test_layout_size_flag_and_length(nx: int, ny: int) -> None:
    hash_ = encode(8, 6, GRADIENT, nx, ny)
    assert len(hash_) == 4 + 2 * nx * ny
    assert ALPHABET.index(hash_[0]) == (nx - 1) + (ny - 1) * 9
    assert set(hash_) <= set(ALPHABET)


def test_average_colour_is_taken_in_linear_light() -> None:
    # Half black, half white averages to 50 % light, which is sRGB 188, not 128.
    pixels = [(0, 0, 0) if x < 2 else (255, 255, 255) for _y in range(2) for x in range(4)]
    r, g, b = _decode_dc(encode(4, 2, pixels, 4, 3))
    assert r == g == b
    assert abs(r - 188) <= 1


def test_a_horizontal_gradient_is_mostly_horizontal_energy() -> None:
    # Many rows: the format samples cosines at y/height, so a short image leaks a little
    # energy into vertical components even when every column is flat.
    pixels = [(x * 36, x * 36, x * 36) for _y in range(64) for x in range(8)]
    hash_ = encode(8, 64, pixels, 2, 2)
    # AC components (1,0), (0,1), (1,1): each channel quantised to 0..18, 9 meaning zero.
    red = [(ALPHABET.index(hash_[i]) * 83 + ALPHABET.index(hash_[i + 1])) // 361 for i in (6, 8)]
    across, down = (abs(q - 9) for q in red)
    assert across >= 6 and across > 2 * down


@pytest.mark.parametrize(
    ("width", "height", "pixels", "nx"),
    [(2, 2, [(0, 0, 0)] * 3, 4), (0, 1, [], 4), (1, 1, [(0, 0, 0)], 0), (1, 1, [(0, 0, 0)], 10)],
)
def test_bad_arguments(
    width: int, height: int, pixels: list[tuple[int, int, int]], nx: int
) -> None:
    with pytest.raises(ValueError):
        encode(width, height, pixels, nx, 3)


def test_encode_image_reads_any_format_and_picks_components_by_shape() -> None:
    wide = encode_image(_png(Image.new("RGB", (300, 200), (200, 30, 60))))
    tall = encode_image(_png(Image.new("RGB", (200, 300), (200, 30, 60))))
    assert ALPHABET.index(wide[0]) == 3 + 2 * 9 and len(wide) == 4 + 2 * 12  # 4×3
    assert ALPHABET.index(tall[0]) == 2 + 3 * 9 and len(tall) == 4 + 2 * 12  # 3×4
    assert _decode_dc(wide) == (200, 30, 60)


def test_a_large_jpeg_is_hashed_from_a_small_copy() -> None:
    image = Image.new("RGB", (3000, 2000), (20, 120, 220))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    r, g, b = _decode_dc(encode_image(out.getvalue()))
    assert math.dist((r, g, b), (20, 120, 220)) < 6  # JPEG may shift a colour slightly


def test_transparent_pixels_count_as_white() -> None:
    clear = encode_image(_png(Image.new("RGBA", (40, 40), (0, 0, 0, 0))))
    assert _decode_dc(clear) == (255, 255, 255)
