"""The VRAM budget is arithmetic on the profile's model table, pinned to the shipped profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artcritic.gpu.budget import (
    comfy_budget_bytes,
    critic_need,
    diffusion_need,
    explain_diffusion,
    explain_kv,
    explain_need,
    gb,
    resident_fit,
    usable_bytes,
)
from artcritic.gpu.profiles import GB, Profile, profile_read

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FAST = settings(max_examples=300, deadline=None)


def shipped(name: str) -> Profile:
    return profile_read(PROFILES / f"{name}.toml")[0]


RTX5090 = shipped("rtx5090-32gb")
PRO6000 = shipped("rtx-pro-6000-96gb")
SIM = shipped("sim-32gb")


def variant(profile: Profile, change: dict[str, Any]) -> Profile:
    """A copy of a profile with some dotted keys changed, validated like a file."""
    data = profile.model_dump()
    for dotted, value in change.items():
        *path, last = dotted.split(".")
        node = data
        for key in path:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return Profile.model_validate(data)


sizes = st.integers(min_value=32, max_value=1024).map(lambda n: n * 8)
batches = st.integers(min_value=1, max_value=16)
modes = st.sampled_from(sorted(RTX5090.models))


def test_flux_bf16_at_1024_square_times_4_needs_36_2_gb_part_by_part() -> None:
    need = diffusion_need(
        RTX5090, model_mode="flux-dev-bf16", width=1024, height=1024, batch=4, lora=None
    )
    assert dict(need.parts) == {
        "transformer": 23_800_000_000,  # 11.9 B × 2 bytes
        "text encoders": 9_766_000_000,  # T5 4.76 B × 2 + CLIP-L 0.123 B × 2
        "VAE": 168_000_000,  # 0.084 B × 2
        "activations": 2_477_721_600,  # (0.8 + 0.4 × 1.048576 MP × 4) GB
    }
    assert need.total_bytes == 36_211_721_600
    assert need.runtime == "comfyui"


def test_the_bf16_sentence_reads_as_the_design_promises() -> None:
    need = diffusion_need(
        RTX5090, model_mode="flux-dev-bf16", width=1024, height=1024, batch=4, lora=None
    )
    assert explain_diffusion(RTX5090, need) == (
        "FLUX.1-dev bf16 at 1024×1024 × 4 needs ≈ 36.2 GB (transformer 23.8 GB + text "
        "encoders 9.8 GB + VAE 0.2 GB + activations 2.5 GB); profile rtx5090-32gb allows "
        "30.5 GB (32.0 GB − 1.5 GB reserve)."
    )


def test_flux_fp8_at_1024_square_times_4_needs_19_6_gb_as_the_profile_comment_says() -> None:
    need = diffusion_need(
        RTX5090, model_mode="flux-dev-fp8", width=1024, height=1024, batch=4, lora=None
    )
    assert need.total_bytes == 19_551_721_600
    assert gb(need.total_bytes) == "19.6 GB"


def test_the_critic_needs_weights_vision_kv_and_activations_within_its_claim_on_32_gb() -> None:
    need = critic_need(SIM)
    assert need.kv_bytes_per_token == 57_344  # 2 × 28 × 4 × 128 × 2 = 56 KiB
    assert need.kv_bytes == 57_344 * 8192 * 4
    assert dict(need.parts) == {
        "weights": 15_240_000_000,
        "vision encoder": 1_360_000_000,
        "KV cache": 1_879_048_192,
        "activations": 1_500_000_000,
    }
    assert need.total_bytes == 19_979_048_192
    assert need.claim_bytes == 22_400_000_000  # 0.70 × 32 GB
    assert need.fits_in_claim
    assert explain_kv(need) == (
        "KV cache for 8192 tokens × 4 sequences needs 1.9 GB (56 KiB per token)"
    )


def test_the_critic_on_96_gb_keeps_eight_sequences_and_claims_38_4_gb() -> None:
    need = critic_need(PRO6000)
    assert need.kv_bytes == 57_344 * 8192 * 8
    assert need.claim_bytes == 38_400_000_000
    assert need.fits_in_claim


def test_usable_is_total_minus_reserve() -> None:
    assert usable_bytes(RTX5090) == 30_500_000_000
    assert usable_bytes(PRO6000) == 94_000_000_000


def test_comfyui_gets_all_usable_vram_when_it_swaps_with_the_critic() -> None:
    assert comfy_budget_bytes(RTX5090) == usable_bytes(RTX5090)


def test_comfyui_gets_what_the_resident_critic_leaves_when_both_stay_resident() -> None:
    assert comfy_budget_bytes(PRO6000) == 94_000_000_000 - 38_400_000_000


def test_both_runtimes_fit_together_on_96_gb_even_with_flux_bf16_at_batch_4() -> None:
    need = diffusion_need(
        PRO6000, model_mode="flux-dev-bf16", width=1024, height=1024, batch=4, lora=None
    )
    assert resident_fit(PRO6000, need, critic_need(PRO6000))


def test_flux_fp8_and_the_critic_do_not_fit_together_on_32_gb() -> None:
    need = diffusion_need(
        RTX5090, model_mode="flux-dev-fp8", width=1024, height=1024, batch=4, lora=None
    )
    assert not resident_fit(RTX5090, need, critic_need(RTX5090))


def test_a_small_sdxl_run_and_the_critic_would_fit_together_on_32_gb() -> None:
    need = diffusion_need(RTX5090, model_mode="sdxl", width=512, height=512, batch=1, lora=None)
    # 7.0 + 0.66 GB beside the 22.4 GB claim is 30.1 GB of 30.5 GB usable.
    assert resident_fit(RTX5090, need, critic_need(RTX5090))


def test_a_text_encoder_unloaded_after_encoding_still_counts_at_its_peak() -> None:
    kept = variant(RTX5090, {"models.flux-dev-fp8.components.1.unloaded_after_encode": False})
    args: dict[str, Any] = {
        "model_mode": "flux-dev-fp8",
        "width": 1024,
        "height": 1024,
        "batch": 1,
        "lora": None,
    }
    assert diffusion_need(kept, **args) == diffusion_need(RTX5090, **args)


def test_a_critic_that_does_not_fit_its_claim_is_flagged() -> None:
    crowded = variant(SIM, {"runtimes.critic.max_num_seqs": 64})
    need = critic_need(crowded)
    assert need.kv_bytes == 57_344 * 8192 * 64
    assert not need.fits_in_claim


def test_a_context_is_rounded_up_to_whole_kv_blocks_of_16_tokens() -> None:
    odd = variant(SIM, {"runtimes.critic.max_model_len": 8200, "limits.critic_max_context": 8200})
    assert critic_need(odd).kv_bytes == 57_344 * 8208 * 4


@FAST
@given(mode=modes, width=sizes, height=sizes, batch=batches)
def test_a_need_is_exactly_the_sum_of_its_parts(
    mode: str, width: int, height: int, batch: int
) -> None:
    need = diffusion_need(
        RTX5090, model_mode=mode, width=width, height=height, batch=batch, lora=None
    )
    assert need.total_bytes == sum(size for _, size in need.parts)
    assert all(size > 0 for _, size in need.parts)


@FAST
@given(mode=modes, width=sizes, height=sizes, batch=batches, grow=st.sampled_from("whb"))
def test_a_need_never_shrinks_when_the_size_or_batch_grows(
    mode: str, width: int, height: int, batch: int, grow: str
) -> None:
    before = diffusion_need(
        RTX5090, model_mode=mode, width=width, height=height, batch=batch, lora=None
    )
    after = diffusion_need(
        RTX5090,
        model_mode=mode,
        width=width + 8 * (grow == "w"),
        height=height + 8 * (grow == "h"),
        batch=batch + (grow == "b"),
        lora=None,
    )
    assert after.total_bytes > before.total_bytes


@FAST
@given(
    mode=st.sampled_from(["flux-dev-fp8", "flux-dev-bf16"]),
    width=sizes,
    height=sizes,
    batch=batches,
)
def test_a_lora_adds_exactly_its_file_size(mode: str, width: int, height: int, batch: int) -> None:
    args: dict[str, Any] = {"model_mode": mode, "width": width, "height": height, "batch": batch}
    plain = diffusion_need(RTX5090, lora=None, **args)
    with_lora = diffusion_need(RTX5090, lora="product-render", **args)
    assert with_lora.total_bytes - plain.total_bytes == round(0.3 * GB)
    assert ("LoRA product-render", round(0.3 * GB)) in with_lora.parts


@FAST
@given(seqs=st.integers(min_value=1, max_value=256))
def test_the_kv_cache_grows_linearly_with_the_number_of_sequences(seqs: int) -> None:
    one = critic_need(variant(SIM, {"runtimes.critic.max_num_seqs": 1}))
    many = critic_need(variant(SIM, {"runtimes.critic.max_num_seqs": seqs}))
    assert many.kv_bytes == seqs * one.kv_bytes
    assert many.fits_in_claim == (many.total_bytes <= many.claim_bytes)
    assert many.total_bytes == sum(size for _, size in many.parts)


@FAST
@given(mode=modes, width=sizes, height=sizes, batch=batches)
def test_the_sentence_names_the_model_the_size_and_the_rounded_total(
    mode: str, width: int, height: int, batch: int
) -> None:
    need = diffusion_need(
        RTX5090, model_mode=mode, width=width, height=height, batch=batch, lora=None
    )
    sentence = explain_need(need)
    label = RTX5090.models[mode].label
    assert sentence.startswith(f"{label} at {width}×{height} × {batch} needs ≈ ")
    assert f"≈ {need.total_bytes / GB:.1f} GB (" in sentence


def test_an_unknown_model_mode_is_a_key_error_not_a_guess() -> None:
    with pytest.raises(KeyError):
        diffusion_need(RTX5090, model_mode="flux-pro", width=1024, height=1024, batch=1, lora=None)


def test_a_shared_profile_whose_critic_claims_everything_leaves_comfyui_nothing() -> None:
    hungry = variant(PRO6000, {"runtimes.critic.gpu_memory_utilization": 0.99})
    assert comfy_budget_bytes(hungry) == 0
