"""Scheduling benchmark: the real scheduler against FIFO and a lower bound, on simulated time.

What runs. A seeded studio workload (``bench/workloads.py``): 3 projects each submit 6
generation batches (1–4 images, FLUX.1-dev fp8 or SDXL at 1024², the model's default
steps) at random times over 20 minutes, plus 6 interactive single images; a request of
one image is interactive, as in ``job_submit_generation``. Every generation of n images
enqueues n reviews when it finishes, so reviews pile up while generations keep arriving.
Job run times are the worker's own arithmetic (``eta.generation_seconds``,
``eta.review_seconds``). The GPU starts cold: nothing resident.

How it runs. A deterministic discrete-event simulation on a virtual clock. At each
decision point (the GPU is free and something is pending) the real ``schedule_next`` is
called with the real pending set, the resident runtime and the clock; the chosen job
then runs, never pre-empted, for its switch time plus its own run. Switch times come
from ``SimCoordinator`` (``bench/workloads.py``), which applies the ensure/release rules
of ``jobs.coordinator.Coordinator`` to the profile's durations: release every exclusive
resident runtime by its strategy (ComfyUI ``/free`` → ``comfyui_free``; vLLM sleep →
``critic_sleep``; stop → ``critic_stop``, and for ComfyUI ``comfyui_free`` because the
schema has no stop figure, as in the scheduler), then keep, wake or cold-start the
wanted one (after ``/free`` ComfyUI reloads and warms on first use; sleep level 1 wakes
in ``critic_wake``, level 2 also reloads; stopped or never started means start + load +
warm). The real ``Coordinator`` is not driven: it persists state through the ORM, talks
HTTP to the runtimes and polls NVML with real sleeps. That is also why the clock is
virtual rather than a small ``ARTCRITIC_SIM_TIME_SCALE``: timing real runs at a tiny
scale would count Python, HTTP and database overhead as GPU time. The virtual clock is
that time scale taken to its limit: no real sleeping, the same figures on every
machine, done in well under a second.

Two release strategies, each a variant of the base profile (``--profile``, default
rtx5090-32gb, the real card's figures): "free+sleep" (ComfyUI ``/free``, the Critic
at vLLM sleep level 1) and "stop/start" (both stopped and cold-started). The scheduler's
policy and swap-cost table come from ``policy_from_profile`` on that variant.

Compared with:

* FIFO: the same generation arrivals, run strictly in enqueue order (ties by id) on the
  same coordinator. Reviews are enqueued when their generation finishes under FIFO, so
  their enqueue times follow FIFO's own schedule.
* A lower bound on the makespan of any order of the same jobs on the same coordinator.
  Makespan is measured from the first arrival to the last finish. Two arguments:
  (1) Work. Nothing can start before the first arrival, and the first job is a
  generation (reviews do not exist yet), so ComfyUI's cold start is paid. Every
  generation has reviews and a review needs its images, so at least one ComfyUI→Critic
  switch follows; the first one also cold-starts the Critic (it was never started).
  That one switch is the fewest swaps any order needs: all generations first, then all
  reviews. Bound: all compute + ComfyUI cold start + that first switch.
  (2) Tail, the critical path generalised. For each arrival time a: the generations
  arriving at or after a, and their reviews, all run after a, and after the last of
  those generations at least one ComfyUI→Critic switch is needed, costing at least the
  steady-state switch (``/free`` + wake, or free + cold start under stop/start).
  Bound: a − first arrival + their compute + that switch. The last arrival's case is
  "last arrival + its generation + its reviews".
  The bound is the larger of (1) and the largest (2). It ignores the wait bound: an order
  that amortises everything into one swap would let jobs wait for most of the run.

Reported per strategy: ``makespan_over_lower_bound`` (goal ≤ 1.15),
``fifo_over_makespan`` (> 1 means FIFO is slower), ``swaps`` (runtime changes; the first
cold start is not a swap) against ``fifo_swaps`` (goal: fewer), ``max_wait_s``, the
longest any job waited from enqueue until the scheduler picked it (the scheduler's own
definition; its swap is part of its run), ``wait_bound_s`` = the headline
``wait_bound_s(policy, every job of the run)``: max_wait_s + longest expected run + the
table's costliest switch, the bound of a job that finds nothing queued when it ages, and
``bound_misses``: jobs that waited past their own bound, ``wait_bound_s`` with the jobs
the rules let ahead of it once it aged (``ahead_once_aged``: its backlog then, and later
singles). Goal: none.

The sweep (issue 15). The studio day is one shape; overload is where the aging rule
decides the order, so ``bench/workloads.py`` ships four more: ``burst`` (the same
requests within 2 minutes), ``many-projects`` (3 projects queue 8 batches each at once, a
single every 45 s), ``interactive-heavy`` (40 singles and 8 batches in 15 minutes) and
``big-batch+singles`` (200 images as 50 requests of 4 at once, 20 singles while they
run). Each runs at seeds 1..12 (``--seeds``) under both strategies; the table and the
JSON's ``shapes`` give each shape's worst seed (makespan / lower bound, goal ≤ 1.10), FIFO's
worst, the swaps at that seed, the longest wait beside the bound that job was shown, the
jobs over their bound (goal: none) and the longest wait of an interactive single.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: `python bench/scheduling.py`
    sys.path.insert(0, str(ROOT))

from artcritic.gpu.profiles import Profile  # noqa: E402
from artcritic.jobs.eta import review_seconds  # noqa: E402
from artcritic.jobs.scheduler import (  # noqa: E402
    RUNTIMES,
    Decision,
    PendingJob,
    SchedulerPolicy,
    ahead_once_aged,
    policy_from_profile,
    schedule_next,
    wait_bound_s,
)
from bench.workloads import (  # noqa: E402
    SHAPES,
    STRATEGIES,
    SimCoordinator,
    Strategy,
    Submission,
    WorkloadShape,
    profile_load,
    profile_with_release,
    workload_build,
)

SEED = 202407
DEFAULT_PROFILE = "rtx5090-32gb"
MAKESPAN_GOAL = 1.15  # makespan within this factor of the lower bound
EPSILON = 1e-6  # float sums of seconds

Chooser = Callable[[Sequence[PendingJob], str | None, float, SchedulerPolicy], Decision | None]


# --- the simulation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One job as it ran: picked at ``picked_at``, then its switch, then its own run."""

    job: PendingJob
    picked_at: float
    switch_s: float
    # What the policy's swap-cost table priced that switch at.
    table_switch_s: float
    finished_at: float
    swap: bool
    rule: str

    @property
    def wait_s(self) -> float:
        return self.picked_at - self.job.enqueued_at


