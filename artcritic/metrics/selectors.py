"""What /metrics reads at scrape time: plain rows from PostgreSQL (a handful of queries).

Counters are sums over the record of truth (jobs, phases, images, reviews), so they only
grow as rows are added; gauges are the latest stored readings and states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce

from artcritic.gpu.models import Gpu, RuntimeState
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.jobs.durations import HANDOFF, LEAD_IN, RECORD, STORE
from artcritic.jobs.history import duration_model, duration_samples
from artcritic.jobs.models import PENDING_STATUSES, Job, JobPhase, JobStatus
from artcritic.studio.models import CriticReview, Image

TOKENS_REVIEWS = 100


@dataclass(frozen=True)
class GpuRow:
    name: str
    reading: dict[str, Any]
    reading_at: datetime | None
    usable_bytes: int | None
    simulated: bool


def gpus() -> list[GpuRow]:
    rows = []
    for gpu in Gpu.objects.select_related("active_profile").order_by("name"):
        try:
            profile = profile_from_data(gpu.active_profile.data)
            usable: int | None = profile.usable_bytes
            simulated = profile.simulated
        except ProfileError:
            usable, simulated = None, gpu.active_profile.simulated
        rows.append(GpuRow(gpu.name, dict(gpu.reading or {}), gpu.reading_at, usable, simulated))
    return rows


def runtime_states() -> list[tuple[str, str, str]]:
    """(gpu, runtime, status) of every runtime row."""
    return list(RuntimeState.objects.values_list("gpu__name", "runtime", "status"))


def queue_depth() -> list[tuple[str, str, str, int]]:
    """(gpu, runtime, status, jobs) of waiting and running jobs."""
    rows = (
        Job.objects.filter(status__in=(*PENDING_STATUSES, JobStatus.RUNNING))
        .values("gpu", "runtime", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return [(row["gpu"], row["runtime"], row["status"], row["n"]) for row in rows]


def phase_histogram(buckets: Sequence[float]) -> list[tuple[str, str, str, list[int], float, int]]:
    """(gpu, runtime, phase, cumulative counts per bucket, sum, count) of finished phases.

    A phase ends when the next row of its job starts; rows of running attempts only (the
    queue's waiting rows are waits, not work).
    """
    phase_table, job_table = JobPhase._meta.db_table, Job._meta.db_table
    bucket_sql = ", ".join("COUNT(*) FILTER (WHERE seconds <= %s)" for _ in buckets)
    sql = f"""
        SELECT j.gpu, t.runtime, t.phase, {bucket_sql}, COALESCE(SUM(seconds), 0), COUNT(*)
        FROM (
            SELECT job_id, runtime, phase, status,
                   EXTRACT(EPOCH FROM LEAD(started_at) OVER (
                       PARTITION BY job_id ORDER BY started_at, id) - started_at) AS seconds
            FROM {phase_table}
        ) t JOIN {job_table} j ON j.id = t.job_id
        WHERE t.seconds IS NOT NULL AND t.status = %s AND t.phase <> ''
        GROUP BY j.gpu, t.runtime, t.phase
        ORDER BY j.gpu, t.runtime, t.phase
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [*buckets, JobStatus.RUNNING])
        rows = cursor.fetchall()
    n = len(buckets)
    return [
        (
            row[0],
            row[1],
            row[2],
            [int(v) for v in row[3 : 3 + n]],
            float(row[3 + n]),
            int(row[4 + n]),
        )
        for row in rows
    ]


def swaps() -> list[tuple[str, str, int]]:
    """(gpu, runtime released, releases) over the whole phase history."""
    rows = (
        JobPhase.objects.filter(phase="releasing", status=JobStatus.RUNNING)
        .values(gpu=F("job__gpu"), released=F("runtime"))
        .annotate(n=Count("pk"))
        .order_by()
    )
    return [(row["gpu"], row["released"], row["n"]) for row in rows]


