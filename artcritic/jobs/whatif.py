"""What-if replay: recorded jobs through the real placement and scheduler on another setup.

Pure: plain recorded jobs and a scenario (GPUs, each a profile and a duration model) in,
figures out. Generations arrive when they were submitted; a review of a generation in
the history arrives when that generation finishes in the replay (as the worker queues
it), one per image it stored; other reviews ("review again") arrive when they were
asked for. Each arrival is placed by ``placement.place`` and each GPU runs
``scheduler.schedule_next`` on its own queue; a job's run is its switch
(``DurationModel.switch_seconds``, aware of model modes and runtimes already started)
plus its own run (``DurationModel.own_seconds``) plus the worker's gap. Costs follow
``gpu.costs.job_cost`` on the scenario's economics, with the GPU energy each job used
when it really ran (the same work; a different card draws differently, which is why
the page says so).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from artcritic.gpu.costs import job_cost
from artcritic.gpu.profiles import Profile
from artcritic.jobs.durations import DurationModel, GenerationPlan
from artcritic.jobs.placement import GpuOption, place
from artcritic.jobs.scheduler import PendingJob, SchedulerPolicy, schedule_next

ROLES = ("shared", "dedicated")


@dataclass(frozen=True)
class RecordedJob:
    """A job as it really ran (DONE), in plain values; times are POSIX seconds."""

    id: int
    kind: str  # "generate" | "review"
    project_id: int
    enqueued_at: float
    priority: int = 0
    interactive: bool = False
    plan: GenerationPlan | None = None
    # A review's generation when that generation is in the history (it arrives after it).
    parent_id: int | None = None
    images: int = 0  # images a generation stored
    # What happened: when it was picked and finished, whether it swapped, what it cost.
    picked_at: float | None = None
    finished_at: float | None = None
    swapped: bool = False
    cost: float | None = None
    energy_joules: float | None = None

    @property
    def runtime(self) -> str:
        return "comfyui" if self.kind == "generate" else "critic"


@dataclass(frozen=True)
class ScenarioGpu:
    """One GPU of a scenario: its name, profile (role included) and duration model."""

    name: str
    profile: Profile
    model: DurationModel


@dataclass(frozen=True)
class Figures:
    """What a setup did with the history: the page's columns."""

    jobs: int
    images: int
    swaps: int
    p50_wait_s: float
    p95_wait_s: float
    makespan_s: float
    cost: float | None
    currency: str
    # Jobs that ran on each GPU (empty for what actually happened).
    per_gpu: dict[str, int] = field(default_factory=dict)

    @property
    def cost_per_image(self) -> float | None:
        if self.cost is None or not self.images:
            return None
        return self.cost / self.images


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (0 for no values): p95 of 20 waits is the 19th."""
    if not 0 < share <= 1:
        raise ValueError(f"a percentile share is in (0, 1], not {share}")
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def actual_figures(jobs: Sequence[RecordedJob], currency: str = "") -> Figures:
    """What really happened to ``jobs``."""
    ran = [job for job in jobs if job.picked_at is not None and job.finished_at is not None]
    if not ran:
        return Figures(0, 0, 0, 0.0, 0.0, 0.0, None, currency)
    waits = [max(0.0, job.picked_at - job.enqueued_at) for job in ran if job.picked_at]
    costs = [job.cost for job in ran]
    start = min(job.enqueued_at for job in ran)
    return Figures(
        jobs=len(ran),
        images=sum(job.images for job in ran),
        swaps=sum(job.swapped for job in ran),
        p50_wait_s=percentile(waits, 0.5),
        p95_wait_s=percentile(waits, 0.95),
        makespan_s=max(job.finished_at or start for job in ran) - start,
        cost=None if any(cost is None for cost in costs) else sum(c or 0.0 for c in costs),
        currency=currency,
    )


@dataclass
class _Gpu:
    spec: ScenarioGpu
    policy: SchedulerPolicy
    pending: dict[int, PendingJob] = field(default_factory=dict)
    resident: str | None = None
    loaded: frozenset[str] = frozenset()
    started: frozenset[str] = frozenset()
    free_at: float = -math.inf
    ran: int = 0

    def option(self, job: PendingJob, own_s: float, now: float) -> GpuOption:
        runs = self.spec.profile.runs(job.runtime)
        return GpuOption(
            name=self.spec.name,
            refusal="" if runs else f"role {self.spec.profile.role}",
            policy=self.policy,
            own_s=own_s,
            pending=tuple(self.pending.values()),
            resident=self.resident,
            busy_for_s=max(0.0, self.free_at - now),
            switch=self.spec.model.switch_seconds,
            loaded=self.loaded if self.resident == "comfyui" else frozenset(),
            started=self.started,
            gap_s=self.spec.model.gap_seconds(),
        )


def _check_scenario(jobs: Sequence[RecordedJob], gpus: Sequence[ScenarioGpu]) -> None:
    if not gpus:
        raise ValueError("a scenario needs at least one GPU")
    if len({gpu.name for gpu in gpus}) != len(gpus):
        raise ValueError("scenario GPU names must be distinct")
    for runtime in ("comfyui", "critic"):
        needed = any(job.runtime == runtime for job in jobs)
        if needed and not any(gpu.profile.runs(runtime) for gpu in gpus):
            raise ValueError(f"no GPU of the scenario runs {runtime}, which the history needs")


@dataclass
class _Replay:
    """The replay's state: arrivals still to come, the GPUs, and the running figures."""

    by_id: dict[int, RecordedJob]
    state: list[_Gpu]
    children: dict[int, list[RecordedJob]] = field(default_factory=dict)
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (at, job id)
    enqueued: dict[int, float] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    swaps: int = 0
    images: int = 0
    cost: float | None = 0.0
    end: float = -math.inf

    def arrive(self, clock: float) -> None:
        """Place every job that has arrived by ``clock`` on a GPU."""
        while self.arrivals and self.arrivals[0][0] <= clock:
            at, job_id = heapq.heappop(self.arrivals)
            job = self.by_id[job_id]
            pending = _pending(job, at)
            self.enqueued[job.id] = at
            own = {gpu.spec.name: _own(gpu.spec.model, job) for gpu in self.state}
            options = [gpu.option(pending, own[gpu.spec.name], clock) for gpu in self.state]
            chosen = place(pending, options, now=clock).gpu
            gpu = next(g for g in self.state if g.spec.name == chosen)
            # Queued with this GPU's estimate: later placements forecast this queue with it.
            gpu.pending[job.id] = replace(pending, expected_seconds=own[chosen])

    def dispatch(self, gpu: _Gpu, clock: float) -> None:
        """The scheduler picks the GPU's next job, which runs its switch and its own run."""
        decision = schedule_next(
            list(gpu.pending.values()), resident=gpu.resident, now=clock, policy=gpu.policy
        )
        assert decision is not None  # only called with jobs pending
        job = self.by_id[gpu.pending.pop(decision.job_id).id]
        mode = job.plan.model_mode if job.plan is not None else ""
        model = gpu.spec.model
        loaded = gpu.loaded if gpu.resident == "comfyui" else frozenset()
        switch = model.switch_seconds(gpu.resident, loaded, job.runtime, mode, gpu.started)
        own = _own(model, job)
        picked = clock + model.gap_seconds()
        finished = picked + switch + own
        self.waits.append(picked - self.enqueued[job.id])
        self.swaps += decision.swap
        self.images += job.images
        if self.cost is not None:
            self.cost = _add_cost(
                self.cost, gpu.spec.profile, job, (picked, finished), own=own, switch=switch
            )
        same = gpu.resident == job.runtime
        gpu.loaded = (gpu.loaded if same else frozenset()) | ({mode} if mode else frozenset())
        gpu.resident = job.runtime
        gpu.started = gpu.started | {job.runtime}
        gpu.free_at = finished
        gpu.ran += 1
        self.end = max(self.end, finished)
        for child in self.children.get(job.id, []):
            heapq.heappush(self.arrivals, (finished, child.id))


