"""What-if from the database: the recorded jobs of the last N days and a scenario to replay.

Reads what ``jobs.whatif.replay`` needs (jobs done in the window, their plans, the
generation each review came from, whether each swapped) and builds the scenario's GPUs
from a loaded profile with the durations learned under it, on every GPU that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from artcritic.gpu.models import HardwareProfile
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.history import duration_samples, plan_of
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.jobs.whatif import (
    Figures,
    RecordedJob,
    ScenarioGpu,
    actual_figures,
    replay,
    scenario_names,
)

MAX_DAYS = 90
# A replay of more jobs than this would keep a page waiting; the command says so and stops.
MAX_JOBS = 20_000


class WhatIfRefused(Exception):
    """A what-if that cannot run, with the reason in words (the page shows it)."""


@dataclass(frozen=True)
class WhatIf:
    """A scenario against what happened, with the notes that qualify the comparison."""

    days: int
    profile: str
    gpus: int
    roles: str
    actual: Figures
    predicted: Figures
    learned_samples: int
    notes: tuple[str, ...]


def recorded_jobs(days: int, *, now: datetime | None = None) -> list[RecordedJob]:
    """Jobs done in the last ``days`` days, oldest first, in plain values."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise WhatIfRefused(f"Days must be a whole number from 1 to {MAX_DAYS}, not {days!r}.")
    now = now or timezone.now()
    rows = Job.objects.filter(
        status=JobStatus.DONE, created_at__gte=now - timedelta(days=days), created_at__lte=now
    )
    count = rows.count()
    if count > MAX_JOBS:
        raise WhatIfRefused(
            f"The last {days} days hold {count} finished jobs, more than the {MAX_JOBS} a "
            "replay takes. Next: choose fewer days."
        )
    swapped = set(
        JobPhase.objects.filter(job__in=rows, phase=Phase.RELEASING)
        .values_list("job_id", flat=True)
        .distinct()
    )
    jobs = []
    for job in rows.select_related("request", "image").order_by("created_at", "id"):
        plan = plan_of(job.request) if job.kind == JobKind.GENERATE and job.request else None
        jobs.append(
            RecordedJob(
                id=job.pk,
                kind=job.kind,
                project_id=job.project_id,
                enqueued_at=job.created_at.timestamp(),
                priority=job.priority,
                interactive=job.interactive,
                plan=plan,
                # The worker queues an image's review when its generation finishes; a
                # "review again" (interactive) was asked for at its own time.
                parent_id=(
                    job.image.job_id if job.image is not None and not job.interactive else None
                ),
                images=job.output_count if job.kind == JobKind.GENERATE else 0,
                picked_at=job.started_at.timestamp() if job.started_at else None,
                finished_at=job.finished_at.timestamp() if job.finished_at else None,
                swapped=job.pk in swapped,
                cost=job.cost,
                energy_joules=job.energy_joules,
            )
        )
    return jobs


def scenario_build(profile_name: str, gpus: int, roles: str) -> tuple[list[ScenarioGpu], int]:
    """The scenario's GPUs on a loaded profile, and how many learned samples price it."""
    row = HardwareProfile.objects.filter(name=profile_name).first()
    if row is None:
        raise WhatIfRefused(
            f"No hardware profile named {profile_name!r} is loaded. Next: load it with "
            "`manage.py loadprofiles`."
        )
    try:
        names = scenario_names(gpus, roles)
    except ValueError as exc:
        raise WhatIfRefused(f"{exc}.") from None
    samples = duration_samples(None, profile_name)
    specs = []
    for name, role in names:
        try:
            profile = profile_from_data({**row.data, "role": role})
        except ProfileError as exc:
            raise WhatIfRefused(f"Profile {profile_name} does not load: {exc}") from None
        specs.append(ScenarioGpu(name, profile, DurationModel(profile, samples)))
    return specs, len(samples)


def whatif_run(
    *, days: int, profile: str, gpus: int, roles: str, now: datetime | None = None
) -> WhatIf:
    """Replay the last ``days`` days on ``gpus`` GPUs of ``profile`` with ``roles``."""
    jobs = recorded_jobs(days, now=now)
    specs, learned = scenario_build(profile, gpus, roles)
    try:
        predicted = replay(jobs, specs)
    except ValueError as exc:
        raise WhatIfRefused(f"The history cannot be replayed on this setup: {exc}.") from None
    notes = [
        f"Durations: {learned} measured steps under {profile}"
        if learned
        else f"Durations: {profile} has no measured history yet, so the profile's own figures",
    ]
    if predicted.cost is not None and any(job.energy_joules is None for job in jobs):
        notes.append("Some jobs have no recorded GPU energy: their electricity is the host's only.")
    notes.append(
        "Costs use the GPU energy each job drew when it really ran; another card draws "
        "differently."
    )
    return WhatIf(
        days=days,
        profile=profile,
        gpus=gpus,
        roles=roles,
        actual=actual_figures(jobs, predicted.currency),
        predicted=predicted,
        learned_samples=learned,
        notes=tuple(notes),
    )
