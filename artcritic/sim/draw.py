"""Deterministic concept images for the simulated Artist, drawn with Pillow.

An image depends only on (prompt text, seed, batch index, width, height): the
prompt picks the palette and the kind of product, the seed and batch index pick
the composition. A small "SIMULATED" mark keeps the pictures honest.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

Rgb = tuple[int, int, int]


def _digest(*parts: object) -> bytes:
    text = "\x00".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _colour(raw: bytes, offset: int) -> Rgb:
    return (raw[offset % 32], raw[(offset + 1) % 32], raw[(offset + 2) % 32])


def _background(width: int, height: int, top: Rgb, bottom: Rgb) -> Image.Image:
    gradient = Image.linear_gradient("L").resize((width, height))
    return ImageOps.colorize(gradient, black=top, white=bottom).convert("RGB")


def _product(
    draw: ImageDraw.ImageDraw, width: int, height: int, raw: bytes, colours: list[Rgb]
) -> None:
    """A product-like silhouette: a body, a head or lid, a stand, and an accent."""
    unit = min(width, height)
    cx = width * (0.35 + raw[0] / 255 * 0.3)
    cy = height * (0.45 + raw[1] / 255 * 0.15)
    body_w = unit * (0.25 + raw[2] / 255 * 0.25)
    body_h = unit * (0.2 + raw[3] / 255 * 0.35)
    radius = int(unit * 0.02 + raw[4] / 255 * body_w * 0.4)
    body = (cx - body_w / 2, cy - body_h / 2, cx + body_w / 2, cy + body_h / 2)
    draw.rounded_rectangle(body, radius=max(1, radius), fill=colours[0])
    head_r = unit * (0.06 + raw[5] / 255 * 0.1)
    head_y = body[1] - head_r * (0.4 + raw[6] / 255)
    if raw[7] % 2:
        draw.ellipse((cx - head_r, head_y - head_r, cx + head_r, head_y + head_r), fill=colours[1])
    else:
        draw.rectangle(
            (cx - head_r * 1.6, head_y - head_r * 0.5, cx + head_r * 1.6, head_y + head_r * 0.5),
            fill=colours[1],
        )
    stand_w = body_w * (0.1 + raw[8] / 255 * 0.3)
    ground = height * 0.88
    draw.rectangle((cx - stand_w / 2, body[3], cx + stand_w / 2, ground), fill=colours[2])
    draw.ellipse(
        (cx - body_w * 0.6, ground - unit * 0.02, cx + body_w * 0.6, ground + unit * 0.03),
        fill=colours[2],
    )
    accent_r = unit * (0.015 + raw[9] / 255 * 0.04)
    ax = body[0] + (body[2] - body[0]) * (0.2 + raw[10] / 255 * 0.6)
    ay = body[1] + (body[3] - body[1]) * (0.2 + raw[11] / 255 * 0.6)
    draw.ellipse((ax - accent_r, ay - accent_r, ax + accent_r, ay + accent_r), fill=colours[3])


def image_draw(prompt: str, seed: int, index: int, width: int, height: int) -> Image.Image:
    """Draw the image for one batch item; the same arguments always give the same pixels."""
    style = _digest("style", prompt)
    layout = _digest("layout", prompt, seed, index)
    palette = [_colour(style, i * 3) for i in range(7)]
    image = _background(width, height, palette[4], palette[5])
    draw = ImageDraw.Draw(image)
    # A few background shapes from the seed so that two seeds of one prompt differ visibly.
    unit = min(width, height)
    for k in range(2 + layout[12] % 3):
        x = layout[13 + k] / 255 * width
        y = layout[17 + k] / 255 * height * 0.6
        r = unit * (0.05 + layout[21 + k] / 255 * 0.2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_colour(layout, 24 + k))
    _product(draw, width, height, layout, palette[:4])
    _mark(draw, width, height)
    return image


def _mark(draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    font = ImageFont.load_default(size=max(8, min(width, height) // 40))
    text = "SIMULATED"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 4
    x = width - (right - left) - 2 * pad
    y = height - (bottom - top) - 2 * pad
    draw.rectangle((x, y, width, height), fill=(0, 0, 0))
    draw.text((x + pad - left, y + pad - top), text, fill=(255, 255, 255), font=font)


def png_encode(
    image: Image.Image,
    *,
    prompt: dict[str, Any] | None,
    extra_pnginfo: dict[str, Any] | None = None,
    compress_level: int = 4,
) -> bytes:
    """Encode as PNG with ComfyUI's text chunks: ``prompt`` (the graph) and extra_pnginfo keys."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(str(key), json.dumps(value))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=compress_level)
    return out.getvalue()


def preview_draw(prompt: str, seed: int, step: int, steps: int, size: int = 64) -> bytes:
    """A small PNG preview that sharpens from noise towards the final image as steps pass."""
    final = image_draw(prompt, seed, 0, size, size)
    noise = Image.frombytes("RGB", (size, size), _noise_bytes(seed, step, size * size * 3))
    mixed = Image.blend(noise, final, max(0.0, min(1.0, step / max(1, steps))))
    return png_encode(mixed, prompt=None, compress_level=1)


def _noise_bytes(seed: int, step: int, count: int) -> bytes:
    out = bytearray()
    block = 0
    while len(out) < count:
        out += _digest("noise", seed, step, block)
        block += 1
    return bytes(out[:count])
