"""Through a real GPU worker: versions recorded, a sleeping Critic woken, lost work re-queued.

The simulated Critic reproduces vLLM 0.34.0 (its default): a sleep aborts a running
request (200, finish_reason abort), a dead engine answers a generic 500 with /health 503.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from artcritic.gpu.models import RuntimeState
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.jobs.runner import review_job_submit
from artcritic.sim.comfyui import DEFAULT_COMFYUI_VERSION as SIM_VERSION
from artcritic.studio.models import CriticReview, Image
from tests.jobs.test_pipeline_e2e import Stack, _stack, finished, phases, submit
from tests.workerproc import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(tmp_path, settings, s3_bucket) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    # Slow enough (0.15) that a review runs long enough to be slept in the middle.
    yield from _stack(tmp_path, settings, time_scale=0.15)


def _reviewed_once(stack: Stack) -> tuple[Job, Image]:
    """Generate one image and wait for its first review: the Critic is then warm and ready."""
    job = submit(count=1, steps=2, width=512, height=512)
    done = wait_until(lambda: finished(job.pk), 120, what="the generate job", log=stack.log)
    assert done.status == JobStatus.DONE, done.error_reason
    image = Image.objects.get(request=job.request)
    review = wait_until(
        lambda: Job.objects.filter(image=image, kind=JobKind.REVIEW, status=JobStatus.DONE).first(),
        120,
        what="the first review",
        log=stack.log,
    )
    return review, image


def _another_review(image: Image) -> Job:
    job = review_job_submit(image, submitted_by=None)
    gpu_kick(job.gpu)
    return job


def _critic(stack: Stack) -> str:
    return stack.profile.runtimes.critic.url


def test_every_job_and_review_records_the_runtime_version_it_ran_on(stack: Stack) -> None:
    review_job, image = _reviewed_once(stack)
    generate = Job.objects.get(request=image.request, kind=JobKind.GENERATE)
    assert generate.runtime_version == f"ComfyUI {SIM_VERSION}-sim"
    assert review_job.runtime_version == "vLLM 0.34.0+sim"
    review = CriticReview.objects.get(image=image)
    assert review.runtime_version == "vLLM 0.34.0+sim"
    versions = dict(
        RuntimeState.objects.filter(gpu=stack.gpu).values_list("runtime", "version")
    )
    assert versions == {"comfyui": f"ComfyUI {SIM_VERSION}-sim", "critic": "vLLM 0.34.0+sim"}


def test_a_critic_slept_behind_the_workers_back_is_woken_and_the_review_retried_visibly(
    stack: Stack,
) -> None:
    _first, image = _reviewed_once(stack)
    # Someone else sleeps the Critic; the worker's records still say it is ready.
    assert requests.post(_critic(stack) + "/sleep", params={"level": 1}, timeout=30).ok
    job = _another_review(image)
    done = wait_until(lambda: finished(job.pk), 120, what="the second review", log=stack.log)
    assert done.status == JobStatus.DONE, (done.error_reason, stack.log()[-3000:])
    assert done.attempt == 1  # woken and retried inside the same attempt
    history = phases(done)
    wake = history.index(("running", "starting", "critic"))
    assert ("running", "reviewing", "critic") in history[:wake]
    assert ("running", "reviewing", "critic") in history[wake:]
    starting = list(done.phases.filter(phase="starting").values_list("detail", flat=True))
    assert starting[0].startswith("waking the Critic, then retrying once: The Critic at ")
    assert "asleep or paused" in starting[0]
    assert "waking the Critic from sleep" in starting[1:]
    assert CriticReview.objects.filter(image=image).count() == 2


def test_a_review_aborted_by_a_sleep_is_re_queued_not_an_invalid_answer(stack: Stack) -> None:
    _first, image = _reviewed_once(stack)
    job = _another_review(image)
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, phase="reviewing").exists() or None,
        60,
        what="the review to start",
        log=stack.log,
    )
    # mode=abort (vLLM's default): the running request comes back 200, finish_reason abort.
    assert requests.post(_critic(stack) + "/sleep", params={"level": 1}, timeout=30).ok
    done = wait_until(lambda: finished(job.pk), 120, what="the re-queued review", log=stack.log)
    assert done.status == JobStatus.DONE, (done.error_reason, stack.log()[-3000:])
    assert done.attempt == 2
    statuses = [status for status, _phase, _runtime in phases(done)]
    assert "interrupted" in statuses
    interrupted = done.phases.get(status="interrupted").detail
    assert "finish_reason abort" in interrupted
    assert "put back in the queue (attempt 2 of 2)" in interrupted
    assert "rejected" not in interrupted
    assert CriticReview.objects.filter(image=image).count() == 2


def test_a_critic_whose_engine_died_while_idle_is_recreated_before_the_review(
    stack: Stack,
) -> None:
    _first, image = _reviewed_once(stack)
    fault = {"name": "engine_dead", "on": True}
    assert requests.post(_critic(stack) + "/_sim/fault", json=fault, timeout=10).ok
    assert requests.get(_critic(stack) + "/health", timeout=10).status_code == 503
    job = _another_review(image)
    done = wait_until(lambda: finished(job.pk), 180, what="the review", log=stack.log)
    assert done.status == JobStatus.DONE, (done.error_reason, stack.log()[-3000:])
    details = list(done.phases.filter(phase="releasing").values_list("detail", flat=True))
    assert "recreating critic: it does not pass its health check" in " ".join(details), details
    assert requests.get(_critic(stack) + "/health", timeout=10).status_code == 200


def test_an_engine_dying_during_the_review_re_queues_it_and_the_critic_is_recreated(
    stack: Stack,
) -> None:
    _first, image = _reviewed_once(stack)
    fault = {"name": "die_on_request", "on": True}
    assert requests.post(_critic(stack) + "/_sim/fault", json=fault, timeout=10).ok
    job = _another_review(image)
    done = wait_until(lambda: finished(job.pk), 180, what="the review", log=stack.log)
    assert done.status == JobStatus.DONE, (done.error_reason, stack.log()[-3000:])
    assert done.attempt == 2
    interrupted = done.phases.get(status="interrupted").detail
    # vLLM 0.34 says only "The server had an error…"; GET /health 503 tells the engine died.
    assert "engine is dead" in interrupted
    assert "The server had an error while processing your request." in interrupted
    assert "put back in the queue (attempt 2 of 2)" in interrupted
    details = list(done.phases.filter(phase="releasing").values_list("detail", flat=True))
    assert "recreating critic: it is unhealthy" in " ".join(details), details
    assert CriticReview.objects.filter(image=image).count() == 2
