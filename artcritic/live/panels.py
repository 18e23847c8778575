"""View models of the live dashboard's panels, and the words they are written in.

Plain values built by ``artcritic.live.selectors``; templates read them, nothing here
queries. How long a runtime usually spends in a state and what is left of a running job
come from the GPU's learned durations (``artcritic.jobs.durations``, the profile's numbers
until enough runs were measured); which jobs are ahead of one is named only where the
viewer is a member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from artcritic.gpu.models import Gpu, RuntimeName, RuntimeStatus
from artcritic.gpu.profiles import GB, Profile
from artcritic.jobs.durations import (
    LOAD,
    RELEASE,
    REVIEW,
    SAMPLE,
    START,
    STORE,
    WARM,
    DurationModel,
    Estimate,
)
from artcritic.jobs.eta import AheadGroup, Eta, duration_words
from artcritic.jobs.forecast import job_plan
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobStatus, Phase
from artcritic.studio.models import Image, Project

TROUBLE_STATUSES = (JobStatus.BLOCKED, JobStatus.FAILED, JobStatus.INTERRUPTED)
# Readings come every 2 s and are published at least every 30 s; older than this means
# the GPU worker (which takes them) is not running.
STALE_READING_S = 90
PASSING_STATES = frozenset({"starting", "loading", "warming", "releasing"})
KIND_NOUN = {JobKind.GENERATE: "generation", JobKind.REVIEW: "review"}
QUEUE_GROUPS_SHOWN = 6


# -- words and numbers (pure) ------------------------------------------------------------


def clock_words(seconds: float) -> str:
    """'12 s', '1 m 40 s', '2 m', '1 h 5 m': elapsed and usual times, as the page ticks them."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} m {rest} s" if rest else f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m" if minutes else f"{hours} h"


STATE_STEPS = {"starting": START, "loading": LOAD, "warming": WARM, "releasing": RELEASE}


def runtime_usual_s(model: DurationModel | None, runtime: str, state: str) -> float | None:
    """How long a runtime usually spends starting, loading, warming or releasing."""
    step = STATE_STEPS.get(state)
    if model is None or runtime not in RuntimeName.values or step is None:
        return None
    return model.estimate(runtime, step).seconds


def phase_usual_s(model: DurationModel | None, job: Job) -> float | None:
    """How long the job's current phase usually takes (one prompt for 'generating')."""
    if model is None or not job.phase:
        return None
    if job.phase in PASSING_STATES:
        return runtime_usual_s(model, job.phase_runtime or job.runtime, job.phase)
    if job.phase == Phase.REVIEWING:
        return model.estimate("critic", REVIEW).seconds
    plan = job_plan(job)
    usual = None
    if plan is not None and plan.model_mode in model.profile.models:
        if job.phase == Phase.GENERATING:
            sample = model.estimate("comfyui", SAMPLE, model_mode=plan.model_mode, size=plan.shape)
            usual = sample.seconds * plan.units_per_prompt
        elif job.phase == Phase.UPLOADING:
            usual = model.estimate("comfyui", STORE, size=plan.shape).seconds * plan.batch
    return usual


def ahead_words(
    running: Sequence[Job], groups: Sequence[AheadGroup], names: Mapping[int, str]
) -> str:
    """'behind 3 reviews for Lamps and 2 jobs of other projects'; ``names``: the viewer's."""
    parts: list[str] = []
    others = 0
    for job in running:
        if job.project_id in names:
            parts.append(f"the running {KIND_NOUN[JobKind(job.kind)]} for {names[job.project_id]}")
        else:
            others += 1
    for group in groups:
        if group.project_id in names:
            noun = KIND_NOUN[JobKind(group.kind)] + ("" if group.count == 1 else "s")
            parts.append(f"{group.count} {noun} for {names[group.project_id]}")
        else:
            others += group.count
    if others:
        noun = "1 job of another project" if others == 1 else f"{others} jobs of other projects"
        parts.append(noun)
    if not parts:
        return "next on the GPU"
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"behind {listed}"


