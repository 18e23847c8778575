"""What staff enter on the measurements page: a GPU, a window and a cloud price per image."""

from __future__ import annotations

from decimal import Decimal

from django import forms

WINDOWS = (("7", "last 7 days"), ("30", "last 30 days"), ("90", "last 90 days"))


class BreakEvenForm(forms.Form):
    gpu = forms.ChoiceField(label="GPU")
    days = forms.TypedChoiceField(label="Measured over", choices=WINDOWS, coerce=int, initial="30")
    cloud_price = forms.DecimalField(
        label="Cloud price per image",
        min_value=Decimal("0.000001"),
        max_value=Decimal("1000"),
        max_digits=12,
        decimal_places=6,
        help_text="What a cloud service charges for one image like yours, in the profile's "
        "currency (e.g. 0.04).",
    )

    def __init__(self, *args: object, gpus: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["gpu"].choices = [(name, name) for name in gpus]  # type: ignore[attr-defined]


class WhatIfForm(forms.Form):
    """A scenario to replay the recorded jobs on: window, profile, number of GPUs, roles."""

    days = forms.IntegerField(
        label="Jobs of the last", min_value=1, max_value=90, initial=7, help_text="days (1–90)"
    )
    profile = forms.ChoiceField(label="Hardware profile")
    gpus = forms.IntegerField(label="GPUs", min_value=1, max_value=16, initial=2)
    roles = forms.ChoiceField(
        label="Roles",
        choices=(
            ("shared", "shared (each runs both)"),
            ("dedicated", "dedicated (Artist / Critic)"),
        ),
        initial="shared",
    )

    def __init__(self, *args: object, profiles: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["profile"].choices = [(name, name) for name in profiles]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        gpus = data.get("gpus")
        if data.get("roles") == "dedicated" and isinstance(gpus, int) and gpus < 2:
            self.add_error("gpus", "Dedicated roles need at least 2 GPUs: an Artist and a Critic.")
        return data
