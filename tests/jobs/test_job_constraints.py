"""Database rules of jobs, the append-only phase history, and audit events."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from artcritic.audit.models import AuditEvent
from artcritic.audit.services import audit_record
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.studio.models import GenerationRequest, Image
from tests.factories import project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make, phase_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Users are made in most tests here; the real PBKDF2 cost would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def request_() -> GenerationRequest:
    owner = user_make()
    return request_make(prompt_make(project_make(owner=owner), owner))


@pytest.fixture
def image(request_: GenerationRequest) -> Image:
    return image_make(request_)


@pytest.fixture
def job(request_: GenerationRequest) -> Job:
    return job_make(request_)


# --- kind, status, phase -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["", "upscale", "GENERATE"])
def test_a_job_kind_is_generate_or_review(request_: GenerationRequest, kind: str) -> None:
    with pytest.raises(IntegrityError, match="job_kind_valid"), transaction.atomic():
        job_make(request_, kind=kind)


@pytest.mark.parametrize("status", ["", "paused", "Queued"])
def test_a_job_status_is_one_of_the_known_ones(request_: GenerationRequest, status: str) -> None:
    with pytest.raises(IntegrityError, match="job_status_valid"), transaction.atomic():
        job_make(request_, status=status)


@pytest.mark.parametrize("phase", ["dreaming", "Loading", " "])
def test_a_job_phase_is_empty_or_one_of_the_known_ones(
    request_: GenerationRequest, phase: str
) -> None:
    with pytest.raises(IntegrityError, match="job_phase_valid"), transaction.atomic():
        job_make(request_, status=JobStatus.RUNNING, phase=phase)


@pytest.mark.parametrize("phase", ["", *Phase.values])
def test_every_known_phase_and_no_phase_are_accepted(
    request_: GenerationRequest, phase: str
) -> None:
    assert job_make(request_, status=JobStatus.RUNNING, phase=phase).phase == phase


# --- the subject matches the kind ----------------------------------------------------


def test_a_generate_job_needs_its_request(image: Image) -> None:
    with pytest.raises(IntegrityError, match="job_subject_matches_kind"), transaction.atomic():
        job_make(image=image, kind=JobKind.GENERATE, runtime="comfyui")


def test_a_review_job_needs_its_image(request_: GenerationRequest) -> None:
    with pytest.raises(IntegrityError, match="job_subject_matches_kind"), transaction.atomic():
        job_make(request_, kind=JobKind.REVIEW, runtime="critic")


def test_a_job_with_no_subject_is_refused(request_: GenerationRequest) -> None:
    with pytest.raises(IntegrityError, match="job_subject_matches_kind"), transaction.atomic():
        Job.objects.create(
            kind=JobKind.GENERATE,
            project=request_.project,
            runtime="comfyui",
            gpu="sim0",
            profile_name="sim-32gb",
        )


def test_generate_and_review_jobs_with_their_subjects_are_accepted(image: Image) -> None:
    generate = job_make(image.request)
    review = job_make(image=image)

    assert (generate.kind, review.kind) == (JobKind.GENERATE, JobKind.REVIEW)


# --- failures carry a reason and a next action ---------------------------------------


@pytest.mark.parametrize("status", [JobStatus.BLOCKED, JobStatus.FAILED])
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"error_reason": "ComfyUI ran out of GPU memory in KSampler (node 3)."},
        {"next_action": "Re-run with a smaller batch."},
        {"error_reason": "   ", "next_action": "Re-run with a smaller batch."},
        {"error_reason": "Out of memory.", "next_action": "\n\t "},
    ],
    ids=["neither", "reason-only", "next-action-only", "blank-reason", "blank-next-action"],
)
def test_a_blocked_or_failed_job_needs_a_reason_and_a_next_action(
    request_: GenerationRequest, status: str, fields: dict[str, Any]
) -> None:
    with (
        pytest.raises(IntegrityError, match="job_failure_has_reason_and_next_action"),
        transaction.atomic(),
    ):
        job_make(request_, status=status, **fields)


def test_a_job_cannot_be_marked_failed_later_without_a_reason(job: Job) -> None:
    job.status = JobStatus.FAILED

    with (
        pytest.raises(IntegrityError, match="job_failure_has_reason_and_next_action"),
        transaction.atomic(),
    ):
        job.save()


@pytest.mark.parametrize("status", [JobStatus.BLOCKED, JobStatus.FAILED])
def test_a_failure_with_both_reason_and_next_action_is_accepted(
    request_: GenerationRequest, status: str
) -> None:
    job = job_make(
        request_,
        status=status,
        error_reason="FLUX.1-dev bf16 at 1024×1024 × 4 needs ≈ 36.1 GB; the profile allows 30.5.",
        next_action="Choose the fp8 model mode or a batch of 1.",
    )

    assert Job.objects.get(pk=job.pk).status == status


@pytest.mark.parametrize(
    "status", [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.INTERRUPTED, JobStatus.QUEUED]
)
def test_other_statuses_need_no_reason(request_: GenerationRequest, status: str) -> None:
    assert job_make(request_, status=status).error_reason == ""


# --- progress and attempts -----------------------------------------------------------


def test_progress_never_exceeds_its_total(job: Job) -> None:
    job.progress_current, job.progress_total = 20, 20
    job.save()
    job.progress_current = 21

    with pytest.raises(IntegrityError, match="job_progress_within_total"), transaction.atomic():
        job.save()


def test_progress_without_a_total_is_refused(request_: GenerationRequest) -> None:
    with pytest.raises(IntegrityError, match="job_progress_within_total"), transaction.atomic():
        job_make(request_, progress_current=1)


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "constraint"),
    [(0, 2, "job_attempt_within_max"), (3, 2, "job_attempt_within_max"), (-1, 2, "attempt")],
)
def test_the_attempt_is_between_1_and_the_maximum(
    request_: GenerationRequest, attempt: int, max_attempts: int, constraint: str
) -> None:
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        job_make(request_, attempt=attempt, max_attempts=max_attempts)


def test_the_last_allowed_attempt_is_accepted(request_: GenerationRequest) -> None:
    assert job_make(request_, attempt=2, max_attempts=2).attempt == 2


# --- phase history is append-only ----------------------------------------------------


def test_a_phase_entry_refuses_any_update(job: Job) -> None:
    entry = phase_make(job, status=JobStatus.RUNNING, phase=Phase.LOADING, runtime="comfyui")
    entry.detail = "rewritten history"

    with pytest.raises(IntegrityError, match="Phase history is append-only"), transaction.atomic():
        entry.save()
    with pytest.raises(IntegrityError, match="Phase history is append-only"), transaction.atomic():
        JobPhase.objects.filter(job=job).update(started_at=timezone.now())

    assert JobPhase.objects.get(pk=entry.pk).detail == ""


def test_phase_entries_are_appended_and_go_with_their_job(job: Job) -> None:
    for phase in (Phase.WAITING_FOR_GPU, Phase.LOADING, Phase.GENERATING):
        phase_make(job, status=JobStatus.RUNNING, phase=phase)

    assert list(job.phases.values_list("phase", flat=True)) == [
        Phase.WAITING_FOR_GPU,
        Phase.LOADING,
        Phase.GENERATING,
    ]
    job.delete()
    assert not JobPhase.objects.exists()


def test_phase_entries_go_when_their_project_is_deleted(job: Job) -> None:
    phase_make(job, status=JobStatus.QUEUED)

    job.project.delete()

    assert not Job.objects.exists()
    assert not JobPhase.objects.exists()


# --- audit events are never edited ---------------------------------------------------


def test_an_audit_event_refuses_any_update() -> None:
    event = audit_record("profiles.load", "Loaded 3 hardware profile(s).")
    event.summary = "Nothing happened."

    with pytest.raises(IntegrityError, match="Audit events are never edited"), transaction.atomic():
        event.save()
    with pytest.raises(IntegrityError, match="Audit events are never edited"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="x")

    assert AuditEvent.objects.get(pk=event.pk).summary == "Loaded 3 hardware profile(s)."


def test_an_audit_event_can_be_deleted_outright() -> None:
    event = audit_record("profiles.load", "Loaded 3 hardware profile(s).")

    AuditEvent.objects.filter(pk=event.pk).delete()

    assert not AuditEvent.objects.exists()


# Audit history outlives what it describes: deleting a parent keeps the ids.


def test_a_project_with_audit_events_can_be_deleted(request_: GenerationRequest) -> None:
    audit_record("job.submit", "Submitted.", project_id=request_.project_id)

    with transaction.atomic():
        project_id = request_.project_id
        request_.project.delete()

    assert AuditEvent.objects.get().project_id == project_id


def test_a_job_with_audit_events_can_be_deleted(job: Job) -> None:
    audit_record("job.submit", "Submitted.", job_id=job.pk)

    with transaction.atomic():
        job_id = job.pk
        job.delete()

    assert AuditEvent.objects.get().job_id == job_id


def test_a_user_with_audit_events_can_be_deleted() -> None:
    user = user_make()
    audit_record("decision.record", "Approved.", actor=user)

    with transaction.atomic():
        user_id = user.pk
        user.delete()

    assert AuditEvent.objects.get().actor_id == user_id
