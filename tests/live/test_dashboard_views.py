"""The live dashboard's fragments, the GPU pages and cancelling: who sees what, and what it says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from artcritic.audit.models import AuditEvent
from artcritic.designer.selectors import members_of
from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.profiles import profile_from_data
from artcritic.gpu.readings import reading_store
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.eta import AheadGroup
from artcritic.jobs.forecast import running_left_s
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.live.costs import costs_panel
from artcritic.live.panels import ahead_words, clock_words, runtime_usual_s
from artcritic.live.selectors import project_dashboard
from artcritic.studio.models import GenerationRequest, Project
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, job_make, review_make

pytestmark = pytest.mark.django_db

GB = 1_000_000_000
# session, user, panel (4), queue (5), header badge, measurements: ETA accuracy, duty
# cycle over a day and a month, tail latency (3)
GPU_PAGE_QUERIES = 18


def signed_in(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


def a_request(project: Project, text: str = "a brushed aluminium desk lamp") -> GenerationRequest:
    return request_make(prompt_make(project, text=text))


def pending(project: Project, **fields: Any) -> Job:
    """An admitted job waiting for the GPU, as job_submit_generation leaves it."""
    fields.setdefault("status", JobStatus.ADMITTED)
    fields.setdefault("phase", Phase.WAITING_FOR_GPU)
    fields.setdefault("phase_started_at", timezone.now())
    if fields.pop("review", False):
        return job_make(image=image_make(a_request(project)), **fields)
    return job_make(a_request(project), progress_total=1, **fields)


def critic_resident() -> Gpu:
    gpu = Gpu.objects.get(name="sim0")
    runtime_state_set(gpu, "critic", RuntimeStatus.READY, detail="healthy", simulated=True)
    return gpu


@pytest.fixture(autouse=True)
def profile() -> None:
    profile_load("sim-32gb")


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def chairs(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Chairs")


@pytest.fixture
def lamps(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Lamp concepts")


@pytest.fixture
def secret() -> Project:
    return project_make(owner=user_make("sam"), name="Secret tables")


def queue_html(client: Client, project: Project) -> str:
    response = client.get(reverse("live:project_queue", args=[project.pk]))
    assert response.status_code == 200
    return response.content.decode()


# ---- The words (pure) ----


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "0 s"), (-3, "0 s"), (59.9, "59 s"), (60, "1 m"), (100, "1 m 40 s"), (3600, "1 h"),
     (3725, "1 h 2 m")],
)  # fmt: skip
def test_clock_words_say_elapsed_and_usual_times_as_people_read_them(
    seconds: float, words: str
) -> None:
    assert clock_words(seconds) == words


def test_usual_times_come_from_the_profile_for_passing_states_before_any_history() -> None:
    model = DurationModel(profile_from_data(Gpu.objects.get(name="sim0").active_profile.data))
    assert runtime_usual_s(model, "comfyui", "loading") == 20.0
    assert runtime_usual_s(model, "critic", "warming") == 25.0
    assert runtime_usual_s(model, "critic", "releasing") == 1.0  # sleep level 1
    assert runtime_usual_s(model, "comfyui", "releasing") == 2.0  # /free
    assert runtime_usual_s(model, "comfyui", "ready") is None
    assert runtime_usual_s(None, "comfyui", "loading") is None


def test_what_is_ahead_names_the_viewers_projects_and_counts_the_rest() -> None:
    running = [Job(kind=JobKind.GENERATE, project_id=1)]
    groups = [
        AheadGroup(kind="review", project_id=2, count=3, seconds=12.0),
        AheadGroup(kind="generate", project_id=9, count=2, seconds=30.0),
        AheadGroup(kind="review", project_id=8, count=1, seconds=4.0),
    ]
    names = {1: "Chairs", 2: "Lamp concepts"}
    assert ahead_words(running, groups, names) == (
        "behind the running generation for Chairs, 3 reviews for Lamp concepts "
        "and 3 jobs of other projects"
    )
    assert ahead_words([], groups[:1], names) == "behind 3 reviews for Lamp concepts"
    assert ahead_words(running, [], {}) == "behind 1 job of another project"
    assert ahead_words([], [], names) == "next on the GPU"


def test_what_is_left_of_a_running_job_follows_its_phase_and_elapsed_time() -> None:
    model = DurationModel(profile_from_data(Gpu.objects.get(name="sim0").active_profile.data))
    now = timezone.now()
    states = {"critic": "ready"}
    job = Job(kind=JobKind.REVIEW, runtime="critic", phase=Phase.REVIEWING, phase_started_at=now)
    assert running_left_s(job, model, now, states=states) == 4.0
    job.phase_started_at = now - timedelta(seconds=1)
    assert running_left_s(job, model, now, states=states) == 3.0
    loading = Job(
        kind=JobKind.REVIEW,
        runtime="critic",
        phase=Phase.LOADING,
        phase_runtime="critic",
        phase_started_at=now - timedelta(seconds=5),
    )
    # The rest of the load (20 − 5), the warm-up (25), then the review (4).
    assert running_left_s(loading, model, now, states=states) == 15.0 + 25.0 + 4.0


# ---- Who may see and do what ----


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_non_member_gets_404_on_the_project_fragments(
    method: str, chairs: Project, secret: Project, olive: AbstractUser
) -> None:
    client = signed_in(olive)
    for name in ("live:project_queue", "live:project_images"):
        response = getattr(client, method)(reverse(name, args=[secret.pk]))
        assert response.status_code == 404


def test_fragments_and_gpu_pages_refuse_other_methods(chairs: Project, olive: AbstractUser) -> None:
    client = signed_in(olive)
    for url in [
        reverse("live:project_queue", args=[chairs.pk]),
        reverse("live:project_images", args=[chairs.pk]),
        reverse("live:gpu_list"),
        reverse("live:gpu_detail", args=["sim0"]),
        reverse("live:gpu_panel", args=["sim0"]),
        reverse("live:gpu_queue", args=["sim0"]),
    ]:
        assert client.post(url).status_code == 405, url
    assert client.get(reverse("live:job_cancel", args=[pending(chairs).pk])).status_code == 405


def test_anonymous_visitors_are_sent_to_sign_in(chairs: Project) -> None:
    for url in [reverse("live:gpu_list"), reverse("live:project_queue", args=[chairs.pk])]:
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


def test_an_unknown_gpu_is_a_404(olive: AbstractUser) -> None:
    client = signed_in(olive)
    for name in ("live:gpu_detail", "live:gpu_panel", "live:gpu_queue"):
        assert client.get(reverse(name, args=["nope"])).status_code == 404


# ---- The queue panel ----


def test_a_running_job_shows_its_phase_elapsed_time_usual_time_and_progress(
    chairs: Project, olive: AbstractUser
) -> None:
    started = timezone.now() - timedelta(seconds=100)
    job = job_make(
        a_request(chairs),
        status=JobStatus.RUNNING,
        phase=Phase.LOADING,
        phase_runtime="comfyui",
        phase_started_at=started,
        progress_total=1,
    )
    JobPhase.objects.create(
        job=job, status=job.status, phase=job.phase, started_at=started, detail="loading UNETLoader"
    )
    html = queue_html(signed_in(olive), chairs)
    assert "<strong>Loading weights</strong> · ComfyUI (Artist)" in html
    assert "1 m 40 s</time> so far, usually 20 s" in html  # sim-32gb: comfyui_load = 20 s
    assert f"This phase started at {started:%H:%M:%S} UTC" in html
    assert f'data-since="{started.isoformat()}"' in html
    assert "loading UNETLoader" not in html  # the worker's words are for staff only

    Job.objects.filter(pk=job.pk).update(
        phase=Phase.GENERATING, progress_current=12, progress_total=28
    )
    html = queue_html(signed_in(olive), chairs)
    assert 'role="progressbar"' in html
    assert 'aria-valuenow="12"' in html
    assert 'aria-valuemax="28"' in html
    assert "generating 12/28" in html


def test_waiting_jobs_show_their_place_what_is_ahead_and_an_eta_in_scheduler_order(
    chairs: Project, lamps: Project, secret: Project, olive: AbstractUser
) -> None:
    critic_resident()
    for _ in range(3):
        pending(lamps, review=True)
    for _ in range(2):
        pending(secret)
    mine = pending(chairs)

    html = queue_html(signed_in(olive), chairs)
    row = html[html.index(f'data-job="{mine.pk}"') :]
    # The Critic is resident, so the scheduler runs the three reviews first, then swaps.
    assert "place 6 in the sim0 queue" in row
    assert "Behind 3 reviews for Lamp concepts and 2 jobs of other projects." in row
    # 3 × 4 s reviews + swap (sleep 1 s + load 20 s + warm 3 s) + 3 × 11.7 s generations.
    assert "Starts in <span" in row
    assert ">about 1 min</span>, done in <span" in row
    assert "Secret tables" not in html


def test_the_job_first_in_line_is_next_on_the_gpu(chairs: Project, olive: AbstractUser) -> None:
    job = pending(chairs)
    html = queue_html(signed_in(olive), chairs)
    assert "place 1 in the sim0 queue" in html
    assert "Next on the GPU." in html
    assert f'action="{reverse("live:job_cancel", args=[job.pk])}"' in html


def test_a_job_behind_another_projects_running_job_does_not_learn_its_name(
    chairs: Project, secret: Project, olive: AbstractUser
) -> None:
    job_make(
        a_request(secret, "a walnut table"),
        status=JobStatus.RUNNING,
        phase=Phase.GENERATING,
        phase_runtime="comfyui",
        phase_started_at=timezone.now(),
        progress_total=20,
        progress_current=5,
    )
    pending(chairs)
    html = queue_html(signed_in(olive), chairs)
    assert "Behind 1 job of another project." in html
    assert "Secret tables" not in html
    assert "walnut" not in html


def test_failed_blocked_and_interrupted_jobs_say_why_and_what_to_do_next(
    chairs: Project, olive: AbstractUser
) -> None:
    now = timezone.now()
    for status, reason, action in [
        (JobStatus.BLOCKED, "needs ≈ 36.1 GB; profile allows 30.5 GB", "choose the fp8 mode"),
        (JobStatus.FAILED, "ComfyUI ran out of GPU memory in KSampler", "re-run with 1 image"),
        (
            JobStatus.INTERRUPTED,
            "The GPU worker stopped during loading on its last attempt (2 of 2).",
            "Check the GPU worker's logs, then submit the request again.",
        ),
    ]:
        job_make(
            a_request(chairs),
            status=status,
            error_reason=reason,
            next_action=action,
            finished_at=now,
            attempt=2,
        )
    job_make(a_request(chairs), status=JobStatus.DONE, finished_at=now)
    client = signed_in(olive)
    # Finished jobs say why in one place, the request history; the queue panel holds only
    # what runs or waits, so a blocked request's box never appears twice.
    assert "qjob--trouble" not in queue_html(client, chairs)
    history = client.get(
        reverse("studio:project_jobs", args=[chairs.pk]), headers={"X-Fragment": "history"}
    ).content.decode()
    page = client.get(reverse("studio:project_detail", args=[chairs.pk])).content.decode()
    assert history.count("hrow--trouble") == 3
    assert page.count("needs ≈ 36.1 GB; profile allows 30.5 GB") == 1
    for text in [
        "needs ≈ 36.1 GB; profile allows 30.5 GB",
        "<strong>Next:</strong> Choose the fp8 mode",
        "ComfyUI ran out of GPU memory in KSampler",
        "<strong>Next:</strong> Re-run with 1 image",
        "on its last attempt (2 of 2).",
        "<strong>Next:</strong> Check the GPU worker&#x27;s logs",
        'class="badge badge--done"',
    ]:
        assert text in history


def test_a_job_put_back_in_the_queue_says_so(chairs: Project, olive: AbstractUser) -> None:
    pending(
        chairs,
        attempt=2,
        error_reason="The GPU worker stopped during loading weights; the job was put back in "
        "the queue (attempt 2 of 2).",
    )
    html = queue_html(signed_in(olive), chairs)
    assert "qjob--requeued" in html
    assert "put back in the queue (attempt 2 of 2)." in html


def test_an_empty_queue_counts_other_projects_jobs_without_naming_them(
    chairs: Project, secret: Project, olive: AbstractUser
) -> None:
    pending(secret)
    html = queue_html(signed_in(olive), chairs)
    assert (
        "Nothing of this project is running or waiting; the GPU has 1 job of other projects" in html
    )
    assert "Secret" not in html


# ---- Cancelling ----


def test_cancelling_a_waiting_job_cancels_it_at_once_and_twice_is_harmless(
    chairs: Project, olive: AbstractUser
) -> None:
    job = pending(chairs)
    client = signed_in(olive)
    url = reverse("live:job_cancel", args=[job.pk])
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("studio:project_detail", args=[chairs.pk])
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert client.post(url).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert AuditEvent.objects.filter(action="job.cancel", job_id=job.pk).count() == 1


def test_cancelling_a_running_job_asks_the_worker_and_shows_cancelling(
    chairs: Project, olive: AbstractUser
) -> None:
    job = job_make(
        a_request(chairs),
        status=JobStatus.RUNNING,
        phase=Phase.GENERATING,
        phase_started_at=timezone.now(),
        progress_total=20,
    )
    client = signed_in(olive)
    url = reverse("live:job_cancel", args=[job.pk])
    # A running job is cancelled only once a person said yes: without it, a question.
    unasked = client.post(url, headers={"X-Fragment": "queue-panel"})
    assert unasked.status_code == 409
    assert "Cancel generation" in unasked.content.decode()
    page = client.post(url).content.decode()
    assert 'name="confirm" value="yes"' in page
    job.refresh_from_db()
    assert not job.cancel_requested
    assert not AuditEvent.objects.filter(action="job.cancel", job_id=job.pk).exists()
    response = client.post(url, {"confirm": "yes"}, headers={"X-Fragment": "queue-panel"})
    assert response.status_code == 200
    fragment = response.content.decode()
    assert 'id="queue-panel"' in fragment
    assert "Cancelling…" in fragment
    assert "Cancel requested: the worker is interrupting the runtime." in fragment
    assert url not in fragment  # no second Cancel button
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)
    client.post(url, {"confirm": "yes"}, headers={"X-Fragment": "queue-panel"})
    assert AuditEvent.objects.filter(action="job.cancel", job_id=job.pk).count() == 1


def test_nobody_cancels_a_job_of_a_project_they_are_not_in(
    chairs: Project, secret: Project, olive: AbstractUser
) -> None:
    theirs = pending(secret)
    assert signed_in(olive).post(reverse("live:job_cancel", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == JobStatus.ADMITTED


def test_a_colleague_in_the_project_may_cancel_a_job_someone_else_submitted(
    chairs: Project, olive: AbstractUser
) -> None:
    colleague = user_make("cole")
    chairs.memberships.create(user=colleague)
    job = pending(chairs, submitted_by=olive)
    signed_in(colleague).post(reverse("live:job_cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_cancelling_a_finished_job_changes_nothing(chairs: Project, olive: AbstractUser) -> None:
    job = job_make(a_request(chairs), status=JobStatus.DONE, finished_at=timezone.now())
    signed_in(olive).post(reverse("live:job_cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert not AuditEvent.objects.filter(action="job.cancel").exists()


def test_a_cancel_redirects_only_to_this_site(chairs: Project, olive: AbstractUser) -> None:
    job = pending(chairs)
    response = signed_in(olive).post(
        reverse("live:job_cancel", args=[job.pk]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("studio:project_detail", args=[chairs.pk])


# ---- The GPU panel ----


def test_the_gpu_panel_shows_runtimes_with_elapsed_and_usual_times_and_the_reading(
    olive: AbstractUser,
) -> None:
    gpu = Gpu.objects.get(name="sim0")
    runtime_state_set(
        gpu, "comfyui", RuntimeStatus.LOADING, detail="loading weights", simulated=True
    )
    runtime_state_set(gpu, "critic", RuntimeStatus.SLEEPING, detail="vLLM sleep level 1")
    reading_store(
        "sim0",
        {
            "ok": True,
            "device": "Simulated GPU sim0",
            "simulated": True,
            "total_bytes": 32 * GB,
            "used_bytes": round(18.24 * GB),
            "free_bytes": round(13.76 * GB),
            "utilization_pct": None,
            "power_watts": 230.0,
            "energy_joules": 12_300.0,
            "processes": [
                {"pid": 41, "used_bytes": round(0.3 * GB), "name": "Xorg"},
                {"pid": 42, "used_bytes": round(17.9 * GB), "name": "sim-comfyui"},
            ],
        },
        publish=False,
    )
    html = signed_in(olive).get(reverse("live:gpu_panel", args=["sim0"])).content.decode()
    # Process names and the runtimes' own words are internals: staff read them, designers not.
    assert "sim-comfyui" not in html
    assert "vLLM sleep level 1" not in html
    staff = user_make("stan", is_staff=True)
    internals = signed_in(staff).get(reverse("live:gpu_panel", args=["sim0"])).content.decode()
    assert "sim-comfyui 17.9 GB, Xorg 0.3 GB" in internals
    assert "vLLM sleep level 1" in internals
    assert "<details class=\"internals\">" in internals
    assert 'class="sim-badge"' in html
    assert ">SIMULATED</span>" in html
    assert "Profile <strong>sim-32gb</strong>" in html
    assert "Loading weights</span>" in html
    assert "s</span> so far, usually 20 s" in html
    assert "Sleeping</span>" in html
    assert "<strong data-reading-used>18.2</strong> of <span data-reading-total>32.0</span>" in html
    assert 'role="meter"' in html
    assert 'aria-valuenow="57"' in html
    assert "230 W" in html
    assert "12.3 kJ" in html
    assert "Simulated GPU sim0 · read" in html


def test_the_gpu_panel_says_when_there_is_no_reading_or_nvml_cannot_read(
    olive: AbstractUser,
) -> None:
    client = signed_in(olive)
    url = reverse("live:gpu_panel", args=["sim0"])
    assert "No reading yet." in client.get(url).content.decode()
    reading_store(
        "sim0",
        {
            "ok": False,
            "simulated": False,
            "reason": "NVML could not load: libnvidia-ml.so.1 not found — no NVIDIA driver.",
            "next_action": "Install the NVIDIA driver.",
        },
        publish=False,
    )
    html = client.get(url).content.decode()
    assert "<strong>No NVML reading.</strong> NVML could not load" in html
    assert "<strong>Next:</strong> Install the NVIDIA driver." in html


def test_an_old_reading_is_marked_stale(olive: AbstractUser) -> None:
    reading_store("sim0", {"ok": True, "total_bytes": GB, "used_bytes": 0}, publish=False)
    Gpu.objects.filter(name="sim0").update(reading_at=timezone.now() - timedelta(minutes=5))
    html = signed_in(olive).get(reverse("live:gpu_panel", args=["sim0"])).content.decode()
    assert "reading is-stale" in html
    assert "the GPU worker, which takes them, may be stopped" in html


def test_a_real_profile_shows_no_simulated_badge(olive: AbstractUser) -> None:
    profile_load("rtx5090-32gb")
    html = signed_in(olive).get(reverse("live:gpu_panel", args=["sim0"])).content.decode()
    assert "sim-badge" not in html
    assert "Profile <strong>rtx5090-32gb</strong>" in html
    assert "Stopped" in html
    assert "never started on this GPU" not in html  # the runtime's detail is for staff


# ---- The GPU pages ----


def test_the_gpu_list_shows_every_gpu_with_its_queue_counts(
    chairs: Project, olive: AbstractUser
) -> None:
    profile_load("rtx5090-32gb", gpu="box1")
    pending(chairs)
    html = signed_in(olive).get(reverse("live:gpu_list")).content.decode()
    assert 'id="gpu-panel-sim0"' in html
    assert 'id="gpu-panel-box1"' in html
    assert "0 running · 1 waiting" in html
    assert f'href="{reverse("live:gpu_detail", args=["box1"])}"' in html
    assert 'data-ws="/ws/gpus/box1/ /ws/gpus/sim0/ "' in html


def test_the_gpu_queue_redacts_other_projects_jobs(
    chairs: Project, secret: Project, olive: AbstractUser
) -> None:
    critic_resident()
    theirs = pending(secret, review=True)
    mine = pending(chairs)
    html = signed_in(olive).get(reverse("live:gpu_detail", args=["sim0"])).content.decode()
    assert "A review for another project" in html
    assert "Secret tables" not in html
    assert f"#{theirs.pk}" not in html
    assert f'data-job="{mine.pk}"' in html
    assert f'Generation <span class="muted">#{mine.pk}</span> for <a href="' in html
    assert ">Chairs</a>" in html
    assert "1 running" not in html
    assert "0 running · 2 waiting" in html


def test_another_projects_running_job_shows_its_progress_but_never_its_number(
    chairs: Project, secret: Project, olive: AbstractUser
) -> None:
    theirs = job_make(
        a_request(secret),
        status=JobStatus.RUNNING,
        phase=Phase.GENERATING,
        phase_started_at=timezone.now(),
        progress_current=5,
        progress_total=20,
    )
    html = signed_in(olive).get(reverse("live:gpu_detail", args=["sim0"])).content.decode()
    assert "A generation for another project" in html
    assert "Progress of a generation for another project" in html
    assert f"#{theirs.pk}" not in html
    assert f"job {theirs.pk}" not in html
    assert f'data-job="{theirs.pk}"' not in html


# ---- The project page ----


def test_the_project_page_loads_the_live_panels_and_the_dashboard_script(
    chairs: Project, olive: AbstractUser
) -> None:
    html = signed_in(olive).get(reverse("studio:project_detail", args=[chairs.pk])).content.decode()
    assert "js/dashboard.js" in html
    assert f'data-ws="/ws/projects/{chairs.pk}/"' in html
    assert f'data-src="{reverse("live:project_queue", args=[chairs.pk])}"' in html
    assert f'data-src="{reverse("live:project_images", args=[chairs.pk])}"' in html
    assert f'data-src="{reverse("live:gpu_panel", args=["sim0"])}"' in html
    assert f'data-src="{reverse("studio:project_jobs", args=[chairs.pk])}"' in html
    assert 'data-live-status="connecting" role="status"' in html
    assert 'aria-live="polite"' in html


def test_the_project_page_paints_every_panel_from_the_dashboard_snapshot(
    chairs: Project, olive: AbstractUser
) -> None:
    waiting = pending(chairs)
    image = image_make(a_request(chairs))
    review_make(image)
    request = RequestFactory().get(reverse("studio:project_detail", args=[chairs.pk]))
    request.user = olive
    html = render_to_string(
        "studio/project_detail.html",
        {
            "project": chairs,
            "history": [],
            "members": members_of(chairs),
            "tab": "overview",
            "dashboard": project_dashboard(chairs, olive),
            "costs": costs_panel(chairs),
        },
        request=request,
    )
    assert "data-pending" not in html
    assert f'data-job="{waiting.pk}"' in html
    assert "Next on the GPU." in html
    assert 'id="gpu-panel-sim0"' in html
    assert f'data-image="{image.pk}"' in html
    assert "the Critic recommends approve" in html
    assert "X-Amz-Signature=" in html


def test_the_gallery_strip_shows_the_newest_images_with_their_review(
    chairs: Project, olive: AbstractUser
) -> None:
    request = a_request(chairs)
    reviewed, waiting = image_make(request, 0), image_make(request, 1)
    review_make(reviewed, verdict="reject")
    url = reverse("live:project_images", args=[chairs.pk])
    html = signed_in(olive).get(url).content.decode()
    assert html.index(f'data-image="{waiting.pk}"') < html.index(f'data-image="{reviewed.pk}"')
    assert "Awaiting you; the Critic recommends reject" in html
    assert "Awaiting you; awaiting review" in html
    assert reverse("studio:image_detail", args=[reviewed.pk]) in html
    assert reverse("studio:gallery", args=[chairs.pk]) in html


# ---- Query counts ----


def test_the_queue_fragment_runs_the_same_queries_for_a_short_and_a_long_queue(
    chairs: Project,
    lamps: Project,
    secret: Project,
    olive: AbstractUser,
    django_assert_num_queries: Any,
) -> None:
    critic_resident()
    client = signed_in(olive)
    url = reverse("live:project_queue", args=[chairs.pk])
    pending(chairs)
    job_make(a_request(chairs), status=JobStatus.DONE, finished_at=timezone.now())
    # session, user, project access, active jobs on its GPUs, GPU rows, duration history (2)
    # behind the ETAs, resident runtime, model labels
    with django_assert_num_queries(9):
        assert client.get(url).status_code == 200
    for project in (chairs, lamps, secret):
        for _ in range(4):
            pending(project)
            pending(project, review=True)
            job_make(a_request(project), status=JobStatus.FAILED, error_reason="x", next_action="y")
    with django_assert_num_queries(9):
        html = client.get(url).content.decode()
    # 8 generations and 4 reviews wait: 9 requests (reviews of another request fold into
    # one group), 6 listed and the rest counted so the panel's height stays bounded.
    assert html.count('class="qgroup"') == 6
    assert "And 3 more requests waiting" in html


def test_the_gpu_fragments_and_pages_run_a_fixed_number_of_queries(
    chairs: Project, secret: Project, olive: AbstractUser, django_assert_num_queries: Any
) -> None:
    critic_resident()
    client = signed_in(olive)
    for _ in range(6):
        pending(chairs)
        pending(secret, review=True)
    # session, user, GPU rows with queue counts, runtime states, duration history (2)
    with django_assert_num_queries(6):
        client.get(reverse("live:gpu_panel", args=["sim0"]))
    # session, user, GPU row, active jobs, duration history (2), runtime states
    with django_assert_num_queries(7):
        html = client.get(reverse("live:gpu_queue", args=["sim0"])).content.decode()
    assert html.count("gq__row--other") == 6
    # session, user, panel (4), queue (5), header badge, then the GPU page's measurements
    with django_assert_num_queries(GPU_PAGE_QUERIES):
        client.get(reverse("live:gpu_detail", args=["sim0"]))
    # session, user, GPU rows with queue counts, runtime states, duration history (2),
    # header badge
    with django_assert_num_queries(7):
        client.get(reverse("live:gpu_list"))


def test_the_gallery_strip_runs_the_same_queries_for_few_and_many_images(
    chairs: Project, olive: AbstractUser, django_assert_num_queries: Any
) -> None:
    client = signed_in(olive)
    url = reverse("live:project_images", args=[chairs.pk])
    image_make(a_request(chairs))
    # session, user, project access, images with both verdicts
    with django_assert_num_queries(4):
        client.get(url)
    request = request_make(prompt_make(chairs), count=12)
    for index in range(12):
        review_make(image_make(request, index))
    with django_assert_num_queries(4):
        html = client.get(url).content.decode()
    assert html.count('class="strip__item') == 12


def test_the_dashboard_snapshot_reads_in_a_handful_of_queries(
    chairs: Project, secret: Project, olive: AbstractUser, django_assert_num_queries: Any
) -> None:
    critic_resident()
    for _ in range(5):
        pending(chairs)
        pending(secret)
        image_make(a_request(chairs))
    # active jobs, GPU rows, duration history (2), resident runtime, GPU panel rows, runtime
    # states, newest images: the GPU panel's usual times come from the queue's own history read
    with django_assert_num_queries(8):
        dashboard = project_dashboard(chairs, olive)
    assert len(dashboard.queue.pending) == 5
    assert dashboard.queue.others == 5
    assert len(dashboard.images) == 5
