"""Projects and their members are edited here; what the system recorded is shown read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.html import format_html

from artcritic.jobs.models import Job
from artcritic.staff.admin.base import ReadOnlyAdmin
from artcritic.staff.admin.filters import BY_DATE
from artcritic.studio.models import (
    CriticReview,
    Favourite,
    GenerationRequest,
    HumanDecision,
    Image,
    Membership,
    Project,
    Prompt,
)
from artcritic.studio.storage import StorageError, url_presigned


def _count(model: Any, field: str) -> Coalesce:
    """A correlated COUNT per project row, so two counts never multiply each other."""
    rows = (
        model.objects.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows), 0)


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "joined_at")
    readonly_fields = ("joined_at",)
    raw_id_fields = ("user",)
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "members_total",
        "images_total",
        "jobs_total",
        "created_by",
        "created_at",
    )
    search_fields = ("name", "brief", "memberships__user__username")
    list_filter = (("created_at", BY_DATE),)
    list_select_related = ("created_by",)
    raw_id_fields = ("created_by",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (MembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_n=_count(Membership, "project"),
                image_n=_count(Image, "project"),
                job_n=_count(Job, "project"),
            )
        )

    @admin.display(description="members", ordering="member_n")
    def members_total(self, project: Project) -> int:
        return int(getattr(project, "member_n", 0))

    @admin.display(description="images", ordering="image_n")
    def images_total(self, project: Project) -> int:
        return int(getattr(project, "image_n", 0))

    @admin.display(description="jobs", ordering="job_n")
    def jobs_total(self, project: Project) -> int:
        return int(getattr(project, "job_n", 0))


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("project", "user", "role", "joined_at")
    list_filter = ("role",)
    search_fields = ("project__name", "user__username")
    list_select_related = ("project", "user")
    raw_id_fields = ("project", "user")


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ("short_text", "project", "author", "created_at")
    search_fields = ("text", "negative_text", "project__name", "author__username")
    list_filter = (("created_at", BY_DATE),)
    list_select_related = ("project", "author")

    @admin.display(description="prompt")
    def short_text(self, prompt: Prompt) -> str:
        return prompt.text if len(prompt.text) <= 80 else f"{prompt.text[:79]}…"


@admin.register(GenerationRequest)
class GenerationRequestAdmin(ReadOnlyAdmin):
    """Requests are stored as submitted (a database trigger refuses updates): view only."""

    list_display = (
        "id",
        "project",
        "model_mode",
        "size",
        "count",
        "steps",
        "seed_policy",
        "profile_name",
        "author",
        "created_at",
    )
    list_filter = ("model_mode", "seed_policy", "profile_name", ("created_at", BY_DATE))
    search_fields = ("prompt__text", "project__name", "author__username", "=id")
    list_select_related = ("project", "author")

    @admin.display(description="size")
    def size(self, request: GenerationRequest) -> str:
        return f"{request.width}×{request.height}"


def _thumbnail(key: str, size: int) -> str:
    try:
        url = url_presigned(key)
    except (StorageError, ValueError, TypeError) as exc:
        return format_html('<span title="{}">unavailable</span>', str(exc))
    return format_html(
        '<img src="{}" alt="" loading="lazy" style="width:{}px;height:{}px;object-fit:cover">',
        url,
        size,
        size,
    )


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_per_page = 50
    list_display = ("thumb", "id", "project", "seed", "review_status", "simulated", "created_at")
    list_display_links = ("thumb", "id")
    list_filter = ("review_status", "simulated", ("created_at", BY_DATE))
    search_fields = ("project__name", "sha256", "object_key", "=id")
    list_select_related = ("project",)
    readonly_fields = ("preview",)

    @admin.display(description="")
    def thumb(self, image: Image) -> str:
        return _thumbnail(image.thumbnail_key, 48)

    @admin.display(description="preview")
    def preview(self, image: Image) -> str:
        return _thumbnail(image.thumbnail_key, 320)


@admin.register(CriticReview)
class CriticReviewAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "image",
        "project",
        "verdict",
        "score_taste",
        "score_manufacturability",
        "score_intent",
        "score_consistency",
        "model_id",
        "runtime_version",
        "simulated",
        "created_at",
    )
    list_filter = ("verdict", "simulated", "model_id", ("created_at", BY_DATE))
    search_fields = ("image__project__name", "model_id", "=image__id")
    list_select_related = ("image", "image__project")

    @admin.display(description="project", ordering="image__project__name")
    def project(self, review: CriticReview) -> Project:
        return review.image.project


@admin.register(HumanDecision)
class HumanDecisionAdmin(ReadOnlyAdmin):
    list_display = ("image", "project", "user", "verdict", "is_current", "created_at")
    list_filter = ("verdict", "is_current", ("created_at", BY_DATE))
    search_fields = ("user__username", "note", "image__project__name", "=image__id")
    list_select_related = ("image", "image__project", "user")

    @admin.display(description="project", ordering="image__project__name")
    def project(self, decision: HumanDecision) -> Project:
        return decision.image.project


@admin.register(Favourite)
class FavouriteAdmin(ReadOnlyAdmin):
    """Designers' stars: their own shortlists, read-only here."""

    list_display = ("image", "user", "created_at")
    search_fields = ("user__username", "=image__id")
    list_filter = (("created_at", BY_DATE),)
    list_select_related = ("image", "user")
