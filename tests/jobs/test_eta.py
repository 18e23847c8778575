"""ETAs replay the scheduler over what is pending: in order, with every swap, grouped for the UI."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artcritic.gpu.admission import RequestSettings
from artcritic.gpu.profiles import profile_read
from artcritic.jobs.eta import (
    AheadGroup,
    duration_words,
    eta_seconds,
    generation_seconds,
    job_eta,
    queue_forecast,
    review_seconds,
)
from artcritic.jobs.scheduler import PendingJob, SchedulerPolicy, policy_from_profile

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FAST = settings(max_examples=250, deadline=None)
RTX5090_PROFILE = profile_read(PROFILES / "rtx5090-32gb.toml")[0]
RTX5090 = policy_from_profile(RTX5090_PROFILE)


def job(
    id: int, runtime: str, *, at: float = 0.0, seconds: float = 10.0, project: int = 1
) -> PendingJob:
    kind = "generate" if runtime == "comfyui" else "review"
    return PendingJob(id, runtime, kind, project, 0, False, at, seconds)


def test_a_flux_fp8_batch_of_4_at_1024_square_takes_about_47_seconds_on_the_5090() -> None:
    request = RequestSettings(
        model_mode="flux-dev-fp8",
        width=1024,
        height=1024,
        steps=20,
        cfg=1.0,
        sampler="euler",
        scheduler="simple",
        lora=None,
        lora_strength=1.0,
        seed_policy="fixed",
        count=4,
    )
    # 0.55 s per step per megapixel × 1.048576 MP × 20 steps × 4 images + 4 uploads × 0.2 s
    assert generation_seconds(RTX5090_PROFILE, request) == pytest.approx(46.94, abs=0.01)
    assert review_seconds(RTX5090_PROFILE) == 4.0


def test_a_review_behind_three_others_and_a_running_generation_waits_for_one_swap() -> None:
    pending = [job(i, "critic", at=i, seconds=4.0, project=7) for i in (1, 2, 3, 4)]
    eta = job_eta(4, pending, resident="comfyui", now=10.0, policy=RTX5090, busy_for_s=30.0)
    # 30 s left of the generation, the swap to the Critic (3 s /free + 4 s wake), 3 reviews.
    assert eta.start_in_s == 30 + 7 + 3 * 4
    assert eta.finish_in_s == eta.start_in_s + 4
    assert eta.jobs_ahead == 3
    assert eta.swaps == 1
    assert eta.ahead == (AheadGroup(kind="review", project_id=7, count=3, seconds=7 + 12),)


def test_the_forecast_groups_what_is_ahead_by_kind_and_project() -> None:
    pending = [
        job(1, "comfyui", at=0, seconds=40.0, project=1),
        job(2, "critic", at=1, seconds=4.0, project=1),
        job(3, "critic", at=2, seconds=4.0, project=2),
        job(4, "comfyui", at=3, seconds=40.0, project=2),
    ]
    forecast = queue_forecast(pending, resident="comfyui", now=3.0, policy=RTX5090)
    assert [eta.job_id for eta in forecast] == [1, 4, 2, 3]
    assert forecast[-1].ahead == (
        AheadGroup("generate", 1, 1, 40.0),
        AheadGroup("generate", 2, 1, 40.0),
        AheadGroup("review", 1, 1, 7 + 4.0),
    )


def test_a_job_that_is_not_pending_has_no_eta() -> None:
    with pytest.raises(KeyError):
        job_eta(99, [job(1, "critic")], resident=None, now=0.0, policy=RTX5090)


def test_a_negative_time_left_on_the_running_job_is_refused() -> None:
    with pytest.raises(ValueError, match="busy_for_s"):
        queue_forecast([], resident=None, now=0.0, policy=RTX5090, busy_for_s=-1.0)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "under a minute"),
        (44.9, "under a minute"),
        (45, "about 1 min"),
        (89, "about 1 min"),
        (91, "about 2 min"),
        (59 * 60, "about 59 min"),
        (59.6 * 60, "about 1 h"),
        (80 * 60, "about 1 h 20 min"),
        (125 * 60, "about 2 h 5 min"),
    ],
)
def test_durations_read_as_a_person_says_them(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_a_duration_that_is_not_a_time_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        duration_words(seconds)


# --- properties of the forecast -------------------------------------------------------------


def pending_sets() -> st.SearchStrategy[list[PendingJob]]:
    one = st.tuples(
        st.sampled_from(["comfyui", "critic"]),
        st.integers(min_value=1, max_value=3),
        st.sampled_from([0, 0, 1]),
        st.booleans(),
        st.integers(min_value=0, max_value=600),
        st.sampled_from([0.5, 4.0, 47.0, 150.0]),
    )

    def build(rows: list[tuple[str, int, int, bool, int, float]]) -> list[PendingJob]:
        return [
            PendingJob(
                index + 1,
                runtime,
                "generate" if runtime == "comfyui" else "review",
                project,
                priority,
                interactive,
                float(at),
                seconds,
            )
            for index, (runtime, project, priority, interactive, at, seconds) in enumerate(rows)
        ]

    return st.lists(one, min_size=1, max_size=25).map(build)


policies = st.sampled_from(
    [
        RTX5090,
        policy_from_profile(RTX5090_PROFILE, max_wait_s=30.0),
        policy_from_profile(profile_read(PROFILES / "rtx-pro-6000-96gb.toml")[0]),
    ]
)
residents = st.sampled_from([None, "comfyui", "critic"])
busy = st.sampled_from([0.0, 12.5, 90.0])


@FAST
@given(pending=pending_sets(), policy=policies, resident=residents, busy_for_s=busy)
def test_the_forecast_keeps_the_gpu_busy_back_to_back_and_covers_every_job(
    pending: list[PendingJob], policy: SchedulerPolicy, resident: str | None, busy_for_s: float
) -> None:
    forecast = queue_forecast(
        pending, resident=resident, now=600.0, policy=policy, busy_for_s=busy_for_s
    )
    assert sorted(eta.job_id for eta in forecast) == sorted(j.id for j in pending)
    assert forecast[0].start_in_s == busy_for_s
    for before, after in itertools.pairwise(forecast):
        assert after.start_in_s == pytest.approx(before.finish_in_s)
    for index, eta in enumerate(forecast):
        assert eta.jobs_ahead == index == sum(group.count for group in eta.ahead)
        assert sum(group.seconds for group in eta.ahead) == pytest.approx(
            eta.start_in_s - busy_for_s
        )


@FAST
@given(pending=pending_sets(), policy=policies, resident=residents, busy_for_s=busy)
def test_each_forecast_eta_is_the_arithmetic_of_the_jobs_ahead_of_it(
    pending: list[PendingJob], policy: SchedulerPolicy, resident: str | None, busy_for_s: float
) -> None:
    by_id = {j.id: j for j in pending}
    forecast = queue_forecast(
        pending, resident=resident, now=600.0, policy=policy, busy_for_s=busy_for_s
    )
    order = [by_id[eta.job_id] for eta in forecast]
    for index, eta in enumerate(forecast):
        assert eta.finish_in_s == pytest.approx(
            eta_seconds(
                order[index],
                queue_ahead=order[:index],
                resident=resident,
                policy=policy,
                busy_for_s=busy_for_s,
            )
        )


@FAST
@given(pending=pending_sets(), resident=residents)
def test_swaps_in_the_forecast_count_each_change_of_runtime_on_an_exclusive_gpu(
    pending: list[PendingJob], resident: str | None
) -> None:
    by_id = {j.id: j for j in pending}
    forecast = queue_forecast(pending, resident=resident, now=600.0, policy=RTX5090)
    runtimes = [resident] + [by_id[eta.job_id].runtime for eta in forecast]
    changes = 0
    for eta, (before, after) in zip(forecast, itertools.pairwise(runtimes), strict=True):
        changes += before is not None and before != after
        assert eta.swaps == changes


# ---- reviews batched on the Critic (jobs.review_batch) ----


def test_reviews_in_a_row_share_the_critics_seats_and_the_next_job_waits_for_the_last() -> None:
    pending = [job(i, "critic", at=i, seconds=4.0) for i in (1, 2, 3, 4, 5)]
    pending.append(job(6, "comfyui", at=9, seconds=10.0))
    etas = {
        e.job_id: e
        for e in queue_forecast(
            pending, resident="critic", now=10.0, policy=RTX5090, review_seats=2
        )
    }
    # Two seats: 1 and 2 at 0 s, 3 when the first frees (4 s), 4 at 4 s, 5 at 8 s.
    assert [(etas[i].start_in_s, etas[i].finish_in_s) for i in (1, 2, 3, 4, 5)] == [
        (0, 4), (0, 4), (4, 8), (4, 8), (8, 12),
    ]  # fmt: skip
    # The generation waits for the last review, then for the swap to ComfyUI.
    assert etas[6].start_in_s == 12


def test_waiting_reviews_join_when_the_first_running_review_ends() -> None:
    pending = [job(i, "critic", at=i, seconds=4.0) for i in (1, 2)]
    etas = queue_forecast(
        pending,
        resident="critic",
        now=0.0,
        policy=RTX5090,
        busy_for_s=3.0,
        review_seats=4,
        reviews_running_left=(3.0, 1.0),
    )
    assert [(e.start_in_s, e.finish_in_s) for e in etas] == [(1.0, 5.0), (1.0, 5.0)]


def test_one_seat_is_the_serial_forecast_and_no_seat_is_refused() -> None:
    pending = [job(i, "critic", at=i, seconds=4.0) for i in (1, 2, 3)]
    serial = queue_forecast(pending, resident="critic", now=0.0, policy=RTX5090)
    assert (
        queue_forecast(pending, resident="critic", now=0.0, policy=RTX5090, review_seats=1)
        == serial
    )
    assert [e.finish_in_s for e in serial] == [4, 8, 12]
    with pytest.raises(ValueError, match="review_seats"):
        queue_forecast(pending, resident="critic", now=0.0, policy=RTX5090, review_seats=0)
