"""Measured truth end to end: a real GPU worker on the simulators learns its durations.

After a few rounds of history the ETAs stored at admission hold within the goal; every
job carries its energy (the simulated card's counter), peak VRAM, GPU and swap seconds
and cost; a card without an energy counter says so; and /metrics agrees with the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from artcritic.jobs.accounting import eta_errors, nearest_rank
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.sim.gpu import SimGpu
from artcritic.studio.models import CriticReview, Image
from tests.jobs.e2e import Stack, all_done, stack_run, submit
from tests.workerproc import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-metrics-token-0123456789"
ROUND = {"count": 2, "steps": 12, "seed_policy": "fixed", "width": 768, "height": 768}


@pytest.fixture
def stack(tmp_path: Path, settings: Any, s3_bucket: str) -> Iterator[Stack]:
    settings.ARTCRITIC_METRICS_TOKEN = TOKEN
    # A slower scale than the other e2e tests: the figures compare with runtime work.
    yield from stack_run(tmp_path, settings, time_scale=0.2)


def one_round(stack: Stack, **changes: object) -> list[Job]:
    """Submit a request, wait for it and its reviews; the jobs of the round."""
    job = submit(stack, **{**ROUND, **changes})
    wait_until(lambda: all_done(stack.project), 120, what="the round", log=stack.log)
    review_ids = Image.objects.filter(job=job).values_list("review_jobs", flat=True)
    return [Job.objects.get(pk=job.pk), *Job.objects.filter(pk__in=list(review_ids)).order_by("pk")]


def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_after_a_few_rounds_the_etas_hold_and_every_job_is_measured_and_priced(
    stack: Stack,
) -> None:
    for _ in range(4):  # history: a cold start, then warm swaps both ways
        one_round(stack)
    measured = one_round(stack) + one_round(stack)
    assert all(job.status == JobStatus.DONE for job in measured), stack.log()[-3000:]

    # The ETAs: predicted at admission from measured runs, within the goal.
    assert all(job.predicted_samples for job in measured)
    _seconds, percents = eta_errors(
        [
            {
                "finished_at": job.finished_at,
                "predicted_finish_at": job.predicted_finish_at,
                "admitted_at": job.admitted_at,
            }
            for job in measured
        ]
    )
    assert len(percents) == len(measured) == 6
    assert nearest_rank(percents, 0.9) <= 15.0, sorted(percents)

    # Every job: energy from the simulated card's counter, peak VRAM, seconds and cost.
    for job in measured:
        assert (job.energy_joules or 0) > 0, job
        assert (job.vram_peak_bytes or 0) > 10**9, job
        assert (job.gpu_seconds or 0) > 0, job
        assert job.swap_seconds is not None, job
        assert (job.cost or 0) > 0, job
        assert job.cost_currency == "EUR"
    generation, reviews = measured[0], measured[1:3]
    assert (generation.swap_seconds or 0) > 0  # the Critic was released for it
    # The round's reviews run together: the one that readied the Critic carries the swap
    # (ComfyUI released for it), whichever the scheduler picked first; the other none.
    carried = sorted((review.swap_seconds or 0) > 0 for review in reviews)
    assert carried == [False, True], [review.swap_seconds for review in reviews]

    # /metrics agrees with the database.
    found = scraped()
    gpu = stack.gpu.name
    images = Image.objects.filter(job__gpu=gpu).count()
    assert found[("artcritic_images_total", (("gpu", gpu),))] == images == 12
    approve = CriticReview.objects.filter(job__gpu=gpu, verdict="approve").count()
    reject = CriticReview.objects.filter(job__gpu=gpu, verdict="reject").count()
    assert approve + reject == 12
    for verdict, count in (("approve", approve), ("reject", reject)):
        if count:
            key = ("artcritic_reviews_total", (("gpu", gpu), ("verdict", verdict)))
            assert found[key] == count
    for kind, count in ((JobKind.GENERATE, 6), (JobKind.REVIEW, 12)):
        key = ("artcritic_jobs_finished_total", (("gpu", gpu), ("kind", kind), ("status", "done")))
        assert found[key] == count == Job.objects.filter(gpu=gpu, kind=kind).count()
    swaps = Job.objects.filter(gpu=gpu).values_list("swap_seconds", flat=True)
    assert found[("artcritic_swap_seconds_total", (("gpu", gpu),))] == pytest.approx(
        sum(s or 0 for s in swaps)
    )
    assert found[("artcritic_eta_jobs_measured", (("gpu", gpu),))] == 18
    assert found[("artcritic_gpu_energy_joules_total", (("gpu", gpu),))] > 0

    # The page says where the estimates come from.
    waiting = submit(stack, **ROUND)
    client = Client()
    client.force_login(stack.owner)
    html = client.get(f"/projects/{stack.project.pk}/queue/").content.decode()
    assert "(estimate from the last" in html, html
    wait_until(lambda: all_done(stack.project), 120, what="the last round", log=stack.log)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.DONE

    # A card without an energy counter: not reported, never 0.
    SimGpu(gpu, root=stack.sim_dir).energy_counter_set(False)
    (blind, *_reviews) = one_round(stack, count=1)
    assert blind.energy_joules is None
    assert blind.vram_peak_bytes is not None
    assert blind.cost is not None  # the card and the host are still priced
    # Finished requests are the history's (reviews folded in), not the queue's.
    html = client.get(f"/projects/{stack.project.pk}/jobs/").content.decode()
    assert "energy not reported by this GPU" in html
