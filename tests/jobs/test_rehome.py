"""Work stranded on a GPU whose worker vanished moves to a live GPU that can run it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.utils import timezone

from artcritic.gpu.models import Gpu
from artcritic.jobs.models import Job, JobStatus
from artcritic.jobs.rehome import jobs_rehome
from artcritic.studio.models import Project
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make

pytestmark = pytest.mark.django_db


def heard(name: str, ago_s: float) -> None:
    Gpu.objects.filter(name=name).update(reading_at=timezone.now() - timedelta(seconds=ago_s))


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def project(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Kettles")


@pytest.fixture
def gone_and_live(settings: object) -> None:
    settings.ARTCRITIC_WORKER_GONE_S = 60.0  # type: ignore[attr-defined]
    profile_load(gpu="gpu0")
    profile_load(gpu="gpu1")
    heard("gpu0", ago_s=200)  # vanished
    heard("gpu1", ago_s=1)


def test_waiting_and_orphaned_jobs_move_but_leased_blocked_and_cancelled_ones_stay(
    project: Project, olive: AbstractUser, gone_and_live: None
) -> None:
    now = timezone.now()
    waiting = job_make(request_make(prompt_make(project, olive)), gpu="gpu0")
    orphaned = job_make(
        request_make(prompt_make(project, olive)),
        gpu="gpu0",
        status=JobStatus.RUNNING,
        lease_expires_at=now - timedelta(seconds=5),
        lease_owner="gpu.gpu0.dead@elsewhere",
    )
    leased = job_make(
        request_make(prompt_make(project, olive)),
        gpu="gpu0",
        status=JobStatus.RUNNING,
        lease_expires_at=now + timedelta(seconds=20),
    )
    blocked = job_make(
        request_make(prompt_make(project, olive)),
        gpu="gpu0",
        status=JobStatus.BLOCKED,
        error_reason="needs 36.2 GB; the profile allows 30.5 GB",
        next_action="Lower the batch size.",
    )
    cancelling = job_make(
        request_make(prompt_make(project, olive)), gpu="gpu0", cancel_requested=True
    )
    review = job_make(image=image_make(request_make(prompt_make(project, olive))), gpu="gpu0")

    moves = jobs_rehome()

    assert {move.job for move in moves} == {waiting.pk, orphaned.pk, review.pk}
    assert all((m.from_gpu, m.to_gpu) == ("gpu0", "gpu1") for m in moves)
    for job in (waiting, orphaned, review):
        job.refresh_from_db()
        assert job.gpu == "gpu1"
        assert job.placement_reason.startswith(
            "Moved from gpu0 to gpu1: gpu0's worker has not reported for 20"
        ), job.placement_reason
        assert job.phases.filter(detail__startswith="Moved from gpu0 to gpu1").count() == 1
    # The orphan keeps "running": gpu1's worker reaps its expired lease and re-queues it once.
    orphaned.refresh_from_db()
    assert orphaned.status == JobStatus.RUNNING
    for job in (leased, blocked, cancelling):
        job.refresh_from_db()
        assert job.gpu == "gpu0"
    assert jobs_rehome() == []  # nothing left to move: a second sweep is a no-op


def test_nothing_moves_while_the_silence_is_shorter_than_the_gone_time(
    project: Project, olive: AbstractUser, gone_and_live: None
) -> None:
    heard("gpu0", ago_s=30)  # quiet (no new work) but not gone: a restart takes this long
    job = job_make(request_make(prompt_make(project, olive)), gpu="gpu0")
    assert jobs_rehome() == []
    job.refresh_from_db()
    assert job.gpu == "gpu0"


def test_a_job_no_live_gpu_can_run_waits_for_its_own(
    project: Project, olive: AbstractUser, settings: object
) -> None:
    settings.ARTCRITIC_WORKER_GONE_S = 60.0  # type: ignore[attr-defined]
    profile_load(gpu="crit", role="critic")
    profile_load(gpu="art", role="artist")
    heard("art", ago_s=500)
    heard("crit", ago_s=1)
    generation = job_make(request_make(prompt_make(project, olive)), gpu="art")
    assert jobs_rehome() == []
    generation.refresh_from_db()
    assert generation.gpu == "art"


def test_nothing_moves_when_no_worker_is_alive(
    project: Project, olive: AbstractUser, gone_and_live: None
) -> None:
    heard("gpu1", ago_s=300)
    job = job_make(request_make(prompt_make(project, olive)), gpu="gpu0")
    assert jobs_rehome() == []
    job.refresh_from_db()
    assert job.gpu == "gpu0"


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_at_once_move_each_job_once(
    project: Project, olive: AbstractUser, gone_and_live: None
) -> None:
    jobs = [job_make(request_make(prompt_make(project, olive)), gpu="gpu0") for _ in range(6)]
    results: list[int] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        try:
            barrier.wait(5)
            results.append(len(jobs_rehome()))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(results) == len(jobs)
    for job in jobs:
        assert job.phases.filter(detail__startswith="Moved from").count() == 1
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("gpu", flat=True)) == {
        "gpu1"
    }
