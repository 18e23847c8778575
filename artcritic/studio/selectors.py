"""Reads for the designer pages: one queryset per page, with everything the template needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from artcritic.gpu.models import Gpu
from artcritic.jobs.models import PENDING_STATUSES, Job, JobStatus
from artcritic.studio.models import (
    CriticReview,
    HumanDecision,
    Image,
    Membership,
    Project,
    Verdict,
)

RECENT_JOBS = 20
# Gallery filters by the viewer's own current decision.
MINE_FILTERS = ("undecided", Verdict.APPROVE.value, Verdict.REJECT.value)


@dataclass(frozen=True)
class ActiveProfileBadge:
    """What the header says about this site's GPU: its active profile, and whether simulated."""

    gpu: str
    profile_name: str
    simulated: bool

    @property
    def missing(self) -> bool:
        return not self.profile_name


def badge_active_profile(gpu_name: str | None = None) -> ActiveProfileBadge:
    """The active profile's name and simulated flag for the header, in one small query."""
    name = gpu_name or settings.ARTCRITIC_GPU
    row = (
        Gpu.objects.filter(name=name)
        .values_list("active_profile__name", "active_profile__simulated")
        .first()
    )
    if row is None:
        return ActiveProfileBadge(gpu=name, profile_name="", simulated=False)
    return ActiveProfileBadge(gpu=name, profile_name=row[0], simulated=row[1])


def projects_for_user(user: Any) -> QuerySet[Project]:
    """The user's projects with their role, image count and pending jobs, newest activity first."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    images = (
        Image.objects.filter(project=OuterRef("pk"))
        .order_by()
        .values("project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    pending = (
        Job.objects.filter(
            project=OuterRef("pk"), status__in=(*PENDING_STATUSES, JobStatus.RUNNING)
        )
        .order_by()
        .values("project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Project.objects.for_user(user)
        .annotate(
            my_role=Subquery(role),
            image_count=Coalesce(Subquery(images), 0),
            active_job_count=Coalesce(Subquery(pending), 0),
        )
        .order_by("-updated_at", "-id")
    )


def jobs_recent(project: Project, limit: int = RECENT_JOBS) -> list[Job]:
    """The project's latest jobs with their request, prompt and submitter."""
    return list(
        Job.objects.filter(project=project)
        .select_related("request", "request__prompt", "submitted_by", "image")
        .order_by("-created_at", "-id")[:limit]
    )


def members_of(project: Project) -> list[Membership]:
    """Memberships of a project with their users, owners first."""
    return list(
        Membership.objects.filter(project=project)
        .select_related("user")
        .order_by("-role", "user__username")
    )


def gallery_images(project: Project, user: Any, mine: str = "") -> QuerySet[Image]:
    """The project's images, newest first, each with the viewer's verdict and the Critic's."""
    my_verdict = HumanDecision.objects.filter(
        image=OuterRef("pk"), user=user, is_current=True
    ).values("verdict")[:1]
    critic_verdict = CriticReview.objects.filter(image=OuterRef("pk")).values("verdict")[:1]
    images = (
        Image.objects.filter(project=project)
        .select_related("prompt")
        .annotate(
            my_verdict=Subquery(my_verdict),
            critic_verdict=Subquery(critic_verdict),
        )
        .order_by("-created_at", "-id")
    )
    if mine == "undecided":
        return images.filter(my_verdict__isnull=True)
    if mine in (Verdict.APPROVE, Verdict.REJECT):
        return images.filter(my_verdict=mine)
    return images


def image_reviews(image: Image) -> list[CriticReview]:
    """Critic reviews of an image, newest first, with the decisions each one was shown."""
    shown = HumanDecision.objects.select_related("user", "image")
    return list(
        CriticReview.objects.filter(image=image)
        .prefetch_related(Prefetch("shown_decisions", queryset=shown))
        .order_by("-created_at", "-id")
    )


def image_decisions(image: Image) -> list[HumanDecision]:
    """Every decision ever made on an image (history included), newest first."""
    return list(
        HumanDecision.objects.filter(image=image)
        .select_related("user")
        .order_by("-created_at", "-id")
    )


def decision_current(image: Image, user: Any) -> HumanDecision | None:
    """The user's current decision on an image, if any."""
    return HumanDecision.objects.filter(image=image, user=user, is_current=True).first()
