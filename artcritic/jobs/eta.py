"""ETA arithmetic: how long a job's own run takes, and when a queued job will run and finish.

Pure (STYLE item 6): the scheduler is a deterministic function, so the forecast simply
replays it over the jobs pending now, on a clock that advances by each job's swap and
run. Jobs that arrive later can only move a job back if they outrank it (priority,
interactive) or overtake it by aging; the caller re-forecasts on every change.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from artcritic.gpu.admission import RequestSettings
from artcritic.gpu.budget import megapixels
from artcritic.gpu.profiles import Profile
from artcritic.jobs.scheduler import PendingJob, SchedulerPolicy, schedule_next

# (resident runtime, model modes loaded in it, wanted runtime, wanted model mode, runtimes
# started) → seconds before the wanted job's own run: a DurationModel's ``switch_seconds``.
SwitchCost = Callable[[str | None, frozenset[str], str, str, frozenset[str]], float]


@dataclass(frozen=True)
class AheadGroup:
    """Jobs ahead of one job, of one kind and one project (for 'behind 3 reviews for …')."""

    kind: str
    project_id: int
    count: int
    # Their runs plus the swaps they cause.
    seconds: float


@dataclass(frozen=True)
class Eta:
    """When a job is expected to be picked and to finish, and what is ahead of it."""

    job_id: int
    # Seconds from now until the scheduler picks it (its status becomes running).
    start_in_s: float
    # Seconds from now until it is done: start, then its own swap, then its run.
    finish_in_s: float
    jobs_ahead: int
    # Runtime swaps before it finishes, its own included.
    swaps: int
    ahead: tuple[AheadGroup, ...]


def generation_seconds(profile: Profile, settings: RequestSettings) -> float:
    """A generation's own run: seconds per step per megapixel × size × steps × count + upload."""
    model = profile.models[settings.model_mode]
    size = megapixels(settings.width, settings.height)
    sampling = model.seconds_per_step_megapixel * size * settings.steps * settings.count
    return sampling + profile.durations.upload_per_image * settings.count


def review_seconds(profile: Profile) -> float:
    """A review's own run, from the profile."""
    return profile.durations.critic_review


def eta_seconds(
    job: PendingJob,
    *,
    queue_ahead: Sequence[PendingJob],
    resident: str | None,
    policy: SchedulerPolicy,
    busy_for_s: float = 0.0,
) -> float:
    """Seconds until ``job`` is done if ``queue_ahead`` runs first, in that order."""
    # busy_for_s is what is left of the job running now; resident is that job's runtime.
    seconds = busy_for_s
    runtime = resident
    for item in (*queue_ahead, job):
        seconds += policy.switch_cost(runtime, item.runtime) + item.expected_seconds
        runtime = item.runtime
    return seconds


