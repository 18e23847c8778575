"""Jobs with statuses, phases, an append-only phase history, and failure reasons."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from artcritic.gpu.models import RuntimeName


class JobKind(models.TextChoices):
    GENERATE = "generate", "Generate"
    REVIEW = "review", "Review"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    ADMITTED = "admitted", "Admitted"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    BLOCKED = "blocked", "Blocked"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    INTERRUPTED = "interrupted", "Interrupted"


PENDING_STATUSES = (JobStatus.QUEUED, JobStatus.ADMITTED)
# Staff order waiting jobs within these bounds; the database refuses anything else, and any
# change of priority once a job left the queue (trigger jobs_job_priority_only_while_waiting).
PRIORITY_MIN = -100
PRIORITY_MAX = 100
FINISHED_STATUSES = (JobStatus.DONE, JobStatus.BLOCKED, JobStatus.FAILED, JobStatus.CANCELLED)


class Phase(models.TextChoices):
    WAITING_FOR_GPU = "waiting_for_gpu", "Waiting for GPU"
    RELEASING = "releasing", "Releasing"
    VERIFYING_VRAM = "verifying_vram", "Verifying VRAM"
    STARTING = "starting", "Starting"
    LOADING = "loading", "Loading weights"
    WARMING = "warming", "Warming up"
    GENERATING = "generating", "Generating"
    UPLOADING = "uploading", "Uploading"
    REVIEWING = "reviewing", "Reviewing"
    RECORDING = "recording", "Recording"


class Job(models.Model):
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="jobs")
    request = models.ForeignKey(
        "studio.GenerationRequest",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="jobs",
    )
    image = models.ForeignKey(
        "studio.Image", null=True, blank=True, on_delete=models.CASCADE, related_name="review_jobs"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    phase = models.CharField(max_length=20, choices=Phase.choices, blank=True)
    phase_runtime = models.CharField(max_length=16, choices=RuntimeName.choices, blank=True)
    phase_started_at = models.DateTimeField(null=True, blank=True)
    progress_current = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    runtime = models.CharField(max_length=16, choices=RuntimeName.choices)
    gpu = models.CharField(max_length=64)
    # Why placement chose this GPU, for the designer ("gpu1: Critic already resident, done
    # ~40 s sooner than on gpu0"); empty when only one GPU could be considered.
    placement_reason = models.CharField(max_length=500, blank=True)
    profile_name = models.CharField(max_length=64)
    runtime_version = models.CharField(
        max_length=80,
        blank=True,
        help_text="The runtime it ran on, as the runtime reported it (e.g. vLLM 0.34.0).",
    )
    priority = models.SmallIntegerField(
        default=0, help_text="Higher runs first; admins may raise it."
    )
    interactive = models.BooleanField(default=False, help_text="A single job a designer waits on.")
    attempt = models.PositiveSmallIntegerField(default=1)
    max_attempts = models.PositiveSmallIntegerField(default=2)
    lease_owner = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error_reason = models.TextField(blank=True)
    next_action = models.TextField(blank=True)
    output_count = models.PositiveSmallIntegerField(default=0)
    # Measured by the GPU worker from claim to finish (this attempt): peak VRAM from its
    # readings, NVML's energy counter delta (None: the card does not report energy), the
    # seconds of its own work, and the seconds of the runtime swap it caused.
    vram_peak_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    energy_joules = models.FloatField(null=True, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True)
    swap_seconds = models.FloatField(null=True, blank=True)
    # Cost at the profile's economics when it finished (None: no economics in the profile).
    cost = models.FloatField(null=True, blank=True)
    cost_electricity = models.FloatField(null=True, blank=True)
    # The kilowatt-hours priced: the GPU's energy (when reported) and the host's idle draw.
    cost_kwh = models.FloatField(null=True, blank=True)
    cost_currency = models.CharField(max_length=3, blank=True)
    # What kind of failure (for counting by reason): the domain error's name, snake_case.
    error_code = models.CharField(max_length=40, blank=True)
    # Predicted when it was admitted (the error is known when it ends) and how many
    # measured runs the prediction came from (0: the profile's numbers).
    predicted_start_at = models.DateTimeField(null=True, blank=True)
    predicted_finish_at = models.DateTimeField(null=True, blank=True)
    predicted_samples = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    admitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When this attempt was claimed by the GPU worker (started_at keeps the first attempt's).
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="job_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(phase="") | Q(phase__in=Phase.values), name="job_phase_valid"
            ),
            models.CheckConstraint(
                condition=(Q(kind=JobKind.GENERATE) & Q(request__isnull=False))
                | (Q(kind=JobKind.REVIEW) & Q(image__isnull=False)),
                name="job_subject_matches_kind",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=[JobStatus.BLOCKED, JobStatus.FAILED])
                | (Q(error_reason__regex=r"\S") & Q(next_action__regex=r"\S")),
                name="job_failure_has_reason_and_next_action",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=PRIORITY_MIN, priority__lte=PRIORITY_MAX),
                name="job_priority_in_range",
            ),
            models.CheckConstraint(
                condition=Q(progress_current__lte=models.F("progress_total")),
                name="job_progress_within_total",
            ),
            models.CheckConstraint(
                condition=Q(attempt__gte=1, attempt__lte=models.F("max_attempts")),
                name="job_attempt_within_max",
            ),
            models.CheckConstraint(
                condition=(Q(gpu_seconds__isnull=True) | Q(gpu_seconds__gte=0))
                & (Q(swap_seconds__isnull=True) | Q(swap_seconds__gte=0))
                & (Q(energy_joules__isnull=True) | Q(energy_joules__gte=0))
                & (Q(cost__isnull=True) | Q(cost__gte=0)),
                name="job_measurements_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["gpu", "status"], name="job_gpu_status"),
            models.Index(fields=["project", "-created_at"], name="job_project_recent"),
            models.Index(fields=["gpu", "-finished_at"], name="job_gpu_finished"),
            # The dashboard's request history: a project's generate jobs, newest first.
            models.Index(
                fields=["project", "-created_at", "-id"],
                condition=Q(kind="generate"),
                name="job_project_generations",
            ),
            # The admin's job list after the active jobs: everything else, newest first.
            models.Index(fields=["-created_at", "-id"], name="job_recent"),
            # The review of an image: its latest review job (review page, Review again).
            models.Index(
                fields=["image", "-created_at"],
                condition=Q(kind="review"),
                name="job_image_reviews",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"


class JobPhase(models.Model):
    """Append-only: a database trigger refuses UPDATE; rows go only with their job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="phases")
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    phase = models.CharField(max_length=20, choices=Phase.choices, blank=True)
    runtime = models.CharField(max_length=16, choices=RuntimeName.choices, blank=True)
    started_at = models.DateTimeField()
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        verbose_name = "phase history entry"
        verbose_name_plural = "phase history"

    def __str__(self) -> str:
        label = f"{self.phase} {self.runtime}".strip() or self.status
        return f"job {self.job_id}: {label} at {self.started_at:%H:%M:%S}"
