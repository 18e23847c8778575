"""The benchmark's rows: a user, a project they belong to, a GPU, one running generate job.

Needs Django set up on the benchmark's database. Rows of an earlier run (kept with
--keep-db) are reused, and that run's jobs removed, so each run starts from one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client
from django.utils import timezone

from artcritic.gpu.services import profiles_load
from artcritic.jobs.models import Job, JobKind, JobStatus, Phase
from artcritic.jobs.profile_switch import gpu_activate
from artcritic.studio.models import GenerationRequest, Membership, Project, Prompt, Role
from bench.livebench.stack import ROOT

PROFILE = "sim-32gb"
USERNAME = "bench"
PASSWORD = "bench-live-password-1"  # noqa: S105 - a throwaway user of the benchmark's database
PROJECT = "Live benchmark"


@dataclass(frozen=True)
class World:
    user_id: int
    project_id: int
    job_id: int
    gpu: str
    socket_session: str  # session cookie values of the signed-in bench user
    page_session: str


def _session(user: object) -> str:
    """A real session row for ``user``, as a login makes; its cookie value."""
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def world_make(gpu: str, total: int) -> World:
    profiles_load([ROOT / "profiles" / f"{PROFILE}.toml"])
    gpu_activate(gpu, PROFILE)
    user, _ = get_user_model().objects.get_or_create(
        username=USERNAME, defaults={"email": f"{USERNAME}@example.test"}
    )
    # A known password with few iterations: only this throwaway user is hashed cheaply.
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "bench-salt", iterations=1000)
    user.save(update_fields=["password"])
    project = Project.objects.filter(name=PROJECT, memberships__user=user).first()
    if project is None:
        project = Project.objects.create(name=PROJECT, brief="Latency.", created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
    Job.objects.filter(project=project).delete()
    prompt = Prompt.objects.create(project=project, author=user, text="a desk lamp, studio light")
    request = GenerationRequest.objects.create(
        project=project,
        prompt=prompt,
        author=user,
        profile_name=PROFILE,
        model_mode="flux-dev-fp8",
        width=1024,
        height=1024,
        steps=20,
        cfg=1.0,
        sampler="euler",
        scheduler="simple",
        seed_policy="increment",
        seed=42,
        seeds=[42],
        count=1,
    )
    now = timezone.now()
    job = Job.objects.create(
        kind=JobKind.GENERATE,
        project=project,
        request=request,
        submitted_by=user,
        status=JobStatus.RUNNING,
        phase=Phase.GENERATING,
        phase_runtime="comfyui",
        phase_started_at=now,
        started_at=now,
        progress_total=total,
        runtime="comfyui",
        gpu=gpu,
        profile_name=PROFILE,
        lease_owner="bench",
        lease_expires_at=now + timedelta(hours=1),
    )
    return World(user.pk, project.pk, job.pk, gpu, _session(user), _session(user))
