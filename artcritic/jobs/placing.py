"""Placing a new job: read each GPU's fit and queue, then ask the pure ``placement.place``.

The GPUs considered are those whose worker is alive (it wrote an NVML reading within
``WORKER_FRESH_S``), so a new job never waits on a GPU whose worker vanished. When no
worker has reported (a single GPU whose worker is starting, or the tests that run no
worker) the GPU this process names (``ARTCRITIC_GPU``) is the one considered, as before
there were several.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from artcritic.gpu.admission import (
    Admission,
    RequestFields,
    RequestSettings,
    admit_generation,
    admit_review,
    batch_for,
    request_settings,
)
from artcritic.gpu.models import Gpu, RuntimeName
from artcritic.gpu.profiles import Profile, ProfileError, profile_from_data
from artcritic.gpu.selectors import NoActiveProfile
from artcritic.jobs.durations import GenerationPlan
from artcritic.jobs.forecast import queue_view
from artcritic.jobs.history import duration_model, plan_of
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobStatus
from artcritic.jobs.placement import RUNTIME_WORDS, GpuOption, NoGpuFits, place
from artcritic.jobs.scheduler import PendingJob

# A GPU worker writes a reading every 2 s; six missed in a row and its GPU gets no new work.
WORKER_FRESH_S = 12.0
ROLE_WORDS = {"artist": "Artist-only", "critic": "Critic-only"}


@dataclass(frozen=True)
class GpuChoice:
    """Where a new job goes: the GPU, its profile, admission there, and why (may be "")."""

    gpu: str
    profile: Profile
    admission: Admission
    reason: str


@dataclass(frozen=True)
class NewJob:
    """What placement needs to know of a job that does not exist yet."""

    kind: str
    runtime: str
    project_id: int
    priority: int = 0
    interactive: bool = False
    settings: RequestSettings | None = None
    plan: GenerationPlan | None = None


def new_job_of(job: Job) -> NewJob:
    """What placement weighs for an existing job (as when it was created)."""
    if job.kind == JobKind.GENERATE and job.request is not None:
        return NewJob(
            kind=job.kind,
            runtime=RuntimeName.COMFYUI,
            project_id=job.project_id,
            priority=job.priority,
            interactive=job.request.count == 1,
            settings=request_settings(job.request),
            plan=plan_of(job.request),
        )
    return NewJob(
        kind=job.kind, runtime=job.runtime, project_id=job.project_id, priority=job.priority
    )


def gpus_reporting(now: datetime | None = None) -> bool:
    """Whether any GPU's worker reported within ``WORKER_FRESH_S``."""
    now = now or timezone.now()
    return Gpu.objects.filter(reading_at__gte=now - timedelta(seconds=WORKER_FRESH_S)).exists()


def gpus_live(now: datetime) -> list[Gpu]:
    """GPUs whose worker reported recently, by name; else the default GPU alone."""
    fresh = list(
        Gpu.objects.select_related("active_profile")
        .filter(reading_at__gte=now - timedelta(seconds=WORKER_FRESH_S))
        .order_by("name")
    )
    if fresh:
        return fresh
    default = Gpu.objects.select_related("active_profile").filter(name=settings.ARTCRITIC_GPU)
    return list(default)


def generation_choose(project_id: int, request: RequestFields) -> GpuChoice:
    """Where a generation with these fields would go, and admission there: the composer's
    live check asks exactly what submitting will do (NoActiveProfile without any GPU)."""
    fields = request_settings(request)
    plan = GenerationPlan(
        model_mode=request.model_mode,
        width=request.width,
        height=request.height,
        steps=request.steps,
        count=request.count,
        batch=batch_for(fields),
    )
    return gpu_choose(
        NewJob(
            kind=JobKind.GENERATE,
            runtime=RuntimeName.COMFYUI,
            project_id=project_id,
            interactive=request.count == 1,
            settings=fields,
            plan=plan,
        )
    )


def role_refusal(profile: Profile, runtime: str) -> str:
    """Why this profile's role refuses ``runtime`` ("" when it runs it)."""
    if profile.runs(runtime):
        return ""
    return (
        f"profile {profile.name} makes it {ROLE_WORDS[profile.role]} "
        f"(role = \"{profile.role}\"), so it never runs the "
        f"{RUNTIME_WORDS.get(runtime, runtime)}"
    )


def _admission(profile: Profile, new: NewJob) -> Admission:
    if new.settings is not None:
        return admit_generation(profile, new.settings)
    return admit_review(profile)