# -- view models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """One job as a panel shows it; ``mine``: the viewer is a member of its project."""

    job: Job
    mine: bool
    now: datetime
    usual_s: float | None = None
    position: int | None = None
    ahead: str = ""
    eta: Eta | None = None
    finish_in_s: float | None = None
    # The estimate of the job's own run: its words say where the figures come from.
    estimate: Estimate | None = None

    @property
    def estimate_words(self) -> str:
        """'from the last 12 runs' or 'from the profile'."""
        return self.estimate.words if self.estimate is not None else "from the profile"

    @property
    def noun(self) -> str:
        return KIND_NOUN[JobKind(self.job.kind)]

    @property
    def running(self) -> bool:
        return self.job.status == JobStatus.RUNNING

    @property
    def pending(self) -> bool:
        return self.job.status in PENDING_STATUSES

    @property
    def cancelling(self) -> bool:
        return self.running and self.job.cancel_requested

    @property
    def can_cancel(self) -> bool:
        return self.mine and (self.pending or self.running) and not self.job.cancel_requested

    @property
    def trouble(self) -> bool:
        return self.job.status in TROUBLE_STATUSES

    @property
    def requeued(self) -> bool:
        """Put back in the queue after an interruption (the reason stays on the job)."""
        return self.pending and self.job.attempt > 1 and bool(self.job.error_reason)

    @property
    def phase_detail(self) -> str:
        return str(getattr(self.job, "phase_detail", "") or "")

    @property
    def elapsed_words(self) -> str:
        started = self.job.phase_started_at
        return clock_words((self.now - started).total_seconds()) if started else ""

    @property
    def usual_words(self) -> str:
        return clock_words(self.usual_s) if self.usual_s else ""

    @property
    def starts_at(self) -> datetime | None:
        return self.now + timedelta(seconds=self.eta.start_in_s) if self.eta else None

    @property
    def start_words(self) -> str:
        return duration_words(self.eta.start_in_s) if self.eta else ""

    @property
    def finishes_at(self) -> datetime | None:
        if self.finish_in_s is None:
            return None
        return self.now + timedelta(seconds=self.finish_in_s)

    @property
    def finish_words(self) -> str:
        return "" if self.finish_in_s is None else duration_words(self.finish_in_s)

    @property
    def show_progress(self) -> bool:
        return self.running and self.job.kind == JobKind.GENERATE and self.job.progress_total > 0

    @property
    def progress_label(self) -> str:
        job = self.job
        if job.phase == Phase.GENERATING:
            return f"generating {job.progress_current}/{job.progress_total}"
        return f"{job.progress_current}/{job.progress_total}"


@dataclass(frozen=True)
class GpuQueue:
    """A GPU's running jobs and its pending ones in the order the scheduler will run them."""

    name: str
    gpu: Gpu | None
    profile: Profile | None
    running: list[JobRow]
    pending: list[JobRow]

    @property
    def rows(self) -> list[JobRow]:
        return [*self.running, *self.pending]


@dataclass(frozen=True)
class RequestGroup:
    """One request's work on the GPU: its generation (if still active) and the Critic's
    reviews of its images, folded together so the designer sees their request, not jobs."""

    key: int
    generation: JobRow | None
    reviews: list[JobRow]

    @property
    def prompt(self) -> str:
        if self.generation is not None and self.generation.job.request is not None:
            return self.generation.job.request.prompt.text
        image = self.reviews[0].job.image if self.reviews else None
        return image.prompt.text if image is not None else ""

    @property
    def reviews_running(self) -> list[JobRow]:
        return [row for row in self.reviews if row.running]

    @property
    def reviews_waiting(self) -> list[JobRow]:
        return [row for row in self.reviews if not row.running]

    @property
    def last_review(self) -> JobRow | None:
        """The review that finishes last (its estimate is the group's)."""
        timed = [row for row in self.reviews if row.finish_in_s is not None]
        return max(timed, key=lambda row: row.finish_in_s or 0.0) if timed else None

    @property
    def first(self) -> JobRow:
        return self.generation or self.reviews[0]


def request_groups(rows: Sequence[JobRow]) -> list[RequestGroup]:
    """Rows grouped by the request they serve (a review serves its image's request), in the
    order of each group's first row (running first, then the scheduler's order)."""
    groups: dict[int, tuple[list[JobRow], list[JobRow]]] = {}
    for row in rows:
        job = row.job
        if job.kind == JobKind.GENERATE and job.request_id is not None:
            key = job.request_id
        elif job.image is not None:
            key = job.image.request_id
        else:
            key = -job.pk
        generations, reviews = groups.setdefault(key, ([], []))
        (generations if job.kind == JobKind.GENERATE else reviews).append(row)
    result: list[RequestGroup] = []
    for key, (generations, reviews) in groups.items():
        # A request has one active generation at a time (a retry waits for the first to end).
        for extra in generations[1:]:
            result.append(RequestGroup(key, extra, []))
        result.append(RequestGroup(key, generations[0] if generations else None, reviews))
    return result


@dataclass(frozen=True)
class HistoryRow:
    """One generation request in the project's history, with its images' review tallies."""

    job: Job
    tally: Mapping[str, int]

    @property
    def images(self) -> int:
        return int(self.tally.get("images", 0))

    @property
    def reviewed(self) -> int:
        return int(self.tally.get("reviewed", 0))

    @property
    def critic_approves(self) -> int:
        return int(self.tally.get("critic_approves", 0))

    @property
    def critic_rejects(self) -> int:
        return self.reviewed - self.critic_approves

    @property
    def unreviewed(self) -> int:
        """Images whose review failed or was cancelled and that have none (Review again)."""
        return int(self.tally.get("unreviewed", 0))

    @property
    def active(self) -> bool:
        return self.job.status in (*PENDING_STATUSES, JobStatus.RUNNING)

    @property
    def reviews_cost(self) -> float | None:
        """What the Critic's reviews of this request's images cost (None: not priced)."""
        cost = self.tally.get("reviews_cost")
        return None if cost is None else float(cost)

    @property
    def review_tokens(self) -> int:
        return int(self.tally.get("review_tokens", 0) or 0)

    @property
    def trouble(self) -> bool:
        return self.job.status in TROUBLE_STATUSES


