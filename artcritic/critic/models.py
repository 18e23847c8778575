"""What the Critic learns from the team: the calibration fit and taste-note proposals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual

from artcritic.studio.models import MAX_NOTE_CHARS, Project


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
