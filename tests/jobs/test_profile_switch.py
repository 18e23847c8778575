"""Switching a GPU's active profile: refused while it would strand work, audited when done."""

from __future__ import annotations

import copy
from collections.abc import Callable
from html import unescape
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import AbstractUser, Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from artcritic.audit.models import AuditEvent
from artcritic.gpu.models import Gpu, HardwareProfile
from artcritic.gpu.profiles import ProfileError, profile_from_data
from artcritic.gpu.services import profiles_load
from artcritic.jobs.models import Job, JobStatus, Phase
from artcritic.jobs.profile_switch import ActivationRefused, gpu_activate, gpu_activation_blockers
from artcritic.studio.models import Project
from tests.factories import ROOT, profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> AbstractUser:
    profile_load()  # sim0 runs sim-32gb
    profiles_load([ROOT / "profiles" / "rtx-pro-6000-96gb.toml"])
    return user_make("admin", is_staff=True, is_superuser=True)


@pytest.fixture
def project(staff: AbstractUser) -> Project:
    return project_make(owner=staff, name="Desk lamps")


def variant(name: str, change: Callable[[dict[str, Any]], None]) -> HardwareProfile:
    """A valid profile made from sim-32gb with one change, stored as the loader would."""
    data = copy.deepcopy(HardwareProfile.objects.get(name="sim-32gb").data)
    data["name"] = name
    change(data)
    profile = profile_from_data(data)
    return HardwareProfile.objects.create(
        name=name, data=profile.model_dump(mode="json"), simulated=True
    )


def sdxl_only(data: dict[str, Any]) -> None:
    data["limits"]["model_modes"] = ["sdxl"]


def too_little_for_the_critic(data: dict[str, Any]) -> None:
    data["runtimes"]["critic"]["gpu_memory_utilization"] = 0.2


def a_job(project: Project, status: str = JobStatus.ADMITTED, **fields: Any) -> Job:
    """A FLUX fp8 generate job on sim0 (sim-32gb admits it; an SDXL-only profile would not)."""
    request = request_make(prompt_make(project, project.created_by))
    return job_make(request, status=status, **fields)


def sim0() -> Gpu:
    return Gpu.objects.select_related("active_profile").get(name="sim0")


def activations() -> int:
    return AuditEvent.objects.filter(action="gpu.activate").count()


# ---- The service ----


def test_a_gpu_with_no_work_switches_and_the_audit_says_from_what_to_what(
    staff: AbstractUser,
) -> None:
    gpu = gpu_activate("sim0", "rtx-pro-6000-96gb", actor=staff)

    assert sim0().active_profile.name == "rtx-pro-6000-96gb"
    assert gpu.pk == sim0().pk
    audit = AuditEvent.objects.get(action="gpu.activate")
    assert audit.actor == staff
    assert audit.summary == (
        "GPU sim0 switched from profile sim-32gb to rtx-pro-6000-96gb (94.0 GB usable)."
    )
    assert (audit.data["previous"], audit.data["profile"]) == ("sim-32gb", "rtx-pro-6000-96gb")


def test_a_running_job_refuses_the_switch_and_is_named(
    staff: AbstractUser, project: Project
) -> None:
    job = a_job(project, status=JobStatus.RUNNING, phase=Phase.GENERATING)

    with pytest.raises(ActivationRefused) as refused:
        gpu_activate("sim0", "rtx-pro-6000-96gb", actor=staff)

    assert refused.value.reason == (
        "GPU sim0 cannot switch from sim-32gb to rtx-pro-6000-96gb: "
        f"job {job.pk} (generate) is running on sim0 — wait for it or cancel it first."
    )
    assert refused.value.next_action == (
        "Wait for those jobs to finish or cancel them, then activate again."
    )
    assert sim0().active_profile.name == "sim-32gb"
    assert activations() == 0


def test_a_job_already_told_to_stop_still_blocks_until_it_has(
    staff: AbstractUser, project: Project
) -> None:
    job = a_job(project, status=JobStatus.RUNNING, cancel_requested=True)

    assert gpu_activation_blockers(sim0()) == [
        f"job {job.pk} (generate) is stopping (cancel requested) on sim0 — wait for it to stop"
    ]


