"""Sign-in helpers: what django-axes records as the username of an attempt."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest

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
