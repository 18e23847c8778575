"""Template helpers of the designer pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from artcritic.studio.storage import url_presigned

register = template.Library()


@register.filter
def presigned(key: str) -> str:
    """A short-lived browser URL for an object key (images are never public)."""
    return url_presigned(key)


@register.filter
def seeds_text(seeds: list[int], limit: int = 4) -> str:
    """Seeds as a short list: "42, 43, 44 … (8)" when there are many."""
    shown = ", ".join(str(seed) for seed in seeds[:limit])
    return shown if len(seeds) <= limit else f"{shown} … ({len(seeds)})"


@register.filter
def percent(current: int, total: int) -> int:
    """Whole-number progress for a bar; 0 when the total is unknown."""
    if not total:
        return 0
    return max(0, min(100, round(100 * current / total)))


@register.filter
def ago(moment: datetime | None) -> str:
    """ "just now" under a minute, else "3 minutes ago" (Django's timesince)."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


# Labels and order of an image's settings snapshot (GenerationRequest.settings_snapshot).
SETTING_LABELS = {
    "model_mode": "Model",
    "width": "Requested width",
    "height": "Requested height",
    "steps": "Steps",
    "cfg": "CFG",
    "sampler": "Sampler",
    "scheduler": "Scheduler",
    "lora_name": "LoRA",
    "lora_strength": "LoRA strength",
    "seed_policy": "Seed policy",
    "count": "Images in request",
    "profile": "Profile",
}


@register.filter
def settings_rows(snapshot: Any) -> list[tuple[str, Any]]:
    """A settings snapshot as (label, value) rows in a reading order; unknown keys last."""
    if not isinstance(snapshot, dict):
        return []
    rows = [(label, snapshot[key]) for key, label in SETTING_LABELS.items() if key in snapshot]
    if not snapshot.get("lora_name"):
        rows = [(label, value) for label, value in rows if not label.startswith("LoRA")]
        rows.append(("LoRA", "none"))
    extra = sorted(key for key in snapshot if key not in SETTING_LABELS)
    return rows + [(key.replace("_", " ").capitalize(), snapshot[key]) for key in extra]
