"""BlurHash encoder (the compact placeholder Mastodon sends with each attachment, R59). Pure.

A BlurHash is a few cosine components of the image in linear light, quantised and written in
base 83: the size flag, the maximum AC value, the average colour (DC), then every AC component.
`encode` works on a list of RGB pixels; `encode_image` shrinks encoded image bytes with Pillow
first (the hash only keeps the lowest frequencies, so a tiny copy gives the same result).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
MAX_COMPONENTS = 9  # per axis, by the format; Mastodon keeps hashes with at most 5 (R59)
SAMPLE_BOX = 32  # pixels: the longest side of the copy the hash is computed from

Pixel = tuple[int, int, int]

# sRGB byte → linear light, looked up rather than recomputed per pixel.
_TO_LINEAR = tuple(
    (v / 255) / 12.92 if v / 255 <= 0.04045 else (((v / 255) + 0.055) / 1.055) ** 2.4
    for v in range(256)
)


def base83(value: int, length: int) -> str:
    """`value` as exactly `length` base-83 digits, most significant first."""
    if value < 0 or value >= 83**length:
        raise ValueError(f"{value} does not fit in {length} base-83 digits")
    return "".join(ALPHABET[(value // 83 ** (length - 1 - i)) % 83] for i in range(length))


def _to_srgb(value: float) -> int:
    v = min(1.0, max(0.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _sign_sqrt(value: float) -> float:
    return math.copysign(math.sqrt(abs(value)), value)


def encode(
    width: int, height: int, pixels: Sequence[Pixel], x_components: int = 4, y_components: int = 3
) -> str:
    """The BlurHash of a `width`×`height` image given row by row as (r, g, b) bytes."""
    if not (1 <= x_components <= MAX_COMPONENTS and 1 <= y_components <= MAX_COMPONENTS):
        raise ValueError(f"components must be 1..{MAX_COMPONENTS} per axis")
    if width < 1 or height < 1 or len(pixels) != width * height:
        raise ValueError("pixels must hold width × height (r, g, b) values")
    linear = [(_TO_LINEAR[r], _TO_LINEAR[g], _TO_LINEAR[b]) for r, g, b in pixels]
    cos_x = [[math.cos(math.pi * i * x / width) for x in range(width)] for i in range(x_components)]
    cos_y = [
        [math.cos(math.pi * j * y / height) for y in range(height)] for j in range(y_components)
    ]
    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        for i in range(x_components):
            # The DC term is a plain average; AC terms count twice (the basis' normalisation).
            scale = (1 if i == 0 and j == 0 else 2) / (width * height)
            r = g = b = 0.0
            for y in range(height):
                row_weight = cos_y[j][y]
                row = y * width
                for x in range(width):
                    weight = cos_x[i][x] * row_weight
                    pr, pg, pb = linear[row + x]
                    r += weight * pr
                    g += weight * pg
                    b += weight * pb
            factors.append((r * scale, g * scale, b * scale))

    dc, ac = factors[0], factors[1:]
    out = [base83((x_components - 1) + (y_components - 1) * 9, 1)]
    if ac:
        actual_max = max(abs(channel) for factor in ac for channel in factor)
        quantised_max = int(max(0, min(82, math.floor(actual_max * 166 - 0.5))))
        maximum = (quantised_max + 1) / 166
        out.append(base83(quantised_max, 1))
    else:
        maximum = 1.0
        out.append(base83(0, 1))
    out.append(base83((_to_srgb(dc[0]) << 16) + (_to_srgb(dc[1]) << 8) + _to_srgb(dc[2]), 4))
    for factor in ac:
        r, g, b = (
            int(max(0, min(18, math.floor(_sign_sqrt(c / maximum) * 9 + 9.5)))) for c in factor
        )
        out.append(base83(r * 19 * 19 + g * 19 + b, 2))
    return "".join(out)


def encode_image(data: bytes) -> str:
    """The BlurHash of an encoded image (any format Pillow reads): 4×3 components for a wide
    image, 3×4 for a tall one. Transparent areas count as white, as most pages show them."""
    from PIL import Image  # only when an image is handled (see core/images.py)

    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (SAMPLE_BOX * 4, SAMPLE_BOX * 4))  # JPEG: decode at reduced size
        small = image.convert("RGBA")
    small.thumbnail((SAMPLE_BOX, SAMPLE_BOX), Image.Resampling.BOX)
    flat = Image.new("RGBA", small.size, (255, 255, 255, 255))
    flat.alpha_composite(small)
    rgb = flat.convert("RGB")
    wide = rgb.width >= rgb.height
    raw = rgb.tobytes()  # r, g, b bytes row by row
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    return encode(rgb.width, rgb.height, pixels, 4 if wide else 3, 3 if wide else 4)
