"""What the Critic was shown per review, and what it learns from the team: the calibration
fit and taste-note proposals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual

from artcritic.studio.models import MAX_NOTE_CHARS, CriticReview, Project


class Calibration(models.Model):
    """The latest calibration of a project's Critic, refitted on read when its data changed.

    ``fingerprint`` is a hash of the grouped rows it was fitted on: a page that finds the
    same rows uses the stored fit, one that finds new decisions or reviews refits (tenths of
    a second at thousands of images, `make bench-calibration`) and stores it here.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="calibration")
    fingerprint = models.CharField(max_length=64)
    # intercept then the four weights, None when there were too few decisions.
    coefficients = models.JSONField(null=True, blank=True)
    samples = models.PositiveIntegerField()
    approvals = models.PositiveIntegerField()
    rejections = models.PositiveIntegerField()
    held_out_agreeing = models.PositiveIntegerField()
    held_out_compared = models.PositiveIntegerField()
    raw_agreeing = models.PositiveIntegerField()
    raw_compared = models.PositiveIntegerField()
    reason = models.TextField(blank=True, help_text="Why there is no fit, with the numbers.")
    fitted_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(held_out_agreeing__lte=models.F("held_out_compared"))
                & Q(raw_agreeing__lte=models.F("raw_compared")),
                name="calibration_agreeing_within_compared",
            ),
        ]

    def __str__(self) -> str:
        return f"Calibration of {self.project} on {self.samples} images"


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    EDITED = "edited", "Accepted with edits"
    DISCARDED = "discarded", "Discarded"


class TasteProposal(models.Model):
    """An addition to the taste notes the Critic proposed; only a member's click applies it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="taste_proposals")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(max_length=MAX_NOTE_CHARS)
    why = models.TextField(blank=True, max_length=MAX_NOTE_CHARS)
    status = models.CharField(
        max_length=16, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED
    )
    final_text = models.TextField(blank=True, max_length=MAX_NOTE_CHARS)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ProposalStatus.values), name="proposal_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(Q(text__regex=r"\S"), LessThanOrEqual(Length("text"), MAX_NOTE_CHARS)),
                name="proposal_text_present_and_bounded",
            ),
            models.CheckConstraint(
                condition=Q(status=ProposalStatus.PROPOSED, decided_at__isnull=True)
                | (~Q(status=ProposalStatus.PROPOSED) & Q(decided_at__isnull=False)),
                name="proposal_decided_when_not_proposed",
            ),
        ]

    def __str__(self) -> str:
        return f"Proposal for {self.project}: {self.text[:40]}"


class ShownContext(models.Model):
    """One review's context as sent: k and m, each example, and the token arithmetic.

    ``examples`` is a list of ``{"image", "kind", "similarity", "thumbnail"}`` in the order
    the Critic saw them; ``thumbnail`` says whether its picture was attached.
    """

    review = models.OneToOneField(
        CriticReview, on_delete=models.CASCADE, related_name="shown_context"
    )
    decisions_limit = models.PositiveSmallIntegerField(help_text="k: prior decisions shown.")
    thumbnails_limit = models.PositiveSmallIntegerField(help_text="m: thumbnails attached.")
    examples = models.JSONField(default=list)
    prompt_tokens = models.PositiveIntegerField(help_text="Counted before sending.")
    image_tokens = models.PositiveIntegerField(help_text="All images, by Qwen-VL patching.")
    count_method = models.CharField(max_length=16)
    max_model_len = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(thumbnails_limit__lte=models.F("decisions_limit")),
                name="shown_thumbnails_within_decisions",
            ),
            models.CheckConstraint(
                condition=Q(count_method__in=["tokenizer", "bound"]),
                name="shown_count_method_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"context of review {self.review_id}"

    @property
    def thumbnails_shown(self) -> int:
        return sum(1 for e in self.examples if e.get("thumbnail"))
