"""Token arithmetic for the Critic: plain ints in, plain ints out, no I/O.

Image tokens follow what vLLM does for the Qwen vision models: the image is resized
with transformers' ``smart_resize`` (each side rounded to the NEAREST multiple of
``patch_size × merge_size``, then scaled into [min_pixels, max_pixels]) and every
``factor × factor`` cell becomes one token (vLLM 0.34.0,
``model_executor/models/qwen2_vl.py`` ``_get_vision_info``, which calls
``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``). The chat
template wraps each image in ``<|vision_start|>`` … ``<|vision_end|>``: two more tokens.

Text is counted by the model's tokenizer where the server offers it (vLLM's
``/tokenize``); otherwise by ``text_tokens_bound``: one token per UTF-8 byte, the most a
byte-level BPE tokenizer such as Qwen's can produce, so the estimate is never low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "QWEN2_5_VL",
    "QWEN3_VL",
    "VISION_WRAPPER_TOKENS",
    "VisionGrid",
    "answer_budget",
    "context_room",
    "image_tokens",
    "smart_resize",
    "text_tokens_bound",
    "vision_grid_for_model",
]

VISION_WRAPPER_TOKENS = 2  # <|vision_start|> and <|vision_end|> around the image pads
MAX_ASPECT_RATIO = 200  # smart_resize refuses anything flatter


@dataclass(frozen=True)
class VisionGrid:
    """A Qwen vision encoder's resize rule (its ``preprocessor_config.json``)."""

    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    @property
    def factor(self) -> int:
        """Pixels per token along one side: patch × merge (28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
        return self.patch_size * self.merge_size


# Qwen2.5-VL-*-Instruct: patch 14, 2×2 merge, min_pixels 3136, max_pixels 12845056.
QWEN2_5_VL = VisionGrid(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=12_845_056)
# Qwen3-VL-*-Instruct: patch 16, 2×2 merge, shortest_edge 65536, longest_edge 16777216.
QWEN3_VL = VisionGrid(patch_size=16, merge_size=2, min_pixels=65_536, max_pixels=16_777_216)


def vision_grid_for_model(model: str) -> VisionGrid:
    """The resize rule of a served model name; Qwen2.5-VL's for anything not Qwen3-VL."""
    return QWEN3_VL if "qwen3-vl" in model.lower() else QWEN2_5_VL


def smart_resize(height: int, width: int, grid: VisionGrid) -> tuple[int, int]:
    """(height, width) after transformers' smart_resize; ValueError as it raises."""
    if height <= 0 or width <= 0:
        raise ValueError(f"an image must have a positive size, not {width}×{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got "
            f"{max(height, width) / min(height, width)}"
        )
    factor = grid.factor
    # Python's round(): halves go to the even neighbour, exactly as in transformers.
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > grid.max_pixels:
        beta = math.sqrt((height * width) / grid.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < grid.min_pixels:
        beta = math.sqrt(grid.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, grid: VisionGrid = QWEN2_5_VL) -> int:
    """Vision tokens of one image (pads only, without the two wrapper tokens)."""
    h_bar, w_bar = smart_resize(height, width, grid)
    return (h_bar // grid.factor) * (w_bar // grid.factor)


def text_tokens_bound(text: str) -> int:
    """The most tokens ``text`` can take with a byte-level BPE tokenizer: its UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


def answer_budget(*, fixed_chars: int, free_text_chars: int) -> int:
    """Tokens reserved for an answer of at most this many characters.

    One token per character: Qwen's vocabulary holds letters, digits, punctuation and
    common CJK characters as single tokens or merges of several, so an answer within
    the schema's character limits fits. ``fixed_chars`` is the JSON around the free text.
    """
    if fixed_chars < 0 or free_text_chars < 0:
        raise ValueError("character counts cannot be negative")
    return fixed_chars + free_text_chars


def context_room(*, max_model_len: int, prompt_tokens: int, answer_tokens: int) -> int:
    """Tokens left after prompt and answer (negative: by how much it does not fit)."""
    return max_model_len - prompt_tokens - answer_tokens