def test_waiting_jobs_the_new_profile_would_refuse_block_the_switch_with_the_list(
    staff: AbstractUser, project: Project
) -> None:
    jobs = [a_job(project, status=s) for s in ("queued", "admitted", "admitted")]
    target = variant("sim-sdxl-only", sdxl_only)

    with pytest.raises(ActivationRefused) as refused:
        gpu_activate("sim0", target.name, actor=staff)

    refusal = "The model mode 'flux-dev-fp8' is not allowed on profile sim-sdxl-only"
    assert refused.value.reason == (
        "GPU sim0 cannot switch from sim-32gb to sim-sdxl-only: 3 waiting job(s) would be "
        "blocked by sim-sdxl-only — cancel them first ("
        + "; ".join(f"job {job.pk}: {refusal}" for job in jobs)
        + ")."
    )
    assert sim0().active_profile.name == "sim-32gb"
    assert {job.status for job in Job.objects.all()} == {"queued", "admitted"}


def test_a_long_list_of_refused_jobs_is_cut_short(staff: AbstractUser, project: Project) -> None:
    jobs = [a_job(project) for _ in range(7)]

    [reason] = gpu_activation_blockers(sim0(), profile_from_data(sdxl_only_data()))

    assert reason.startswith("7 waiting job(s) would be blocked by sim-sdxl-only")
    assert f"job {jobs[4].pk}:" in reason
    assert f"job {jobs[5].pk}:" not in reason
    assert reason.endswith("; and 2 more)")


def sdxl_only_data() -> dict[str, Any]:
    data = copy.deepcopy(HardwareProfile.objects.get(name="sim-32gb").data)
    data["name"] = "sim-sdxl-only"
    sdxl_only(data)
    return data


def test_waiting_reviews_block_a_profile_whose_critic_cannot_start(
    staff: AbstractUser, project: Project
) -> None:
    done = a_job(project, status=JobStatus.DONE)
    review = job_make(image=image_make(done.request), status=JobStatus.ADMITTED)  # type: ignore[arg-type]
    target = variant("sim-lowmem", too_little_for_the_critic)

    with pytest.raises(ActivationRefused) as refused:
        gpu_activate("sim0", target.name)

    assert (
        f"1 waiting job(s) would be blocked by sim-lowmem — cancel them first (job {review.pk}: "
        "The Critic (Qwen2.5-VL 7B Instruct) needs" in refused.value.reason
    )
    assert "so vLLM could not start)." in refused.value.reason


def test_waiting_jobs_the_new_profile_admits_do_not_block_it(
    staff: AbstractUser, project: Project
) -> None:
    waiting = a_job(project)

    gpu_activate("sim0", "rtx-pro-6000-96gb", actor=staff)

    assert sim0().active_profile.name == "rtx-pro-6000-96gb"
    # It runs under the new profile with its settings as submitted; the worker admits it again.
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.ADMITTED


def test_finished_cancelled_and_other_gpus_jobs_do_not_block(
    staff: AbstractUser, project: Project
) -> None:
    for status in ("done", "cancelled", "interrupted"):
        a_job(project, status=status)
    a_job(project, status="failed", error_reason="OOM", next_action="Smaller.")
    a_job(project, status="queued", cancel_requested=True)
    a_job(project, status="running", gpu="gpu1")
    a_job(project, status="queued", gpu="gpu1")

    assert gpu_activation_blockers(sim0(), profile_from_data(sdxl_only_data())) == []


def test_switching_to_the_active_profile_is_never_blocked(
    staff: AbstractUser, project: Project
) -> None:
    a_job(project, status=JobStatus.RUNNING)

    gpu_activate("sim0", "sim-32gb")

    assert "already active" in AuditEvent.objects.get(action="gpu.activate").summary


def test_the_blocker_check_reads_a_fixed_number_of_queries(
    staff: AbstractUser, project: Project, django_assert_num_queries: Any
) -> None:
    for _ in range(6):
        a_job(project)
    a_job(project, status=JobStatus.RUNNING)
    gpu = sim0()
    profile = profile_from_data(sdxl_only_data())

    with django_assert_num_queries(2):  # running jobs; waiting jobs with their requests
        gpu_activation_blockers(gpu, profile)


# ---- The admin ----


def gpu_form(profile: HardwareProfile, **extra: Any) -> dict[str, Any]:
    return {
        "active_profile": profile.pk,
        "nvml_index": 0,
        "runtimes-TOTAL_FORMS": "0",
        "runtimes-INITIAL_FORMS": "0",
        "runtimes-MIN_NUM_FORMS": "0",
        "runtimes-MAX_NUM_FORMS": "1000",
        **extra,
    }


