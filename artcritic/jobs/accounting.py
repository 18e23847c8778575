"""Reads of what the work cost and how well the queue kept its promises.

A project's month (images, kWh, cost, cost per image and per approved image), a GPU's
duty cycle, what one image or review cost, and the accuracy of the ETAs stored at
admission. Every figure is arithmetic over measurements recorded where the work happened
(``lifecycle._measure``); none is a constant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from artcritic.gpu.costs import duty_cycle, per_unit
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.studio.models import CriticReview, Image, Project

ACCURACY_JOBS = 100


def month_start(now: datetime) -> datetime:
    """Midnight of the first day of ``now``'s month, in ``now``'s time zone."""
    local = timezone.localtime(now)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0–1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


# -- a project's month ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectCosts:
    """A project's month so far: what it made and what that cost."""

    since: datetime
    images: int
    approved: int
    reviews: int
    kwh: float
    cost: float
    currency: str
    # Jobs priced without the GPU's energy (the card does not report it): cost is a floor.
    energy_missing: int
    # Jobs of the month with a cost (finished under a profile with economics).
    priced_jobs: int

    @property
    def per_image(self) -> float | None:
        return per_unit(self.cost, self.images)

    @property
    def per_approved(self) -> float | None:
        return per_unit(self.cost, self.approved)


def approved_image() -> Q:
    """An image some member currently approves and none currently rejects (for a filter).

    Read from the image's current-decision counters, which database triggers keep on every
    write of a decision (studio migration 0006), not from a subquery per image.
    """
    return Q(approvals__gt=0, rejections=0)


def project_costs(project: Project, *, now: datetime | None = None) -> ProjectCosts:
    """This month's images, kWh and cost of ``project`` (two queries).

    Every job's cost counts — reviews and failures too, since the GPU spent them — so the
    cost per approved image is what a design lead actually pays for one they keep.
    """
    now = now or timezone.now()
    since = month_start(now)
    jobs = Job.objects.filter(project=project, finished_at__gte=since, cost__isnull=False)
    totals = jobs.aggregate(
        cost=Coalesce(Sum("cost"), 0.0),
        kwh=Coalesce(Sum("cost_kwh"), 0.0),
        priced=Count("pk"),
        missing=Count("pk", filter=Q(energy_joules__isnull=True)),
        reviews=Count("pk", filter=Q(kind=JobKind.REVIEW, status=JobStatus.DONE)),
        # Profiles price in one currency; a mix would need a rate nobody measured.
        currency=Max("cost_currency"),
    )
    currency = totals["currency"] or ""
    images = Image.objects.filter(project=project, created_at__gte=since).aggregate(
        made=Count("pk"), approved=Count("pk", filter=approved_image())
    )
    return ProjectCosts(
        since=since,
        images=images["made"],
        approved=images["approved"],
        reviews=totals["reviews"],
        kwh=totals["kwh"],
        cost=totals["cost"],
        currency=currency,
        energy_missing=totals["missing"],
        priced_jobs=totals["priced"],
    )


# -- a GPU's duty cycle -----------------------------------------------------------------------


@dataclass(frozen=True)
class DutyCycle:
    """How busy a GPU was: its jobs' seconds (own work and swaps) over a window."""

    gpu: str
    since: datetime
    busy_s: float
    window_s: float
    jobs: int

    @property
    def share(self) -> float:
        return duty_cycle(self.busy_s, self.window_s) if self.window_s > 0 else 0.0


def duty_cycles(
    gpus: Sequence[str], *, since: datetime, now: datetime | None = None
) -> dict[str, DutyCycle]:
    """Each GPU's duty cycle from ``since`` to now (one query)."""
    now = now or timezone.now()
    window = max(0.0, (now - since).total_seconds())
    rows = (
        Job.objects.filter(gpu__in=list(gpus), finished_at__gte=since, gpu_seconds__isnull=False)
        .values("gpu")
        .annotate(
            busy=Sum(F("gpu_seconds") + Coalesce(F("swap_seconds"), 0.0)), jobs=Count("pk")
        )
    )
    found: dict[str, tuple[float, int]] = {
        str(row["gpu"]): (float(row["busy"] or 0.0), int(row["jobs"] or 0)) for row in rows
    }
    return {
        name: DutyCycle(
            gpu=name,
            since=since,
            busy_s=found.get(name, (0.0, 0))[0],
            window_s=window,
            jobs=found.get(name, (0.0, 0))[1],
        )
        for name in gpus
    }


# -- one image, one review --------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCosts:
    """What one image cost to make and to review, and the review per thousand Critic tokens."""

    currency: str
    # Its generation job's cost shared over the images that job made.
    image: float | None
    review: float | None
    review_tokens: int
    # True when the generation or a review was priced without the GPU's energy.
    energy_missing: bool
    # True when neither job was priced (no economics in the profile, or not finished yet).
    unpriced: bool

    @property
    def per_thousand_tokens(self) -> float | None:
        if self.review is None:
            return None
        return per_unit(self.review, self.review_tokens / 1000)