def gpu_choose(new: NewJob, *, now: datetime | None = None) -> GpuChoice:
    """The GPU a new job goes to (NoActiveProfile when there is no GPU at all).

    When no GPU can take it, the choice is the first GPU whose profile refused it, with
    admission's refusal (the caller blocks the job with its numbers) and the other GPUs'
    reasons in ``reason``.
    """
    now = now or timezone.now()
    gpus = gpus_live(now)
    if not gpus:
        raise NoActiveProfile(settings.ARTCRITIC_GPU)
    choice = choose_among(gpus, new, now)
    if choice.admission.ok:
        return choice
    # None of the live GPUs can run it: waiting for a GPU whose worker is away (and comes
    # back, as a restarted worker does) beats blocking it.
    live = {gpu.name for gpu in gpus}
    away = list(
        Gpu.objects.select_related("active_profile").exclude(name__in=live).order_by("name")
    )
    if not away:
        return choice
    wider = choose_among(sorted([*gpus, *away], key=lambda g: g.name), new, now)
    if not wider.admission.ok:
        return choice
    if wider.gpu in live:
        return wider
    return replace(
        wider,
        reason=f"{wider.gpu}: the only GPU that can run it; its worker has not reported for "
        f"over {WORKER_FRESH_S:.0f} s, so the job waits for it to come back",
    )


def choose_among(gpus: list[Gpu], new: NewJob, now: datetime) -> GpuChoice:
    """The best of ``gpus`` for ``new`` (its admission refusal when none can run it)."""
    profiles: dict[str, Profile] = {}
    admissions: dict[str, Admission] = {}
    refusals: dict[str, str] = {}
    for gpu in gpus:
        try:
            profile = profile_from_data(gpu.active_profile.data)
        except ProfileError as exc:
            refusals[gpu.name] = f"its active profile no longer loads: {exc}"
            continue
        profiles[gpu.name] = profile
        admissions[gpu.name] = _admission(profile, new)
        refusals[gpu.name] = role_refusal(profile, new.runtime) or (
            "" if admissions[gpu.name].ok else admissions[gpu.name].reason
        )
    if len(gpus) == 1 and gpus[0].name in profiles and not role_refusal(
        profiles[gpus[0].name], new.runtime
    ):
        # One GPU: nothing to weigh; admission's verdict stands, as before placement.
        name = gpus[0].name
        return GpuChoice(name, profiles[name], admissions[name], "")
    fitting = [gpu for gpu in gpus if not refusals[gpu.name]]
    if not fitting:
        return _refused(gpus, profiles, admissions, refusals, new)
    options = [_option(gpu, profiles[gpu.name], new, now) for gpu in fitting]
    options += [
        GpuOption(name=g.name, refusal=refusals[g.name], policy=options[0].policy, own_s=0.0)
        for g in gpus
        if refusals[g.name]
    ]
    me = PendingJob(
        id=-1,  # not created yet; ids of real jobs are positive
        runtime=new.runtime,
        kind=new.kind,
        project_id=new.project_id,
        priority=new.priority,
        interactive=new.interactive,
        enqueued_at=now.timestamp(),
        expected_seconds=0.0,  # each option's own_s replaces it
        variant=new.plan.model_mode if new.plan is not None else "",
    )
    chosen = place(me, options, now=now.timestamp())
    return GpuChoice(chosen.gpu, profiles[chosen.gpu], admissions[chosen.gpu], chosen.reason)


def _option(gpu: Gpu, profile: Profile, new: NewJob, now: datetime) -> GpuOption:
    model = duration_model(gpu.name, profile)
    jobs = list(
        Job.objects.filter(gpu=gpu.name, status__in=(*PENDING_STATUSES, JobStatus.RUNNING))
        .select_related("request")
        .order_by("created_at", "id")
    )
    view = queue_view(gpu, profile, jobs, now, model=model)
    return GpuOption(
        name=gpu.name,
        refusal="",
        policy=model.scheduler_policy(),
        own_s=model.own_seconds(new.kind, new.plan).seconds,
        pending=tuple(view.pending),
        resident=view.resident,
        busy_for_s=view.busy_s,
        switch=model.switch_seconds,
        loaded=view.loaded,
        started=view.started,
        gap_s=model.gap_seconds(),
        review_seats=view.review_seats,
        reviews_running_left=view.reviews_running_left,
    )


def _refused(
    gpus: list[Gpu],
    profiles: dict[str, Profile],
    admissions: dict[str, Admission],
    refusals: dict[str, str],
    new: NewJob,
) -> GpuChoice:
    """No GPU fits: the default GPU's refusal (else the first's), naming every GPU's reason."""
    names = [gpu.name for gpu in gpus if gpu.name in profiles]
    if not names:
        raise NoActiveProfile(str(NoGpuFits(refusals)))
    name = settings.ARTCRITIC_GPU if settings.ARTCRITIC_GPU in names else names[0]
    admission = admissions[name]
    reason = str(NoGpuFits(refusals))
    if admission.ok:
        # Its profile admits it but its role does not: refuse with the role's reason.
        admission = replace(
            admission,
            ok=False,
            reason=reason,
            next_action=(
                "ask an admin to activate a shared profile, or one whose role runs the "
                f"{RUNTIME_WORDS.get(new.runtime, new.runtime)}, on one of these GPUs."
            ),
        )
    return GpuChoice(name, profiles[name], admission, reason)
