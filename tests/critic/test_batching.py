"""How many reviews go to the Critic at once, and which waiting reviews join them."""

from __future__ import annotations

import pytest
from django.db import connections, transaction

from artcritic.critic.batching import gpu_share, reviews_in_flight, reviews_in_flight_for
from artcritic.gpu.profiles import Profile
from artcritic.jobs.lifecycle import job_claim_reviews
from artcritic.jobs.models import Job, JobKind, JobStatus
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import image_make, job_make
from tests.workerproc import gpu_install, sim_profile


@pytest.mark.parametrize(
    ("seqs", "kv", "per_review", "expected"),
    [
        (4, 74_986, 8192, 4),  # sim-32gb: the KV cache holds 9 full-length reviews
        (8, 20_000, 8192, 2),  # the KV cache, not max-num-seqs, limits
        (4, 4_000, 8192, 1),  # not even one full-length review fits: still one at a time
        (1, 10**9, 8192, 1),
    ],
)
def test_reviews_in_flight_is_the_smaller_of_seats_and_kv_room(
    seqs: int, kv: int, per_review: int, expected: int
) -> None:
    assert reviews_in_flight(max_num_seqs=seqs, kv_tokens=kv, tokens_per_review=per_review) == (
        expected
    )


@pytest.mark.parametrize(("seqs", "kv", "per_review"), [(0, 1, 1), (1, -1, 1), (1, 1, 0)])
def test_impossible_figures_are_refused(seqs: int, kv: int, per_review: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        reviews_in_flight(max_num_seqs=seqs, kv_tokens=kv, tokens_per_review=per_review)


def test_the_shipped_simulated_profile_sends_max_num_seqs_at_once() -> None:
    profile = sim_profile()
    assert reviews_in_flight_for(profile) == profile.runtimes.critic.max_num_seqs == 4


@pytest.fixture
def gpu_profile(db: None) -> Profile:
    profile_load()
    profile = sim_profile()
    gpu_install("sim0", profile)
    return profile


def waiting_reviews(n: int, **fields: object) -> list[Job]:
    request = request_make(prompt_make(project_make()), count=n)
    return [
        job_make(image=image_make(request, index=i), status=JobStatus.ADMITTED, **fields)
        for i in range(n)
    ]


@pytest.mark.django_db
def test_claiming_takes_waiting_reviews_only_up_to_the_limit_oldest_first(
    gpu_profile: Profile,
) -> None:
    reviews = waiting_reviews(5)
    job_make(request_make(prompt_make(project_make())), status=JobStatus.ADMITTED)
    claimed = job_claim_reviews("sim0", worker="w1", profile=gpu_profile, limit=3)
    assert claimed == [j.pk for j in reviews[:3]]
    rows = Job.objects.filter(pk__in=claimed)
    assert {(j.status, j.lease_owner, j.kind) for j in rows} == {
        (JobStatus.RUNNING, "w1", JobKind.REVIEW)
    }
    assert job_claim_reviews("sim0", worker="w1", profile=gpu_profile, limit=0) == []


@pytest.mark.django_db
def test_a_refill_waits_while_another_kind_of_job_waits(gpu_profile: Profile) -> None:
    waiting_reviews(2)
    job_make(request_make(prompt_make(project_make())), status=JobStatus.ADMITTED)
    assert (
        job_claim_reviews("sim0", worker="w1", profile=gpu_profile, limit=2, unless_others=True)
        == []
    )
    assert len(job_claim_reviews("sim0", worker="w1", profile=gpu_profile, limit=2)) == 2


@pytest.mark.django_db
def test_cancelled_other_gpus_and_a_replaced_profile_are_never_claimed(
    gpu_profile: Profile,
) -> None:
    waiting_reviews(1, cancel_requested=True)
    waiting_reviews(1, gpu="other")
    assert job_claim_reviews("sim0", worker="w1", profile=gpu_profile, limit=4) == []
    waiting_reviews(1)
    stale = Profile.model_validate({**gpu_profile.model_dump(mode="json"), "name": "old-one"})
    assert job_claim_reviews("sim0", worker="w1", profile=stale, limit=4) == []


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_never_share_a_review(gpu_profile: Profile) -> None:
    reviews = waiting_reviews(4)
    with transaction.atomic():
        # The first worker's claim holds its rows locked; the second skips them.
        first = job_claim_reviews("sim0", worker="w1", profile=gpu_profile, limit=2)
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM jobs_job WHERE status = 'admitted' AND kind = 'review' "
                    "ORDER BY id FOR UPDATE SKIP LOCKED"
                )
                free = [row[0] for row in cursor.fetchall()]
        finally:
            other.close()
    assert first == [j.pk for j in reviews[:2]]
    assert free == [j.pk for j in reviews[2:]]


# ---- a batched review's share of the GPU (energy, GPU-seconds and the host's draw) ----


@pytest.mark.parametrize(
    ("timeline", "since", "until", "expected"),
    [
        ([], 0.0, 10.0, 1.0),  # a job alone (no review counted): all of it
        ([(0.0, 1)], 0.0, 10.0, 1.0),
        ([(0.0, 4)], 0.0, 10.0, 0.25),  # four at once the whole time
        ([(0.0, 1), (5.0, 2)], 0.0, 10.0, 0.75),  # alone 5 s, then shared by two 5 s
        ([(2.0, 2)], 0.0, 4.0, 0.75),  # alone while the Critic was made ready, then two
        ([(0.0, 4), (1.0, 0)], 0.0, 2.0, 0.625),  # four for 1 s, then nobody counted
        ([(0.0, 3)], 5.0, 5.0, 1.0),  # a span of no length
    ],
)
def test_gpu_share_is_the_time_weighted_mean_of_one_over_the_reviews_running(
    timeline: list[tuple[float, int]], since: float, until: float, expected: float
) -> None:
    assert gpu_share(timeline, since, until) == pytest.approx(expected)
