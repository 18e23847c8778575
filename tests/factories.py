"""Small factories in code: each makes one valid row with overridable fields."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from artcritic.gpu.models import Gpu, HardwareProfile
from artcritic.gpu.profiles import profile_from_data, profile_read
from artcritic.studio.models import GenerationRequest, Membership, Project, Prompt, Role

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count(1)
PASSWORD = "a-long-test-password-7"


def user_make(username: str | None = None, **fields: Any) -> AbstractUser:
    name = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(  # type: ignore[attr-defined,no-any-return]
        username=name, password=PASSWORD, email=f"{name}@example.test", **fields
    )


def project_make(
    *members: AbstractUser, owner: AbstractUser | None = None, **fields: Any
) -> Project:
    fields.setdefault("name", f"Project {next(_counter)}")
    fields.setdefault("brief", "Desk lamps for small flats.")
    project = Project.objects.create(created_by=owner, **fields)
    if owner is not None:
        Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    for member in members:
        Membership.objects.create(project=project, user=member, role=Role.MEMBER)
    return project


def prompt_make(project: Project, author: AbstractUser | None = None, **fields: Any) -> Prompt:
    fields.setdefault("text", "a brushed aluminium desk lamp, studio light")
    return Prompt.objects.create(project=project, author=author, **fields)


def request_make(prompt: Prompt, **fields: Any) -> GenerationRequest:
    count = fields.setdefault("count", 1)
    seed = fields.setdefault("seed", 42)
    values: dict[str, Any] = {
        "profile_name": "sim-32gb",
        "model_mode": "flux-dev-fp8",
        "width": 1024,
        "height": 1024,
        "steps": 20,
        "cfg": 1.0,
        "sampler": "euler",
        "scheduler": "simple",
        "seed_policy": "increment",
        "seeds": [seed + i for i in range(count)],
    }
    values.update(fields)
    return GenerationRequest.objects.create(
        project=prompt.project, prompt=prompt, author=prompt.author, **values
    )


def composer_data(**overrides: Any) -> dict[str, Any]:
    """A valid composer submission for profile sim-32gb, as the browser posts it (strings)."""
    data: dict[str, Any] = {
        "text": "a desk lamp",
        "negative_text": "",
        "model_mode": "flux-dev-fp8",
        "width": "1024",
        "height": "1024",
        "steps": "20",
        "cfg": "1",
        "sampler": "euler",
        "scheduler": "simple",
        "lora": "",
        "lora_strength": "1",
        "seed_policy": "fixed",
        "seed": "5",
        "count": "4",
    }
    data.update(overrides)
    return data


def profile_load(
    name: str = "sim-32gb", gpu: str = "sim0", *, role: str = "shared"
) -> HardwareProfile:
    """Load a shipped profile file and make it the active one of ``gpu``.

    ``role``: a dedicated role ("artist", "critic") loads the file as ``<name>-<role>``
    with that role, validated by the same loader.
    """
    profile, sha = profile_read(ROOT / "profiles" / f"{name}.toml")
    if role != "shared":
        data = {**profile.model_dump(mode="json"), "name": f"{name}-{role}", "role": role}
        profile = profile_from_data(data)
    row, _ = HardwareProfile.objects.update_or_create(
        name=profile.name,
        defaults={
            "data": profile.model_dump(mode="json"),
            "source_sha256": sha,
            "simulated": profile.simulated,
            "description": profile.description,
        },
    )
    Gpu.objects.update_or_create(name=gpu, defaults={"active_profile": row})
    return row


def sign_in(client: Client, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real login page (django-axes watches it), CSRF token included."""
    client.get(reverse("login"))
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        reverse("login"),
        {"username": username, "password": password, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302, f"signing in as {username} failed: {response.status_code}"