def replay(jobs: Sequence[RecordedJob], gpus: Sequence[ScenarioGpu]) -> Figures:
    """Replay ``jobs`` on ``gpus`` (see the module docstring)."""
    _check_scenario(jobs, gpus)
    state = [_Gpu(gpu, gpu.model.scheduler_policy()) for gpu in gpus]
    run = _Replay({job.id: job for job in jobs}, state)
    for job in jobs:
        if job.parent_id is not None and job.parent_id in run.by_id:
            run.children.setdefault(job.parent_id, []).append(job)
        else:
            heapq.heappush(run.arrivals, (job.enqueued_at, job.id))
    if not run.arrivals:
        return Figures(0, 0, 0, 0.0, 0.0, 0.0, None, _currency(gpus))
    start = clock = run.arrivals[0][0]
    while True:
        run.arrive(clock)
        for gpu in run.state:
            if gpu.free_at <= clock and gpu.pending:
                run.dispatch(gpu, clock)
        times = [gpu.free_at for gpu in run.state if gpu.free_at > clock]
        if run.arrivals:
            times.append(run.arrivals[0][0])
        if not times:
            if any(gpu.pending for gpu in run.state):
                continue
            break
        clock = min(times)
    return Figures(
        jobs=len(run.waits),
        images=run.images,
        swaps=run.swaps,
        p50_wait_s=percentile(run.waits, 0.5),
        p95_wait_s=percentile(run.waits, 0.95),
        makespan_s=run.end - start,
        cost=run.cost,
        currency=_currency(gpus),
        per_gpu={gpu.spec.name: gpu.ran for gpu in run.state},
    )