def image_costs(image: Image) -> ImageCosts:
    """The image's share of its generation's cost and its reviews' cost (two queries)."""
    generation = (
        Job.objects.filter(pk=image.job_id or 0)
        .values("cost", "cost_currency", "energy_joules", "gpu_seconds", "output_count")
        .first()
    )
    reviews = list(
        CriticReview.objects.filter(image=image, job__isnull=False).values(
            "prompt_tokens",
            "completion_tokens",
            "job__cost",
            "job__cost_currency",
            "job__energy_joules",
            "job__gpu_seconds",
        )
    )
    priced_reviews = [r for r in reviews if r["job__cost"] is not None]
    share = None
    if generation is not None and generation["cost"] is not None:
        share = per_unit(generation["cost"], max(1, generation["output_count"]))
    review = sum(r["job__cost"] or 0.0 for r in priced_reviews) if priced_reviews else None
    currency = generation["cost_currency"] if generation is not None else ""
    currency = currency or next((r["job__cost_currency"] for r in priced_reviews), "")
    missing = bool(
        generation is not None
        and generation["gpu_seconds"] is not None
        and generation["energy_joules"] is None
    ) or any(r["job__gpu_seconds"] is not None and r["job__energy_joules"] is None for r in reviews)
    return ImageCosts(
        currency=currency,
        image=share,
        review=review,
        review_tokens=sum(r["prompt_tokens"] + r["completion_tokens"] for r in priced_reviews),
        energy_missing=missing,
        unpriced=share is None and review is None,
    )


# -- ETA accuracy -------------------------------------------------------------------------


@dataclass(frozen=True)
class EtaAccuracy:
    """How far the finish times predicted at admission were from the real ones."""

    gpu: str
    jobs: int
    median_abs_s: float | None
    p90_abs_s: float | None
    median_pct: float | None
    p90_pct: float | None
    # How many of them were predicted from measured runs (the rest from the profile).
    from_history: int


def eta_errors(jobs: Sequence[Mapping[str, object]]) -> tuple[list[float], list[float]]:
    """Absolute finish errors in seconds and in percent of the admitted → finished time."""
    seconds: list[float] = []
    percents: list[float] = []
    for job in jobs:
        finished, predicted, admitted = (
            job["finished_at"],
            job["predicted_finish_at"],
            job["admitted_at"],
        )
        if not (
            isinstance(finished, datetime)
            and isinstance(predicted, datetime)
            and isinstance(admitted, datetime)
        ):
            continue
        error = abs((finished - predicted).total_seconds())
        took = (finished - admitted).total_seconds()
        seconds.append(error)
        if took > 0:
            percents.append(100.0 * error / took)
    return seconds, percents


def eta_accuracy(gpus: Sequence[str], *, last: int = ACCURACY_JOBS) -> dict[str, EtaAccuracy]:
    """Per GPU, the median and p90 error of the last ``last`` done jobs' predictions."""
    result = {}
    for name in gpus:
        rows = list(
            Job.objects.filter(
                gpu=name,
                status=JobStatus.DONE,
                predicted_finish_at__isnull=False,
                admitted_at__isnull=False,
            )
            .order_by("-finished_at", "-id")
            .values("finished_at", "predicted_finish_at", "admitted_at", "predicted_samples")[
                :last
            ]
        )
        seconds, percents = eta_errors(rows)
        result[name] = EtaAccuracy(
            gpu=name,
            jobs=len(seconds),
            median_abs_s=nearest_rank(seconds, 0.5),
            p90_abs_s=nearest_rank(seconds, 0.9),
            median_pct=nearest_rank(percents, 0.5),
            p90_pct=nearest_rank(percents, 0.9),
            from_history=sum(1 for row in rows if row["predicted_samples"]),
        )
    return result


def last_day(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=1)


# -- per image, for the break-even view -------------------------------------------------------


@dataclass(frozen=True)
class ImageFigures:
    """A GPU's generations over a window: images, their electricity and their busy seconds."""

    gpu: str
    since: datetime
    images: int
    electricity: float
    busy_s: float
    currency: str
    # Generations priced without the GPU's energy: the electricity is then a floor.
    energy_missing: int

    @property
    def electricity_per_image(self) -> float | None:
        return per_unit(self.electricity, self.images)

    @property
    def busy_s_per_image(self) -> float | None:
        return per_unit(self.busy_s, self.images)


def image_figures(gpu: str, *, since: datetime) -> ImageFigures:
    """What one image took on ``gpu`` since ``since``: done generations with a cost (one query)."""
    totals = Job.objects.filter(
        gpu=gpu,
        kind=JobKind.GENERATE,
        status=JobStatus.DONE,
        finished_at__gte=since,
        cost__isnull=False,
    ).aggregate(
        images=Coalesce(Sum("output_count"), 0),
        electricity=Coalesce(Sum("cost_electricity"), 0.0),
        busy=Coalesce(Sum(F("gpu_seconds") + Coalesce(F("swap_seconds"), 0.0)), 0.0),
        missing=Count("pk", filter=Q(energy_joules__isnull=True)),
        currency=Max("cost_currency"),
    )
    return ImageFigures(
        gpu=gpu,
        since=since,
        images=int(totals["images"]),
        electricity=float(totals["electricity"]),
        busy_s=float(totals["busy"]),
        currency=totals["currency"] or "",
        energy_missing=int(totals["missing"]),
    )
