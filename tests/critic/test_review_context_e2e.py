"""The GPU worker shows the Critic similar decisions with thumbnails, batches reviews, and
blocks a review whose context would not fit — on the simulated GPU, with real services."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import transaction

from artcritic.critic.models import ShownContext
from artcritic.gpu.profiles import Profile
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.models import Job, JobPhase, JobStatus, Phase
from artcritic.jobs.runner import review_job_submit
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.studio.models import CriticReview, Image, Project, ReviewStatus
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, image_stored, job_make
from tests.workerproc import WorkerProcess, gpu_install, sim_profile, start_gpu_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BLOCKED)
LAMP = "a brushed aluminium desk lamp with a walnut base"
# 512² images: 18 × 18 = 324 vision tokens + 2; their thumbnails shrink to 224²: 64 + 2.
IMAGE_TOKENS = 326
THUMBNAIL_TOKENS = 66


def with_critic(max_model_len: int | None = None) -> Profile:
    data = sim_profile().model_dump(mode="json")
    if max_model_len is not None:
        data["runtimes"]["critic"]["max_model_len"] = max_model_len
    return Profile.model_validate(data)


@pytest.fixture
def worker_for(
    tmp_path: Path, settings: object, s3_bucket: str
) -> Iterator[Callable[[Profile], WorkerProcess]]:
    started: list[tuple[str, Profile, Path, WorkerProcess]] = []

    def start(profile: Profile) -> WorkerProcess:
        name = f"ctx{uuid.uuid4().hex[:6]}"
        gpu_install(name, profile)
        settings.ARTCRITIC_GPU = name  # type: ignore[attr-defined]
        sim_dir = tmp_path / "sim"
        worker = start_gpu_worker(name, sim_dir, time_scale=0.1)
        started.append((name, profile, sim_dir, worker))
        return worker

    yield start
    for name, profile, sim_dir, worker in started:
        worker.stop()
        for runtime in ("comfyui", "critic"):
            driver_for(runtime, profile, gpu=name, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()


def stored(project: Project, author: AbstractUser, gpu: str, text: str) -> Image:
    """A generated image as the Artist leaves it: PNG and thumbnail in S3, its job done."""
    request = request_make(prompt_make(project, author, text=text), count=1)
    made = job_make(request, gpu=gpu, status=JobStatus.DONE, output_count=1)
    image = image_stored(request, 0)
    Image.objects.filter(pk=image.pk).update(job=made)
    image.refresh_from_db()
    return image


def reviews_submit(images: list[Image], gpu: str) -> list[Job]:
    with transaction.atomic():
        jobs = [review_job_submit(image, submitted_by=None) for image in images]
        gpu_kick(gpu)
    return jobs


def reviews_ended(jobs: list[Job], worker: WorkerProcess, timeout: float = 180) -> list[Job]:
    ids = [j.pk for j in jobs]
    wait_until(
        lambda: Job.objects.filter(pk__in=ids, status__in=ENDED).count() == len(ids),
        timeout,
        what="every review to end",
        log=worker.log,
    )
    return list(Job.objects.filter(pk__in=ids).order_by("pk"))


def most_at_once(jobs: list[Job]) -> int:
    """The most reviews in their reviewing phase at the same moment, from the phase rows."""
    edges: list[tuple[datetime, int]] = []
    for job in jobs:
        phases = list(JobPhase.objects.filter(job=job).order_by("started_at", "id"))
        for n, row in enumerate(phases):
            if row.phase != Phase.REVIEWING:
                continue
            end = phases[n + 1].started_at if n + 1 < len(phases) else job.finished_at
            assert end is not None
            edges += [(row.started_at, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_reviews_go_together_up_to_max_num_seqs_each_shown_thumbnails_one_failing_alone(
    worker_for: Callable[[Profile], WorkerProcess],
) -> None:
    profile_load()
    profile = with_critic()
    worker = worker_for(profile)
    owner = user_make()
    project = project_make(owner=owner)
    ana = user_make()
    liked = stored(project, owner, worker.gpu, LAMP + ", matte")
    disliked = stored(project, owner, worker.gpu, LAMP + ", glossy chrome")
    split = stored(project, owner, worker.gpu, "a red wool armchair")
    decision_make(liked, owner, verdict="approve", note="calm")
    decision_make(disliked, owner, verdict="reject", note="too shiny")
    decision_make(split, owner, verdict="approve")
    decision_make(split, ana, verdict="reject", note="off brief")
    targets = [stored(project, owner, worker.gpu, f"{LAMP}, view {n}") for n in range(9)]
    gone = image_make(targets[0].request, index=1, job=targets[0].job)  # no bytes in S3
    jobs = reviews_ended(reviews_submit([*targets, gone], worker.gpu), worker)

    by_image = {j.image_id: j for j in jobs}
    assert by_image[gone.pk].status == JobStatus.FAILED
    assert "does not exist" in by_image[gone.pk].error_reason
    assert [by_image[t.pk].status for t in targets] == [JobStatus.DONE] * 9
    peak = most_at_once(jobs)
    assert 2 <= peak <= profile.runtimes.critic.max_num_seqs, peak
    # Batched reviews share the GPU: together they never use more GPU-seconds than passed.
    first = min(j.claimed_at for j in jobs if j.claimed_at is not None)
    last = max(j.finished_at for j in jobs if j.finished_at is not None)
    assert sum(j.gpu_seconds or 0.0 for j in jobs) <= (last - first).total_seconds()
    energies = [j.energy_joules for j in jobs if j.energy_joules is not None]
    assert energies  # the simulated GPU counts energy

    for target in targets:
        review = CriticReview.objects.get(image=target)
        shown = ShownContext.objects.get(review=review)
        assert (shown.decisions_limit, shown.thumbnails_limit) == (6, 4)
        kinds = [(e["image"], e["kind"], e["thumbnail"]) for e in shown.examples]
        assert sorted(kinds) == sorted(
            [
                (liked.pk, "approve", True),
                (disliked.pk, "reject", True),
                (split.pk, "conflict", True),
            ]
        )
        assert shown.image_tokens == IMAGE_TOKENS + 3 * THUMBNAIL_TOKENS
        assert shown.count_method == "tokenizer"
        assert shown.prompt_tokens == review.prompt_tokens  # counted before = the server's usage
        assert shown.max_model_len == profile.runtimes.critic.max_model_len
        assert review.shown_decisions.count() == 4  # each member's decision on the split image


def test_a_review_whose_context_would_not_fit_is_blocked_with_the_numbers_never_cut(
    worker_for: Callable[[Profile], WorkerProcess],
) -> None:
    profile_load()
    worker = worker_for(with_critic(max_model_len=5000))
    owner = user_make()
    project = project_make(owner=owner)
    for n, verdict in enumerate(("approve", "reject", "reject")):
        decision_make(stored(project, owner, worker.gpu, f"{LAMP} {n}"), owner, verdict=verdict)
    target = stored(project, owner, worker.gpu, LAMP)
    [job] = reviews_ended(reviews_submit([target], worker.gpu), worker)
    target.refresh_from_db()
    assert job.status == JobStatus.BLOCKED
    reason = job.error_reason
    assert f"of which {3 * THUMBNAIL_TOKENS} for 3 thumbnails of prior decisions" in reason
    assert "3 prior decisions) plus 4506 reserved for the verdict" in reason
    assert "the Critic's context is 5000 tokens. Nothing was sent" in reason
    assert "fewer prior decisions" in job.next_action
    assert target.review_status == ReviewStatus.FAILED
    assert not CriticReview.objects.filter(image=target).exists()
