"""What this GPU did: duration samples from the phase history of recently finished jobs.

Each phase row starts when the one before it ends, so a row's duration is the next row's
start minus its own (a window function, one query). ``samples_from_attempt`` turns the
rows of a job's last attempt into ``durations.Sample`` records (pure, tested with
hand-made histories); ``duration_samples`` reads them for one GPU and profile, and
``duration_model`` builds the model the scheduler, ETAs and pages use.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Window
from django.db.models.functions import Lead, Left

from artcritic.gpu.admission import batch_for, request_settings
from artcritic.gpu.profiles import Profile
from artcritic.jobs.durations import (
    GAP,
    HANDOFF,
    LEAD_IN,
    LOAD,
    RECORD,
    RELEASE,
    REVIEW,
    SAMPLE,
    START,
    STORE,
    VERIFY,
    WAKE,
    WARM,
    DurationKey,
    DurationModel,
    GenerationPlan,
    Sample,
)
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.studio.models import GenerationRequest

# How many finished jobs of a GPU the history reads: enough for WINDOW samples of every
# key a busy studio uses, few enough to read in milliseconds before every claim.
HISTORY_JOBS = 200


@dataclass(frozen=True)
class PhaseRow:
    """One phase history row with its end (the next row's start)."""

    status: str
    phase: str
    runtime: str
    detail: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class JobFacts:
    """What a job's samples are keyed by."""

    gpu: str
    profile: str
    kind: str
    runtime: str
    plan: GenerationPlan | None = None


def plan_of(request: GenerationRequest) -> GenerationPlan:
    """A request's shape: prompts of ``batch`` images (see admission.batch_for)."""
    return GenerationPlan(
        model_mode=request.model_mode,
        width=request.width,
        height=request.height,
        steps=request.steps,
        count=request.count,
        batch=batch_for(request_settings(request)),
    )


def _claimed(row: PhaseRow) -> bool:
    return row.status == JobStatus.RUNNING and row.phase == Phase.WAITING_FOR_GPU


def last_attempt(rows: Sequence[PhaseRow]) -> list[PhaseRow]:
    """The rows from the job's last claim on (earlier attempts and queue time dropped)."""
    claims = [n for n, row in enumerate(rows) if _claimed(row)]
    return list(rows[claims[-1] :]) if claims else []


def _step(row: PhaseRow, facts: JobFacts, started: set[str]) -> tuple[str, str, bool] | None:
    """(runtime, step, cold) a swap or review row measured; None for the other rows."""
    runtime = row.runtime or facts.runtime
    if _claimed(row):
        return facts.runtime, LEAD_IN, False
    if row.phase == Phase.STARTING and row.detail.startswith("waking"):
        return runtime, WAKE, False
    if row.phase == Phase.STARTING:
        started.add(runtime)
        return runtime, START, False
    steps = {
        Phase.RELEASING: RELEASE,
        Phase.VERIFYING_VRAM: VERIFY,
        Phase.LOADING: LOAD,
        Phase.WARMING: WARM,
        Phase.REVIEWING: REVIEW,
        Phase.RECORDING: RECORD,
    }
    step = steps.get(Phase(row.phase)) if row.phase else None
    if step is None:
        return None
    return runtime, step, step in (LOAD, WARM) and runtime in started


def samples_from_attempt(facts: JobFacts, rows: Sequence[PhaseRow]) -> list[Sample]:
    """The measured steps of a job's last attempt, which must have ended done.

    A generation's sampling is per step·megapixel of one prompt; its uploads between two
    prompts are handoffs, and its last upload with the recording after it is the store,
    both per image. A load or warm-up after the runtime started in the same attempt is cold.
    """
    attempt = last_attempt(rows)
    if not attempt or attempt[-1].status != JobStatus.DONE:
        return []
    at = attempt[-1].started_at.timestamp()
    plan = facts.plan if facts.kind == JobKind.GENERATE else None
    mode = plan.model_mode if plan is not None else ""
    size = plan.shape if plan is not None else ""
    timed = [
        (row, (row.ended_at - row.started_at).total_seconds())
        for row in attempt[:-1]
        if row.ended_at is not None
    ]
    samples: list[Sample] = []

    def add(runtime: str, step: str, seconds: float, **key: str | bool) -> None:
        samples.append(
            Sample(facts.gpu, facts.profile, DurationKey(runtime, step, **key), seconds, at)  # type: ignore[arg-type]
        )

    started: set[str] = set()
    uploads = [n for n, (row, _s) in enumerate(timed) if row.phase == Phase.UPLOADING]
    store_from = uploads[-1] if uploads and plan is not None else None
    store_seconds = 0.0
    for n, (row, seconds) in enumerate(timed):
        if plan is not None and store_from is not None and n >= store_from:
            store_seconds += seconds  # the last images stored, then recorded, until done
        elif plan is not None and row.phase == Phase.GENERATING:
            add("comfyui", SAMPLE, seconds / plan.units_per_prompt, model_mode=mode, size=size)
        elif plan is not None and row.phase in (Phase.UPLOADING, Phase.RECORDING):
            add("comfyui", HANDOFF, seconds / plan.batch, size=size)  # between two prompts
        else:
            step = _step(row, facts, started)
            if step is not None:
                runtime, name, cold = step
                which = mode if runtime == "comfyui" and name in (LOAD, WARM) else ""
                add(runtime, name, seconds, model_mode=which, cold=cold)
    if plan is not None and store_from is not None:
        add("comfyui", STORE, store_seconds / plan.batch, size=size)
    return samples


def duration_samples(
    gpu: str | Sequence[str] | None = None,
    profile_name: str | None = None,
    *,
    jobs: int = HISTORY_JOBS,
) -> list[Sample]:
    """Samples of the last jobs done on ``gpu`` (one name or several) under ``profile_name``.

    ``jobs`` per GPU named (two queries, whatever the number of jobs or GPUs).
    """
    finished = Job.objects.filter(status=JobStatus.DONE, finished_at__isnull=False)
    if isinstance(gpu, str):
        finished = finished.filter(gpu=gpu)
    elif gpu is not None:
        finished = finished.filter(gpu__in=list(gpu))
        jobs *= max(1, len(gpu))
    if profile_name is not None:
        finished = finished.filter(profile_name=profile_name)
    latest = finished.order_by("-finished_at", "-id")
    recent = list(
        latest.select_related("request").only(
            "gpu",
            "profile_name",
            "kind",
            "runtime",
            "finished_at",
            "claimed_at",
            "admitted_at",
            "request__model_mode",
            "request__width",
            "request__height",
            "request__steps",
            "request__count",
            "request__seed_policy",
            "request__cfg",
            "request__sampler",
            "request__scheduler",
            "request__lora_name",
            "request__lora_strength",
        )[:jobs]
    )
    rows: dict[int, list[PhaseRow]] = {}
    for row in (
        # The same jobs as a subquery: two queries however many jobs there are (or none).
        JobPhase.objects.filter(job_id__in=latest.values("pk")[:jobs])
        .annotate(
            ended_at=Window(
                Lead("started_at"),
                partition_by=[F("job_id")],
                order_by=[F("started_at").asc(), F("id").asc()],
            ),
            head=Left("detail", 16),
        )
        .order_by("job_id", "started_at", "id")
        .values_list("job_id", "status", "phase", "runtime", "head", "started_at", "ended_at")
    ):
        job_id, status, phase, runtime, head, started_at, ended_at = row
        rows.setdefault(job_id, []).append(
            PhaseRow(status, phase, runtime, head or "", started_at, ended_at)
        )
    samples: list[Sample] = []
    for job in recent:
        plan = plan_of(job.request) if job.request is not None else None
        facts = JobFacts(job.gpu, job.profile_name, job.kind, job.runtime, plan)
        samples.extend(samples_from_attempt(facts, rows.get(job.pk, [])))
    samples.extend(gap_samples(recent))
    return samples


def gap_samples(jobs: Sequence[Job]) -> list[Sample]:
    """The worker's time between one job's end and the next one's claim, per GPU.

    Only where the next job was already waiting when the previous one ended: otherwise the
    GPU was idle for want of work, which is no one's overhead.
    """
    by_gpu: dict[str, list[tuple[datetime, datetime, datetime | None, Job]]] = {}
    for job in jobs:
        if job.claimed_at is not None and job.finished_at is not None:
            runs = by_gpu.setdefault(job.gpu, [])
            runs.append((job.claimed_at, job.finished_at, job.admitted_at, job))
    found = []
    for runs in by_gpu.values():
        runs.sort(key=lambda run: run[0])
        for before, after in itertools.pairwise(runs):
            _claimed, ended, _admitted, _job = before
            claimed, _ended, admitted, job = after
            seconds = (claimed - ended).total_seconds()
            if admitted is not None and admitted <= ended and seconds >= 0:
                key = DurationKey("", GAP)
                found.append(Sample(job.gpu, job.profile_name, key, seconds, claimed.timestamp()))
    return found


def duration_model(
    gpu: str, profile: Profile, *, samples: Sequence[Sample] | None = None
) -> DurationModel:
    """The duration model of ``gpu`` under ``profile`` from its recent history.

    ``samples``: already read (for several GPUs at once); the model keeps its own.
    """
    if samples is None:
        samples = duration_samples(gpu, profile.name)
    return DurationModel(profile, samples, gpu=gpu)