def scheduler_choose(
    pending: Sequence[PendingJob], resident: str | None, now: float, policy: SchedulerPolicy
) -> Decision | None:
    """The scheduler under test, exactly as the GPU worker calls it."""
    return schedule_next(pending, resident=resident, now=now, policy=policy)


def fifo_choose(
    pending: Sequence[PendingJob], resident: str | None, now: float, policy: SchedulerPolicy
) -> Decision | None:
    """First come, first served: enqueue order, ties by id."""
    del now  # FIFO looks at nothing but the order
    if not pending:
        return None
    job = min(pending, key=lambda j: (j.enqueued_at, j.id))
    swap = policy.is_swap(resident, job.runtime)
    return Decision(job.id, "first come, first served", swap=swap, rule="oldest")


def submission_job(submission: Submission) -> PendingJob:
    """The generate job of a submission, as ``pending_for_scheduler`` would read it."""
    return PendingJob(
        id=submission.id,
        runtime="comfyui",
        kind="generate",
        project_id=submission.project_id,
        priority=0,
        interactive=submission.interactive,
        enqueued_at=submission.at,
        expected_seconds=submission.seconds,
    )


def simulate(
    workload: Sequence[Submission], profile: Profile, policy: SchedulerPolicy, choose: Chooser
) -> list[Run]:
    """Run the workload on one GPU; each generation enqueues its reviews when it finishes."""
    coordinator = SimCoordinator(profile)
    jobs = sorted((submission_job(s) for s in workload), key=lambda j: (j.enqueued_at, j.id))
    future = deque(jobs)
    reviews_of = {s.id: s.settings.count for s in workload}
    next_id = max(reviews_of, default=0) + 1
    review_s = review_seconds(profile)
    pending: dict[int, PendingJob] = {}
    runs: list[Run] = []
    clock = future[0].enqueued_at if future else 0.0
    resident: str | None = None
    while future or pending:
        if not pending:
            clock = max(clock, future[0].enqueued_at)  # idle until the next arrival
        while future and future[0].enqueued_at <= clock:
            job = future.popleft()
            pending[job.id] = job
        decision = choose(list(pending.values()), resident, clock, policy)
        if decision is None:
            raise RuntimeError(f"nothing chosen from {len(pending)} pending jobs at {clock:.1f} s")
        job = pending.pop(decision.job_id)
        table = policy.switch_cost(resident, job.runtime)
        switch = coordinator.ensure(job.runtime)
        finished = clock + switch + job.expected_seconds
        runs.append(Run(job, clock, switch, table, finished, decision.swap, decision.rule))
        clock, resident = finished, job.runtime
        for _ in range(reviews_of.get(job.id, 0)):  # reviews have no reviews of their own
            pending[next_id] = PendingJob(
                next_id, "critic", "review", job.project_id, 0, False, finished, review_s
            )
            next_id += 1
    return runs


