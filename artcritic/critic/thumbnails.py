"""The small pictures of earlier decisions that go to the Critic beside the image under review.

Made from the stored WebP thumbnail (never the full PNG: a smaller read from S3), shrunk to
``CRITIC_THUMBNAIL_SIDE`` on the long side — 8 × 8 Qwen2.5-VL tokens (28 px each) for a
square, 66 with the vision wrapper — and sent as PNG, the format the prompt builder checks.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image as PilImage

from artcritic.studio import storage

CRITIC_THUMBNAIL_SIDE = 224  # a multiple of 28: a square thumbnail is exactly 8 × 8 tokens
# Examples recur from review to review; a stored object never changes (its key is a fresh
# UUID), so the GPU worker keeps the most recent ones (~40 KB each) instead of re-reading S3.
CACHED_THUMBNAILS = 256


@lru_cache(maxsize=CACHED_THUMBNAILS)
def thumbnail_png(thumbnail_key: str, side: int = CRITIC_THUMBNAIL_SIDE) -> bytes:
    """The stored thumbnail at ``thumbnail_key`` as a PNG no larger than ``side`` pixels."""
    data = storage.image_read(thumbnail_key)
    with PilImage.open(io.BytesIO(data)) as picture:
        picture.load()
        small = picture.convert("RGB")
    small.thumbnail((side, side), PilImage.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=False)
    return out.getvalue()
