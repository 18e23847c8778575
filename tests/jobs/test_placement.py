"""The pure placement function: fit, earliest predicted finish, affinity, ties, bad input."""

from __future__ import annotations

import math

import pytest

from artcritic.jobs.placement import AFFINITY_SLACK_S, GpuOption, NoGpuFits, finish_on, place
from artcritic.jobs.scheduler import PendingJob, SchedulerPolicy

SWAP = 30.0  # release + return, either way
COLD = 50.0
POLICY = SchedulerPolicy(
    max_wait_s=600.0,
    swap_cost_s={
        (None, "comfyui"): COLD,
        (None, "critic"): COLD,
        ("comfyui", "critic"): SWAP,
        ("critic", "comfyui"): SWAP,
    },
    exclusive=True,
    cold_switch_s=COLD,
)
NOW = 1_000_000.0


def job(job_id: int, runtime: str = "critic", seconds: float = 4.0, **kw: object) -> PendingJob:
    values: dict[str, object] = {
        "id": job_id,
        "runtime": runtime,
        "kind": "review" if runtime == "critic" else "generate",
        "project_id": 1,
        "priority": 0,
        "interactive": False,
        "enqueued_at": NOW,
        "expected_seconds": seconds,
    }
    values.update(kw)
    return PendingJob(**values)  # type: ignore[arg-type]


def option(name: str, **kw: object) -> GpuOption:
    values: dict[str, object] = {"name": name, "refusal": "", "policy": POLICY, "own_s": 4.0}
    values.update(kw)
    return GpuOption(**values)  # type: ignore[arg-type]


def test_only_fitting_gpu_is_chosen_and_the_others_refusals_are_named() -> None:
    chosen = place(
        job(99),
        [
            option("gpu0", refusal="needs 40.1 GB of 30.5 GB usable"),
            option("gpu1", resident="comfyui", busy_for_s=500.0),
        ],
        now=NOW,
    )
    assert chosen.gpu == "gpu1"
    assert chosen.rule == "only"
    assert "gpu0: needs 40.1 GB of 30.5 GB usable" in chosen.reason
    # Its finish: the running job's 500 s, a swap to the Critic, then its own 4 s.
    assert chosen.finish_in_s == pytest.approx(500.0 + SWAP + 4.0)
    assert set(chosen.finishes) == {"gpu1"}


def test_no_gpu_fits_names_every_refusal() -> None:
    with pytest.raises(NoGpuFits) as caught:
        place(
            job(1, "comfyui"),
            [option("gpu0", refusal="Critic-only GPU"), option("gpu1", refusal="too big")],
            now=NOW,
        )
    assert caught.value.refusals == {"gpu0": "Critic-only GPU", "gpu1": "too big"}
    assert "gpu0: Critic-only GPU; gpu1: too big" in str(caught.value)
    with pytest.raises(NoGpuFits, match="no GPU has an active profile"):
        place(job(1), [], now=NOW)


def test_earliest_finish_wins_with_swap_costs_counted() -> None:
    # gpu0 is idle but must cold-start the Critic (50 s); gpu1 has the Critic resident and
    # three 4 s reviews ahead (12 s): gpu1 is done 38 s sooner.
    queue = tuple(job(i) for i in range(1, 4))
    chosen = place(
        job(99),
        [option("gpu0"), option("gpu1", resident="critic", pending=queue)],
        now=NOW,
    )
    assert chosen.finishes == {
        "gpu0": pytest.approx(COLD + 4.0),
        "gpu1": pytest.approx(3 * 4.0 + 4.0),
    }
    assert chosen.gpu == "gpu1"
    assert chosen.rule == "earliest"
    assert chosen.reason == "gpu1: Critic already resident, done ~38 s sooner than on gpu0"


def test_a_long_queue_loses_to_a_swap() -> None:
    # gpu1 has the Critic resident but 20 reviews ahead (80 s); gpu0 swaps (30 s) and runs it.
    queue = tuple(job(i) for i in range(1, 21))
    chosen = place(
        job(99),
        [option("gpu0", resident="comfyui"), option("gpu1", resident="critic", pending=queue)],
        now=NOW,
    )
    assert chosen.gpu == "gpu0"
    assert chosen.finish_in_s == pytest.approx(SWAP + 4.0)
    assert chosen.reason == "gpu0: idle, done ~50 s sooner than on gpu1"


