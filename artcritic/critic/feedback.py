"""Reads for the Feedback page: how the Critic's verdicts compare with the team's.

The team's verdict on an image is the strict majority of its members' current decisions
(the image's ``approvals``/``rejections`` columns, kept by triggers); an image nobody
decided, or one the team splits evenly on, has nothing to agree with and is left out, as
on the review screen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDay, TruncWeek

from artcritic.critic.calibration import Row, rows_group
from artcritic.studio.models import CriticReview, Image, Project, Verdict
from artcritic.studio.selectors import critic_disagrees

# (key, label, score field): the Critic's four scores in reading order.
CRITERIA = (
    ("taste", "Taste", "score_taste"),
    ("manufacturability", "Manufacturability", "score_manufacturability"),
    ("intent", "Prompt intent", "score_intent"),
    ("consistency", "Consistency with prior decisions", "score_consistency"),
)
SCORE_FIELDS = tuple(field for _key, _label, field in CRITERIA)
# Reviews spread over more days than this are counted per week, so the chart keeps to a
# readable number of points.
DAILY_UP_TO_DAYS = 45
DISAGREEMENTS_SHOWN = 24


def _team_decided() -> Q:
    """On a review: its image has a strict team majority."""
    return ~Q(image__approvals=F("image__rejections"))


def _review_agrees() -> Q:
    return Q(verdict=Verdict.APPROVE, image__approvals__gt=F("image__rejections")) | Q(
        verdict=Verdict.REJECT, image__rejections__gt=F("image__approvals")
    )


@dataclass(frozen=True)
class LabelledReview:
    """An image the team decided, with its latest Critic review's scores and verdict."""

    image_id: int
    scores: tuple[int, int, int, int]
    critic_approves: bool
    team_approves: bool


def labelled_reviews(project: Project) -> list[LabelledReview]:
    """Every decided image's latest review, in one query (DISTINCT ON the image)."""
    rows = (
        CriticReview.objects.filter(image__project=project)
        .filter(_team_decided())
        .order_by("image_id", "-created_at", "-id")
        .distinct("image_id")
        .values_list("image_id", *SCORE_FIELDS, "verdict", "image__approvals", "image__rejections")
    )
    return [
        LabelledReview(
            image_id=row[0],
            scores=(row[1], row[2], row[3], row[4]),
            critic_approves=row[5] == Verdict.APPROVE,
            team_approves=row[6] > row[7],
        )
        for row in rows
    ]


def calibration_rows(labelled: list[LabelledReview]) -> list[Row]:
    """The labelled reviews as the calibration's grouped rows."""
    return rows_group([Row(r.scores, r.team_approves, r.critic_approves) for r in labelled])


# ---- Agreement over time ----


@dataclass(frozen=True)
class Period:
    """Reviews written in one day or week, and how many agree with the team's verdict now."""

    start: dt.date
    agreeing: int
    compared: int

    @property
    def percent(self) -> int:
        return round(100 * self.agreeing / self.compared)


def agreement_over_time(project: Project) -> tuple[str, list[Period]]:
    """("day" or "week", periods oldest first): every review (earlier ones too, so a review
    again counts in the period it was written) against the team's current verdict."""
    reviews = CriticReview.objects.filter(image__project=project).filter(_team_decided())
    span = reviews.order_by().aggregate(first=Min("created_at"), last=Max("created_at"))
    if span["first"] is None:
        return "day", []
    unit = "day" if (span["last"] - span["first"]).days <= DAILY_UP_TO_DAYS else "week"
    trunc = TruncDay("created_at") if unit == "day" else TruncWeek("created_at")
    rows = (
        reviews.annotate(period=trunc)
        .order_by("period")
        .values("period")
        .annotate(agreeing=Count("pk", filter=_review_agrees()), compared=Count("pk"))
    )
    return unit, [
        Period(start=row["period"].date(), agreeing=row["agreeing"], compared=row["compared"])
        for row in rows
    ]


# ---- Confusion matrix ----


@dataclass(frozen=True)
class Confusion:
    """The Critic's latest verdict against the team's, over the project's images."""

    approve_approve: int  # Critic approves, team approves
    approve_reject: int
    reject_approve: int
    reject_reject: int
    split: int  # reviewed, team split evenly (members decided)
    undecided: int  # reviewed, nobody decided
    unreviewed: int  # no Critic verdict yet

    @property
    def compared(self) -> int:
        return self.approve_approve + self.approve_reject + self.reject_approve + self.reject_reject

    @property
    def agreeing(self) -> int:
        return self.approve_approve + self.reject_reject


def confusion(project: Project) -> Confusion:
    """One aggregate over the image columns the triggers keep."""
    team_approves = Q(approvals__gt=F("rejections"))
    team_rejects = Q(rejections__gt=F("approvals"))
    critic_approves, critic_rejects = Q(critic_verdict="approve"), Q(critic_verdict="reject")
    reviewed = ~Q(critic_verdict="")
    counts = Image.objects.filter(project=project).aggregate(
        aa=Count("pk", filter=critic_approves & team_approves),
        ar=Count("pk", filter=critic_approves & team_rejects),
        ra=Count("pk", filter=critic_rejects & team_approves),
        rr=Count("pk", filter=critic_rejects & team_rejects),
        split=Count("pk", filter=reviewed & Q(approvals=F("rejections")) & Q(approvals__gt=0)),
        undecided=Count("pk", filter=reviewed & Q(approvals=0, rejections=0)),
        unreviewed=Count("pk", filter=Q(critic_verdict="")),
    )
    return Confusion(
        approve_approve=counts["aa"],
        approve_reject=counts["ar"],
        reject_approve=counts["ra"],
        reject_reject=counts["rr"],
        split=counts["split"],
        undecided=counts["undecided"],
        unreviewed=counts["unreviewed"],
    )


# ---- Score distributions ----


@dataclass(frozen=True)
class Distribution:
    """One criterion's scores (0–10) on images the team approved and on those it rejected."""

    key: str
    label: str
    approved: tuple[int, ...]  # 11 counts, index = score
    rejected: tuple[int, ...]

    @property
    def approved_mean(self) -> float | None:
        return _mean(self.approved)

    @property
    def rejected_mean(self) -> float | None:
        return _mean(self.rejected)


def _mean(counts: tuple[int, ...]) -> float | None:
    total = sum(counts)
    return sum(score * n for score, n in enumerate(counts)) / total if total else None


def score_distributions(labelled: list[LabelledReview]) -> list[Distribution]:
    """Per criterion, how the latest review's score is spread for approved and rejected."""
    result = []
    for index, (key, label, _field) in enumerate(CRITERIA):
        approved, rejected = [0] * 11, [0] * 11
        for review in labelled:
            (approved if review.team_approves else rejected)[review.scores[index]] += 1
        result.append(Distribution(key, label, tuple(approved), tuple(rejected)))
    return result


# ---- Disagreements ----


def disagreements(project: Project) -> QuerySet[Image]:
    """Images whose Critic's latest verdict is the opposite of the team's, newest first."""
    return (
        Image.objects.filter(project=project)
        .filter(critic_disagrees())
        .select_related("prompt")
        .order_by("-created_at", "-id")
    )


def review_scores(review: CriticReview) -> tuple[int, int, int, int]:
    """A review's four scores in the calibration's order."""
    return (
        review.score_taste,
        review.score_manufacturability,
        review.score_intent,
        review.score_consistency,
    )
