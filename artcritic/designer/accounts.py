"""Accounts: what django-axes records of a sign-in attempt, and resetting a password."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import PasswordResetView
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render

# The longest username the user model stores; anything longer cannot be an account anyway.
USERNAME_MAX = get_user_model()._meta.get_field("username").max_length or 150


def attempted_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The username of a sign-in attempt, cut to what an account can have, NUL removed.

    Attempts are recorded in PostgreSQL, which stores neither NUL nor more than the column
    holds; a hostile 10,000-character name must be a refused sign-in, not a server error.
    """
    raw = (credentials or {}).get("username")
    if raw is None:
        raw = request.POST.get("username", "")
    return str(raw).replace("\x00", "")[:USERNAME_MAX]


@login_not_required
def password_reset(request: HttpRequest) -> HttpResponseBase:
    """Reset by a mailed one-time link where a mailer is set up; else say who can help."""
    if not settings.ARTCRITIC_PASSWORD_RESET_BY_EMAIL:
        return render(request, "registration/password_reset_unavailable.html")
    return PasswordResetView.as_view()(request)
