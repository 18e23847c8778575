"""Projects, prompts, generation requests, images, Critic reviews and human decisions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length, Mod
from django.db.models.lookups import LessThanOrEqual

# Seeds stay within 2**53 - 1 so that browsers (JavaScript numbers) show them exactly.
MAX_SEED = 2**53 - 1
MAX_PROMPT_CHARS = 4000
MAX_NEGATIVE_CHARS = 2000
MAX_BRIEF_CHARS = 8000
MAX_NOTE_CHARS = 1000


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class SeedPolicy(models.TextChoices):
    FIXED = "fixed", "Fixed (same seed for every image)"
    INCREMENT = "increment", "Increment (seed, seed+1, …)"
    RANDOM = "random", "Random (drawn at submission, recorded)"


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Awaiting review"
    REVIEWING = "reviewing", "Being reviewed"
    REVIEWED = "reviewed", "Reviewed"
    FAILED = "failed", "Review failed"
    CANCELLED = "cancelled", "Review cancelled"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


class ProjectQuerySet(models.QuerySet["Project"]):
    def for_user(self, user: Any) -> ProjectQuerySet:
        """Projects the user is a member of (staff get no implicit access)."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(memberships__user=user)


class Project(models.Model):
    name = models.CharField(max_length=120)
    brief = models.TextField(blank=True, max_length=MAX_BRIEF_CHARS)
    taste_notes = models.TextField(blank=True, max_length=MAX_BRIEF_CHARS)
    manufacturability = models.TextField(
        "manufacturability constraints", blank=True, max_length=MAX_BRIEF_CHARS
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(name__regex=r"\S"), name="project_name_not_blank"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="prompts"
    )
    text = models.TextField(max_length=MAX_PROMPT_CHARS)
    negative_text = models.TextField(blank=True, max_length=MAX_NEGATIVE_CHARS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    Q(text__regex=r"\S"), LessThanOrEqual(Length("text"), MAX_PROMPT_CHARS)
                ),
                name="prompt_text_present_and_bounded",
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("negative_text"), MAX_NEGATIVE_CHARS),
                name="prompt_negative_bounded",
            ),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class GenerationRequest(models.Model):
    """Exact settings as submitted. A database trigger refuses any later UPDATE."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="requests")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="requests")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    profile_name = models.CharField(max_length=64)
    model_mode = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    steps = models.PositiveSmallIntegerField()
    cfg = models.FloatField()
    sampler = models.CharField(max_length=32)
    scheduler = models.CharField(max_length=32)
    lora_name = models.CharField(max_length=200, blank=True)
    lora_strength = models.FloatField(default=1.0)
    seed_policy = models.CharField(max_length=16, choices=SeedPolicy.choices)
    seed = models.BigIntegerField(help_text="The base seed the policy starts from.")
    seeds = ArrayField(
        models.BigIntegerField(), help_text="The seeds actually used, one per image."
    )
    count = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(width__gte=64, width__lte=8192, height__gte=64, height__lte=8192),
                name="request_size_in_range",
            ),
            models.CheckConstraint(
                condition=models.lookups.Exact(Mod("width", 8), 0)
                & models.lookups.Exact(Mod("height", 8), 0),
                name="request_size_multiple_of_8",
            ),
            models.CheckConstraint(
                condition=Q(steps__gte=1, steps__lte=200), name="request_steps_range"
            ),
            models.CheckConstraint(condition=Q(cfg__gte=0, cfg__lte=30), name="request_cfg_range"),
            models.CheckConstraint(
                condition=Q(count__gte=1, count__lte=64), name="request_count_range"
            ),
            models.CheckConstraint(
                condition=Q(lora_strength__gte=-100, lora_strength__lte=100),
                name="request_lora_strength_range",
            ),
            models.CheckConstraint(
                condition=Q(seed__gte=0, seed__lte=MAX_SEED), name="request_seed_range"
            ),
            models.CheckConstraint(
                condition=Q(seed_policy__in=SeedPolicy.values), name="request_seed_policy_valid"
            ),
            models.CheckConstraint(
                condition=Q(seeds__len=models.F("count")), name="request_one_seed_per_image"
            ),
            models.CheckConstraint(
                condition=Q(model_mode__regex=r"^[a-z0-9][a-z0-9._-]*$"),
                name="request_model_mode_slug",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_mode} {self.width}×{self.height} ×{self.count}"

    def settings_snapshot(self) -> dict[str, Any]:
        """The settings that produced an image, as stored beside it."""
        return {
            "profile": self.profile_name,
            "model_mode": self.model_mode,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "cfg": self.cfg,
            "sampler": self.sampler,
            "scheduler": self.scheduler,
            "lora_name": self.lora_name,
            "lora_strength": self.lora_strength,
            "seed_policy": self.seed_policy,
            "count": self.count,
        }


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="images")
    request = models.ForeignKey(GenerationRequest, on_delete=models.CASCADE, related_name="images")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="images"
    )
    index = models.PositiveSmallIntegerField(help_text="Position within its request, from 0.")
    seed = models.BigIntegerField()
    settings = models.JSONField(help_text="Snapshot of the request settings that produced it.")
    object_key = models.CharField(max_length=255, unique=True)
    thumbnail_key = models.CharField(max_length=255, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    review_status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.PENDING
    )
    simulated = models.BooleanField(default=False)
    # Kept by database triggers (migration 0005) on every insert, update and delete of the
    # decisions and reviews, so pages read them without counting, and two designers deciding
    # at once cannot lose an increment (each UPDATE holds the image row's lock).
    approvals = models.PositiveIntegerField(
        default=0, editable=False, help_text="Current approvals (kept by a database trigger)."
    )
    rejections = models.PositiveIntegerField(
        default=0, editable=False, help_text="Current rejections (kept by a database trigger)."
    )
    critic_verdict = models.CharField(
        max_length=8,
        choices=Verdict.choices,
        blank=True,
        default="",
        editable=False,
        help_text="The Critic's latest verdict, '' before any review (kept by a trigger).",
    )
    review_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Critic reviews of this image (kept by a trigger)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "index"], name="image_once_per_index"),
            models.CheckConstraint(
                condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="image_sha256_hex"
            ),
            models.CheckConstraint(
                condition=Q(review_status__in=ReviewStatus.values), name="image_review_status_valid"
            ),
        ]
        indexes = [
            # The gallery's and review screen's keyset order: newest first, id breaks ties.
            models.Index(fields=["project", "-created_at", "-id"], name="image_project_recent"),
            # The admin's image list, newest first across projects.
            models.Index(fields=["-created_at", "-id"], name="image_recent"),
            # The review tabs' counts and agreement, and "my decisions in this project",
            # read these few columns of every image of a project: an index-only scan of a
            # narrow index instead of the wide rows (settings, keys, hashes).
            models.Index(
                fields=["project"],
                include=["id", "critic_verdict", "approvals", "rejections", "created_at"],
                name="image_project_tallies",
            ),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk} (seed {self.seed})"

    @property
    def human_majority(self) -> str:
        """'approve' or 'reject' when the team's current verdicts lean one way, else ''."""
        if self.approvals > self.rejections:
            return Verdict.APPROVE.value
        if self.rejections > self.approvals:
            return Verdict.REJECT.value
        return ""


