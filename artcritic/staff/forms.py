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
