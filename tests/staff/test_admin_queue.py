"""The queue in the admin: cancel, retry, re-prioritise and move-to-front, per job, for staff."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import AbstractUser, Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from artcritic.audit.models import AuditEvent
from artcritic.gpu.models import Gpu, RuntimeState, RuntimeStatus
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.studio.models import GenerationRequest, Project
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make, phase_make, review_make

pytestmark = pytest.mark.django_db

QUEUE = "admin:jobs_job_changelist"
FAILURE = {"error_reason": "ComfyUI ran out of GPU memory.", "next_action": "Re-run smaller."}


@pytest.fixture
def staff() -> AbstractUser:
    profile_load()
    return user_make("admin", is_staff=True, is_superuser=True)


@pytest.fixture
def client(staff: AbstractUser) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def project(staff: AbstractUser) -> Project:
    return project_make(owner=staff, name="Desk lamps")


def a_request(project: Project, **fields: Any) -> GenerationRequest:
    return request_make(prompt_make(project, project.created_by), **fields)


def a_job(project: Project, status: str = JobStatus.QUEUED, **fields: Any) -> Job:
    """A generate job for a request of its own, with a first history row."""
    if status in (JobStatus.FAILED, JobStatus.BLOCKED):
        fields = {**FAILURE, **fields}
    count = fields.pop("count", 1)
    request = fields.pop("request", None) or a_request(project, count=count)
    job = job_make(request, status=status, progress_total=request.count, **fields)
    phase_make(job)
    return job


def act(client: Client, action: str, jobs: Iterable[Job], **extra: Any) -> HttpResponse:
    """Post an admin action for ``jobs`` from the queue page, as its action bar does."""
    # Messages of earlier posts would show on the page they redirected to; drop them here.
    client.cookies.pop("messages", None)
    data = {"action": action, "index": "0", ACTION_CHECKBOX_NAME: [j.pk for j in jobs], **extra}
    return client.post(reverse(QUEUE), data)  # type: ignore[return-value]


def said(response: HttpResponse) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]  # type: ignore[attr-defined]


def refreshed(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def staff_with(*codenames: str) -> Client:
    """A staff member holding only these jobs permissions."""
    user = user_make(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


# ---- Cancel ----


def test_cancelling_a_waiting_job_cancels_it_at_once_with_history_and_audit(
    client: Client, project: Project
) -> None:
    job = a_job(project, status=JobStatus.ADMITTED, phase=Phase.WAITING_FOR_GPU)

    response = act(client, "cancel_jobs", [job])

    assert response.status_code == 302
    assert said(response) == [f"Job {job.pk} was cancelled before it started."]
    job = refreshed(job)
    assert (job.status, job.phase, job.cancel_requested) == (JobStatus.CANCELLED, "", True)
    assert job.phases.last().detail == "cancelled by admin"  # type: ignore[union-attr]
    audit = AuditEvent.objects.get(action="job.cancel", job_id=job.pk)
    assert audit.actor is not None
    assert audit.actor.get_username() == "admin"


def test_cancelling_a_running_job_asks_the_worker_to_interrupt_comfyui(
    client: Client, project: Project
) -> None:
    job = a_job(project, status=JobStatus.RUNNING, phase=Phase.GENERATING)

    response = act(client, "cancel_jobs", [job])

    assert said(response) == [
        f"Job {job.pk} is running: cancel requested; the worker interrupts ComfyUI (Artist) "
        "and records it as cancelled."
    ]
    job = refreshed(job)
    assert (job.status, job.phase, job.cancel_requested) == ("running", "generating", True)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (JobStatus.DONE, "was already done; nothing to cancel."),
        (JobStatus.FAILED, "was already failed; nothing to cancel."),
        (JobStatus.CANCELLED, "was already cancelled; nothing to cancel."),
        (JobStatus.INTERRUPTED, "was interrupted and waits no more; nothing to cancel."),
    ],
)
def test_cancelling_a_job_that_no_longer_waits_changes_nothing_and_says_so(
    client: Client, project: Project, status: str, words: str
) -> None:
    job = a_job(project, status=status)

    response = act(client, "cancel_jobs", [job])

    assert said(response) == [f"Job {job.pk} {words}"]
    assert refreshed(job).status == status
    assert not AuditEvent.objects.filter(action="job.cancel").exists()


def test_a_double_click_on_cancel_cancels_once(client: Client, project: Project) -> None:
    waiting = a_job(project)
    running = a_job(project, status=JobStatus.RUNNING, phase=Phase.LOADING)

    act(client, "cancel_jobs", [waiting, running])
    again = act(client, "cancel_jobs", [waiting, running])

    assert said(again) == [
        f"Job {waiting.pk} was already cancelled; nothing to cancel.",
        f"Job {running.pk} is already stopping (cancel requested earlier).",
    ]
    assert AuditEvent.objects.filter(action="job.cancel").count() == 2
    assert JobPhase.objects.filter(job=waiting, status=JobStatus.CANCELLED).count() == 1


def test_a_job_can_be_cancelled_from_its_own_page(client: Client, project: Project) -> None:
    job = a_job(project)
    url = reverse("admin:jobs_job_change", args=[job.pk])
    page = client.get(url)
    assert 'value="cancel_jobs"' in page.content.decode()

    response = client.post(
        url, {"CHANGE_FORM-action": "cancel_jobs", ACTION_CHECKBOX_NAME: str(job.pk)}
    )

    assert response.status_code == 302
    assert response["Location"] == url
    assert refreshed(job).status == JobStatus.CANCELLED


# ---- Retry ----


def test_retrying_a_failed_job_makes_a_new_admitted_job_and_keeps_the_old_one(
    client: Client, project: Project
) -> None:
    failed = a_job(project, status=JobStatus.FAILED, priority=3, interactive=True)
    history_before = list(failed.phases.values_list("pk", flat=True))

    response = act(client, "retry_jobs", [failed])

    retry = Job.objects.exclude(pk=failed.pk).get()
    assert said(response) == [
        f"Job {failed.pk} was retried as job {retry.pk}: admitted again on sim-32gb, "
        "waiting for GPU sim0."
    ]
    assert (retry.kind, retry.request_id, retry.gpu) == ("generate", failed.request_id, "sim0")
    assert (retry.status, retry.phase, retry.attempt) == ("admitted", "waiting_for_gpu", 1)
    assert (retry.priority, retry.interactive, retry.profile_name) == (3, True, "sim-32gb")
    assert list(retry.phases.values_list("status", "detail")) == [
        ("queued", f"retry of job {failed.pk} (failed) by admin"),
        ("admitted", retry.phases.last().detail),  # type: ignore[union-attr]
    ]
    assert retry.phases.last().detail.startswith("admitted again on sim-32gb: needs ")  # type: ignore[union-attr]
    # The original keeps its status, reason and history; one row says where it went.
    failed = refreshed(failed)
    assert (failed.status, failed.error_reason) == ("failed", FAILURE["error_reason"])
    history = list(failed.phases.values_list("pk", "detail"))
    assert [pk for pk, _ in history[:-1]] == history_before
    assert history[-1][1] == f"retried as job {retry.pk} by admin"
    audit = AuditEvent.objects.get(action="job.retried")
    assert (audit.job_id, audit.data["retry_of"]) == (retry.pk, failed.pk)


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.INTERRUPTED, JobStatus.BLOCKED])
def test_cancelled_interrupted_and_blocked_jobs_can_be_retried(
    client: Client, project: Project, status: str
) -> None:
    job = a_job(project, status=status)

    act(client, "retry_jobs", [job])

    assert Job.objects.filter(request=job.request, status=JobStatus.ADMITTED).count() == 1


def test_a_retry_runs_admission_again_against_the_profile_active_now(
    client: Client, project: Project
) -> None:
    # 2048 px is more than sim-32gb allows (1536), so the original was blocked.
    blocked = a_job(project, status=JobStatus.BLOCKED, request=a_request(project, width=2048))

    refused = act(client, "retry_jobs", [blocked])

    [message] = said(refused)
    assert message.startswith(
        f"Job {blocked.pk} was not retried: profile sim-32gb refuses it. A width of 2048 px is "
        "outside what profile sim-32gb allows"
    )
    assert "Next: Choose a width from 256 to 1536 px" in message
    assert Job.objects.count() == 1

    profile_load("rtx-pro-6000-96gb")  # an admin moved sim0 to the 96 GB profile
    act(client, "retry_jobs", [blocked])

    retry = Job.objects.exclude(pk=blocked.pk).get()
    assert (retry.status, retry.profile_name) == (JobStatus.ADMITTED, "rtx-pro-6000-96gb")


def test_a_retry_with_no_active_profile_is_refused_and_says_what_to_do(
    client: Client, project: Project
) -> None:
    job = a_job(project, status=JobStatus.FAILED, gpu="gone0")

    [message] = said(act(client, "retry_jobs", [job]))

    assert message.startswith(f"Job {job.pk} was not retried: GPU 'gone0' has no active")
    assert message.endswith("Next: activate a hardware profile for GPU gone0, then retry.")
    assert Job.objects.count() == 1


def test_a_retry_never_makes_an_image_twice(client: Client, project: Project) -> None:
    partly = a_job(project, status=JobStatus.INTERRUPTED, count=3, output_count=1)
    image_make(partly.request, index=0, job=partly)  # type: ignore[arg-type]
    complete = a_job(project, status=JobStatus.FAILED)
    image_make(complete.request, index=0, job=complete)  # type: ignore[arg-type]

    response = act(client, "retry_jobs", [partly, complete])

    assert said(response) == [
        f"Job {partly.pk} was not retried: request {partly.request_id} already has 1 of 3 "
        "image(s) stored, and a retry only re-runs requests that stored none, so no image is "
        "ever made twice. Next: ask the designer to submit the request again for the 2 missing "
        "image(s).",
        f"Job {complete.pk} was not retried: request {complete.request_id} already has all 1 of "
        "its image(s) stored; a retry would make nothing new.",
    ]
    assert Job.objects.count() == 2


def test_a_double_click_on_retry_makes_one_new_job(client: Client, project: Project) -> None:
    failed = a_job(project, status=JobStatus.FAILED)

    act(client, "retry_jobs", [failed])
    again = act(client, "retry_jobs", [failed])

    retry = Job.objects.exclude(pk=failed.pk).get()
    assert said(again) == [
        f"Job {failed.pk} was not retried: job {retry.pk} for the same request "
        f"{failed.request_id} is already admitted. Next: wait for job {retry.pk}, or cancel it "
        "first."
    ]
    assert AuditEvent.objects.filter(action="job.retried").count() == 1


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (JobStatus.DONE, "is done; there is nothing to retry."),
        (JobStatus.QUEUED, "is still queued; only failed, cancelled, interrupted or blocked"),
        (JobStatus.RUNNING, "is still running; only failed, cancelled, interrupted or blocked"),
    ],
)
def test_a_job_that_did_not_go_wrong_is_not_retried(
    client: Client, project: Project, status: str, words: str
) -> None:
    job = a_job(project, status=status)

    [message] = said(act(client, "retry_jobs", [job]))

    assert message.startswith(f"Job {job.pk} {words}")
    assert Job.objects.count() == 1


def test_a_failed_review_is_retried_once_and_never_for_a_reviewed_image(
    client: Client, project: Project
) -> None:
    done = a_job(project, status=JobStatus.DONE)
    image = image_make(done.request, job=done)  # type: ignore[arg-type]
    review = job_make(image=image, status=JobStatus.FAILED, progress_total=1, **FAILURE)

    act(client, "retry_jobs", [review])

    retry = Job.objects.get(kind=JobKind.REVIEW, status=JobStatus.ADMITTED)
    assert (retry.image_id, retry.runtime, retry.progress_total) == (image.pk, "critic", 1)

    Job.objects.filter(pk=retry.pk).update(status=JobStatus.DONE)
    stored = review_make(image, job=retry)
    [message] = said(act(client, "retry_jobs", [review]))
    assert message == (
        f"Job {review.pk} was not retried: image {image.pk} was already reviewed by job "
        f"{retry.pk} (review {stored.pk}); a retry would review it twice."
    )


# ---- Re-prioritise ----


def test_reprioritising_asks_for_the_priority_first(client: Client, project: Project) -> None:
    jobs = [a_job(project), a_job(project)]

    response = act(client, "reprioritise_jobs", jobs)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Priority (-100 to 100)" in page
    assert all(f'name="{ACTION_CHECKBOX_NAME}" value="{j.pk}"' in page for j in jobs)
    assert [refreshed(j).priority for j in jobs] == [0, 0]


def test_reprioritising_sets_waiting_jobs_and_explains_the_others(
    client: Client, project: Project
) -> None:
    waiting, done = a_job(project), a_job(project, status=JobStatus.DONE)

    response = act(client, "reprioritise_jobs", [waiting, done], apply="1", priority="7")

    assert response.status_code == 302
    assert said(response) == [
        f"Job {waiting.pk}'s priority changed from 0 to 7.",
        f"Job {done.pk} is done; its priority only matters while a job waits (queued or admitted).",
    ]
    assert (refreshed(waiting).priority, refreshed(done).priority) == (7, 0)
    audit = AuditEvent.objects.get(action="job.priority_changed")
    assert (audit.job_id, audit.data) == (waiting.pk, {"from": 0, "to": 7})


@pytest.mark.parametrize("priority", ["101", "-101", "high", "2.5", ""])
def test_a_priority_outside_the_range_is_refused_on_the_form(
    client: Client, project: Project, priority: str
) -> None:
    job = a_job(project)

    response = act(client, "reprioritise_jobs", [job], apply="1", priority=priority)

    assert response.status_code == 200
    assert 'class="errorlist' in response.content.decode()
    assert refreshed(job).priority == 0
    assert not AuditEvent.objects.filter(action="job.priority_changed").exists()


def test_submitting_the_same_priority_twice_records_it_once(
    client: Client, project: Project
) -> None:
    job = a_job(project)

    act(client, "reprioritise_jobs", [job], apply="1", priority="-20")
    again = act(client, "reprioritise_jobs", [job], apply="1", priority="-20")

    assert said(again) == [f"Job {job.pk} already has priority -20."]
    assert AuditEvent.objects.filter(action="job.priority_changed").count() == 1


# ---- Move to front ----


def test_moving_a_job_to_the_front_puts_it_one_above_the_highest_waiting_job(
    client: Client, project: Project
) -> None:
    low, high = a_job(project, priority=0), a_job(project, priority=5)
    a_job(project, priority=50, gpu="other")  # another GPU's queue does not count
    a_job(project, priority=90, status=JobStatus.DONE)  # nor do finished jobs

    response = act(client, "move_jobs_to_front", [low])

    assert said(response) == [f"Job {low.pk} moved to the front of sim0's queue (priority 0 → 6)."]
    assert refreshed(low).priority == 6
    audit = AuditEvent.objects.get(action="job.moved_to_front")
    assert audit.data == {"from": 0, "to": 6, "above_job": high.pk}
    assert f"one above job {high.pk} (priority 5)" in audit.summary
    assert "waited past the profile's maximum wait still run first" in audit.summary
    queue = client.get(reverse(QUEUE), {"status__exact": "queued", "gpu": "sim0"})
    assert [j.pk for j in queue.context["cl"].result_list] == [low.pk, high.pk]


def test_moving_several_jobs_keeps_their_order_among_themselves(
    client: Client, project: Project
) -> None:
    first, second = a_job(project), a_job(project)
    ahead = a_job(project, priority=10)

    act(client, "move_jobs_to_front", [second, first])

    assert (refreshed(first).priority, refreshed(second).priority) == (12, 11)
    queue = client.get(reverse(QUEUE))
    assert [j.pk for j in queue.context["cl"].result_list] == [first.pk, second.pk, ahead.pk]


def test_moving_to_the_front_twice_moves_once(client: Client, project: Project) -> None:
    job = a_job(project)
    a_job(project, priority=2)

    act(client, "move_jobs_to_front", [job])
    again = act(client, "move_jobs_to_front", [job])

    assert said(again) == [
        f"Job {job.pk} is already at the front of sim0's queue (priority 3; the next highest is 2)."
    ]
    assert AuditEvent.objects.filter(action="job.moved_to_front").count() == 1


def test_moving_to_the_front_is_refused_where_it_means_nothing_or_cannot_be_done(
    client: Client, project: Project
) -> None:
    alone = a_job(project, gpu="solo")
    running = a_job(project, status=JobStatus.RUNNING)
    capped = a_job(project, gpu="busy")
    top = a_job(project, gpu="busy", priority=100)

    response = act(client, "move_jobs_to_front", [alone, running, capped])

    assert said(response) == [
        f"Job {capped.pk} cannot go ahead of job {top.pk}, which already has the highest "
        f"priority 100 on busy. Next: lower job {top.pk}'s priority first, then move job "
        f"{capped.pk} to the front.",
        f"Job {running.pk} is running; its place in the queue only matters while a job waits "
        "(queued or admitted).",
        f"Job {alone.pk} is the only job waiting on solo; it is already at the front.",
    ]
    assert not AuditEvent.objects.filter(action="job.moved_to_front").exists()


# ---- The list ----


def test_the_queue_lists_running_then_waiting_jobs_in_the_schedulers_order_then_the_rest(
    client: Client, project: Project
) -> None:
    now = timezone.now()
    old_done = a_job(project, status=JobStatus.DONE)
    generate = a_job(project)
    running = a_job(project, status=JobStatus.RUNNING, phase=Phase.LOADING)
    image = image_make(old_done.request)  # type: ignore[arg-type]
    review = job_make(image=image, status=JobStatus.ADMITTED, progress_total=1)
    new_failed = a_job(project, status=JobStatus.FAILED)
    for seconds, job in enumerate([old_done, generate, running, review, new_failed]):
        Job.objects.filter(pk=job.pk).update(created_at=now - timedelta(seconds=60 - seconds))
    # The Critic is resident, so the scheduler runs the review before the older generation
    # (one swap saved) — an order no static sort of the rows would give.
    RuntimeState.objects.create(
        gpu=Gpu.objects.get(name="sim0"),
        runtime="critic",
        status=RuntimeStatus.READY,
        status_since=now,
    )

    response = client.get(reverse(QUEUE))

    rows = response.context["cl"].result_list
    assert [j.pk for j in rows] == [running.pk, review.pk, generate.pk, new_failed.pk, old_done.pk]
    assert [getattr(j, "queue_place_n", None) for j in rows] == [None, 1, 2, None, None]
    assert '<td class="field-queue_place">#1</td>' in response.content.decode()


def test_waiting_jobs_go_by_priority_then_interactive_then_age(
    client: Client, project: Project
) -> None:
    oldest = a_job(project)
    interactive = a_job(project, interactive=True)
    urgent = a_job(project, priority=5)

    rows = client.get(reverse(QUEUE)).context["cl"].result_list

    assert [j.pk for j in rows] == [urgent.pk, interactive.pk, oldest.pk]


def test_sorting_by_a_column_replaces_the_queue_order(client: Client, project: Project) -> None:
    jobs = [a_job(project, priority=p) for p in (3, 1, 2)]
    columns = client.get(reverse(QUEUE)).context["cl"].list_display

    response = client.get(reverse(QUEUE), {"o": str(columns.index("priority"))})

    assert [j.pk for j in response.context["cl"].result_list] == [
        jobs[1].pk,
        jobs[2].pk,
        jobs[0].pk,
    ]


def test_the_queue_shows_phase_with_elapsed_time_attempt_and_a_truncated_reason(
    client: Client, project: Project
) -> None:
    a_job(
        project,
        status=JobStatus.RUNNING,
        phase=Phase.LOADING,
        phase_runtime="comfyui",
        phase_started_at=timezone.now() - timedelta(seconds=100),
        attempt=2,
    )
    a_job(project, status=JobStatus.FAILED, error_reason="x" * 200)

    page = client.get(reverse(QUEUE)).content.decode()

    assert re.search(r"Loading weights ComfyUI \(Artist\) · 1 m 4\d s", page)
    assert "2 of 2" in page
    assert "x" * 89 + "…" in page
    assert "x" * 90 not in page


def test_the_queue_filters_by_status_kind_gpu_and_project_and_searches_id_prompt_and_project(
    client: Client, project: Project, staff: AbstractUser
) -> None:
    other = project_make(owner=staff, name="Chairs")
    lamp = a_job(project, request=request_make(prompt_make(project, text="a brass lamp")))
    chair = a_job(other, status=JobStatus.FAILED, gpu="gpu1")
    done = a_job(project, status=JobStatus.DONE)
    image = image_make(done.request)  # type: ignore[arg-type]
    review = job_make(image=image, status=JobStatus.QUEUED)

    def ids(**query: Any) -> set[int]:
        response = client.get(reverse(QUEUE), query)
        assert response.status_code == 200
        return {j.pk for j in response.context["cl"].result_list}

    assert ids(status__exact="failed") == {chair.pk}
    assert ids(kind__exact="review") == {review.pk}
    assert ids(gpu="gpu1") == {chair.pk}
    assert ids(project__id__exact=str(other.pk)) == {chair.pk}
    assert ids(q=str(lamp.pk)) == {lamp.pk}
    assert ids(q="brass") == {lamp.pk}
    assert ids(q="Chairs") == {chair.pk}
    filters = client.get(reverse(QUEUE)).context["cl"].filter_specs
    assert [spec.title for spec in filters] == [
        "status",
        "kind",
        "GPU",
        "project",
        "interactive",
        "date",
    ]


def test_a_jobs_page_shows_its_phase_history_read_only_and_links_its_audit_trail(
    client: Client, project: Project
) -> None:
    job = a_job(project)
    phase_make(job, detail="admitted on sim-32gb: needs 20 GB")

    page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()

    assert "admitted on sim-32gb: needs 20 GB" in page
    assert 'name="phases-0-detail"' not in page  # shown, not editable
    assert f"?job={job.pk}" in page


def test_the_queue_runs_the_same_queries_for_three_jobs_and_for_forty(
    client: Client, project: Project, staff: AbstractUser, django_assert_num_queries: Any
) -> None:
    other = project_make(owner=staff, name="Chairs")

    def jobs(n: int) -> None:
        statuses = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.ADMITTED]
        for index in range(n):
            a_job((project, other)[index % 2], status=statuses[index % 4], priority=index % 3)

    jobs(3)
    # session, user; waiting jobs, their GPUs, runtime states (the scheduler's replay); the
    # project filter's projects; filtered and total counts; the page's running and waiting
    # rows, then its other rows (newest first, from an index); the GPU filter's names.
    with django_assert_num_queries(11):
        response = client.get(reverse(QUEUE))
    assert response.context["cl"].result_count == 3
    jobs(37)
    with django_assert_num_queries(11):
        response = client.get(reverse(QUEUE))
    assert response.context["cl"].result_count == 40


def test_the_queue_replay_costs_nothing_when_no_job_waits(client: Client, project: Project) -> None:
    a_job(project, status=JobStatus.DONE)
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse(QUEUE))
    assert not any("gpu_runtimestate" in q["sql"] for q in queries.captured_queries)


# ---- Who may do what ----

ACTIONS = ["cancel_jobs", "retry_jobs", "reprioritise_jobs", "move_jobs_to_front"]


@pytest.mark.parametrize("action", ACTIONS)
def test_non_staff_are_sent_to_the_admin_login_and_nothing_changes(
    project: Project, action: str
) -> None:
    job = a_job(project, status=JobStatus.FAILED)
    designer = Client()
    designer.force_login(user_make("designer"))

    response = act(designer, action, [job], apply="1", priority="9")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert Job.objects.count() == 1
    assert (refreshed(job).status, refreshed(job).priority) == (JobStatus.FAILED, 0)
    assert not AuditEvent.objects.exists()


def test_staff_who_may_only_view_jobs_see_the_queue_but_no_action(project: Project) -> None:
    job = a_job(project)
    viewer = staff_with("view_job")

    page = viewer.get(reverse(QUEUE))
    assert page.status_code == 200
    assert page.context["action_form"] is None
    change = viewer.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "cancel_jobs" not in change

    response = act(viewer, "cancel_jobs", [job])
    assert said(response) == []  # no action exists for them: the post just shows the list
    assert refreshed(job).status == JobStatus.QUEUED
    assert not AuditEvent.objects.exists()


def test_retry_needs_the_permission_to_add_jobs(project: Project) -> None:
    job = a_job(project, status=JobStatus.FAILED)
    changer = staff_with("view_job", "change_job")

    choices = [
        name
        for name, _ in changer.get(reverse(QUEUE)).context["action_form"].fields["action"].choices
    ]
    assert choices == ["", "cancel_jobs", "reprioritise_jobs", "move_jobs_to_front"]
    assert said(act(changer, "retry_jobs", [job])) == ["No action selected."]
    assert Job.objects.count() == 1

    act(staff_with("view_job", "change_job", "add_job"), "retry_jobs", [job])
    assert Job.objects.count() == 2


def test_staff_without_any_jobs_permission_are_refused_the_queue(project: Project) -> None:
    job = a_job(project)
    nobody = staff_with()

    assert nobody.get(reverse(QUEUE)).status_code == 403
    assert act(nobody, "cancel_jobs", [job]).status_code == 403
    assert refreshed(job).status == JobStatus.QUEUED


# ---- Two admins at once (real transactions, real locks) ----


@pytest.fixture
def private_gpu(transactional_db: None) -> Iterator[str]:
    """A GPU of this test alone: the kicks its commits send have no worker to reach."""
    name = f"adminq{uuid.uuid4().hex[:8]}"
    profile_load(gpu=name)
    yield name
    broker = redis.Redis.from_url(settings.REDIS_URL)
    queue = f"gpu.{name}"
    broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def at_once(*clicks: Callable[[], list[str]]) -> list[list[str]]:
    """Run each click in its own thread and database connection, released together."""
    barrier = threading.Barrier(len(clicks))
    results: list[list[str]] = [[] for _ in clicks]

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = clicks[index]()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clicks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def admin_client(name: str) -> Client:
    client = Client()
    client.force_login(user_make(name, is_staff=True, is_superuser=True))
    return client


@pytest.mark.django_db(transaction=True)
def test_two_admins_retrying_the_same_job_at_once_make_one_new_job(private_gpu: str) -> None:
    owner = user_make("owner")
    failed = a_job(project_make(owner=owner), status=JobStatus.FAILED, gpu=private_gpu)
    alice, bob = admin_client("alice"), admin_client("bob")

    results = at_once(
        lambda: said(act(alice, "retry_jobs", [failed])),
        lambda: said(act(bob, "retry_jobs", [failed])),
    )

    retry = Job.objects.exclude(pk=failed.pk).get()
    assert sorted(message for [message] in results) == [
        f"Job {failed.pk} was not retried: job {retry.pk} for the same request "
        f"{failed.request_id} is already admitted. Next: wait for job {retry.pk}, or cancel it "
        "first.",
        f"Job {failed.pk} was retried as job {retry.pk}: admitted again on sim-32gb, waiting "
        f"for GPU {private_gpu}.",
    ]
    assert AuditEvent.objects.filter(action="job.retried").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_admins_moving_two_jobs_to_the_front_at_once_never_tie(private_gpu: str) -> None:
    project = project_make(owner=user_make("owner"))
    first, second = a_job(project, gpu=private_gpu), a_job(project, gpu=private_gpu)
    a_job(project, gpu=private_gpu, priority=4)
    alice, bob = admin_client("alice"), admin_client("bob")

    at_once(
        lambda: said(act(alice, "move_jobs_to_front", [first])),
        lambda: said(act(bob, "move_jobs_to_front", [second])),
    )

    assert sorted([refreshed(first).priority, refreshed(second).priority]) == [5, 6]
    assert AuditEvent.objects.filter(action="job.moved_to_front").count() == 2


# --- priority rules hold on every path -------------------------------------------------------


def change_form(client: Client, job: Job, priority: str) -> HttpResponse:
    """Save the job's change form as a browser does: its hidden fields (the inline's
    management form) as the page gave them, and the new priority."""
    url = reverse("admin:jobs_job_change", args=[job.pk])
    page = client.get(url).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    hidden.pop("csrfmiddlewaretoken", None)
    data = {**hidden, "priority": priority, "_save": "Save"}
    return client.post(url, data)  # type: ignore[return-value]


@pytest.mark.parametrize("priority", ["32767", "-32768", "101", "-101"])
def test_the_change_form_refuses_a_priority_out_of_bounds(
    client: Client, project: Project, priority: str
) -> None:
    job = a_job(project)
    response = change_form(client, job, priority)
    assert response.status_code == 200  # the form again, with the reason
    assert f"A priority of {priority} is outside -100..100." in response.content.decode()
    assert refreshed(job).priority == 0
    assert not AuditEvent.objects.filter(action="job.priority_changed").exists()


@pytest.mark.parametrize("status", [JobStatus.DONE, JobStatus.RUNNING, JobStatus.CANCELLED])
def test_the_change_form_refuses_a_priority_for_a_job_that_no_longer_waits(
    client: Client, project: Project, status: str
) -> None:
    job = a_job(project, status=status)
    response = change_form(client, job, "7")
    assert response.status_code == 200
    assert "its priority only matters while a job waits" in response.content.decode()
    assert refreshed(job).priority == 0


def test_the_change_form_sets_a_waiting_jobs_priority_once_audited(
    client: Client, project: Project
) -> None:
    job = a_job(project)
    assert change_form(client, job, "12").status_code == 302
    assert refreshed(job).priority == 12
    assert AuditEvent.objects.filter(action="job.priority_changed", job_id=job.pk).count() == 1


def test_the_database_refuses_what_skips_the_service(project: Project) -> None:
    from django.db import IntegrityError, transaction

    waiting, done = a_job(project), a_job(project, status=JobStatus.DONE)
    with pytest.raises(IntegrityError, match="job_priority_in_range"), transaction.atomic():
        Job.objects.filter(pk=waiting.pk).update(priority=32767)
    with (
        pytest.raises(IntegrityError, match="its priority only changes while it waits"),
        transaction.atomic(),
    ):
        Job.objects.filter(pk=done.pk).update(priority=5)
    # Other fields of a finished job still change as the worker needs (e.g. its reason).
    Job.objects.filter(pk=done.pk).update(next_action="Nothing to do.")


def test_every_page_of_the_queue_is_the_queue_order_of_the_whole_table(
    client: Client, project: Project
) -> None:
    """The list reads the active jobs and the rest apart (so nothing sorts 20,000 rows);
    page after page it must still be exactly the one order over every job."""
    from artcritic.staff.admin.jobs import queue_ordering, queue_positions

    statuses = [JobStatus.DONE, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.RUNNING]
    statuses += [JobStatus.ADMITTED, JobStatus.CANCELLED]
    for index in range(130):
        a_job(project, status=statuses[index % len(statuses)], priority=index % 3)
    whole = list(
        Job.objects.order_by(*queue_ordering(queue_positions(timezone.now()))).values_list(
            "pk", flat=True
        )
    )
    shown: list[int] = []
    for page in (1, 2, 3):
        response = client.get(reverse(QUEUE), {"p": page})
        shown += [job.pk for job in response.context["cl"].result_list]
    assert shown == whole
