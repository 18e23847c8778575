"""Template helpers of the designer pages."""

from __future__ import annotations

import re
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


@register.filter
def label_in(model_mode: str, labels: Any) -> str:
    """A model mode's human label from the page's ``model_labels`` (the id if unknown)."""
    try:
        return str(labels.get(model_mode) or model_mode)
    except AttributeError:
        return str(model_mode)


@register.filter
def next_words(action: str) -> str:
    """A next action without a leading "Next:" of its own (pages print the word once)."""
    text = str(action or "").strip()
    while text.lower().startswith("next:"):
        text = text[5:].strip()
    return text[:1].upper() + text[1:]


# What marks a sentence as the machinery's rather than the designer's: socket and file paths,
# URLs with ports, exception reprs, errno, process and lease ids.
_INTERNAL = re.compile(
    r"unix://|://\S+:\d+|(?<![\w.])/(?:var|usr|srv|home|opt|tmp|proc|run|dev)/|Errno|Traceback"
    r"|\b[A-Z]\w+(?:Error|Exception)\(|\('|\bpid \d+|\bvm:\d+|\blease\b|docker\.sock",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def is_internal(text: str) -> bool:
    """Whether a reason or action speaks in the machinery's terms (paths, errors, ids)."""
    return bool(_INTERNAL.search(str(text or "")))


@register.filter
def designer_reason(text: str) -> str:
    """A failure reason as a designer reads it: sentences about the machinery (socket paths,
    exception text, worker ids) left out, saying so; staff read the whole text."""
    value = str(text or "")
    sentences = [part for part in _SENTENCE.split(value) if part]
    kept = [part for part in sentences if not is_internal(part)]
    if len(kept) == len(sentences):
        return value
    if kept:
        return " ".join(kept) + " (The technical detail is for staff.)"
    return "The GPU worker ran into a technical problem; staff can read what happened."


@register.filter
def designer_action(text: str) -> str:
    """A next action a designer can take: an admin's chore becomes "ask an admin"."""
    value = next_words(text)
    if is_internal(value) or re.search(r"\b(DOCKER_HOST|docker|systemctl|nvidia-smi)\b", value):
        return "Ask an admin to look at this job; the details are in its record."
    return value


@register.filter
def internal(text: str) -> bool:
    """Template form of ``is_internal``."""
    return is_internal(text)


@register.filter
def thousands(value: Any) -> str:
    """12,345: counts as people read them."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


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
def settings_rows(snapshot: Any, labels: Any = None) -> list[tuple[str, Any]]:
    """A settings snapshot as (label, value) rows in a reading order; unknown keys last.

    With the page's ``model_labels`` the model is named by its label, not its id.
    """
    if not isinstance(snapshot, dict):
        return []
    rows = [(label, snapshot[key]) for key, label in SETTING_LABELS.items() if key in snapshot]
    if labels is not None:
        rows = [
            (label, label_in(value, labels) if label == "Model" else value)
            for label, value in rows
        ]
    if not snapshot.get("lora_name"):
        rows = [(label, value) for label, value in rows if not label.startswith("LoRA")]
        rows.append(("LoRA", "none"))
    # The seed is shown once, above these rows; the batch index is the worker's bookkeeping.
    hidden = {"seed", "batch_index"}
    extra = sorted(key for key in snapshot if key not in SETTING_LABELS and key not in hidden)
    return rows + [(key.replace("_", " ").capitalize(), snapshot[key]) for key in extra]
