"""System checks run at start-up (`manage.py check`, `migrate`, `runserver`).

They catch configurations that would start fine and fail later, or quietly weaken
a guarantee: a broken profile file, long-lived presigned URLs, a wildcard host in
production, Celery settings that would let a crash lose or duplicate GPU work.
Every check is cheap and local: no database, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from artcritic.gpu.models import GPU_NAME
from artcritic.gpu.profiles import ProfileError, profile_read

# A presigned URL is a bearer token for an image; an hour bounds what a leaked link exposes.
MAX_PRESIGN_SECONDS = 3600
NVML_MODES = ("auto", "real", "sim")
DEV_S3_SECRET = "artcritic-dev-secret"  # noqa: S105 - the public development default, refused below


def _profiles_dir() -> Path:
    return Path(settings.ARTCRITIC_PROFILES_DIR)


@register("artcritic")
def check_profiles(app_configs: Sequence[AppConfig] | None = None, **_: Any) -> list[CheckMessage]:
    """The profiles directory exists and every profile file in it parses and validates."""
    directory = _profiles_dir()
    if not directory.is_dir():
        return [
            Warning(
                f"ARTCRITIC_PROFILES_DIR={directory} is not a directory.",
                hint="Point ARTCRITIC_PROFILES_DIR at the repository's profiles/ folder.",
                id="artcritic.W001",
            )
        ]
    files = sorted(directory.glob("*.toml"))
    if not files:
        return [
            Warning(
                f"{directory} holds no *.toml hardware profile.",
                hint="Without a profile no GPU can be activated; copy one from profiles/.",
                id="artcritic.W002",
            )
        ]
    problems = []
    for path in files:
        try:
            profile_read(path)
        except ProfileError as exc:
            problems.append(str(exc))
    if not problems:
        return []
    return [
        Warning(
            f"{len(problems)} of {len(files)} hardware profile file(s) are invalid:\n"
            + "\n".join(problems),
            hint="loadprofiles refuses these files; fix the keys named above.",
            id="artcritic.W003",
        )
    ]


@register(Tags.security)
def check_presign_lifetime(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    """Presigned image URLs stay short-lived."""
    seconds = settings.S3_PRESIGN_SECONDS
    if seconds <= MAX_PRESIGN_SECONDS:
        return []
    return [
        Error(
            f"S3_PRESIGN_SECONDS={seconds} lets an image link work for over an hour.",
            hint=f"Presigned URLs must be short-lived: use at most {MAX_PRESIGN_SECONDS}.",
            id="artcritic.E001",
        )
    ]


@register(Tags.security)
def check_production_hosts(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    """Outside DEBUG, no wildcard host and no development S3 secret."""
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    if "*" in settings.ALLOWED_HOSTS:
        messages.append(
            Error(
                "ARTCRITIC_ALLOWED_HOSTS contains '*' while ARTCRITIC_DEBUG is off.",
                hint="List the host names the site is served under; '*' also "
                "disables the WebSocket origin check.",
                id="artcritic.E002",
            )
        )
    if settings.S3_SECRET_KEY == DEV_S3_SECRET:
        messages.append(
            Error(
                "S3_SECRET_KEY is the public development secret while ARTCRITIC_DEBUG is off.",
                hint="Set S3_SECRET_KEY (and S3_ACCESS_KEY) to the credentials of your S3 user.",
                id="artcritic.E003",
            )
        )
    return messages


@register("artcritic")
def check_gpu_settings(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    """The GPU name makes a valid queue name and the NVML mode is one we know."""
    messages: list[CheckMessage] = []
    if not GPU_NAME.match(settings.ARTCRITIC_GPU):
        messages.append(
            Error(
                f"ARTCRITIC_GPU={settings.ARTCRITIC_GPU!r} is not a valid GPU name.",
                hint="Use lower-case letters, digits, '-' or '_' (e.g. gpu0); it names "
                "the Celery queue gpu.<name>.",
                id="artcritic.E004",
            )
        )
    nvml = settings.ARTCRITIC_NVML
    if nvml not in NVML_MODES:
        messages.append(
            Error(
                f"ARTCRITIC_NVML={nvml!r} is not one of {', '.join(NVML_MODES)}.",
                id="artcritic.E005",
            )
        )
    return messages


@register("artcritic")
def check_celery_safety(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    """GPU tasks are acknowledged late, one at a time, and put back if a worker dies."""
    wanted = {
        # A task acked before it ran would be lost with its worker.
        "CELERY_TASK_ACKS_LATE": True,
        # ...and one whose worker died mid-run must go back to the queue, not vanish.
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        # A prefetched second GPU task would wait behind the first, invisible to the scheduler.
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
    }
    return [
        Error(
            f"{name}={getattr(settings, name, None)!r}; artcritic needs {value!r}.",
            hint="The GPU queue's recovery and ordering rely on it (see README, GPU worker).",
            id="artcritic.E006",
        )
        for name, value in wanted.items()
        if getattr(settings, name, None) != value
    ]


@register("artcritic")
def check_s3_endpoint(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    """S3_ENDPOINT is host:port, as the minio SDK wants it (TLS is S3_SECURE, not a scheme)."""
    endpoint = settings.S3_ENDPOINT
    if "://" not in endpoint and "/" not in endpoint and endpoint.strip() == endpoint:
        return []
    return [
        Error(
            f"S3_ENDPOINT={endpoint!r} is not host:port.",
            hint="Write e.g. minio:9000 and set S3_SECURE=1 for TLS.",
            id="artcritic.E007",
        )
    ]
