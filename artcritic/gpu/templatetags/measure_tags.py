"""Measured numbers as pages write them: money, energy, memory, shares and latencies."""

from __future__ import annotations

from django import template

from artcritic.gpu.costs import money as money_words
from artcritic.gpu.profiles import GB

register = template.Library()

NOT_REPORTED = "not reported by this GPU"


@register.filter
def money(amount: float | None, currency: str) -> str:
    """'€0.0123' in the profile's currency; '–' when there is no figure."""
    return money_words(amount, currency or "EUR")


@register.filter
def energy(joules: float | None) -> str:
    """'850 J', '12.4 kJ', '1.30 kWh'; None is what the card said: not reported, never 0."""
    if joules is None:
        return NOT_REPORTED
    if joules < 1000:
        return f"{joules:.0f} J"
    if joules < 3.6e6:
        return f"{joules / 1000:.1f} kJ"
    return f"{joules / 3.6e6:.2f} kWh"


@register.filter
def kwh(value: float | None) -> str:
    """Kilowatt-hours with enough decimals to see a few images' worth."""
    if value is None:
        return "–"
    return f"{value:.3f} kWh" if value < 10 else f"{value:,.1f} kWh"


@register.filter
def gigabytes(nbytes: int | None) -> str:
    return "–" if nbytes is None else f"{nbytes / GB:.1f} GB"


@register.filter
def share(value: float | None) -> str:
    """A 0–1 share as a percentage: '0.4 %', '37 %'."""
    if value is None:
        return "–"
    percent = 100 * value
    if 0 < percent < 0.1:
        return "under 0.1 %"
    return f"{percent:.1f} %" if percent < 10 else f"{percent:.0f} %"


@register.filter
def seconds(value: float | None) -> str:
    """'0.35 s', '12 s', '3 m 20 s' for latencies and errors."""
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f} s"
    total = round(value)
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} m {rest} s" if rest else f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m" if minutes else f"{hours} h"


@register.filter
def percent_error(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} %" if value >= 10 else f"{value:.1f} %"


@register.filter
def per_image(total: float | None, images: int) -> float | None:
    """A job's cost shared over its images."""
    if total is None or not images:
        return None
    return total / images


@register.filter
def kind_noun(kind: str) -> str:
    return {"generate": "generation", "review": "review"}.get(kind, "job")


@register.filter
def dict_get(mapping: dict[str, object], key: str) -> object:
    """``mapping[key]`` in a template (None when absent)."""
    return mapping.get(key)


@register.filter
def per_thousand(total: float | None, tokens: int | None) -> float | None:
    """A review's cost per thousand Critic tokens."""
    if total is None or not tokens:
        return None
    return total / (tokens / 1000)