def queue_forecast(
    pending: Sequence[PendingJob],
    *,
    resident: str | None,
    now: float,
    policy: SchedulerPolicy,
    busy_for_s: float = 0.0,
    switch: SwitchCost | None = None,
    loaded: frozenset[str] = frozenset(),
    started: frozenset[str] = frozenset(),
    gap_s: float = 0.0,
    review_seats: int = 1,
    reviews_running_left: Sequence[float] = (),
) -> tuple[Eta, ...]:
    """Every pending job's ETA, in the order the scheduler will run them (no new arrivals).

    Switch costs come from ``switch`` (learned durations, aware of model modes and of
    runtimes never started) when given, else from the policy's table; ``gap_s`` is the
    worker's own time between one job's end and the next one's claim.

    Reviews run ``review_seats`` at once (jobs.review_batch): reviews the scheduler picks
    one after another share that many seats, each taking the first seat that frees; the
    next other job starts when the last of them ends. ``reviews_running_left`` are the
    seconds left of the reviews running now, in their seats.
    """
    if review_seats < 1:
        raise ValueError(f"review_seats must be at least 1, not {review_seats}")
    if not (math.isfinite(busy_for_s) and busy_for_s >= 0):
        raise ValueError(f"busy_for_s must be a finite number of seconds ≥ 0, not {busy_for_s}")
    remaining = {job.id: job for job in pending}
    if len(remaining) != len(pending):
        raise ValueError("pending jobs must have distinct ids")
    elapsed = busy_for_s
    runtime = resident
    running = frozenset(started) | ({resident} if resident else frozenset())
    swaps = 0
    done: list[tuple[PendingJob, float]] = []  # each job ahead, with its swap + run
    forecast: list[Eta] = []
    # Seats of the batch of reviews in progress (when each frees), or None outside one.
    seats: list[float] | None = None
    batch_start = 0.0
    if review_seats > 1 and reviews_running_left:
        # The running reviews hold seats; a waiting one joins when the first of them ends
        # (the worker refills the seats as each review ends).
        seats = sorted(reviews_running_left)[:review_seats]
        batch_start = elapsed = seats[0]
    while remaining:
        decision = schedule_next(
            list(remaining.values()), resident=runtime, now=now + elapsed, policy=policy
        )
        if decision is None:  # only when nothing is pending, which the loop excludes
            break
        job = remaining.pop(decision.job_id)
        batched = review_seats > 1 and job.kind == "review" and job.runtime == "critic"
        if seats is not None and not batched:
            elapsed, seats = max(seats, default=elapsed), None  # the batch drains first
        if batched and seats is not None:
            # A free seat is taken at the batch's start; else the first seat to free.
            start = heapq.heappop(seats) if len(seats) >= review_seats else batch_start
            forecast.append(
                Eta(
                    job_id=job.id,
                    start_in_s=start,
                    finish_in_s=start + job.expected_seconds,
                    jobs_ahead=len(done),
                    swaps=swaps,
                    ahead=_groups(done),
                )
            )
            done.append((job, job.expected_seconds))
            heapq.heappush(seats, start + job.expected_seconds)
            continue
        if switch is None:
            cost = policy.switch_cost(runtime, job.runtime)
        else:
            cost = switch(runtime, loaded, job.runtime, job.variant, running)
        swaps += decision.swap
        elapsed += gap_s
        forecast.append(
            Eta(
                job_id=job.id,
                start_in_s=elapsed,
                finish_in_s=elapsed + cost + job.expected_seconds,
                jobs_ahead=len(done),
                swaps=swaps,
                ahead=_groups(done),
            )
        )
        done.append((job, cost + job.expected_seconds))
        if batched:
            # The first review of a batch: the swap, then the seats fill at once.
            seats = [elapsed + cost + job.expected_seconds]
            elapsed += cost
            batch_start = elapsed
        else:
            elapsed += cost + job.expected_seconds
        # A swap releases the old runtime's models; the same runtime keeps loading more.
        loaded = (loaded if job.runtime == runtime else frozenset()) | (
            {job.variant} if job.variant else frozenset()
        )
        runtime = job.runtime
        running = running | {job.runtime}
    return tuple(forecast)


def job_eta(
    job_id: int,
    pending: Sequence[PendingJob],
    *,
    resident: str | None,
    now: float,
    policy: SchedulerPolicy,
    busy_for_s: float = 0.0,
) -> Eta:
    """One pending job's ETA (KeyError when it is not among ``pending``)."""
    for eta in queue_forecast(
        pending, resident=resident, now=now, policy=policy, busy_for_s=busy_for_s
    ):
        if eta.job_id == job_id:
            return eta
    raise KeyError(job_id)


def _groups(ahead: list[tuple[PendingJob, float]]) -> tuple[AheadGroup, ...]:
    """Jobs ahead by (kind, project), in the order each group first appears."""
    counts: dict[tuple[str, int], tuple[int, float]] = {}
    for job, seconds in ahead:
        key = (job.kind, job.project_id)
        count, total = counts.get(key, (0, 0.0))
        counts[key] = (count + 1, total + seconds)
    return tuple(
        AheadGroup(kind=kind, project_id=project, count=count, seconds=seconds)
        for (kind, project), (count, seconds) in counts.items()
    )


def duration_words(seconds: float) -> str:
    """'under a minute', 'about 2 min', 'about 1 h 20 min': an ETA as a person says it."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a duration must be a finite number of seconds ≥ 0, not {seconds}")
    if seconds < 45:
        return "under a minute"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"
