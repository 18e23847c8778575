"""Two simulated GPUs, each with its own real Celery worker, queue, profile and runtimes.

Jobs are placed by ``jobs.placement`` when they are created; reviews may run on another
GPU than their generation. Checked on the simulated GPUs' own event logs: no runtime is
ever resident beside its exclusive partner on either GPU.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import Profile
from artcritic.jobs.models import FINISHED_STATUSES, Job, JobKind, JobPhase, JobStatus
from artcritic.jobs.placing import WORKER_FRESH_S
from artcritic.jobs.services import request_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.sim.gpu import SimGpu
from artcritic.studio.models import Image, Project, SeedPolicy
from tests.factories import project_make, user_make
from tests.jobs.test_pipeline_e2e import RESIDENT_BYTES, draft
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TIME_SCALE = 0.05
GONE_S = 15.0  # the least ARTCRITIC_WORKER_GONE_S allows


@dataclass
class Node:
    """One GPU: its row, profile (own ports), simulator directory and worker."""

    name: str
    profile: Profile
    sim_dir: Path
    worker: WorkerProcess
    env: dict[str, str] = field(default_factory=dict)

    def restart(self) -> None:
        self.worker = start_gpu_worker(
            self.name, self.sim_dir, time_scale=TIME_SCALE, env=self.env
        )

    def events(self) -> list[dict[str, object]]:
        return list(SimGpu(self.name, root=self.sim_dir).events())


@dataclass
class Pair:
    nodes: list[Node]
    project: Project
    owner: object
    logs: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(
            [*self.logs, *(f"--- {n.name} ---\n{n.worker.log()[-5000:]}" for n in self.nodes)]
        )

    def submit(self, **changes: object) -> Job:
        request = request_submit(
            project=self.project,
            user=self.owner,  # type: ignore[arg-type]
            data=draft(**changes),
        )
        return Job.objects.get(request=request, kind=JobKind.GENERATE)

    def all_done(self) -> bool:
        jobs = Job.objects.filter(project=self.project)
        return jobs.exists() and not jobs.exclude(status__in=FINISHED_STATUSES).exists()


def _profile(gpu: str, role: str) -> Profile:
    """The simulated profile on free ports, named for its GPU (each GPU has its own row)."""
    base = sim_profile()
    data = base.model_dump(mode="json")
    data["name"] = f"sim-32gb-{gpu}"
    data["role"] = role
    return Profile.model_validate(data)


def _pair(
    tmp_path: Path, settings: object, roles: tuple[str, str], *, gone_s: float = 3600.0
) -> Iterator[Pair]:
    suffix = uuid.uuid4().hex[:6]
    names = [f"two{suffix}a", f"two{suffix}b"]
    nodes: list[Node] = []
    settings.ARTCRITIC_GPU = names[0]  # type: ignore[attr-defined]
    try:
        for name, role in zip(names, roles, strict=True):
            profile = _profile(name, role)
            gpu_install(name, profile)
            sim_dir = tmp_path / name
            # How long a silent worker's GPU keeps its work before live workers take it.
            env = {"ARTCRITIC_WORKER_GONE_S": str(gone_s)}
            worker = start_gpu_worker(name, sim_dir, time_scale=TIME_SCALE, env=env)
            nodes.append(Node(name, profile, sim_dir, worker, env))
        # Placement weighs GPUs whose worker reported; both report every 2 s once ready.
        wait_until(
            lambda: Gpu.objects.filter(name__in=names, reading_at__isnull=False).count() == 2,
            30,
            what="both workers' first NVML reading",
        )
        owner = user_make()
        project = project_make(owner=owner, name="Lamp concepts", taste_notes="Quiet materials.")
        yield Pair(nodes, project, owner)
    finally:
        for node in nodes:
            node.worker.stop()
            for runtime in ("comfyui", "critic"):
                env = {"ARTCRITIC_SIM_DIR": str(node.sim_dir)}
                driver_for(runtime, node.profile, gpu=node.name, env=env).stop()


@pytest.fixture
def shared(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[Pair]:
    yield from _pair(tmp_path, settings, ("shared", "shared"))


@pytest.fixture
def shared_quick_to_give_up(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[Pair]:
    yield from _pair(tmp_path, settings, ("shared", "shared"), gone_s=GONE_S)


@pytest.fixture
def dedicated(tmp_path: Path, settings: object, s3_bucket: str) -> Iterator[Pair]:
    yield from _pair(tmp_path, settings, ("artist", "critic"))


def resident_alone(node: Node) -> set[str]:
    """Every runtime that was ever resident on the GPU; fails if two ever were at once."""
    seen: set[str] = set()
    for event in node.events():
        by_runtime = event.get("by_runtime", {})
        assert isinstance(by_runtime, dict)
        resident = [rt for rt, used in by_runtime.items() if used > RESIDENT_BYTES]
        assert len(resident) <= 1, f"{node.name}: both runtimes resident: {event}"
        seen.update(resident)
    return seen


def test_a_mixed_batch_spreads_over_both_gpus_one_runtime_at_a_time(shared: Pair) -> None:
    jobs = [
        shared.submit(count=2, model_mode="sdxl", seed=1),
        shared.submit(count=2, model_mode="flux-dev-fp8", seed=2),
        shared.submit(count=1, model_mode="sdxl", seed=3),
        shared.submit(count=1, model_mode="flux-dev-fp8", seed=4),
    ]
    assert all(job.status == JobStatus.ADMITTED for job in jobs)
    wait_until(shared.all_done, 180, what="every job of the batch", log=shared.log)

    names = {node.name for node in shared.nodes}
    generations = Job.objects.filter(project=shared.project, kind=JobKind.GENERATE)
    reviews = Job.objects.filter(project=shared.project, kind=JobKind.REVIEW)
    assert {job.status for job in [*generations, *reviews]} == {JobStatus.DONE}, shared.log()
    assert reviews.count() == 6
    assert set(generations.values_list("gpu", flat=True)) == names
    # The second job saw the first one's GPU busy: its reason names both GPUs.
    second = Job.objects.get(pk=jobs[1].pk)
    assert second.placement_reason.startswith(f"{second.gpu}: ")
    assert (names - {second.gpu}).pop() in second.placement_reason
    # Every review ran where it was placed, and it says why when there was a choice.
    for review in reviews:
        assert review.gpu in names
        assert review.placement_reason.startswith(f"{review.gpu}: ")
    for node in shared.nodes:
        resident_alone(node)


def test_dedicated_roles_route_reviews_to_the_critic_gpu_and_never_swap(dedicated: Pair) -> None:
    artist, critic = dedicated.nodes
    dedicated.submit(count=2, model_mode="sdxl", seed=1)
    dedicated.submit(count=1, model_mode="flux-dev-fp8", seed=2)
    wait_until(dedicated.all_done, 180, what="both requests and their reviews", log=dedicated.log)

    jobs = Job.objects.filter(project=dedicated.project)
    assert {job.status for job in jobs} == {JobStatus.DONE}, dedicated.log()
    assert set(jobs.filter(kind=JobKind.GENERATE).values_list("gpu", flat=True)) == {artist.name}
    reviews = jobs.filter(kind=JobKind.REVIEW)
    assert reviews.count() == 3
    assert set(reviews.values_list("gpu", flat=True)) == {critic.name}
    assert all("Artist-only" in review.placement_reason for review in reviews)
    # No swap at all: nothing was ever released, and each GPU only ever held its runtime.
    assert not JobPhase.objects.filter(job__in=jobs, phase="releasing").exists()
    assert resident_alone(artist) == {"comfyui"}
    assert resident_alone(critic) == {"critic"}


def test_a_killed_worker_on_one_gpu_while_the_other_keeps_working(shared: Pair) -> None:
    first = shared.submit(
        count=2, steps=40, model_mode="sdxl", seed_policy=SeedPolicy.INCREMENT, seed=10
    )
    victim = next(node for node in shared.nodes if node.name == first.gpu)
    survivor = next(node for node in shared.nodes if node.name != first.gpu)
    wait_until(
        lambda: Job.objects.filter(pk=first.pk, phase="generating").exists(),
        120,
        what="the first generation to start",
        log=shared.log,
    )
    victim.worker.kill()
    shared.logs.append(f"--- {victim.name} (killed) ---\n{victim.worker.log()[-3000:]}")
    # Its worker no longer reports: after WORKER_FRESH_S its GPU gets no new work.
    wait_until(
        lambda: Gpu.objects.filter(
            name=victim.name,
            reading_at__lt=timezone.now() - timedelta(seconds=WORKER_FRESH_S),
        ).exists(),
        WORKER_FRESH_S + 10,
        what=f"{victim.name}'s readings to go stale",
    )
    later = [shared.submit(count=1, model_mode="sdxl", seed=20 + n) for n in range(2)]
    assert {job.gpu for job in later} == {survivor.name}
    wait_until(
        lambda: all(
            Job.objects.get(pk=job.pk).status == JobStatus.DONE for job in later
        ),
        120,
        what="the surviving GPU's jobs",
        log=shared.log,
    )
    # The killed GPU's job is still held by the dead worker's lease, not run twice.
    assert Job.objects.get(pk=first.pk).status == JobStatus.RUNNING

    victim.restart()
    done = wait_until(
        lambda: (job := Job.objects.get(pk=first.pk)).status in FINISHED_STATUSES and job,
        180,
        what="the interrupted job's re-run",
        log=shared.log,
    )
    assert done.status == JobStatus.DONE, done.error_reason
    assert done.attempt == 2  # re-queued once
    interrupted = JobPhase.objects.get(job=done, status="interrupted")
    assert "put back in the queue (attempt 2 of 2)" in interrupted.detail
    assert Image.objects.filter(request=first.request).count() == 2
    wait_until(shared.all_done, 120, what="the re-run's reviews", log=shared.log)
    for node in shared.nodes:
        resident_alone(node)


def test_a_gpu_whose_worker_never_returns_has_its_job_moved_and_run_once_on_the_other(
    shared_quick_to_give_up: Pair,
) -> None:
    pair = shared_quick_to_give_up
    first = pair.submit(
        count=2, steps=40, model_mode="sdxl", seed_policy=SeedPolicy.INCREMENT, seed=30
    )
    victim = next(node for node in pair.nodes if node.name == first.gpu)
    survivor = next(node for node in pair.nodes if node.name != first.gpu)
    wait_until(
        lambda: Job.objects.filter(pk=first.pk, phase="generating").exists(),
        120,
        what="the first generation to start",
        log=pair.log,
    )
    victim.worker.kill()
    pair.logs.append(f"--- {victim.name} (killed, never restarted) ---")
    # Silent past GONE_S, and its lease (30 s from the last heartbeat) expired: the
    # survivor's sweeper moves the job, reaps it and runs it as attempt 2.
    done = wait_until(
        lambda: (job := Job.objects.get(pk=first.pk)).status in FINISHED_STATUSES and job,
        180,
        what="the stranded job to move and finish on the other GPU",
        log=pair.log,
    )
    assert done.status == JobStatus.DONE, done.error_reason
    assert done.gpu == survivor.name
    assert done.attempt == 2  # re-queued once, not more
    assert done.placement_reason.startswith(f"Moved from {victim.name} to {survivor.name}: ")
    moved = JobPhase.objects.get(job=done, detail__startswith="Moved from")
    interrupted = JobPhase.objects.get(job=done, status="interrupted")
    assert moved.started_at <= interrupted.started_at
    assert Image.objects.filter(request=first.request).count() == 2  # none made twice
    wait_until(pair.all_done, 120, what="the moved job's reviews", log=pair.log)
    assert not Job.objects.filter(project=pair.project, gpu=victim.name).exclude(
        status__in=FINISHED_STATUSES
    ).exists()
    for node in pair.nodes:
        resident_alone(node)
