"""Forms of the designer pages. Values outside the active profile are refused, never adjusted."""

from __future__ import annotations

import math
from typing import Any

from django import forms

from artcritic.gpu.admission import mode_never_fits
from artcritic.gpu.profiles import Profile
from artcritic.studio.models import (
    MAX_BRIEF_CHARS,
    MAX_NEGATIVE_CHARS,
    MAX_NOTE_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    Image,
    Project,
    SeedPolicy,
    Verdict,
)
from artcritic.studio.services import RequestDraft

NAME_CHARS = Project._meta.get_field("name").max_length or 120
SIZE_STEP = 8
DEFAULT_SIDE = 1024
# Aspect-ratio presets: (label, width part, height part), landscape then portrait.
ASPECTS = (
    ("1:1", 1, 1),
    ("4:3", 4, 3),
    ("3:2", 3, 2),
    ("16:9", 16, 9),
    ("21:9", 21, 9),
    ("3:4", 3, 4),
    ("2:3", 2, 3),
    ("9:16", 9, 16),
)
# Presets keep about a megapixel, the size FLUX and SDXL are trained at, on 64 px steps
# (multiples of 8 as the latent space needs, and the buckets the models know best).
PRESET_AREA = 1024 * 1024
PRESET_STEP = 64


def aspect_presets(profile: Profile) -> list[tuple[str, int, int]]:
    """(label, width, height) per aspect ratio that fits the profile's limits, all multiples
    of 8 — a preset the profile would refuse is not offered."""
    limits = profile.limits
    presets = []
    for label, w, h in ASPECTS:
        width = round((PRESET_AREA * w / h) ** 0.5 / PRESET_STEP) * PRESET_STEP
        height = round((PRESET_AREA * h / w) ** 0.5 / PRESET_STEP) * PRESET_STEP
        if (
            limits.min_size <= width <= limits.max_width
            and limits.min_size <= height <= limits.max_height
        ):
            presets.append((label, width, height))
    return presets


def _too_long(what: str, value: str, limit: int) -> None:
    """Refuse a text over its limit whole, never cut, saying by how much."""
    if len(value) > limit:
        raise forms.ValidationError(
            f"The {what} is {len(value):,} characters; the most is {limit:,}. "
            "Nothing was cut: shorten it, then queue it again.",
            code="max_length",
        )


class ModelSelect(forms.Select):
    """A model select whose modes that can never fit the profile are shown, disabled, with
    the reason in their label."""

    def __init__(self, *args: Any, never: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.never = never or {}

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        reason = self.never.get(str(value))
        if reason:
            option["attrs"]["disabled"] = True
            option["label"] = f"{option['label']} — can never fit: {reason}"
        return option


def _text(label: str, max_length: int, *, rows: int = 4, help_text: str = "") -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=max_length,
        required=False,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": rows}),
    )


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=NAME_CHARS, label="Name")
    brief = _text("Brief", MAX_BRIEF_CHARS, rows=3, help_text="What are we designing, for whom?")


class ProjectEditForm(forms.Form):
    name = forms.CharField(max_length=NAME_CHARS, label="Name")
    brief = _text("Brief", MAX_BRIEF_CHARS, rows=6)
    taste_notes = _text(
        "Taste notes", MAX_BRIEF_CHARS, rows=6, help_text="What the team likes and avoids."
    )
    manufacturability = _text(
        "Manufacturability constraints",
        MAX_BRIEF_CHARS,
        rows=6,
        help_text="Materials, processes, tolerances the design must respect.",
    )


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices)
    note = forms.CharField(
        max_length=MAX_NOTE_CHARS,
        required=False,
        label="Note",
        widget=forms.Textarea(attrs={"rows": 2}),
    )


def _number_attrs(minimum: float, maximum: float, step: float | str) -> dict[str, Any]:
    return {"min": minimum, "max": maximum, "step": step, "inputmode": "decimal"}