@dataclass(frozen=True)
class JobTotals:
    gpu: str
    swap_s: float
    busy_s: float
    cost: float
    currency: str
    kwh: float


def job_totals() -> list[JobTotals]:
    """Per GPU and currency: swap seconds, busy seconds, cost and kWh of measured jobs."""
    rows = (
        Job.objects.filter(gpu_seconds__isnull=False)
        .values("gpu", "cost_currency")
        .annotate(
            swap=Coalesce(Sum("swap_seconds"), 0.0),
            busy=Coalesce(Sum(F("gpu_seconds") + Coalesce(F("swap_seconds"), 0.0)), 0.0),
            cost=Coalesce(Sum("cost"), 0.0),
            kwh=Coalesce(Sum("cost_kwh"), 0.0),
        )
        .order_by()
    )
    return [
        JobTotals(r["gpu"], r["swap"], r["busy"], r["cost"], r["cost_currency"], r["kwh"])
        for r in rows
    ]


def finished_jobs() -> list[tuple[str, str, str, str, int]]:
    """(gpu, kind, status, reason, jobs) of every finished or interrupted job."""
    rows = (
        Job.objects.filter(
            status__in=(
                JobStatus.DONE,
                JobStatus.FAILED,
                JobStatus.BLOCKED,
                JobStatus.CANCELLED,
                JobStatus.INTERRUPTED,
            )
        )
        .values("gpu", "kind", "status", "error_code")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return [(r["gpu"], r["kind"], r["status"], r["error_code"], r["n"]) for r in rows]


def images() -> list[tuple[str, int]]:
    """(gpu, images) — images of jobs that ran on each GPU."""
    rows = Image.objects.values(gpu=F("job__gpu")).annotate(n=Count("pk")).order_by()
    return [(row["gpu"] or "", row["n"]) for row in rows]


def reviews() -> list[tuple[str, str, int]]:
    """(gpu, verdict, reviews)."""
    rows = (
        CriticReview.objects.values("verdict", gpu=F("job__gpu")).annotate(n=Count("pk")).order_by()
    )
    return [(row["gpu"] or "", row["verdict"], row["n"]) for row in rows]


def critic_tokens_per_second(gpu_names: Sequence[str]) -> dict[str, float]:
    """Completion tokens per second of the last reviews of each GPU (where any)."""
    result = {}
    for name in gpu_names:
        latest = list(
            CriticReview.objects.filter(job__gpu=name, latency_ms__gt=0)
            .order_by("-created_at", "-id")
            .values_list("completion_tokens", "latency_ms")[:TOKENS_REVIEWS]
        )
        seconds = sum(ms for _tokens, ms in latest) / 1000
        if seconds > 0:
            result[name] = sum(tokens for tokens, _ms in latest) / seconds
    return result


def overhead(gpu_rows: Sequence[GpuRow]) -> list[tuple[str, str, str, float, int]]:
    """(gpu, runtime, step, seconds, runs): orchestration around the runtimes' own work.

    Lead-in (claim → first phase) and recording per job; handoff (between two prompts)
    and store (the last images stored and recorded) per image — the median of each GPU's
    recent runs, as the duration model knows them.
    """
    names = [row.name for row in gpu_rows]
    samples = duration_samples(names)
    found = []
    for gpu in Gpu.objects.select_related("active_profile").filter(name__in=names):
        try:
            profile = profile_from_data(gpu.active_profile.data)
        except ProfileError:
            continue
        model = duration_model(gpu.name, profile, samples=samples)
        for runtime, step in (
            ("comfyui", LEAD_IN),
            ("comfyui", HANDOFF),
            ("comfyui", STORE),
            ("critic", LEAD_IN),
            ("critic", RECORD),
        ):
            estimate = model.estimate(runtime, step)
            if estimate.from_history:
                found.append((gpu.name, runtime, step, estimate.seconds, estimate.samples))
    return found
