"""Template context shared by every page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from artcritic.designer.selectors import badge_active_profile, model_labels


def site(request: HttpRequest) -> dict[str, Any]:
    """The GPU this site shows and its active profile (queried only if a template asks)."""
    return {
        "ARTCRITIC_GPU": settings.ARTCRITIC_GPU,
        "active_profile_badge": SimpleLazyObject(badge_active_profile),
        # Model ids to labels, read once per page and only if a template shows a model.
        "model_labels": SimpleLazyObject(model_labels),
    }
