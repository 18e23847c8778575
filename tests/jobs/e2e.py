"""A GPU worker on the simulated GPU for end-to-end tests, and submitting requests to it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractUser

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import Profile
from artcritic.jobs.models import FINISHED_STATUSES, Job, JobKind
from artcritic.jobs.services import request_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import Project, SeedPolicy
from artcritic.studio.services import RequestDraft
from tests.factories import project_make, user_make
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker


@dataclass
class Stack:
    """A GPU row on the simulated profile, its worker process and the simulators it starts."""

    gpu: Gpu
    profile: Profile
    sim_dir: Path
    worker: WorkerProcess
    owner: AbstractUser
    project: Project

    def log(self) -> str:
        return self.worker.log()

    def stop_runtimes(self) -> None:
        for runtime in ("comfyui", "critic"):
            env = {"ARTCRITIC_SIM_DIR": str(self.sim_dir)}
            driver_for(runtime, self.profile, gpu=self.gpu.name, env=env).stop()


def stack_run(
    tmp_path: Path, settings_fixture: Any, *, time_scale: float, profile: Profile | None = None
) -> Iterator[Stack]:
    """Start the stack (pytest-django's ``settings`` fixture names the GPU); stop it after."""
    name = f"e2e{uuid.uuid4().hex[:6]}"
    profile = profile or sim_profile()
    gpu = gpu_install(name, profile)
    settings_fixture.ARTCRITIC_GPU = name
    sim_dir = tmp_path / "sim"
    owner = user_make()
    project = project_make(owner=owner, name="Lamp concepts", taste_notes="Quiet materials.")
    stack = Stack(
        gpu, profile, sim_dir, start_gpu_worker(name, sim_dir, time_scale=time_scale), owner,
        project,
    )  # fmt: skip
    try:
        yield stack
    finally:
        stack.worker.stop()
        stack.stop_runtimes()


def draft(**changes: object) -> RequestDraft:
    values: dict[str, object] = {
        "profile_name": "sim-32gb",
        "text": "a brushed aluminium desk lamp, studio light",
        "negative_text": "blurry",
        "model_mode": "flux-dev-fp8",
        "width": 1024,
        "height": 1024,
        "steps": 8,
        "cfg": 1.0,
        "sampler": "euler",
        "scheduler": "simple",
        "lora_name": "",
        "lora_strength": 1.0,
        "seed_policy": SeedPolicy.INCREMENT,
        "seed": 7,
        "count": 1,
    }
    values.update(changes)
    return RequestDraft(**values)  # type: ignore[arg-type]


def submit(stack: Stack, **changes: object) -> Job:
    """Submit a request as its project's owner; its generate job."""
    request = request_submit(project=stack.project, user=stack.owner, data=draft(**changes))
    return Job.objects.get(request=request, kind=JobKind.GENERATE)


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.status in FINISHED_STATUSES else None


def all_done(project: Project) -> bool:
    """Every job of the project has finished (generations and the reviews they queued)."""
    return not Job.objects.filter(project=project).exclude(status__in=FINISHED_STATUSES).exists()
