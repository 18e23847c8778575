"""Work on a GPU whose worker vanished moves to a GPU whose worker is alive.

A worker on another host can disappear for good (the host is powered off, its network is
gone). Its jobs must not wait for it forever: every live GPU worker's sweeper looks for
GPUs whose worker has not reported for ``ARTCRITIC_WORKER_GONE_S`` and moves their
waiting jobs, and their running jobs whose lease expired, to the live GPU placement
picks (fit first: a job no live GPU can run stays and says why on its row). A running
job moved this way is interrupted and re-queued once on its new GPU, as on one host;
the images it stored are kept and only the missing ones are made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from artcritic.gpu.models import Gpu
from artcritic.jobs import lifecycle
from artcritic.jobs.models import PENDING_STATUSES, Job, JobStatus
from artcritic.jobs.placing import WORKER_FRESH_S, choose_among, new_job_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    job: int
    from_gpu: str
    to_gpu: str
    reason: str


def gpus_gone(now: datetime) -> dict[str, float]:
    """GPUs whose worker reported once and then fell silent: name → seconds of silence."""
    cutoff = now - timedelta(seconds=settings.ARTCRITIC_WORKER_GONE_S)
    return {
        gpu.name: (now - gpu.reading_at).total_seconds()
        for gpu in Gpu.objects.filter(reading_at__lt=cutoff).only("name", "reading_at")
        if gpu.reading_at is not None
    }


def jobs_rehome(*, now: datetime | None = None) -> list[Move]:
    """Move what waits on vanished workers' GPUs to live GPUs; the moves made."""
    now = now or timezone.now()
    gone = gpus_gone(now)
    if not gone:
        return []
    live = list(
        Gpu.objects.select_related("active_profile")
        .filter(reading_at__gte=now - timedelta(seconds=WORKER_FRESH_S))
        .exclude(name__in=gone)
        .order_by("name")
    )
    if not live:
        return []
    stranded = (
        Job.objects.select_related("request")
        .filter(gpu__in=gone, cancel_requested=False)
        .filter(
            Q(status__in=PENDING_STATUSES)
            | Q(status=JobStatus.RUNNING)
            & (Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True))
        )
        .order_by("created_at", "id")
    )
    moves: list[Move] = []
    for job in stranded:
        choice = choose_among(live, new_job_of(job), now)
        if not choice.admission.ok:
            continue  # no live GPU can run it: it waits for its own, whose row says so
        silent = gone[job.gpu]
        reason = (
            f"Moved from {job.gpu} to {choice.gpu}: {job.gpu}'s worker has not reported for "
            f"{silent:.0f} s"
            + (f"; {choice.reason}" if choice.reason else "")
        )
        if lifecycle.job_move_gpu(job.pk, from_gpu=job.gpu, to_gpu=choice.gpu, reason=reason):
            log.warning("job %s: %s", job.pk, reason)
            moves.append(Move(job.pk, job.gpu, choice.gpu, reason))
    return moves
