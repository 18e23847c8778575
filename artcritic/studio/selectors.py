"""Reads over the studio's records that pages of more than one app share."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from artcritic.studio.models import CriticReview, HumanDecision, Image, Project, Verdict


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