@dataclass(frozen=True)
class Outcome:
    """The figures of one order of the workload."""

    makespan_s: float
    swaps: int
    switch_s: float
    max_wait_s: float
    max_interactive_wait_s: float
    aged_picks: int
    # Which rule made each swap: "aged", "interactive", "switch", ...
    swaps_by_rule: dict[str, int]


def outcome(runs: Sequence[Run]) -> Outcome:
    start = min(run.job.enqueued_at for run in runs)
    interactive = [run.wait_s for run in runs if run.job.interactive]
    by_rule: dict[str, int] = {}
    for run in runs:
        if run.swap:
            by_rule[run.rule] = by_rule.get(run.rule, 0) + 1
    return Outcome(
        makespan_s=max(run.finished_at for run in runs) - start,
        swaps=sum(run.swap for run in runs),
        switch_s=sum(run.switch_s for run in runs),
        max_wait_s=max(run.wait_s for run in runs),
        max_interactive_wait_s=max(interactive, default=0.0),
        aged_picks=sum(run.rule == "aged" for run in runs),
        swaps_by_rule=by_rule,
    )


# --- the lower bound -------------------------------------------------------------------------


@dataclass(frozen=True)
class LowerBound:
    """The larger of the work bound and the best tail bound (see the module docstring)."""

    seconds: float
    work_s: float
    tail_s: float
    tail_from: int  # the submission whose arrival gives the best tail bound
    min_swaps: int


def lower_bound(workload: Sequence[Submission], profile: Profile) -> LowerBound:
    """No order of these jobs on this coordinator finishes sooner (from the first arrival)."""
    if not workload:
        raise ValueError("an empty workload has no makespan")
    probe = SimCoordinator(profile)
    comfy_cold = probe.ensure("comfyui")
    first_to_critic = probe.ensure("critic")  # the Critic's first start, after a release
    probe.ensure("comfyui")
    steady_to_critic = probe.ensure("critic")
    review = review_seconds(profile)
    ordered = sorted(workload, key=lambda s: (s.at, s.id))
    origin = ordered[0].at
    work = [s.seconds + s.settings.count * review for s in ordered]
    work_bound = sum(work) + comfy_cold + first_to_critic
    tail, tail_from, remaining = 0.0, ordered[0].id, sum(work)
    for index, submission in enumerate(ordered):
        if index:
            candidate = submission.at - origin + remaining + steady_to_critic
            if candidate > tail:
                tail, tail_from = candidate, submission.id
        remaining -= work[index]
    exclusive = profile.are_exclusive(*RUNTIMES)
    return LowerBound(
        seconds=max(work_bound, tail),
        work_s=work_bound,
        tail_s=tail,
        tail_from=tail_from,
        min_swaps=1 if exclusive else 0,
    )


