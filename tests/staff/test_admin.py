"""The admin: every model is there for staff, refused to others, read-only where recorded."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from artcritic.audit.models import AuditEvent
from artcritic.audit.services import audit_record
from artcritic.critic.models import Calibration, ShownContext, TasteProposal
from artcritic.gpu.models import Gpu, HardwareProfile, RuntimeState
from artcritic.jobs.models import Job, JobPhase, JobStatus
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
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make, job_make, phase_make, review_make

pytestmark = pytest.mark.django_db

DOMAIN_APPS = {"studio", "gpu", "jobs", "audit", "critic"}
EDITABLE = {Project, Membership, HardwareProfile, Gpu}
ADDABLE = EDITABLE
READ_ONLY = {
    Prompt,
    GenerationRequest,
    Image,
    Favourite,
    CriticReview,
    HumanDecision,
    JobPhase,
    RuntimeState,
    AuditEvent,
    ShownContext,
    Calibration,
    TasteProposal,
}


def admin_url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def domain_models() -> list[type[Model]]:
    return [m for m in apps.get_models() if m._meta.app_label in DOMAIN_APPS]


def world_make(owner: AbstractUser, tag: str = "") -> dict[type[Model], Model]:
    """One row of every domain model, linked as the system links them."""
    project = project_make(owner=owner, name=f"Lamps {tag}")
    prompt = prompt_make(project, owner)
    request = request_make(prompt, count=1)
    job = job_make(request, progress_total=1)
    phase = phase_make(job)
    image = image_make(request, job=job)
    decision = decision_make(image, owner)
    review = review_make(image)
    review.shown_decisions.add(decision)
    gpu = Gpu.objects.get(name="sim0")
    state, _ = RuntimeState.objects.get_or_create(
        gpu=gpu, runtime="comfyui", defaults={"status_since": timezone.now()}
    )
    event = audit_record("test.world", f"made world {tag}", actor=owner, project_id=project.pk)
    return {
        Project: project,
        Membership: Membership.objects.filter(project=project).first(),
        Prompt: prompt,
        GenerationRequest: request,
        Job: job,
        JobPhase: phase,
        Image: image,
        HumanDecision: decision,
        CriticReview: review,
        Gpu: gpu,
        HardwareProfile: gpu.active_profile,
        RuntimeState: state,
        AuditEvent: event,
        Favourite: Favourite.objects.create(image=image, user=owner),
        ShownContext: ShownContext.objects.create(
            review=review, decisions_limit=4, thumbnails_limit=2, prompt_tokens=900,
            image_tokens=330, count_method="tokenizer", max_model_len=8192,
            examples=[{"image": image.pk, "kind": "approve", "similarity": 0.8, "thumbnail": True}],
        ),
        Calibration: Calibration.objects.create(
            project=project, fingerprint="f" * 64, samples=0, approvals=0, rejections=0,
            held_out_agreeing=0, held_out_compared=0, raw_agreeing=0, raw_compared=0,
            reason="Too few decided images to fit (0 of 10).",
        ),
        TasteProposal: TasteProposal.objects.create(
            project=project, text="Prefer <b>brushed</b> metal", why="two notes say so"
        ),
    }


@pytest.fixture
def staff() -> AbstractUser:
    profile_load()
    return user_make("admin", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff: AbstractUser) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_every_domain_model_is_registered() -> None:
    missing = [m.__name__ for m in domain_models() if not admin.site.is_registered(m)]
    assert missing == []
    assert set(domain_models()) == EDITABLE | READ_ONLY | {Job}


def test_every_changelist_and_change_page_renders_for_staff(
    staff: AbstractUser, staff_client: Client
) -> None:
    world = world_make(staff)
    for model in domain_models():
        response = staff_client.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model
        assert response.context["cl"].result_count >= 1, model
        response = staff_client.get(admin_url(model, "change", world[model].pk))
        assert response.status_code == 200, model


def test_changelist_search_and_filters_render(staff: AbstractUser, staff_client: Client) -> None:
    world_make(staff, "needle")
    for model in domain_models():
        model_admin = admin.site.get_model_admin(model)
        if model_admin.search_fields:
            response = staff_client.get(admin_url(model, "changelist"), {"q": "needle"})
            assert response.status_code == 200, model
    queue = staff_client.get(admin_url(Job, "changelist"), {"status__exact": "queued"})
    assert queue.context["cl"].result_count == 1


def test_add_pages_render_for_editable_models_and_are_refused_for_recorded_ones(
    staff_client: Client,
) -> None:
    for model in domain_models():
        status = staff_client.get(admin_url(model, "add")).status_code
        assert status == (200 if model in ADDABLE else 403), model


@pytest.mark.parametrize(
    ("who", "login"),
    # The site-wide login requirement catches anonymous visitors before the admin does.
    [("designer", "admin:login"), ("anonymous", "login")],
)
def test_the_admin_is_refused_to_non_staff(who: str, login: str) -> None:
    profile_load()
    client = Client()
    if who == "designer":
        client.force_login(user_make("designer"))
    for model in domain_models():
        for view in ("changelist", "add"):
            url = admin_url(model, view)
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith(f"{reverse(login)}?next="), url


def test_recorded_history_cannot_be_changed_or_deleted_in_the_admin(
    staff: AbstractUser, staff_client: Client
) -> None:
    world = world_make(staff)
    for model in READ_ONLY:
        row = world[model]
        url = admin_url(model, "change", row.pk)
        assert staff_client.post(url, {}).status_code == 403, model
        assert staff_client.get(admin_url(model, "delete", row.pk)).status_code == 403, model
    assert AuditEvent.objects.filter(pk=world[AuditEvent].pk).exists()
    assert Job.objects.filter(pk=world[Job].pk).exists()
    assert staff_client.get(admin_url(Job, "delete", world[Job].pk)).status_code == 403


@pytest.mark.parametrize(
    "model", [Job, AuditEvent, Image, HumanDecision, CriticReview, Project, GenerationRequest]
)
def test_changelists_run_the_same_queries_for_one_row_and_for_many(
    staff: AbstractUser, staff_client: Client, model: type[Model]
) -> None:
    world_make(staff, "one")
    url = admin_url(model, "changelist")
    with CaptureQueriesContext(connection) as few:
        staff_client.get(url)
    for index in range(4):
        world_make(staff, f"more {index}")
    with CaptureQueriesContext(connection) as many:
        response = staff_client.get(url)
    assert response.context["cl"].result_count >= 5
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


# ---- Hardware profiles ----


def profile_form(row: HardwareProfile, data: Any) -> dict[str, str]:
    return {"name": row.name, "data": data if isinstance(data, str) else json.dumps(data)}


def test_an_invalid_profile_edit_is_refused_with_the_schema_error_and_nothing_saved(
    staff_client: Client,
) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    before = row.data
    broken = json.loads(json.dumps(before))
    broken["limits"]["max_width"] = 1001
    response = staff_client.post(
        admin_url(HardwareProfile, "change", row.pk), profile_form(row, broken)
    )
    assert response.status_code == 200
    assert "limits.max_width" in response.content.decode()
    assert "multiple of 8" in response.content.decode()
    row.refresh_from_db()
    assert row.data == before
    assert not AuditEvent.objects.filter(action="profile.edited").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "Enter a valid JSON."),
        ("[1, 2]", "A profile is a JSON object"),
    ],
)
def test_a_profile_that_is_not_a_json_object_is_refused(
    staff_client: Client, data: str, message: str
) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    response = staff_client.post(
        admin_url(HardwareProfile, "change", row.pk), profile_form(row, data)
    )
    assert message in response.content.decode()
    row.refresh_from_db()
    assert isinstance(row.data, dict)


def test_a_profile_whose_inner_name_differs_is_refused(staff_client: Client) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    data = dict(row.data, name="other-name")
    response = staff_client.post(
        admin_url(HardwareProfile, "change", row.pk), profile_form(row, data)
    )
    assert "must equal the name" in response.content.decode()


def test_a_valid_profile_edit_is_saved_normalised_and_audited(staff_client: Client) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    data = json.loads(json.dumps(row.data))
    data["limits"]["max_batch"] = 2
    data["description"] = "Edited in the admin"
    del data["limits"]["prior_decisions_shown"]  # a default the schema fills back in
    response = staff_client.post(
        admin_url(HardwareProfile, "change", row.pk), profile_form(row, data)
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.data["limits"]["max_batch"] == 2
    assert row.data["limits"]["prior_decisions_shown"] == 6
    assert row.description == "Edited in the admin"
    assert row.simulated is True
    assert AuditEvent.objects.filter(action="profile.edited").exists()


def test_switching_a_gpus_profile_in_the_admin_goes_through_activation(
    staff_client: Client,
) -> None:
    profile_load("rtx5090-32gb", gpu="spare")
    gpu = Gpu.objects.get(name="sim0")
    target = HardwareProfile.objects.get(name="rtx5090-32gb")
    form = {"active_profile": target.pk, "nvml_index": 1, **_inline_management("runtimes")}
    # From simulated to real hardware: a warning, and nothing changes without the tick.
    refused = staff_client.post(admin_url(Gpu, "change", gpu.pk), form)
    assert refused.status_code == 200
    page = refused.content.decode()
    assert "GPU sim0 now runs SIMULATED runtimes" in page
    assert "drives REAL hardware" in page
    gpu.refresh_from_db()
    assert gpu.active_profile.name == "sim-32gb"
    response = staff_client.post(
        admin_url(Gpu, "change", gpu.pk), {**form, "confirm_hardware_change": "on"}
    )
    assert response.status_code == 302
    gpu.refresh_from_db()
    assert (gpu.name, gpu.active_profile, gpu.nvml_index) == ("sim0", target, 1)
    assert AuditEvent.objects.filter(action="gpu.activate", gpu="sim0").exists()


def test_a_gpu_with_an_invalid_name_is_refused(staff_client: Client) -> None:
    row = HardwareProfile.objects.get(name="sim-32gb")
    response = staff_client.post(
        admin_url(Gpu, "add"), {"name": "GPU 0", "active_profile": row.pk, "nvml_index": 0}
    )
    assert response.status_code == 200
    assert not Gpu.objects.filter(name="GPU 0").exists()


# ---- The queue ----


def test_changing_a_jobs_priority_leaves_the_workers_fields_alone(
    staff: AbstractUser, staff_client: Client
) -> None:
    job = world_make(staff)[Job]
    url = admin_url(Job, "change", job.pk)
    assert staff_client.get(url).status_code == 200
    # The job moves on (admitted, waiting for the GPU) while the admin has the form open;
    # a priority only changes while a job waits, which it still does.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.ADMITTED, phase="waiting_for_gpu")
    response = staff_client.post(url, {"priority": "5", **_inline_management("phases")})
    assert response.status_code == 302, response.content.decode()[:2000]
    job.refresh_from_db()
    assert (job.priority, job.status, job.phase) == (5, "admitted", "waiting_for_gpu")
    event = AuditEvent.objects.get(action="job.priority_changed")
    assert event.data == {"from": 0, "to": 5}


def _inline_management(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": "0",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def test_the_audit_log_still_renders_after_its_project_is_deleted(
    staff: AbstractUser, staff_client: Client
) -> None:
    world = world_make(staff)
    event = world[AuditEvent]
    Project.objects.filter(pk=world[Project].pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).project_id == world[Project].pk  # history keeps it
    assert staff_client.get(admin_url(AuditEvent, "changelist")).status_code == 200
    assert staff_client.get(admin_url(AuditEvent, "change", event.pk)).status_code == 200


# ---- The audit log ----


def audit_ids(client: Client, **query: Any) -> set[int]:
    response = client.get(admin_url(AuditEvent, "changelist"), query)
    assert response.status_code == 200
    return {event.pk for event in response.context["cl"].result_list}


def test_the_audit_log_filters_by_action_actor_project_gpu_runtime_and_date(
    staff: AbstractUser, staff_client: Client
) -> None:
    other = user_make("other", is_staff=True)
    project = project_make(owner=staff, name="Lamps")
    cancel = audit_record(
        "job.cancel", "admin cancelled job 1", actor=staff, project_id=project.pk, gpu="sim0"
    )
    start = audit_record("runtime.start", "ComfyUI started", gpu="gpu1", runtime="comfyui")
    edit = audit_record("profile.edited", "other edited sim-32gb", actor=other)
    today = timezone.localdate(edit.at)  # rows are never edited, so no event is backdated

    assert audit_ids(staff_client, action="job.cancel") == {cancel.pk}
    assert audit_ids(staff_client, actor__id__exact=str(other.pk)) == {edit.pk}
    assert audit_ids(staff_client, project__id__exact=str(project.pk)) == {cancel.pk}
    assert audit_ids(staff_client, gpu="gpu1") == {start.pk}
    assert audit_ids(staff_client, runtime="comfyui") == {start.pk}
    day = {"at__year": today.year, "at__month": today.month, "at__day": today.day}
    assert audit_ids(staff_client, **day) >= {cancel.pk, start.pk, edit.pk}
    assert audit_ids(staff_client, at__year=str(today.year - 1)) == set()
    assert audit_ids(staff_client, q="ComfyUI started") == {start.pk}
    filters = staff_client.get(admin_url(AuditEvent, "changelist")).context["cl"].filter_specs
    # No filter lists its choices by scanning the audit table (DISTINCT): dates, GPUs and
    # runtimes come from fixed lists or small tables.
    assert [spec.title for spec in filters] == [
        "date",
        "action",
        "actor",
        "project",
        "GPU",
        "runtime",
    ]
    assert [title for title, _params in filters[0].links] == [
        "Any date",
        "Today",
        "Past 7 days",
        "This month",
        "This year",
    ]


def test_the_audit_log_lists_one_jobs_trail(staff: AbstractUser, staff_client: Client) -> None:
    job = world_make(staff)[Job]
    mine = audit_record("job.cancel", "cancelled", job_id=job.pk)
    audit_record("job.cancel", "another job", job_id=job.pk + 1000)

    assert audit_ids(staff_client, job=str(job.pk)) == {mine.pk}
    assert audit_ids(staff_client, q=str(job.pk)) >= {mine.pk}


def test_an_audit_event_shows_its_data_pretty_printed_and_cannot_be_edited(
    staff: AbstractUser, staff_client: Client
) -> None:
    event = audit_record(
        "gpu.activate", "switched", actor=staff, data={"profile": "sim-32gb", "b": [1, "<x>"]}
    )

    page = staff_client.get(admin_url(AuditEvent, "change", event.pk)).content.decode()

    shown = re.search(r'<pre style="white-space: pre-wrap">(.*?)</pre>', page, re.DOTALL)
    assert shown is not None
    assert html.unescape(shown.group(1)) == json.dumps(event.data, indent=2, sort_keys=True)
    assert "&lt;x&gt;" in shown.group(1)  # escaped, never markup
    assert 'name="summary"' not in page  # shown, never an input
    assert "_save" not in page


# ---- Runtime states ----


def test_runtime_states_show_status_since_profile_simulation_short_fingerprint_and_detail(
    staff_client: Client,
) -> None:
    RuntimeState.objects.create(
        gpu=Gpu.objects.get(name="sim0"),
        runtime="critic",
        status="loading",
        status_since=timezone.now() - timedelta(seconds=130),
        profile_name="sim-32gb",
        simulated=True,
        fingerprint="0123456789abcdef" * 4,
        detail="loading weights " + "w" * 200,
    )

    response = staff_client.get(admin_url(RuntimeState, "changelist"))

    page = response.content.decode()
    assert "Loading weights" in page
    assert re.search(r"2 m 1\d s ago", page)
    assert "0123456789ab<" in page  # the first 12 characters only
    assert "w" * 72 + "…" in page
    assert "sim-32gb" in page


def test_a_gpus_page_shows_its_runtimes_and_never_changes_them(
    staff_client: Client,
) -> None:
    gpu = Gpu.objects.get(name="sim0")
    state = RuntimeState.objects.create(
        gpu=gpu, runtime="comfyui", status="ready", status_since=timezone.now()
    )
    url = admin_url(Gpu, "change", gpu.pk)

    page = staff_client.get(url).content.decode()
    assert "ComfyUI (Artist)" in page
    assert "Ready" in page
    assert 'name="runtimes-0-status"' not in page  # read-only

    # A forged inline row is ignored: the worker alone writes runtime states.
    response = staff_client.post(
        url,
        {
            "active_profile": gpu.active_profile_id,
            "nvml_index": 0,
            "runtimes-TOTAL_FORMS": "1",
            "runtimes-INITIAL_FORMS": "1",
            "runtimes-MIN_NUM_FORMS": "0",
            "runtimes-MAX_NUM_FORMS": "1000",
            "runtimes-0-id": str(state.pk),
            "runtimes-0-gpu": str(gpu.pk),
            "runtimes-0-status": "unhealthy",
        },
    )
    assert response.status_code == 302
    state.refresh_from_db()
    assert state.status == "ready"


# ---- Runtime versions ----


def test_runtime_states_show_the_version_each_runtime_reported(staff_client: Client) -> None:
    gpu = Gpu.objects.get(name="sim0")
    RuntimeState.objects.create(
        gpu=gpu, runtime="critic", status="ready", status_since=timezone.now(),
        version="vLLM 0.34.0",
    )  # fmt: skip
    page = staff_client.get(admin_url(RuntimeState, "changelist")).content.decode()
    assert "vLLM 0.34.0" in page
    gpu_page = staff_client.get(admin_url(Gpu, "change", gpu.pk)).content.decode()
    assert "vLLM 0.34.0" in gpu_page


def test_a_jobs_page_and_the_reviews_list_show_the_runtime_version(
    staff: AbstractUser, staff_client: Client
) -> None:
    world = world_make(staff)
    job = world[Job]
    Job.objects.filter(pk=job.pk).update(runtime_version="ComfyUI 0.3.64")
    CriticReview.objects.filter(pk=world[CriticReview].pk).update(runtime_version="vLLM 0.34.0")
    job_page = staff_client.get(admin_url(Job, "change", job.pk)).content.decode()
    assert "Runtime version" in job_page
    assert "ComfyUI 0.3.64" in job_page
    reviews = staff_client.get(admin_url(CriticReview, "changelist")).content.decode()
    assert "vLLM 0.34.0" in reviews


def test_switching_real_hardware_to_a_simulated_profile_also_asks_first(
    staff_client: Client,
) -> None:
    real = profile_load("rtx5090-32gb", gpu="gpu0")
    sim = HardwareProfile.objects.get(name="sim-32gb")
    gpu = Gpu.objects.get(name="gpu0")
    assert gpu.active_profile == real
    form = {"active_profile": sim.pk, "nvml_index": 0, **_inline_management("runtimes")}
    page = staff_client.post(admin_url(Gpu, "change", gpu.pk), form).content.decode()
    assert "profile sim-32gb is SIMULATED" in page
    gpu.refresh_from_db()
    assert gpu.active_profile == real
    ok = staff_client.post(
        admin_url(Gpu, "change", gpu.pk), {**form, "confirm_hardware_change": "on"}
    )
    assert ok.status_code == 302
    gpu.refresh_from_db()
    assert gpu.active_profile == sim