@dataclass(frozen=True)
class ProjectQueue:
    """One project's jobs: running and pending (scheduler order), grouped by request."""

    project: Project
    running: list[JobRow]
    pending: list[JobRow]
    finished: list[JobRow]
    gpu_names: list[str]
    # Jobs of other projects running or waiting on those GPUs (a count, never names).
    others: int
    groups: list[RequestGroup] = field(default_factory=list)

    @property
    def active(self) -> list[JobRow]:
        return [*self.running, *self.pending]

    @property
    def groups_shown(self) -> list[RequestGroup]:
        """The groups the panel lists; the rest are counted (the page height stays bounded)."""
        return self.groups[:QUEUE_GROUPS_SHOWN]

    @property
    def groups_hidden(self) -> int:
        return max(0, len(self.groups) - QUEUE_GROUPS_SHOWN)


@dataclass(frozen=True)
class RuntimeRow:
    """A runtime's state on a GPU, how long it has been in it and how long that usually takes."""

    runtime: str
    label: str
    status: str
    status_label: str
    since: datetime | None
    detail: str
    simulated: bool
    usual_s: float | None
    now: datetime
    # The profile it was started under, when that is not the active one.
    other_profile: str = ""

    @property
    def passing(self) -> bool:
        return self.status in PASSING_STATES

    @property
    def unhealthy(self) -> bool:
        return self.status == RuntimeStatus.UNHEALTHY

    @property
    def elapsed_words(self) -> str:
        return clock_words((self.now - self.since).total_seconds()) if self.since else ""

    @property
    def usual_words(self) -> str:
        return clock_words(self.usual_s) if self.usual_s else ""


@dataclass(frozen=True)
class ReadingView:
    """The latest stored NVML reading of a GPU, or why there is none."""

    data: dict[str, Any]
    at: datetime | None
    now: datetime

    @property
    def missing(self) -> bool:
        return self.at is None or not self.data

    @property
    def ok(self) -> bool:
        return not self.missing and bool(self.data.get("ok"))

    @property
    def unavailable(self) -> bool:
        return not self.missing and not self.data.get("ok")

    @property
    def age_s(self) -> float:
        return (self.now - self.at).total_seconds() if self.at else 0.0

    @property
    def age_words(self) -> str:
        return clock_words(self.age_s)

    @property
    def stale(self) -> bool:
        return not self.missing and self.age_s > STALE_READING_S

    @property
    def used_gb(self) -> float:
        return int(self.data.get("used_bytes") or 0) / GB

    @property
    def total_gb(self) -> float:
        return int(self.data.get("total_bytes") or 0) / GB

    @property
    def used_pct(self) -> int:
        total = int(self.data.get("total_bytes") or 0)
        used = int(self.data.get("used_bytes") or 0)
        return max(0, min(100, round(100 * used / total))) if total else 0

    @property
    def holders(self) -> list[tuple[str, float]]:
        """The processes holding VRAM: (name, GB), largest first."""
        processes = self.data.get("processes") or []
        held = [(str(p.get("name") or "?"), int(p.get("used_bytes") or 0) / GB) for p in processes]
        return sorted(held, key=lambda item: -item[1])

    @property
    def pids(self) -> str:
        return ",".join(sorted(str(p.get("pid")) for p in self.data.get("processes") or []))

    @property
    def energy_words(self) -> str:
        joules = self.data.get("energy_joules")
        if joules is None:
            return ""
        return f"{joules / 1000:.1f} kJ" if joules < 1e6 else f"{joules / 3.6e6:.2f} kWh"


@dataclass(frozen=True)
class GpuPanel:
    """What a GPU is doing: its profile, each runtime's state, its latest reading."""

    name: str
    gpu: Gpu | None
    profile: Profile | None
    profile_error: str
    runtimes: list[RuntimeRow]
    reading: ReadingView
    waiting: int = 0
    running: int = 0

    @property
    def simulated(self) -> bool:
        return bool(
            (self.profile is not None and self.profile.simulated)
            or any(row.simulated for row in self.runtimes)
            or self.reading.data.get("simulated")
        )

    @property
    def profile_name(self) -> str:
        return self.gpu.active_profile.name if self.gpu is not None else ""


@dataclass(frozen=True)
class Dashboard:
    """Everything the project page renders on first paint; its fragments re-read each part."""

    gpus: list[GpuPanel]
    queue: ProjectQueue
    images: list[Image] = field(default_factory=list)
