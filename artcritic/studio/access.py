"""Who may see and act on what: the one authorization helper per object type.

Membership decides; staff get no implicit access to projects (the admin is their
tool). Everything a non-member asks for is a 404, never a 403, so that project and
image ids do not leak.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import Http404, HttpRequest

from artcritic.studio.models import Image, Project


def user_of(request: HttpRequest) -> User:
    """The signed-in user of a request; a 404 if there is none (login is required everywhere)."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated or not user.is_active:
        raise Http404("Not signed in.")
    return user


def project_for_user(user: Any, project_id: int) -> Project:
    """The project if ``user`` is a member of it; Http404 otherwise (staff included)."""
    project = Project.objects.for_user(user).filter(pk=project_id).first()
    if project is None:
        raise Http404("No such project.")
    return project


def project_ids_for_user(user: Any) -> frozenset[int]:
    """The ids of every project ``user`` is a member of (for filtering live streams)."""
    return frozenset(Project.objects.for_user(user).values_list("pk", flat=True))


def image_for_user(user: Any, image_id: int) -> Image:
    """The image (with its project, prompt and request) if ``user`` is a member of its project."""
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such image.")
    image = (
        Image.objects.select_related("project", "prompt", "request")
        .filter(pk=image_id, project__memberships__user=user)
        .first()
    )
    if image is None:
        raise Http404("No such image.")
    return image


def session_still_signs_in(session_key: str, user: Any) -> bool:
    """Whether the session a socket was opened with still signs ``user`` in, as a new
    request with it would be: it exists, names the user, carries the user's current
    password hash (a password change ends other sessions) and the user is active."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils.crypto import constant_time_compare

    if not session_key or not getattr(user, "pk", None):
        return False
    session = SessionStore(session_key)
    if not session.exists(session_key):
        return False
    data = session.load()
    if str(data.get(SESSION_KEY)) != str(user.pk) or not data.get(BACKEND_SESSION_KEY):
        return False
    fresh = User.objects.filter(pk=user.pk, is_active=True).first()
    if fresh is None:
        return False
    return constant_time_compare(str(data.get(HASH_SESSION_KEY, "")), fresh.get_session_auth_hash())
