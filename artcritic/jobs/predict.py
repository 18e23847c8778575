"""Predictions stored when a job is admitted: when it should start and finish.

When the job ends the error is known (``artcritic.jobs.accounting.eta_accuracy``): the
figure that says whether the queue's promises hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.forecast import gpu_forecast
from artcritic.jobs.models import PENDING_STATUSES, Job, JobStatus


def jobs_predict(
    gpu_name: str,
    job_ids: Sequence[int],
    *,
    model: DurationModel | None = None,
    now: datetime | None = None,
) -> int:
    """Store the forecast start and finish of ``job_ids`` (waiting on ``gpu_name``); how many."""
    now = now or timezone.now()
    gpu = Gpu.objects.select_related("active_profile").filter(name=gpu_name).first()
    if gpu is None:
        return 0
    try:
        profile = profile_from_data(gpu.active_profile.data)
    except ProfileError:
        return 0  # the pages say why; a prediction from a broken profile would be made up
    jobs = list(
        Job.objects.filter(gpu=gpu_name, status__in=(*PENDING_STATUSES, JobStatus.RUNNING))
        .select_related("request")
        .order_by("created_at", "id")
    )
    forecast = gpu_forecast(gpu, profile, jobs, now, model=model)
    stored = 0
    for job_id in job_ids:
        eta = forecast.eta(job_id)
        if eta is None:
            continue
        stored += Job.objects.filter(pk=job_id, status__in=PENDING_STATUSES).update(
            predicted_start_at=now + timedelta(seconds=eta.start_in_s),
            predicted_finish_at=now + timedelta(seconds=eta.finish_in_s),
            predicted_samples=forecast.own[job_id].samples,
        )
    return stored