# --- one strategy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyResult:
    """Scheduler, FIFO and lower bound for one release strategy."""

    strategy: Strategy
    policy: SchedulerPolicy
    jobs: int
    interactive: int
    scheduler: Outcome
    fifo: Outcome
    bound: LowerBound
    wait_bound_s: float
    longest_job_s: float
    # The per-job bound with aged jobs ahead (the scheduler's theorem): worst slack, misses.
    theorem_misses: int
    theorem_worst_over_s: float
    # Switches the policy's table priced differently from the coordinator: (count, worst gap).
    mispriced: int
    mispriced_worst_s: float

    @property
    def makespan_over_lower_bound(self) -> float:
        return self.scheduler.makespan_s / self.bound.seconds

    @property
    def fifo_over_makespan(self) -> float:
        return self.fifo.makespan_s / self.scheduler.makespan_s

    def goals(self) -> dict[str, bool]:
        return {
            "makespan": self.makespan_over_lower_bound <= MAKESPAN_GOAL,
            "swaps": self.scheduler.swaps < self.fifo.swaps,
            "wait": self.theorem_misses == 0,
        }

    def summary(self) -> dict[str, object]:
        """The JSON object of this strategy, floats to 3 decimals."""
        return {
            "release": self.strategy.name,
            "makespan_over_lower_bound": round(self.makespan_over_lower_bound, 3),
            "fifo_over_makespan": round(self.fifo_over_makespan, 3),
            "swaps": self.scheduler.swaps,
            "fifo_swaps": self.fifo.swaps,
            "max_wait_s": round(self.scheduler.max_wait_s, 3),
            "wait_bound_s": round(self.wait_bound_s, 3),
            "bound_misses": self.theorem_misses,
        }


def theorem_check(runs: Sequence[Run], policy: SchedulerPolicy) -> tuple[int, float]:
    """Jobs that waited past their own bound (``shown_bounds``): count, and the worst excess."""
    misses, worst = 0, float("-inf")
    for run, bound in zip(runs, shown_bounds(runs, policy), strict=True):
        over = run.wait_s - bound
        misses += over > EPSILON
        worst = max(worst, over)
    return misses, worst


def strategy_run(
    base: Profile,
    strategy: Strategy,
    workload: Sequence[Submission],
    *,
    max_wait_s: float | None = None,
) -> StrategyResult:
    """Run the workload under the scheduler and under FIFO with this release strategy."""
    profile = profile_with_release(base, strategy)
    policy = policy_from_profile(profile, max_wait_s=max_wait_s)
    runs = simulate(workload, profile, policy, scheduler_choose)
    fifo_runs = simulate(workload, profile, policy, fifo_choose)
    misses, worst = theorem_check(runs, policy)
    gaps = [run.switch_s - run.table_switch_s for run in runs + fifo_runs]
    mispriced = [gap for gap in gaps if abs(gap) > EPSILON]
    return StrategyResult(
        strategy=strategy,
        policy=policy,
        jobs=len(runs),
        interactive=sum(run.job.interactive for run in runs),
        scheduler=outcome(runs),
        fifo=outcome(fifo_runs),
        bound=lower_bound(workload, profile),
        wait_bound_s=wait_bound_s(policy, [run.job for run in runs]),
        longest_job_s=max(run.job.expected_seconds for run in runs),
        theorem_misses=misses,
        theorem_worst_over_s=worst,
        mispriced=len(mispriced),
        mispriced_worst_s=max(mispriced, key=abs, default=0.0),
    )


# --- the report ------------------------------------------------------------------------------