def _pending(job: RecordedJob, at: float) -> PendingJob:
    return PendingJob(
        id=job.id,
        runtime=job.runtime,
        kind=job.kind,
        project_id=job.project_id,
        priority=job.priority,
        interactive=job.interactive,
        enqueued_at=at,
        expected_seconds=0.0,  # each GPU's own estimate replaces it (placement, below)
        variant=job.plan.model_mode if job.plan is not None else "",
    )


def _own(model: DurationModel, job: RecordedJob) -> float:
    if job.plan is not None and job.plan.model_mode not in model.profile.models:
        raise ValueError(
            f"job {job.id} used model mode {job.plan.model_mode!r}, which profile "
            f"{model.profile.name} does not have"
        )
    return model.own_seconds(job.kind, job.plan).seconds


def _currency(gpus: Sequence[ScenarioGpu]) -> str:
    economics = gpus[0].profile.economics
    return economics.currency if economics is not None else ""


def _add_cost(
    total: float,
    profile: Profile,
    job: RecordedJob,
    span: tuple[float, float],
    *,
    own: float,
    switch: float,
) -> float | None:
    """``total`` plus the job's cost on ``profile`` (None: the profile prices nothing)."""
    if profile.economics is None:
        return None
    start, end = span
    priced = job_cost(
        profile.economics,
        gpu_energy_joules=job.energy_joules,
        start=datetime.fromtimestamp(start, UTC),
        end=datetime.fromtimestamp(end, UTC),
        gpu_seconds=own,
        swap_seconds=switch,
    )
    return total + priced.total


def scenario_names(count: int, role: str) -> list[tuple[str, str]]:
    """GPU names and roles of a scenario: ``dedicated`` alternates Artist and Critic."""
    if role not in ROLES:
        raise ValueError(f"roles are {' or '.join(ROLES)}, not {role!r}")
    if not 1 <= count <= 16:
        raise ValueError(f"a scenario has 1 to 16 GPUs, not {count}")
    if role == "dedicated":
        if count < 2:
            raise ValueError("dedicated roles need at least 2 GPUs (an Artist and a Critic)")
        return [(f"gpu{n}", "artist" if n % 2 == 0 else "critic") for n in range(count)]
    return [(f"gpu{n}", "shared") for n in range(count)]


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:,.0f} s"
    if value < 2 * 3600:
        return f"{value / 60:,.1f} min"
    return f"{value / 3600:,.1f} h"


def _money(value: float | None, currency: str) -> str:
    return "not priced" if value is None else f"{value:,.4f} {currency}".strip()


def comparison_rows(actual: Figures, predicted: Figures) -> list[tuple[str, str, str]]:
    """(figure, what happened, what the scenario predicts), in words, for the page and CLI."""
    return [
        ("jobs", f"{actual.jobs}", f"{predicted.jobs}"),
        ("images", f"{actual.images}", f"{predicted.images}"),
        ("runtime swaps", f"{actual.swaps}", f"{predicted.swaps}"),
        ("wait p50", _seconds(actual.p50_wait_s), _seconds(predicted.p50_wait_s)),
        ("wait p95", _seconds(actual.p95_wait_s), _seconds(predicted.p95_wait_s)),
        ("makespan", _seconds(actual.makespan_s), _seconds(predicted.makespan_s)),
        (
            "cost per image",
            _money(actual.cost_per_image, actual.currency),
            _money(predicted.cost_per_image, predicted.currency),
        ),
    ]