def test_the_scheduler_order_counts_not_the_queue_length() -> None:
    # A priority job ahead on gpu0 runs first; on gpu1 the new job outranks the queue.
    mine = job(99, priority=5)
    gpu0 = option("gpu0", resident="critic", pending=(job(1, priority=9, seconds=100.0),))
    gpu1 = option("gpu1", resident="critic", pending=(job(2, seconds=100.0), job(3, seconds=100.0)))
    assert finish_on(mine, gpu0, now=NOW) == pytest.approx(104.0)
    assert finish_on(mine, gpu1, now=NOW) == pytest.approx(4.0)
    assert place(mine, [gpu0, gpu1], now=NOW).gpu == "gpu1"


def test_affinity_breaks_a_near_tie_toward_the_resident_runtime() -> None:
    # gpu0 finishes 3 s sooner (within the slack) but must swap; gpu1 has the Critic resident.
    gpu0 = option("gpu0", resident="comfyui", busy_for_s=0.0, own_s=4.0)
    gpu1 = option("gpu1", resident="critic", busy_for_s=SWAP + 3.0, own_s=4.0)
    assert AFFINITY_SLACK_S >= 3.0
    chosen = place(job(99), [gpu0, gpu1], now=NOW)
    assert chosen.gpu == "gpu1"
    assert chosen.rule == "affinity"
    assert "gpu1: Critic already resident" in chosen.reason
    assert "must swap to the Critic" in chosen.reason


def test_affinity_does_not_override_a_clearly_earlier_gpu() -> None:
    gpu0 = option("gpu0", resident="comfyui")
    gpu1 = option("gpu1", resident="critic", busy_for_s=SWAP + AFFINITY_SLACK_S + 10)
    assert place(job(99), [gpu0, gpu1], now=NOW).gpu == "gpu0"


def test_ties_go_to_the_shorter_queue_then_the_name() -> None:
    # Same finish on both; gpu1's queue is empty while gpu0 has a 0 s job ahead.
    zero = job(1, seconds=0.0)
    gpu0 = option("gpu0", resident="critic", pending=(zero,))
    gpu1 = option("gpu1", resident="critic")
    chosen = place(job(99), [gpu0, gpu1], now=NOW)
    assert (chosen.gpu, chosen.rule) == ("gpu1", "tie")
    assert "same predicted finish as gpu0" in chosen.reason
    # Identical GPUs: the first by name, whatever order they come in.
    twins = [option("gpu-b", resident="critic"), option("gpu-a", resident="critic")]
    assert place(job(99), twins, now=NOW).gpu == "gpu-a"
    assert place(job(99), list(reversed(twins)), now=NOW).gpu == "gpu-a"


def test_own_duration_differs_per_gpu() -> None:
    # A faster card (same queue) finishes a generation sooner.
    slow = option("slow", resident="comfyui", own_s=60.0)
    fast = option("fast", resident="comfyui", own_s=20.0)
    chosen = place(job(99, "comfyui", 60.0), [slow, fast], now=NOW)
    assert chosen.gpu == "fast"
    assert chosen.reason == "fast: Artist already resident, done ~40 s sooner than on slow"


@pytest.mark.parametrize(
    ("field", "value"),
    [("own_s", -1.0), ("own_s", math.nan), ("busy_for_s", math.inf), ("busy_for_s", -0.5)],
)
def test_bad_numbers_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        option("gpu0", **{field: value})


def test_duplicate_names_and_a_job_already_queued_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        place(job(99), [option("gpu0"), option("gpu0")], now=NOW)
    with pytest.raises(ValueError, match="already in gpu0's queue"):
        place(job(1), [option("gpu0", pending=(job(1),))], now=NOW)


def test_hostile_names_are_carried_verbatim_not_interpreted() -> None:
    name = "<script>alert(1)</script>"
    chosen = place(job(99), [option(name)], now=NOW)
    assert chosen.gpu == name
    assert chosen.reason.startswith(name + ": the only GPU")


def test_a_review_joins_a_batch_where_the_critic_has_free_seats() -> None:
    """Three reviews queued on each GPU, the Critic resident on both: on the GPU that runs
    four at once the new review finishes with the first three, not behind them."""
    queued = tuple(job(n, seconds=10.0) for n in (1, 2, 3))
    serial = option("gpu0", resident="critic", pending=queued, own_s=10.0)
    seated = option(
        "gpu1", resident="critic", pending=queued, own_s=10.0, review_seats=4,
    )
    assert finish_on(job(99), serial, now=NOW) == pytest.approx(40.0)
    assert finish_on(job(99), seated, now=NOW) == pytest.approx(10.0)
    chosen = place(job(99), [serial, seated], now=NOW)
    assert chosen.gpu == "gpu1"
    assert chosen.finishes == {"gpu0": pytest.approx(40.0), "gpu1": pytest.approx(10.0)}