def _rules(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in sorted(counts.items())) or "none"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report_lines(result: StrategyResult) -> list[str]:
    """A readable table of one strategy."""
    s, f, b, p = result.scheduler, result.fifo, result.bound, result.policy
    goals = result.goals()
    cost = p.switch_cost
    return [
        f"release {result.strategy.name} (ComfyUI {result.strategy.comfyui}, Critic "
        f"{result.strategy.critic}): ComfyUI→Critic {cost('comfyui', 'critic'):.0f} s, "
        f"Critic→ComfyUI {cost('critic', 'comfyui'):.0f} s, cold ComfyUI "
        f"{cost(None, 'comfyui'):.0f} s, cold Critic {cost(None, 'critic'):.0f} s",
        f"  {'':24}{'scheduler':>12}{'FIFO':>12}{'lower bound':>14}",
        f"  {'makespan (s)':24}{s.makespan_s:12.1f}{f.makespan_s:12.1f}{b.seconds:14.1f}",
        f"  {'swaps':24}{s.swaps:12d}{f.swaps:12d}{b.min_swaps:14d}",
        f"  {'switch time (s)':24}{s.switch_s:12.1f}{f.switch_s:12.1f}",
        f"  {'max wait (s)':24}{s.max_wait_s:12.1f}{f.max_wait_s:12.1f}",
        f"  {'max interactive wait (s)':24}{s.max_interactive_wait_s:12.1f}"
        f"{f.max_interactive_wait_s:12.1f}",
        f"  {'aged picks':24}{s.aged_picks:12d}",
        f"  scheduler swaps by rule: {_rules(s.swaps_by_rule)}",
        f"  lower bound: work {b.work_s:.1f} s, tail {b.tail_s:.1f} s "
        f"(from submission #{b.tail_from})",
        f"  headline wait bound {result.wait_bound_s:.1f} s = max_wait {p.max_wait_s:.0f} + "
        f"longest job {result.longest_job_s:.1f} + costliest switch "
        f"{p.costliest_switch_s:.0f} (nothing queued as a job ages); each job against its own "
        f"bound (its backlog counted): {result.theorem_misses} over, worst slack "
        f"{-result.theorem_worst_over_s:.1f} s",
        f"  switches priced unlike the coordinator by the policy table: {result.mispriced} "
        f"(worst gap {result.mispriced_worst_s:+.1f} s)",
        f"  goal makespan ≤ {MAKESPAN_GOAL} × lower bound: "
        f"{result.makespan_over_lower_bound:.3f}  {_met(goals['makespan'])}",
        f"  goal fewer swaps than FIFO: {s.swaps} vs {f.swaps}  {_met(goals['swaps'])}",
        f"  goal no job waits past its bound: {result.theorem_misses} of {result.jobs} over "
        f"(max wait {s.max_wait_s:.1f} s, headline {result.wait_bound_s:.1f} s)  "
        f"{_met(goals['wait'])}",
    ]


def workload_line(workload: Sequence[Submission], profile: Profile) -> str:
    review = review_seconds(profile)
    images = sum(s.settings.count for s in workload)
    compute = sum(s.seconds for s in workload) + images * review
    span = max(s.at for s in workload) - min(s.at for s in workload)
    projects = len({s.project_id for s in workload})
    interactive = sum(s.interactive for s in workload)
    return (
        f"workload: {len(workload)} generations from {projects} projects ({interactive} "
        f"interactive single images), {images} reviews, {len(workload) + images} jobs; "
        f"arrivals over {span:.0f} s; compute {compute:.1f} s"
    )


def benchmark(
    base: Profile,
    workload: Sequence[Submission],
    *,
    max_wait_s: float | None = None,
) -> list[StrategyResult]:
    """Every release strategy on the same workload."""
    return [strategy_run(base, s, workload, max_wait_s=max_wait_s) for s in STRATEGIES]


# --- the sweep: every shape, many seeds, the worst seed reported (issue 15) ---------------

SWEEP_SEEDS = 12
SWEEP_GOAL = 1.10  # every shape's worst seed within this factor of the lower bound


