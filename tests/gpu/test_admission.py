"""Admission refuses anything outside the profile, with numbers and a next action; never adjusts."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from artcritic.gpu.admission import (
    Admission,
    AdmissionRefused,
    RequestSettings,
    admit_generation,
    admit_review,
    batch_for,
    mode_never_fits,
)
from artcritic.gpu.budget import comfy_budget_bytes, diffusion_need
from artcritic.gpu.profiles import Profile, profile_read

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FAST = settings(max_examples=400, deadline=None)


def shipped(name: str) -> Profile:
    return profile_read(PROFILES / f"{name}.toml")[0]


def variant(profile: Profile, change: dict[str, Any]) -> Profile:
    """A copy of a profile with some dotted keys changed, validated like a file."""
    data = profile.model_dump()
    for dotted, value in change.items():
        *path, last = dotted.split(".")
        node = data
        for key in path:
            node = node[key]
        node[last] = value
    return Profile.model_validate(data)


RTX5090 = shipped("rtx5090-32gb")
PRO6000 = shipped("rtx-pro-6000-96gb")
SIM = shipped("sim-32gb")
# A 22 GB card: FLUX fp8 fits only at small sizes or batches, so every VRAM path is exercised.
TIGHT = variant(RTX5090, {"name": "tight-22gb", "vram_total_gb": 22.0})

FLUX_BF16_4 = RequestSettings(
    model_mode="flux-dev-bf16",
    width=1024,
    height=1024,
    steps=20,
    cfg=1.0,
    sampler="euler",
    scheduler="simple",
    lora=None,
    lora_strength=1.0,
    seed_policy="fixed",
    count=4,
)
FLUX_FP8_4 = replace(FLUX_BF16_4, model_mode="flux-dev-fp8")


def refused_properly(admission: Admission) -> bool:
    return (
        not admission.ok
        and bool(admission.reason)
        # Pages print "Next:" before it: the action never carries its own (no "Next: Next:").
        and not admission.next_action.startswith("Next")
        and admission.next_action[:1].isupper()
        and re.search(r"— the system will not change (it|them) for you\.$", admission.next_action)
        is not None
    )


# --- the pinned examples ---------------------------------------------------------------------


def test_flux_bf16_at_1024_square_times_4_is_blocked_on_the_5090_with_the_arithmetic() -> None:
    admission = admit_generation(RTX5090, FLUX_BF16_4)
    assert refused_properly(admission)
    assert admission.reason == (
        "FLUX.1-dev bf16 at 1024×1024 × 4 needs ≈ 36.2 GB (transformer 23.8 GB + text "
        "encoders 9.8 GB + VAE 0.2 GB + activations 2.5 GB); profile rtx5090-32gb allows "
        "30.5 GB (32.0 GB − 1.5 GB reserve)."
    )
    # bf16 weights alone (33.7 GB) exceed 30.5 GB, so no smaller batch is offered: only modes.
    assert admission.next_action == (
        "Choose the FLUX.1-dev fp8 or SDXL base 1.0 model mode — the system will not "
        "change it for you."
    )
    assert admission.need_bytes == 36_211_721_600
    assert admission.usable_bytes == 30_500_000_000


def test_flux_fp8_at_1024_square_times_4_fits_the_5090() -> None:
    admission = admit_generation(RTX5090, FLUX_FP8_4)
    assert admission.ok
    assert admission.next_action == ""
    assert "needs ≈ 19.6 GB" in admission.reason
    assert "allows 30.5 GB" in admission.reason


def test_flux_bf16_and_fp8_at_batch_4_fit_the_96_gb_card_beside_the_resident_critic() -> None:
    for request in (FLUX_FP8_4, FLUX_BF16_4):
        admission = admit_generation(PRO6000, request)
        assert admission.ok
        assert admission.usable_bytes == 55_600_000_000
        assert "(96.0 GB − 2.0 GB reserve − 38.4 GB kept by the resident Critic)" in (
            admission.reason
        )


def test_the_critic_on_the_simulated_32_gb_card_fits_its_claim() -> None:
    admission = admit_review(SIM)
    assert admission.ok
    assert admission.need_bytes == 22_400_000_000  # vLLM takes its whole claim
    assert admission.reason == (
        "The Critic (Qwen2.5-VL 7B Instruct) needs ≈ 20.0 GB (weights 15.2 GB + vision "
        "encoder 1.4 GB + KV cache 1.9 GB + activations 1.5 GB), within what vLLM claims "
        "(gpu_memory_utilization 0.70 × 32.0 GB = 22.4 GB); profile sim-32gb allows 30.5 GB "
        "(32.0 GB − 1.5 GB reserve)."
    )


def test_the_critic_fits_on_every_shipped_profile() -> None:
    assert all(admit_review(p).ok for p in (RTX5090, PRO6000, SIM))


# --- batches ---------------------------------------------------------------------------------


@given(count=st.integers(min_value=1, max_value=64))
def test_a_fixed_seed_renders_all_images_as_one_batch(count: int) -> None:
    assert batch_for(replace(FLUX_FP8_4, count=count)) == count


@given(
    count=st.integers(min_value=1, max_value=64), policy=st.sampled_from(["increment", "random"])
)
def test_distinct_seeds_render_one_image_per_prompt(count: int, policy: str) -> None:
    assert batch_for(replace(FLUX_FP8_4, count=count, seed_policy=policy)) == 1


def test_an_unknown_seed_policy_has_no_batch() -> None:
    with pytest.raises(ValueError, match="chaos"):
        batch_for(replace(FLUX_FP8_4, seed_policy="chaos"))


def test_one_image_per_prompt_is_counted_and_said_as_such() -> None:
    admission = admit_generation(RTX5090, replace(FLUX_FP8_4, seed_policy="increment"))
    assert admission.ok
    assert admission.reason.startswith(
        "FLUX.1-dev fp8 at 1024×1024, 4 images made one at a time (a seed each), needs ≈ 18.3 GB"
    )


# --- every limit is refused, never adjusted --------------------------------------------------

LIMIT_CASES = [
    ({"model_mode": "flux-pro"}, "model mode 'flux-pro' is not allowed", "the FLUX.1-dev fp8"),
    ({"width": 1001}, "width of 1001 px is not a multiple of 8", "(e.g. 1000 or 1008)"),
    ({"height": 1600}, "height of 1600 px is outside", "a height from 256 to 1536 px"),
    ({"width": 128}, "width of 128 px is outside", "a width from 256 to 1536 px"),
    ({"count": 5}, "count of 5 is outside", "a count from 1 to 4"),
    ({"count": 0}, "count of 0 is outside", "a count from 1 to 4"),
    ({"steps": 61}, "step count of 61 is outside", "a step count from 1 to 60"),
    ({"cfg": 20.5}, "cfg of 20.5 is outside", "a cfg from 0 to 20"),
    ({"cfg": math.nan}, "cfg of nan is outside", "a cfg from 0 to 20"),
    ({"sampler": "lcm"}, "sampler 'lcm' is not available", "the euler, euler_ancestral"),
    ({"scheduler": "exponential"}, "scheduler 'exponential'", "simple, normal, karras"),
    ({"lora": "mystery"}, "LoRA 'mystery' is not on profile", "product-render LoRA or none"),
    ({"lora": "clay-sketch"}, "made for sdxl models, not for FLUX.1-dev fp8", "a sdxl model mode"),
    ({"lora": "product-render", "lora_strength": -2.5}, "strength of −2.5", "from −2 to 2"),
    ({"seed_policy": "chaos"}, "seed policy 'chaos' is not available", "fixed, increment or"),
]


@pytest.mark.parametrize(("change", "said", "next_step"), LIMIT_CASES)
def test_a_request_outside_one_limit_is_refused_with_that_limit_named(
    change: dict[str, Any], said: str, next_step: str
) -> None:
    admission = admit_generation(RTX5090, replace(FLUX_FP8_4, **change))
    assert refused_properly(admission)
    assert said in admission.reason
    assert next_step in admission.next_action
    assert sum("refused" in check for check in admission.checks) == 1


def test_several_problems_are_all_named_at_once() -> None:
    admission = admit_generation(RTX5090, replace(FLUX_FP8_4, width=2048, count=9, sampler="lcm"))
    assert refused_properly(admission)
    assert admission.next_action.endswith("the system will not change them for you.")
    for said in ("width of 2048 px", "count of 9", "sampler 'lcm'"):
        assert said in admission.reason


def test_an_empty_lora_name_means_no_lora() -> None:
    assert admit_generation(RTX5090, replace(FLUX_FP8_4, lora="")).ok


def test_the_lora_strength_is_irrelevant_without_a_lora() -> None:
    assert admit_generation(RTX5090, replace(FLUX_FP8_4, lora_strength=50.0)).ok


def test_a_refusal_can_be_raised_as_a_domain_error_carrying_both_sentences() -> None:
    admission = admit_generation(RTX5090, FLUX_BF16_4)
    error = AdmissionRefused(admission)
    assert error.reason == admission.reason
    assert error.next_action == admission.next_action


# --- VRAM refusals offer only changes that would fit -----------------------------------------


def test_a_batch_too_big_for_vram_is_offered_the_largest_count_and_single_prompts() -> None:
    admission = admit_generation(TIGHT, replace(FLUX_FP8_4, width=1536, height=1536))
    assert refused_properly(admission)
    assert admission.next_action == (
        "Choose the SDXL base 1.0 model mode, a count of 2 or fewer, the increment or "
        "random seed policy (images made one at a time) or a size of 1280×1280 or smaller — the "
        "system will not change it for you."
    )


def test_a_model_whose_weights_alone_do_not_fit_is_said_to_fit_no_setting() -> None:
    only_bf16 = variant(RTX5090, {"limits.model_modes": ["flux-dev-bf16"]})
    admission = admit_generation(only_bf16, FLUX_BF16_4)
    assert refused_properly(admission)
    assert "No setting of FLUX.1-dev bf16 fits profile rtx5090-32gb" in admission.next_action


LABELS = {model.label: key for key, model in RTX5090.models.items()}


def offered_changes(next_action: str) -> list[dict[str, Any]]:
    """The concrete alternatives a VRAM refusal offers, as request changes."""
    changes: list[dict[str, Any]] = []
    if found := re.search(r"the (.+?) model mode", next_action):
        for label in re.split(r", | or ", found.group(1)):
            changes.append({"model_mode": LABELS[label]})
    if found := re.search(r"a count of (\d+)", next_action):
        changes.append({"count": int(found.group(1))})
    if "the increment or random seed policy" in next_action:
        changes.extend([{"seed_policy": "increment"}, {"seed_policy": "random"}])
    if found := re.search(r"a size of (\d+)×(\d+) or smaller", next_action):
        changes.append({"width": int(found.group(1)), "height": int(found.group(2))})
    return changes


valid_sides = st.integers(min_value=32, max_value=192).map(lambda n: n * 8)
valid_requests = st.builds(
    RequestSettings,
    model_mode=st.sampled_from(["flux-dev-fp8", "flux-dev-bf16", "sdxl"]),
    width=valid_sides,
    height=valid_sides,
    steps=st.integers(min_value=1, max_value=60),
    cfg=st.floats(min_value=0, max_value=20),
    sampler=st.just("euler"),
    scheduler=st.just("simple"),
    lora=st.none(),
    lora_strength=st.just(1.0),
    seed_policy=st.sampled_from(["fixed", "increment", "random"]),
    count=st.integers(min_value=1, max_value=4),
)


@FAST
@given(request=valid_requests, profile=st.sampled_from([TIGHT, RTX5090]))
def test_every_alternative_a_vram_refusal_offers_would_be_admitted(
    request: RequestSettings, profile: Profile
) -> None:
    admission = admit_generation(profile, request)
    if admission.ok:
        return
    assert refused_properly(admission)
    changes = offered_changes(admission.next_action)
    assert changes or "no setting of" in admission.next_action
    for change in changes:
        assert admit_generation(profile, replace(request, **change)).ok, change
    if found := re.search(r"a count of (\d+)", admission.next_action):
        # ...and it is the largest such count.
        larger = replace(request, count=int(found.group(1)) + 1)
        assert not admit_generation(profile, larger).ok
    if found := re.search(r"a size of (\d+)×(\d+) or smaller", admission.next_action):
        # ...and the largest of that shape, in steps of 8 px.
        wider = replace(request, width=int(found.group(1)) + 8, height=int(found.group(2)) + 8)
        assert not admit_generation(profile, wider).ok


# --- the whole verdict against an independent reading of the profile -------------------------

any_requests = st.builds(
    RequestSettings,
    model_mode=st.sampled_from(["flux-dev-fp8", "flux-dev-bf16", "sdxl", "flux-pro"]),
    width=st.one_of(valid_sides, st.integers(min_value=-8, max_value=4096)),
    height=st.one_of(valid_sides, st.integers(min_value=-8, max_value=4096)),
    steps=st.integers(min_value=-2, max_value=80),
    cfg=st.one_of(st.floats(min_value=-2, max_value=25), st.just(math.nan), st.just(math.inf)),
    sampler=st.sampled_from(["euler", "dpmpp_2m", "lcm"]),
    scheduler=st.sampled_from(["simple", "karras", "exponential"]),
    lora=st.sampled_from([None, "", "product-render", "clay-sketch", "mystery"]),
    lora_strength=st.one_of(st.floats(min_value=-3, max_value=3), st.just(math.nan)),
    seed_policy=st.sampled_from(["fixed", "increment", "random", "chaos"]),
    count=st.integers(min_value=-1, max_value=9),
)


def within_limits(profile: Profile, s: RequestSettings) -> bool:
    limits = profile.limits
    lora = profile.loras.get(s.lora) if s.lora else None
    family = profile.models[s.model_mode].family if s.model_mode in profile.models else None
    return (
        s.model_mode in limits.model_modes
        and all(
            side % 8 == 0 and limits.min_size <= side <= top
            for side, top in ((s.width, limits.max_width), (s.height, limits.max_height))
        )
        and 1 <= s.count <= limits.max_batch
        and 1 <= s.steps <= limits.max_steps
        and 0 <= s.cfg <= limits.max_cfg
        and s.sampler in limits.samplers
        and s.scheduler in limits.schedulers
        and s.seed_policy in ("fixed", "increment", "random")
        and (
            not s.lora
            or (
                lora is not None
                and family in lora.families
                and abs(s.lora_strength) <= limits.max_lora_strength
            )
        )
    )


@FAST
@given(request=any_requests, profile=st.sampled_from([RTX5090, PRO6000, TIGHT]))
def test_a_request_is_admitted_exactly_when_it_is_within_limits_and_fits(
    request: RequestSettings, profile: Profile
) -> None:
    admission = admit_generation(profile, request)
    fits = False
    if within_limits(profile, request):
        batch = request.count if request.seed_policy == "fixed" else 1
        need = diffusion_need(
            profile,
            model_mode=request.model_mode,
            width=request.width,
            height=request.height,
            batch=batch,
            lora=request.lora or None,
        )
        fits = need.total_bytes <= comfy_budget_bytes(profile)
        assert admission.need_bytes == need.total_bytes
    assert admission.ok == fits
    if admission.ok:
        assert admission.next_action == ""
        assert admission.need_bytes <= admission.usable_bytes
        assert all(": ok — " in check for check in admission.checks)
    else:
        assert refused_properly(admission)


# --- reviews ---------------------------------------------------------------------------------


def test_a_critic_kv_cache_beyond_its_claim_is_blocked_with_the_kv_arithmetic() -> None:
    crowded = variant(SIM, {"runtimes.critic.max_num_seqs": 64})
    admission = admit_review(crowded)
    assert refused_properly(admission)
    assert "KV cache for 8192 tokens × 64 sequences needs 30.1 GB (56 KiB per token)" in (
        admission.reason
    )
    assert "but gpu_memory_utilization 0.70 × 32.0 GB = 22.4 GB" in admission.reason
    assert admission.next_action == (
        "Ask an admin to lower runtimes.critic.max_num_seqs to 9 in profile sim-32gb "
        "— the system will not change it for you."
    )
    assert admit_review(variant(crowded, {"runtimes.critic.max_num_seqs": 9})).ok
    assert not admit_review(variant(crowded, {"runtimes.critic.max_num_seqs": 10})).ok


def test_a_utilization_too_low_for_the_critic_is_offered_the_least_that_works() -> None:
    starved = variant(SIM, {"runtimes.critic.gpu_memory_utilization": 0.5})
    admission = admit_review(starved)
    assert refused_properly(admission)
    assert "raise runtimes.critic.gpu_memory_utilization to 0.63" in admission.next_action
    assert admit_review(variant(SIM, {"runtimes.critic.gpu_memory_utilization": 0.63})).ok
    assert not admit_review(variant(SIM, {"runtimes.critic.gpu_memory_utilization": 0.62})).ok


def test_a_claim_beyond_usable_vram_is_blocked() -> None:
    greedy = variant(SIM, {"runtimes.critic.gpu_memory_utilization": 0.99})
    admission = admit_review(greedy)
    assert refused_properly(admission)
    assert "vLLM would claim gpu_memory_utilization 0.99 × 32.0 GB = 31.7 GB" in admission.reason
    assert "lower runtimes.critic.gpu_memory_utilization to 0.95 or less" in (admission.next_action)
    assert admit_review(variant(SIM, {"runtimes.critic.gpu_memory_utilization": 0.95})).ok


def test_a_critic_context_beyond_the_profile_limit_is_refused_when_the_profile_loads() -> None:
    # The schema refuses the contradiction, so admission never sees such a profile.
    with pytest.raises(ValidationError) as refused:
        variant(SIM, {"runtimes.critic.max_model_len": 16384})

    message = str(refused.value)
    assert "runtimes.critic.max_model_len exceeds the safe limits.critic_max_context" in message
    assert "(16384 > 8192)" in message
    with pytest.raises(ValidationError, match=r"\(8193 > 8192\)"):
        variant(SIM, {"runtimes.critic.max_model_len": 8193})


@pytest.mark.parametrize("length", [8192, 4096])
def test_a_critic_context_within_the_profile_limit_passes_the_context_check(length: int) -> None:
    admission = admit_review(variant(SIM, {"runtimes.critic.max_model_len": length}))

    assert admission.ok
    assert admission.next_action == ""
    assert admission.checks[0] == f"context: ok — max_model_len {length} ≤ 8192"


def test_sleep_level_1_needs_host_ram_for_the_critic_weights() -> None:
    small_host = variant(SIM, {"host_ram_gb": 8.0})
    admission = admit_review(small_host)
    assert refused_properly(admission)
    assert "parks the Critic's 16.6 GB of weights in host RAM" in admission.reason
    assert admit_review(variant(small_host, {"runtimes.critic.release": "stop"})).ok


@FAST
@given(
    seqs=st.integers(min_value=1, max_value=128),
    utilization=st.integers(min_value=40, max_value=99).map(lambda n: n / 100),
)
def test_a_review_is_admitted_exactly_when_the_critic_fits_its_claim_and_the_claim_fits(
    seqs: int, utilization: float
) -> None:
    profile = variant(
        SIM,
        {
            "runtimes.critic.max_num_seqs": seqs,
            "runtimes.critic.gpu_memory_utilization": utilization,
        },
    )
    need = 16_600_000_000 + 1_500_000_000 + 57_344 * 8192 * seqs
    claim = round(utilization * 32_000_000_000)
    admission = admit_review(profile)
    assert admission.ok == (need <= claim <= 30_500_000_000)
    assert admission.ok or refused_properly(admission)


# --- what the composer shows before anything is typed --------------------------------------


def test_flux_bf16_can_never_fit_a_32_gb_profile_and_says_by_how_much() -> None:
    reason = mode_never_fits(RTX5090, "flux-dev-bf16")
    assert re.fullmatch(
        r"needs ≈ \d+\.\d GB even for one 256×256 image; profile rtx5090-32gb allows 30\.5 GB",
        reason,
    ), reason
    assert mode_never_fits(SIM, "flux-dev-bf16")


def test_modes_that_fit_somewhere_are_offered() -> None:
    assert mode_never_fits(RTX5090, "flux-dev-fp8") == ""
    assert mode_never_fits(RTX5090, "sdxl") == ""
    assert mode_never_fits(PRO6000, "flux-dev-bf16") == ""
    assert mode_never_fits(RTX5090, "no-such-mode") == ""


def test_a_refusal_names_the_composer_fields_it_is_about_in_form_order() -> None:
    odd = replace(FLUX_FP8_4, width=1001, steps=500, cfg=99.0)
    assert admit_generation(SIM, odd).fields == ("width", "steps", "cfg")
    assert admit_generation(RTX5090, FLUX_BF16_4).fields == (
        "model_mode",
        "width",
        "height",
        "seed_policy",
        "count",
    )
    assert admit_generation(RTX5090, FLUX_FP8_4).fields == ()


def test_a_batch_made_one_image_at_a_time_is_called_that_not_prompts() -> None:
    one_by_one = replace(FLUX_BF16_4, seed_policy="increment")
    reason = admit_generation(RTX5090, one_by_one).reason
    assert "4 images made one at a time (a seed each)" in reason
    assert "prompt" not in reason
