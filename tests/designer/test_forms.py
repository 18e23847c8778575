"""The composer refuses every value outside the active profile, and never adjusts one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from artcritic.designer.forms import ComposerForm, DecisionForm, ProjectEditForm
from artcritic.gpu.profiles import Profile, profile_read
from artcritic.studio.models import MAX_SEED, SeedPolicy
from tests.factories import composer_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def profile() -> Profile:
    return profile_read(ROOT / "profiles" / "sim-32gb.toml")[0]


def composer(profile: Profile, **overrides: Any) -> ComposerForm:
    return ComposerForm(composer_data(**overrides), profile=profile)


def test_a_valid_submission_becomes_a_draft_exactly_as_typed(profile: Profile) -> None:
    form = composer(profile, lora="product-render", lora_strength="-1.25", cfg="3.5", count="2")
    assert form.is_valid(), form.errors
    draft = form.draft()
    assert draft.profile_name == "sim-32gb"
    assert (draft.width, draft.height, draft.steps, draft.cfg) == (1024, 1024, 20, 3.5)
    assert (draft.lora_name, draft.lora_strength) == ("product-render", -1.25)
    assert (draft.seed_policy, draft.seed, draft.count) == (SeedPolicy.FIXED, 5, 2)


def test_the_limits_themselves_are_accepted(profile: Profile) -> None:
    form = composer(
        profile,
        width="256",
        height="1536",
        steps="60",
        cfg="20",
        count="4",
        seed=str(MAX_SEED),
        lora="product-render",
        lora_strength="2",
    )
    assert form.is_valid(), form.errors


def test_a_random_policy_needs_no_seed_and_ignores_a_typed_one(profile: Profile) -> None:
    form = composer(profile, seed_policy="random", seed="")
    assert form.is_valid(), form.errors
    assert form.draft().seed is None
    form = composer(profile, seed_policy="random", seed="99")
    assert form.is_valid(), form.errors
    assert form.draft().seed is None


def test_defaults_come_from_the_first_model_mode(profile: Profile) -> None:
    initial = ComposerForm(profile=profile).initial
    model = profile.models[profile.limits.model_modes[0]]
    assert initial["model_mode"] == profile.limits.model_modes[0]
    assert (initial["steps"], initial["cfg"]) == (model.default_steps, model.default_cfg)
    assert (initial["sampler"], initial["scheduler"]) == (
        model.default_sampler,
        model.default_scheduler,
    )


def test_each_models_family_and_defaults_reach_the_page_script(profile: Profile) -> None:
    data = ComposerForm(profile=profile).client_data()
    assert data["models"]["sdxl"] == {
        "label": "SDXL base 1.0",
        "family": "sdxl",
        "steps": 25,
        "cfg": 7.0,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
    }
    assert data["loras"] == {"product-render": ["flux"], "clay-sketch": ["sdxl"]}


BAD_VALUES = [
    ("negative steps", {"steps": "-5"}, "steps", "steps -5 is outside 1–60"),
    ("zero steps", {"steps": "0"}, "steps", "steps 0 is outside 1–60"),
    ("too many steps", {"steps": "61"}, "steps", "steps 61 is outside 1–60"),
    ("width 1001", {"width": "1001"}, "width", "width 1001 is not a multiple of 8."),
    ("width above max", {"width": "2048"}, "width", "width 2048 is outside 256–1536"),
    ("height below min", {"height": "128"}, "height", "height 128 is outside 256–1536"),
    ("negative width", {"width": "-8"}, "width", "width -8 is outside 256–1536"),
    (
        "a 10,000-character prompt",
        {"text": "x" * 10_000},
        "text",
        "The prompt is 10,000 characters; the most is 4,000. Nothing was cut",
    ),
    ("a blank prompt", {"text": "   "}, "text", "This field is required."),
    (
        "a long negative",
        {"negative_text": "n" * 2001},
        "negative_text",
        "The negative prompt is 2,001 characters; the most is 2,000",
    ),
    ("unknown model mode", {"model_mode": "flux-schnell"}, "model_mode", "flux-schnell is not"),
    ("unknown sampler", {"sampler": "lms_turbo"}, "sampler", "lms_turbo is not one of"),
    ("unknown scheduler", {"scheduler": "exponential"}, "scheduler", "exponential is not one"),
    ("unknown LoRA", {"lora": "pixel-art"}, "lora", "pixel-art is not one of"),
    (
        "LoRA for the wrong family",
        {"model_mode": "flux-dev-fp8", "lora": "clay-sketch"},
        "lora",
        "LoRA clay-sketch works with SDXL models only; FLUX.1-dev fp8 is FLUX.",
    ),
    (
        "LoRA for the wrong family the other way",
        {"model_mode": "sdxl", "lora": "product-render"},
        "lora",
        "LoRA product-render works with FLUX models only; SDXL base 1.0 is SDXL.",
    ),
    ("LoRA too strong", {"lora_strength": "2.5"}, "lora_strength", "LoRA strength 2.5 is outside"),
    ("LoRA too negative", {"lora_strength": "-3"}, "lora_strength", "LoRA strength -3 is outside"),
    ("seed above 2**53-1", {"seed": str(MAX_SEED + 1)}, "seed", "seed 9007199254740992 is"),
    ("negative seed", {"seed": "-1"}, "seed", "seed -1 is outside"),
    (
        "an increment that runs past the largest seed",
        {"seed_policy": "increment", "seed": str(MAX_SEED), "count": "2"},
        "seed",
        "passes the largest seed",
    ),
    ("fixed policy without a seed", {"seed": ""}, "seed", "A seed is needed"),
    ("unknown seed policy", {"seed_policy": "lucky"}, "seed_policy", "lucky is not one of"),
    ("count above max_batch", {"count": "5"}, "count", "5 images is outside 1–4"),
    ("zero images", {"count": "0"}, "count", "0 images is outside 1–4"),
    ("negative cfg", {"cfg": "-0.5"}, "cfg", "CFG -0.5 is outside 0–20"),
    ("cfg above max", {"cfg": "21"}, "cfg", "CFG 21 is outside 0–20"),
    ("cfg not a number", {"cfg": "nan"}, "cfg", "Enter a number."),
    ("cfg infinite", {"cfg": "inf"}, "cfg", "Enter a number."),
    ("a string for width", {"width": "wide"}, "width", "Enter a whole number."),
    ("a decimal for steps", {"steps": "20.5"}, "steps", "Enter a whole number."),
    ("a string for seed", {"seed": "lucky"}, "seed", "Enter a whole number."),
    ("a string for count", {"count": "two"}, "count", "Enter a whole number."),
    ("an empty width", {"width": ""}, "width", "This field is required."),
]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [case[1:] for case in BAD_VALUES],
    ids=[case[0] for case in BAD_VALUES],
)
def test_a_bad_value_is_refused_on_its_field(
    profile: Profile, overrides: dict[str, str], field: str, message: str
) -> None:
    form = composer(profile, **overrides)
    assert not form.is_valid()
    assert message in " ".join(form.errors.get(field, [])), form.errors
    # Only the bad field complains; the rest of the form is fine.
    assert set(form.errors) == {field}


def test_a_refused_value_is_shown_back_exactly_as_typed(profile: Profile) -> None:
    form = composer(profile, width="1001", steps="-5")
    assert not form.is_valid()
    assert form["width"].value() == "1001"
    assert form["steps"].value() == "-5"
    assert 'value="1001"' in str(form["width"])


def test_every_error_is_reported_at_once(profile: Profile) -> None:
    form = composer(profile, width="1001", height="4096", count="9", sampler="nope")
    assert not form.is_valid()
    assert set(form.errors) == {"width", "height", "count", "sampler"}


def test_a_note_longer_than_1000_characters_is_refused() -> None:
    form = DecisionForm({"verdict": "approve", "note": "n" * 1001})
    assert not form.is_valid()
    assert "at most 1000 characters" in form.errors["note"][0]


def test_an_unknown_verdict_is_refused() -> None:
    form = DecisionForm({"verdict": "maybe"})
    assert not form.is_valid()
    assert "maybe is not one of the available choices" in form.errors["verdict"][0]


def test_project_texts_are_bounded_like_the_model() -> None:
    form = ProjectEditForm(
        {"name": "n" * 121, "brief": "b" * 8001, "taste_notes": "", "manufacturability": ""}
    )
    assert not form.is_valid()
    assert set(form.errors) == {"name", "brief"}