@dataclass(frozen=True)
class ShapeResult:
    """One shape under one release strategy (and aging setting) over its seeds."""

    profile: str
    shape: str
    strategy: str
    max_wait_s: float  # the policy's aging bound
    seeds: int
    worst_seed: int  # the seed with the largest makespan / lower bound
    worst_ratio: float
    best_ratio: float
    worst_fifo_ratio: float  # FIFO's makespan / lower bound at its own worst seed
    swaps_at_worst: int
    fifo_swaps_at_worst: int
    # Waits against the bound each job was shown (``shown_bound_s``), over every seed.
    longest_wait_s: float
    its_bound_s: float  # the bound shown to the job that waited longest
    least_slack_s: float  # min over jobs of (its bound - its wait); negative is a broken promise
    bound_misses: int
    jobs: int
    # Interactive singles: the longest wait over every seed, and the headline bound beside it.
    longest_interactive_wait_s: float
    headline_bound_s: float

    def summary(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "shape": self.shape,
            "release": self.strategy,
            "max_wait_s": round(self.max_wait_s, 3),
            "seeds": self.seeds,
            "worst_seed": self.worst_seed,
            "worst_makespan_over_lower_bound": round(self.worst_ratio, 3),
            "best_makespan_over_lower_bound": round(self.best_ratio, 3),
            "worst_fifo_over_lower_bound": round(self.worst_fifo_ratio, 3),
            "swaps_at_worst_seed": self.swaps_at_worst,
            "fifo_swaps_at_worst_seed": self.fifo_swaps_at_worst,
            "longest_wait_s": round(self.longest_wait_s, 3),
            "its_bound_s": round(self.its_bound_s, 3),
            "least_slack_s": round(self.least_slack_s, 3),
            "bound_misses": self.bound_misses,
            "longest_interactive_wait_s": round(self.longest_interactive_wait_s, 3),
            "headline_bound_s": round(self.headline_bound_s, 3),
        }


def shape_run(
    base: Profile,
    shape: str,
    strategy: Strategy,
    seeds: Sequence[int],
    *,
    max_wait_s: float | None = None,
) -> ShapeResult:
    """The shape's workload at every seed through the scheduler and FIFO on one strategy."""
    profile = profile_with_release(base, strategy)
    policy = policy_from_profile(profile, max_wait_s=max_wait_s)
    build = SHAPES[shape]
    ratios: list[tuple[float, int, int, int]] = []
    fifo_ratios: list[float] = []
    longest, its_bound, least_slack = 0.0, 0.0, float("inf")
    misses = jobs = 0
    interactive_wait, headline = 0.0, 0.0
    for seed in seeds:
        workload = build(base, seed)
        bound = lower_bound(workload, profile).seconds
        runs = simulate(workload, profile, policy, scheduler_choose)
        fifo_runs = simulate(workload, profile, policy, fifo_choose)
        mine, fifo = outcome(runs), outcome(fifo_runs)
        ratios.append((mine.makespan_s / bound, seed, mine.swaps, fifo.swaps))
        fifo_ratios.append(fifo.makespan_s / bound)
        for run, shown in zip(runs, shown_bounds(runs, policy), strict=True):
            jobs += 1
            slack = shown - run.wait_s
            misses += slack < -EPSILON
            least_slack = min(least_slack, slack)
            if run.wait_s > longest:
                longest, its_bound = run.wait_s, shown
        interactive_wait = max(interactive_wait, mine.max_interactive_wait_s)
        headline = max(headline, wait_bound_s(policy, [run.job for run in runs]))
    worst = max(ratios)
    return ShapeResult(
        profile=base.name,
        shape=shape,
        strategy=strategy.name,
        max_wait_s=policy.max_wait_s,
        seeds=len(seeds),
        worst_seed=worst[1],
        worst_ratio=worst[0],
        best_ratio=min(ratios)[0],
        worst_fifo_ratio=max(fifo_ratios),
        swaps_at_worst=worst[2],
        fifo_swaps_at_worst=worst[3],
        longest_wait_s=longest,
        its_bound_s=its_bound,
        least_slack_s=least_slack,
        bound_misses=misses,
        jobs=jobs,
        longest_interactive_wait_s=interactive_wait,
        headline_bound_s=headline,
    )


def sweep(
    base: Profile,
    *,
    shapes: Sequence[str] = tuple(SHAPES),
    seeds: Sequence[int] = tuple(range(1, SWEEP_SEEDS + 1)),
    max_wait_s: float | None = None,
) -> list[ShapeResult]:
    """Every shape under every release strategy."""
    return [
        shape_run(base, shape, strategy, seeds, max_wait_s=max_wait_s)
        for shape in shapes
        for strategy in STRATEGIES
    ]


