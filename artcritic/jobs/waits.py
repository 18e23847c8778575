"""Tail latency as users feel it, per GPU: waiting to start, the first image, the review.

p50/p95/p99 (nearest rank) over a window, and convoys: a job that waited mostly behind
one long job. ``convoys`` is pure; ``tail_latency`` reads the jobs of a window (three
queries) and hands plain intervals to it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Min
from django.utils import timezone

from artcritic.jobs.accounting import nearest_rank
from artcritic.jobs.models import Job, JobKind, JobStatus

WINDOWS = (("24 h", timedelta(days=1)), ("7 d", timedelta(days=7)))
# A wait counts as a convoy when one job ran through at least half of it, and the wait
# was long enough to notice.
CONVOY_SHARE = 0.5
CONVOY_MIN_WAIT_S = 30.0


@dataclass(frozen=True)
class Interval:
    """A job's wait (admitted → started) or run (started → finished), in epoch seconds."""

    job_id: int
    kind: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class Convoy:
    """A job that waited behind one long job."""

    waiting: Interval
    behind: Interval
    # The part of the wait the long job was running.
    overlap_s: float


def convoys(
    waits: Sequence[Interval],
    runs: Sequence[Interval],
    *,
    share: float = CONVOY_SHARE,
    min_wait_s: float = CONVOY_MIN_WAIT_S,
) -> list[Convoy]:
    """Waits of at least ``min_wait_s`` that one run covered for ``share`` or more of."""
    # One GPU runs one job at a time: sorted by end, the runs a wait overlaps are a slice.
    ordered = sorted(runs, key=lambda run: run.end)
    ends = [run.end for run in ordered]
    found = []
    for wait in waits:
        if wait.seconds < min_wait_s:
            continue
        best: tuple[float, Interval] | None = None
        for run in ordered[bisect.bisect_right(ends, wait.start) :]:
            if run.start >= wait.end:
                break  # one job at a time: every later run starts later still
            if run.job_id == wait.job_id:
                continue
            overlap = min(wait.end, run.end) - max(wait.start, run.start)
            if overlap > 0 and (best is None or overlap > best[0]):
                best = (overlap, run)
        if best is not None and best[0] >= share * wait.seconds:
            found.append(Convoy(waiting=wait, behind=best[1], overlap_s=best[0]))
    return found


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99 of one latency over one window (None: nothing measured)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None


def percentiles(values: Sequence[float]) -> Percentiles:
    return Percentiles(
        count=len(values),
        p50=nearest_rank(values, 0.5),
        p95=nearest_rank(values, 0.95),
        p99=nearest_rank(values, 0.99),
    )


@dataclass(frozen=True)
class TailLatency:
    """One window of one GPU: the three latencies and the convoys."""

    window: str
    wait_to_start: Percentiles
    first_image: Percentiles
    to_review: Percentiles
    convoys: list[Convoy]

    @property
    def worst_convoy(self) -> Convoy | None:
        return max(self.convoys, key=lambda c: c.overlap_s, default=None)


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


def tail_latency(gpu: str, *, now: datetime | None = None) -> list[TailLatency]:
    """The GPU page's table: each window's percentiles and convoys (three queries)."""
    now = now or timezone.now()
    oldest = now - max(span for _label, span in WINDOWS)
    jobs = list(
        Job.objects.filter(gpu=gpu, started_at__gte=oldest, admitted_at__isnull=False)
        .annotate(first_image_at=Min("images__created_at"))
        .values("pk", "kind", "admitted_at", "started_at", "finished_at", "first_image_at")
    )
    reviews = list(
        Job.objects.filter(
            gpu=gpu, kind=JobKind.REVIEW, status=JobStatus.DONE, finished_at__gte=oldest
        ).values("finished_at", image_at=F("image__created_at"))
    )
    running = list(
        Job.objects.filter(gpu=gpu, started_at__isnull=False)
        .filter(finished_at__gte=oldest)
        .values("pk", "kind", "claimed_at", "started_at", "finished_at")
    )
    runs = [
        Interval(job["pk"], job["kind"], began.timestamp(), ended.timestamp())
        for job in running
        if (began := job["claimed_at"] or job["started_at"]) is not None
        and (ended := job["finished_at"]) is not None
    ]
    tables = []
    for label, span in WINDOWS:
        since = now - span
        recent = [job for job in jobs if (job["started_at"] or oldest) >= since]
        waits = [_seconds(job["started_at"], job["admitted_at"]) for job in recent]
        firsts = [
            _seconds(job["first_image_at"], job["admitted_at"])
            for job in recent
            if job["kind"] == JobKind.GENERATE
        ]
        to_review = [
            _seconds(review["finished_at"], review["image_at"])
            for review in reviews
            if (review["finished_at"] or oldest) >= since
        ]
        intervals = [
            Interval(job["pk"], job["kind"], admitted.timestamp(), started.timestamp())
            for job in recent
            if (admitted := job["admitted_at"]) is not None
            and (started := job["started_at"]) is not None
        ]
        tables.append(
            TailLatency(
                window=label,
                wait_to_start=percentiles([w for w in waits if w is not None]),
                first_image=percentiles([f for f in firsts if f is not None]),
                to_review=percentiles([r for r in to_review if r is not None]),
                convoys=convoys(intervals, runs),
            )
        )
    return tables
