"""Forms of the designer pages. Values outside the active profile are refused, never adjusted."""

from __future__ import annotations

import math
from typing import Any

from django import forms

from artcritic.gpu.profiles import Profile
from artcritic.studio.models import (
    MAX_BRIEF_CHARS,
    MAX_NEGATIVE_CHARS,
    MAX_NOTE_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    Project,
    SeedPolicy,
    Verdict,
)
from artcritic.studio.services import RequestDraft

NAME_CHARS = Project._meta.get_field("name").max_length or 120
SIZE_STEP = 8
DEFAULT_SIDE = 1024


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

    text = forms.CharField(
        label="Prompt",
        max_length=MAX_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 6}),
    )
    negative_text = forms.CharField(
        label="Negative prompt",
        max_length=MAX_NEGATIVE_CHARS,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
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
        """Initial values: the first model mode and its own defaults, a square within limits."""
        mode = profile.limits.model_modes[0]
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