def sweep_lines(results: Sequence[ShapeResult]) -> list[str]:
    """One line per shape and strategy: the worst seed against the goal, waits against bounds."""
    lines = [
        f"  {'shape':18}{'release':12}{'worst/LB':>9}{'seed':>5}{'FIFO/LB':>9}{'swaps':>7}"
        f"{'FIFO':>6}{'longest wait':>14}{'its bound':>11}{'misses':>8}{'single wait':>13}"
    ]
    for r in results:
        lines.append(
            f"  {r.shape:18}{r.strategy:12}{r.worst_ratio:9.3f}{r.worst_seed:5d}"
            f"{r.worst_fifo_ratio:9.3f}{r.swaps_at_worst:7d}{r.fifo_swaps_at_worst:6d}"
            f"{r.longest_wait_s:14.1f}{r.its_bound_s:11.1f}{r.bound_misses:8d}"
            f"{r.longest_interactive_wait_s:13.1f}"
        )
    worst = max(results, key=lambda r: r.worst_ratio)
    missed = sum(r.bound_misses for r in results)
    jobs = sum(r.jobs for r in results)
    lines.append(
        f"  goal every shape's worst seed ≤ {SWEEP_GOAL} × lower bound: {worst.worst_ratio:.3f} "
        f"({worst.shape}, {worst.strategy}, seed {worst.worst_seed})  "
        f"{_met(worst.worst_ratio <= SWEEP_GOAL)}"
    )
    lines.append(
        f"  goal no wait past its shown bound: {missed} of {jobs} jobs over  {_met(missed == 0)}"
    )
    return lines


def json_line(
    results: Sequence[StrategyResult],
    shapes: Sequence[ShapeResult] = (),
    multi: Sequence[dict[str, object]] = (),
) -> str:
    """One JSON object: the one-GPU results, the shapes' worst seeds, and the 2-GPU results
    beside them when run."""
    line: dict[str, object] = {"strategy_results": [result.summary() for result in results]}
    if shapes:
        line["shapes"] = [result.summary() for result in shapes]
    if multi:
        line["multi_gpu_results"] = list(multi)
    return json.dumps(line)


def shown_bounds(runs: Sequence[Run], policy: SchedulerPolicy) -> list[float]:
    """Each job's bound: ``wait_bound_s`` with the jobs the rules let ahead once it aged."""
    jobs = [run.job for run in runs]
    picked = {run.job.id: run.picked_at for run in runs}
    return [
        wait_bound_s(
            policy, jobs, job=run.job, ahead=ahead_once_aged(run.job, jobs, picked, policy)
        )
        for run in runs
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="profiles/<name>.toml")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--max-wait", type=float, default=None, help="aging bound (default: the scheduler's)"
    )
    parser.add_argument(
        "--seeds", type=int, default=SWEEP_SEEDS, help="seeds per shape in the sweep (1..N)"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, not {args.seeds}")
    base = profile_load(args.profile)
    workload = workload_build(base, seed=args.seed, shape=WorkloadShape())
    results = benchmark(base, workload, max_wait_s=args.max_wait)
    print(
        f"Scheduling benchmark: profile {base.name}, seed {args.seed}, "
        f"max_wait_s {results[0].policy.max_wait_s:.0f}, simulated time"
    )
    print(workload_line(workload, base))
    for result in results:
        print()
        print("\n".join(report_lines(result)))
    shapes = sweep(base, seeds=range(1, args.seeds + 1), max_wait_s=args.max_wait)
    print()
    print(
        f"Shapes ({', '.join(SHAPES)}), seeds 1..{args.seeds} each, profile {base.name}; "
        "the worst seed of each (makespan / lower bound):"
    )
    print("\n".join(sweep_lines(shapes)))
    # The 2-GPU section lives in its own module (placement over two simulated GPUs).
    from bench.scheduling_multi import multi_benchmark, multi_report_lines

    multi = multi_benchmark(base, seed=args.seed)
    print()
    print("\n".join(multi_report_lines(multi)))
    print()
    print(json_line(results, shapes, [result.summary() for result in multi]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