class ComposerForm(forms.Form):
    """Prompt and exact settings, checked against the active profile's limits and models."""

    # No max_length here: a maxlength attribute would make the browser cut a long paste
    # silently; clean_text refuses it whole, with the numbers.
    text = forms.CharField(
        label="Prompt",
        widget=forms.Textarea(attrs={"rows": 6, "data-limit": MAX_PROMPT_CHARS}),
    )
    negative_text = forms.CharField(
        label="Negative prompt",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "data-limit": MAX_NEGATIVE_CHARS}),
    )
    model_mode = forms.ChoiceField(label="Model")
    width = forms.IntegerField(label="Width")
    height = forms.IntegerField(label="Height")
    steps = forms.IntegerField(label="Steps")
    cfg = forms.FloatField(label="CFG")
    sampler = forms.ChoiceField(label="Sampler")
    scheduler = forms.ChoiceField(label="Scheduler")
    lora = forms.ChoiceField(label="LoRA", required=False)
    lora_strength = forms.FloatField(label="LoRA strength", initial=1.0)
    seed_policy = forms.ChoiceField(
        label="Seed policy",
        # Short labels fit a half-width select; the composer explains each one beside it.
        choices=[
            (SeedPolicy.RANDOM, "Random"),
            (SeedPolicy.FIXED, "Fixed"),
            (SeedPolicy.INCREMENT, "Increment"),
        ],
        initial=SeedPolicy.RANDOM,
    )
    seed = forms.IntegerField(label="Seed", required=False)
    count = forms.IntegerField(label="Images", initial=1)

    def __init__(self, *args: Any, profile: Profile, **kwargs: Any) -> None:
        self.profile = profile
        limits = profile.limits
        kwargs.setdefault("initial", self.defaults(profile))
        super().__init__(*args, **kwargs)
        self.never_fits = {
            mode: reason
            for mode in limits.model_modes
            if (reason := mode_never_fits(profile, mode))
        }
        self.fields["model_mode"].widget = ModelSelect(never=self.never_fits)
        self.fields["model_mode"].choices = profile.model_mode_choices()  # type: ignore[attr-defined]
        self.fields["sampler"].choices = [(s, s) for s in limits.samplers]  # type: ignore[attr-defined]
        self.fields["scheduler"].choices = [(s, s) for s in limits.schedulers]  # type: ignore[attr-defined]
        self.fields["lora"].choices = [("", "None")] + [  # type: ignore[attr-defined]
            (key, f"{key} ({', '.join(f.upper() for f in lora.families)})")
            for key, lora in profile.loras.items()
        ]
        # The HTML attributes are hints for the browser's controls; the server decides (novalidate).
        self.fields["width"].widget.attrs.update(
            _number_attrs(limits.min_size, limits.max_width, SIZE_STEP)
        )
        self.fields["height"].widget.attrs.update(
            _number_attrs(limits.min_size, limits.max_height, SIZE_STEP)
        )
        self.fields["steps"].widget.attrs.update(_number_attrs(1, limits.max_steps, 1))
        self.fields["cfg"].widget.attrs.update(_number_attrs(0, limits.max_cfg, "any"))
        strength = limits.max_lora_strength
        self.fields["lora_strength"].widget.attrs.update(_number_attrs(-strength, strength, "any"))
        self.fields["seed"].widget.attrs.update(_number_attrs(0, MAX_SEED, 1))
        self.fields["count"].widget.attrs.update(_number_attrs(1, limits.max_batch, 1))

    @staticmethod
    def defaults(profile: Profile) -> dict[str, Any]:
        """Initial values: the first model mode that can fit and its own defaults, a square."""
        modes = profile.limits.model_modes
        mode = next((m for m in modes if not mode_never_fits(profile, m)), modes[0])
        model = profile.models[mode]
        limits = profile.limits
        return {
            "model_mode": mode,
            "width": max(limits.min_size, min(DEFAULT_SIDE, limits.max_width)),
            "height": max(limits.min_size, min(DEFAULT_SIDE, limits.max_height)),
            "steps": model.default_steps,
            "cfg": model.default_cfg,
            "sampler": model.default_sampler,
            "scheduler": model.default_scheduler,
            "lora": "",
            "lora_strength": 1.0,
            "seed_policy": SeedPolicy.RANDOM,
            "count": 1,
        }

    def client_data(self) -> dict[str, Any]:
        """What composer.js needs: each model's family and defaults, each LoRA's families."""
        return {
            "models": {
                key: {
                    "label": model.label,
                    "family": model.family,
                    "steps": model.default_steps,
                    "cfg": model.default_cfg,
                    "sampler": model.default_sampler,
                    "scheduler": model.default_scheduler,
                }
                for key, model in self.profile.models.items()
                if key in self.profile.limits.model_modes
            },
            "loras": {key: lora.families for key, lora in self.profile.loras.items()},
        }

    def _size(self, name: str, maximum: int) -> int:
        value: int = self.cleaned_data[name]
        minimum = self.profile.limits.min_size
        if value % SIZE_STEP:
            raise forms.ValidationError(
                f"{name} {value} is not a multiple of {SIZE_STEP}.", code="multiple"
            )
        if not minimum <= value <= maximum:
            raise forms.ValidationError(
                f"{name} {value} is outside {minimum}–{maximum} allowed by profile "
                f"{self.profile.name}.",
                code="range",
            )
        return value

    def clean_text(self) -> str:
        value: str = self.cleaned_data["text"]
        _too_long("prompt", value, MAX_PROMPT_CHARS)
        return value

    def clean_negative_text(self) -> str:
        value: str = self.cleaned_data["negative_text"]
        _too_long("negative prompt", value, MAX_NEGATIVE_CHARS)
        return value

    def clean_width(self) -> int:
        return self._size("width", self.profile.limits.max_width)

    def clean_height(self) -> int:
        return self._size("height", self.profile.limits.max_height)

    def clean_steps(self) -> int:
        value: int = self.cleaned_data["steps"]
        maximum = self.profile.limits.max_steps
        if not 1 <= value <= maximum:
            raise forms.ValidationError(
                f"steps {value} is outside 1–{maximum} allowed by profile {self.profile.name}.",
                code="range",
            )
        return value

    def clean_cfg(self) -> float:
        value: float = self.cleaned_data["cfg"]
        maximum = self.profile.limits.max_cfg
        if not 0 <= value <= maximum:
            raise forms.ValidationError(
                f"CFG {value:g} is outside 0–{maximum:g} allowed by profile {self.profile.name}.",
                code="range",
            )
        return value

    def clean_lora_strength(self) -> float:
        value: float = self.cleaned_data["lora_strength"]
        limit = self.profile.limits.max_lora_strength
        if not math.isfinite(value) or abs(value) > limit:
            raise forms.ValidationError(
                f"LoRA strength {value:g} is outside ±{limit:g} allowed by profile "
                f"{self.profile.name}.",
                code="range",
            )
        return value

    def clean_seed(self) -> int | None:
        value: int | None = self.cleaned_data["seed"]
        if value is not None and not 0 <= value <= MAX_SEED:
            raise forms.ValidationError(
                f"seed {value} is outside 0–{MAX_SEED} (2**53 − 1).", code="range"
            )
        return value

    def clean_count(self) -> int:
        value: int = self.cleaned_data["count"]
        maximum = self.profile.limits.max_batch
        if not 1 <= value <= maximum:
            raise forms.ValidationError(
                f"{value} images is outside 1–{maximum} allowed by profile {self.profile.name}.",
                code="range",
            )
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._lora_check(data)
        self._seed_check(data)
        return data

    def _lora_check(self, data: dict[str, Any]) -> None:
        lora, mode = data.get("lora"), data.get("model_mode")
        if not lora or not mode:
            return
        model = self.profile.models[mode]
        families = self.profile.loras[lora].families
        if model.family not in families:
            self.add_error(
                "lora",
                forms.ValidationError(
                    f"LoRA {lora} works with {' or '.join(f.upper() for f in families)} "
                    f"models only; {model.label} is {model.family.upper()}.",
                    code="family",
                ),
            )

    def _seed_check(self, data: dict[str, Any]) -> None:
        policy, seed, count = data.get("seed_policy"), data.get("seed"), data.get("count")
        if policy == SeedPolicy.RANDOM or "seed" in self.errors:
            return
        if seed is None:
            self.add_error(
                "seed",
                forms.ValidationError(
                    "A seed is needed with a fixed or increment policy.", code="required"
                ),
            )
            return
        if policy == SeedPolicy.INCREMENT and count and seed + count - 1 > MAX_SEED:
            self.add_error(
                "seed",
                forms.ValidationError(
                    f"seed {seed} + {count - 1} passes the largest seed {MAX_SEED}; "
                    "choose a smaller seed.",
                    code="range",
                ),
            )

    def draft(self) -> RequestDraft:
        """The validated submission as the service takes it."""
        data = self.cleaned_data
        return RequestDraft(
            profile_name=self.profile.name,
            text=data["text"],
            negative_text=data["negative_text"],
            model_mode=data["model_mode"],
            width=data["width"],
            height=data["height"],
            steps=data["steps"],
            cfg=data["cfg"],
            sampler=data["sampler"],
            scheduler=data["scheduler"],
            lora_name=data["lora"] or "",
            lora_strength=data["lora_strength"],
            seed_policy=SeedPolicy(data["seed_policy"]),
            seed=data["seed"] if data["seed_policy"] != SeedPolicy.RANDOM else None,
            count=data["count"],
        )


def initial_from_image(image: Image, profile: Profile, *, vary: bool) -> dict[str, Any]:
    """Composer values that make ``image`` again ("use these settings again": its seed, one
    image) or variations of it ("vary seed": random seeds, as many as its request had)."""
    request = image.request
    initial = ComposerForm.defaults(profile)
    initial.update(
        {
            "text": image.prompt.text,
            "negative_text": image.prompt.negative_text,
            "model_mode": request.model_mode,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "cfg": request.cfg,
            "sampler": request.sampler,
            "scheduler": request.scheduler,
            "lora": request.lora_name,
            "lora_strength": request.lora_strength,
        }
    )
    if vary:
        initial.update({"seed_policy": SeedPolicy.RANDOM, "seed": None, "count": request.count})
    else:
        initial.update({"seed_policy": SeedPolicy.FIXED, "seed": image.seed, "count": 1})
    return initial
