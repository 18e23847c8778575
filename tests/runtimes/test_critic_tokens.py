"""Token arithmetic: Qwen-VL image tokens by vLLM's real smart_resize rounding, text bounds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artcritic.runtimes.critic import VERDICT_MAX_TOKENS
from artcritic.runtimes.critic_prompt import image_tokens as prompt_image_tokens
from artcritic.runtimes.critic_schema import CRITERIA, RATIONALE_MAX_CHARS
from artcritic.runtimes.critic_tokens import (
    QWEN2_5_VL,
    QWEN3_VL,
    VISION_WRAPPER_TOKENS,
    answer_budget,
    context_room,
    image_tokens,
    smart_resize,
    text_tokens_bound,
    vision_grid_for_model,
)


@pytest.mark.parametrize(
    ("width", "height", "resized", "tokens"),
    [
        # Qwen2.5-VL, factor 28: each side to the NEAREST multiple of 28.
        (512, 512, (504, 504), 18 * 18),
        (1024, 1024, (1036, 1036), 37 * 37),  # 1,369 — not the old ≈1,338 estimate
        (1536, 640, (644, 1540), 55 * 23),  # (height, width) = (23 × 28, 55 × 28)
        (640, 1536, (1540, 644), 23 * 55),
        (1024, 768, (756, 1036), 37 * 27),
    ],
)
def test_qwen2_5_vl_image_tokens_follow_smart_resize(
    width: int, height: int, resized: tuple[int, int], tokens: int
) -> None:
    assert smart_resize(height, width, QWEN2_5_VL) == resized
    assert image_tokens(width, height, QWEN2_5_VL) == tokens


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [(512, 512, 16 * 16), (1024, 1024, 32 * 32), (1536, 640, 48 * 20)],
)
def test_qwen3_vl_image_tokens_use_a_factor_of_32(width: int, height: int, tokens: int) -> None:
    assert QWEN3_VL.factor == 32
    assert image_tokens(width, height, QWEN3_VL) == tokens


def test_halves_round_to_the_even_multiple_as_pythons_round_does() -> None:
    # 42 = 1.5 × 28 → 2 × 28; 70 = 2.5 × 28 → 2 × 28 (banker's rounding, as in transformers).
    assert smart_resize(42 * 40, 42, QWEN2_5_VL)[1] == 56
    assert smart_resize(70 * 40, 70, QWEN2_5_VL)[1] == 56


def test_a_tiny_image_is_scaled_up_to_min_pixels() -> None:
    assert smart_resize(20, 20, QWEN2_5_VL) == (56, 56)  # 3,136 px = min_pixels
    assert image_tokens(20, 20) == 4


def test_a_huge_image_is_scaled_down_under_max_pixels() -> None:
    height, width = smart_resize(6000, 8000, QWEN2_5_VL)
    assert height * width <= QWEN2_5_VL.max_pixels
    assert (height, width) == (3080, 4116)
    assert image_tokens(8000, 6000) == (3080 // 28) * (4116 // 28)


def test_an_aspect_ratio_over_200_is_refused_as_transformers_does() -> None:
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        smart_resize(10, 2020, QWEN2_5_VL)
    with pytest.raises(ValueError, match="positive size"):
        smart_resize(0, 10, QWEN2_5_VL)


def test_the_prompt_adds_the_two_vision_wrapper_tokens() -> None:
    assert prompt_image_tokens(1024, 1024) == 1369 + VISION_WRAPPER_TOKENS


def test_the_model_name_picks_the_resize_rule() -> None:
    assert vision_grid_for_model("Qwen/Qwen2.5-VL-7B-Instruct") is QWEN2_5_VL
    assert vision_grid_for_model("Qwen/Qwen3-VL-8B-Instruct") is QWEN3_VL
    assert vision_grid_for_model("my-served-critic") is QWEN2_5_VL


sides = st.integers(min_value=1, max_value=9000)


@given(width=sides, height=sides, qwen3=st.booleans())
def test_every_resize_is_on_the_grid_and_within_the_pixel_limits(
    width: int, height: int, qwen3: bool
) -> None:
    grid = QWEN3_VL if qwen3 else QWEN2_5_VL
    if max(width, height) / min(width, height) > 200:
        with pytest.raises(ValueError, match="aspect ratio"):
            smart_resize(height, width, grid)
        return
    h_bar, w_bar = smart_resize(height, width, grid)
    assert h_bar % grid.factor == 0
    assert w_bar % grid.factor == 0
    assert h_bar >= grid.factor
    assert w_bar >= grid.factor
    assert h_bar * w_bar <= grid.max_pixels
    assert image_tokens(width, height, grid) == (h_bar // grid.factor) * (w_bar // grid.factor)


@given(text=st.text(max_size=400))
def test_the_text_bound_is_never_below_the_characters_and_counts_bytes(text: str) -> None:
    bound = text_tokens_bound(text)
    assert bound == len(text.encode("utf-8", "surrogatepass"))
    assert bound >= len(text)


def test_the_text_bound_counts_multibyte_characters_by_their_bytes() -> None:
    assert text_tokens_bound("lamp") == 4
    assert text_tokens_bound("灯") == 3
    assert text_tokens_bound("🛋") == 4


def test_answer_budget_and_context_room_are_plain_arithmetic() -> None:
    assert answer_budget(fixed_chars=500, free_text_chars=4000) == 4500
    assert context_room(max_model_len=8192, prompt_tokens=3000, answer_tokens=4500) == 692
    assert context_room(max_model_len=8192, prompt_tokens=4000, answer_tokens=4500) == -308
    with pytest.raises(ValueError, match="negative"):
        answer_budget(fixed_chars=-1, free_text_chars=0)


def test_the_verdict_budget_holds_the_longest_schema_valid_answer_at_a_token_per_char() -> None:
    longest = {
        "scores": dict.fromkeys(CRITERIA, 10),
        "verdict": "approve",
        "rationale": dict.fromkeys(CRITERIA, "x" * RATIONALE_MAX_CHARS),
    }
    assert len(json.dumps(longest, indent=2)) <= VERDICT_MAX_TOKENS
    # An 8k context keeps room for a 1024² image (1,371) and ~2,000 tokens of text.
    assert 8192 - VERDICT_MAX_TOKENS >= 1371 + 2000