@pytest.fixture
def client(staff: AbstractUser) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_the_admin_refuses_a_switch_lists_the_jobs_and_offers_to_cancel_them(
    client: Client, project: Project
) -> None:
    running = a_job(project, status=JobStatus.RUNNING)
    waiting = [a_job(project), a_job(project, status=JobStatus.QUEUED)]
    target = variant("sim-sdxl-only", sdxl_only)
    url = reverse("admin:gpu_gpu_change", args=[sim0().pk])

    response = client.post(url, gpu_form(target))

    assert response.status_code == 200
    page = unescape(response.content.decode())
    assert (
        f"job {running.pk} (generate) is running on sim0 — wait for it or cancel it first" in page
    )
    assert "2 waiting job(s) would be blocked by sim-sdxl-only" in page
    ids = ",".join(str(pk) for pk in sorted([running.pk, *(j.pk for j in waiting)]))
    queue = f"{reverse('admin:jobs_job_changelist')}?id__in={ids.replace(',', '%2C')}"
    assert f'<a href="{queue}">Open these 3 job(s) in the queue</a>' in page
    assert sim0().active_profile.name == "sim-32gb"
    assert activations() == 0

    # The link lists exactly those jobs; cancelling them there clears the way.
    listed = client.get(queue)
    assert {j.pk for j in listed.context["cl"].result_list} == {
        running.pk,
        *(j.pk for j in waiting),
    }
    client.post(
        queue,
        {"action": "cancel_jobs", "index": "0", ACTION_CHECKBOX_NAME: ids.split(",")},
    )
    Job.objects.filter(pk=running.pk).update(status=JobStatus.CANCELLED)  # the worker stopped it

    switched = client.post(url, gpu_form(target))

    assert switched.status_code == 302
    assert sim0().active_profile.name == "sim-sdxl-only"
    assert AuditEvent.objects.filter(action="job.cancel").count() == 3
    assert AuditEvent.objects.get(action="gpu.activate").data["previous"] == "sim-32gb"


def test_the_admin_checks_the_stored_profile_again_before_switching(
    client: Client, project: Project
) -> None:
    target = HardwareProfile.objects.get(name="rtx-pro-6000-96gb")
    with connection.cursor() as cursor:  # as an edit outside the form could leave it
        cursor.execute(
            "UPDATE gpu_hardwareprofile SET data = jsonb_set(data, '{reserve_gb}', '999') "
            "WHERE name = %s",
            [target.name],
        )

    response = client.post(reverse("admin:gpu_gpu_change", args=[sim0().pk]), gpu_form(target))

    assert response.status_code == 200
    assert "Profile rtx-pro-6000-96gb is not valid" in unescape(response.content.decode())
    assert sim0().active_profile.name == "sim-32gb"
    with pytest.raises(ProfileError):
        gpu_activate("sim0", target.name)


def test_a_designer_cannot_switch_a_profile(staff: AbstractUser) -> None:
    target = HardwareProfile.objects.get(name="rtx-pro-6000-96gb")
    designer = Client()
    designer.force_login(user_make("designer"))

    response = designer.post(reverse("admin:gpu_gpu_change", args=[sim0().pk]), gpu_form(target))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert sim0().active_profile.name == "sim-32gb"


def test_staff_who_may_only_view_gpus_see_the_gpu_but_cannot_switch_it(
    staff: AbstractUser,
) -> None:
    viewer = user_make(is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_gpu", "view_runtimestate"])
    )
    client = Client()
    client.force_login(viewer)
    url = reverse("admin:gpu_gpu_change", args=[sim0().pk])
    target = HardwareProfile.objects.get(name="rtx-pro-6000-96gb")

    assert client.get(url).status_code == 200
    assert client.post(url, gpu_form(target)).status_code == 403
    assert sim0().active_profile.name == "sim-32gb"
    assert activations() == 0


def test_a_refused_switch_records_nothing_and_the_later_switch_records_one_event(
    staff: AbstractUser, project: Project
) -> None:
    job = a_job(project, status=JobStatus.RUNNING)
    with pytest.raises(ActivationRefused):
        gpu_activate("sim0", "rtx-pro-6000-96gb", actor=staff)
    assert activations() == 0
    Job.objects.filter(pk=job.pk).update(status=JobStatus.DONE)  # the worker finished it

    gpu_activate("sim0", "rtx-pro-6000-96gb", actor=staff)

    [audit] = AuditEvent.objects.filter(action="gpu.activate")
    assert (audit.gpu, audit.actor, audit.data["profile"]) == ("sim0", staff, "rtx-pro-6000-96gb")