SCORE_FIELDS = ("score_taste", "score_manufacturability", "score_intent", "score_consistency")


class CriticReview(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="reviews")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    model_id = models.CharField(max_length=200)
    score_taste = models.PositiveSmallIntegerField()
    score_manufacturability = models.PositiveSmallIntegerField()
    score_intent = models.PositiveSmallIntegerField()
    score_consistency = models.PositiveSmallIntegerField()
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    rationale = models.JSONField(help_text="One rationale per criterion.")
    shown_decisions = models.ManyToManyField(  # type: ignore[var-annotated]
        "HumanDecision", blank=True, related_name="shown_in_reviews"
    )
    raw_response = models.TextField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    simulated = models.BooleanField(default=False)
    runtime_version = models.CharField(
        max_length=80, blank=True, help_text="The vLLM that answered, e.g. vLLM 0.34.0."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    score_taste__lte=10,
                    score_manufacturability__lte=10,
                    score_intent__lte=10,
                    score_consistency__lte=10,
                ),
                name="review_scores_0_to_10",
            ),
            models.CheckConstraint(
                condition=Q(verdict__in=Verdict.values), name="review_verdict_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Review of image {self.image_id}: {self.verdict}"


class HumanDecision(models.Model):
    """History is kept; at most one row per (image, user) is current.

    An undone decision stays as a row with ``undone_at`` set (and is never current again);
    undoing makes the user's previous, not undone, decision on that image current again.
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="decisions"
    )
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    note = models.TextField(blank=True, max_length=MAX_NOTE_CHARS)
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(
        null=True, blank=True, help_text="When its author undid it; undone rows stay as history."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(verdict__in=Verdict.values), name="decision_verdict_valid"
            ),
            models.CheckConstraint(
                condition=Q(undone_at__isnull=True) | Q(is_current=False),
                name="decision_undone_is_not_current",
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("note"), MAX_NOTE_CHARS),
                name="decision_note_bounded",
            ),
            models.UniqueConstraint(
                fields=["image", "user"],
                condition=Q(is_current=True),
                name="decision_one_current_per_user",
            ),
        ]
        indexes = [
            # "Approved by me" and the review tabs' counts start from the user.
            models.Index(
                fields=["user", "image"], condition=Q(is_current=True), name="decision_current_mine"
            ),
            # Undo: the user's latest decision not undone yet, newest first.
            models.Index(
                fields=["user", "-created_at", "-id"],
                condition=Q(undone_at__isnull=True),
                name="decision_undoable",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.verdict}s image {self.image_id}"


class Favourite(models.Model):
    """A designer's star on an image: their own shortlist, shown in the gallery's filter."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favourites"
    )
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "image"], name="favourite_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} likes image {self.image_id}"
