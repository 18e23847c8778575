"""Which GPU a new job goes to, as a pure function of plain values.

Rules, in order (each a tie-break of the one before):

1. **Fit.** Only GPUs whose active profile admits the job (its VRAM arithmetic and
   limits) and whose role runs its runtime (a Critic-only GPU never generates).
2. **Earliest predicted finish.** The job is added to each GPU's queue and that queue is
   forecast by the real scheduler (``jobs.eta.queue_forecast``): what is left of the
   running job, the jobs the scheduler would run first, and every swap on the way,
   the job's own included.
3. **Affinity.** Among GPUs that finish it within ``AFFINITY_SLACK_S`` of the earliest,
   the one where its runtime is already resident (no swap, its memory already warm).
4. **Ties**: the shorter queue, then the GPU's name, so that the same inputs always give
   the same answer.

The reason is in words for the designer: "gpu1: Critic already resident, done ~40 s
sooner than on gpu0".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from artcritic.jobs.eta import SwitchCost, queue_forecast
from artcritic.jobs.scheduler import PendingJob, SchedulerPolicy

# Finishing within this many seconds of the earliest counts as a tie that affinity breaks:
# forecasts are not better than a few seconds, and a resident runtime avoids a swap's risk.
AFFINITY_SLACK_S = 5.0
RUNTIME_WORDS = {"comfyui": "Artist", "critic": "Critic"}

PlacementRule = Literal["only", "earliest", "affinity", "tie"]


@dataclass(frozen=True)
class GpuOption:
    """One GPU as placement sees it: whether the job fits, and its queue for the ETA model."""

    name: str
    # Why this GPU cannot take the job (its profile's admission or role); "" when it can.
    refusal: str
    policy: SchedulerPolicy
    # The job's own run on this GPU (its profile's or learned durations).
    own_s: float
    pending: tuple[PendingJob, ...] = ()
    # The runtime in VRAM when the running job ends (None: nothing is resident).
    resident: str | None = None
    busy_for_s: float = 0.0
    switch: SwitchCost | None = None
    loaded: frozenset[str] = frozenset()
    started: frozenset[str] = frozenset()
    gap_s: float = 0.0
    # Reviews run this many at once (the Critic's max-num-seqs within its KV budget), and
    # the seconds left of those running now: a review joins a batch, not a line.
    review_seats: int = 1
    reviews_running_left: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.own_s) and self.own_s >= 0):
            raise ValueError(f"{self.name}: own_s must be a finite number ≥ 0, not {self.own_s}")
        if not (math.isfinite(self.busy_for_s) and self.busy_for_s >= 0):
            raise ValueError(
                f"{self.name}: busy_for_s must be a finite number ≥ 0, not {self.busy_for_s}"
            )


@dataclass(frozen=True)
class Placement:
    """The GPU chosen, its predicted finish (seconds from now), and why in words."""

    gpu: str
    finish_in_s: float
    rule: PlacementRule
    reason: str
    # Every fitting GPU's predicted finish, for the what-if planner and the tests.
    finishes: dict[str, float] = field(default_factory=dict)


class NoGpuFits(Exception):
    """No GPU can take the job; ``refusals`` says why for each, by name."""

    def __init__(self, refusals: dict[str, str]) -> None:
        self.refusals = refusals
        if refusals:
            detail = "; ".join(f"{name}: {why}" for name, why in sorted(refusals.items()))
        else:
            detail = "no GPU has an active profile and a running worker"
        super().__init__(f"No GPU can run this job ({detail}).")


def finish_on(job: PendingJob, option: GpuOption, *, now: float) -> float:
    """Seconds from now until ``job`` is done if it joins ``option``'s queue."""
    ids = {pending.id for pending in option.pending}
    if job.id in ids:
        raise ValueError(f"job {job.id} is already in {option.name}'s queue")
    mine = replace(job, expected_seconds=option.own_s)
    forecast = queue_forecast(
        (*option.pending, mine),
        resident=option.resident,
        now=now,
        policy=option.policy,
        busy_for_s=option.busy_for_s,
        switch=option.switch,
        loaded=option.loaded,
        started=option.started,
        gap_s=option.gap_s,
        review_seats=option.review_seats,
        reviews_running_left=option.reviews_running_left,
    )
    return next(eta.finish_in_s for eta in forecast if eta.job_id == job.id)


def place(job: PendingJob, options: Sequence[GpuOption], *, now: float) -> Placement:
    """The GPU ``job`` should run on (NoGpuFits when none can)."""
    names = [option.name for option in options]
    if len(set(names)) != len(names):
        raise ValueError(f"GPU names must be distinct, not {names}")
    fitting = [option for option in options if not option.refusal]
    if not fitting:
        raise NoGpuFits({option.name: option.refusal for option in options})
    finishes = {option.name: finish_on(job, option, now=now) for option in fitting}
    what = RUNTIME_WORDS.get(job.runtime, job.runtime)
    if len(fitting) == 1:
        only = fitting[0]
        others = "; ".join(f"{o.name}: {o.refusal}" for o in options if o.refusal)
        reason = f"{only.name}: the only GPU that can run it"
        return Placement(
            gpu=only.name,
            finish_in_s=finishes[only.name],
            rule="only",
            reason=f"{reason} ({others})" if others else reason,
            finishes=finishes,
        )
    earliest = min(finishes.values())
    close = [o for o in fitting if finishes[o.name] - earliest <= AFFINITY_SLACK_S]
    resident = [o for o in close if o.resident == job.runtime]
    pool = resident or close
    chosen = min(pool, key=lambda o: (finishes[o.name], len(o.pending), o.name))
    rest = [o for o in fitting if o is not chosen]
    runner_up = min(rest, key=lambda o: (finishes[o.name], o.name))
    ahead = finishes[runner_up.name] - finishes[chosen.name]
    here = f"{what} already resident" if chosen.resident == job.runtime else _state(chosen)
    # Affinity decided when it passed over a GPU that finishes about as soon but must swap.
    by_affinity = bool(resident) and len(resident) < len(close)
    rule: PlacementRule
    if ahead >= 1:
        rule = "affinity" if by_affinity else "earliest"
        reason = f"{chosen.name}: {here}, done ~{ahead:.0f} s sooner than on {runner_up.name}"
    elif by_affinity:
        rule = "affinity"
        reason = (
            f"{chosen.name}: {here}; {runner_up.name} would finish within "
            f"{abs(ahead):.0f} s of it but must swap to the {what}"
        )
    else:
        rule = "tie"
        reason = (
            f"{chosen.name}: {here}; same predicted finish as {runner_up.name} "
            f"(~{finishes[chosen.name]:.0f} s), shorter queue or first by name"
        )
    return Placement(
        gpu=chosen.name,
        finish_in_s=finishes[chosen.name],
        rule=rule,
        reason=reason,
        finishes=finishes,
    )


def _state(option: GpuOption) -> str:
    if not option.pending and option.busy_for_s == 0:
        return "idle"
    return f"{len(option.pending)} waiting"
