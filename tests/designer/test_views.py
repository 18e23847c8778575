"""Designer pages: who sees what, the composer end to end, and pinned query counts."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from artcritic.audit.models import AuditEvent
from artcritic.gpu.models import Gpu
from artcritic.jobs.models import Job, JobPhase, JobStatus
from artcritic.studio.models import (
    MAX_SEED,
    GenerationRequest,
    HumanDecision,
    Image,
    Membership,
    Project,
    Prompt,
    Role,
    SeedPolicy,
)
from artcritic.studio.services import seeds_for
from tests.factories import (
    PASSWORD,
    profile_load,
    project_make,
    prompt_make,
    request_make,
    user_make,
)
from tests.factories_media import image_make

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"


def images_make(project: Project, author: AbstractUser, count: int) -> list[Image]:
    request = request_make(prompt_make(project, author), count=count)
    return [image_make(request, index) for index in range(count)]


def signed_in(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def profile() -> None:
    profile_load()


@pytest.fixture
def owner() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def project(owner: AbstractUser) -> Project:
    return project_make(owner=owner, name="Desk lamps")


@pytest.fixture
def image(project: Project, owner: AbstractUser) -> Image:
    return images_make(project, owner, 1)[0]


def valid_composer(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "text": "a brushed aluminium desk lamp, studio light",
        "negative_text": "text, watermark",
        "model_mode": "flux-dev-fp8",
        "width": "1024",
        "height": "768",
        "steps": "20",
        "cfg": "1.0",
        "sampler": "euler",
        "scheduler": "simple",
        "lora": "",
        "lora_strength": "1.0",
        "seed_policy": "increment",
        "seed": "42",
        "count": "3",
    }
    data.update(overrides)
    return data


def project_urls(project: Project, image: Image) -> list[str]:
    return [
        reverse("studio:project_detail", args=[project.pk]),
        reverse("studio:project_edit", args=[project.pk]),
        reverse("studio:project_jobs", args=[project.pk]),
        reverse("studio:composer", args=[project.pk]),
        reverse("studio:gallery", args=[project.pk]),
        reverse("studio:image_detail", args=[image.pk]),
        reverse("studio:image_decide", args=[image.pk]),
    ]


# ---- Who may see what ----


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_non_member_gets_404_on_every_project_and_image_url(
    profile: None, project: Project, image: Image, method: str
) -> None:
    client = signed_in(user_make("mallory"))
    for url in project_urls(project, image):
        response = getattr(client, method)(url, {"verdict": "approve", "name": "Mine now"})
        assert response.status_code == 404, url
    assert not HumanDecision.objects.exists()
    assert Project.objects.get(pk=project.pk).name == "Desk lamps"


@pytest.mark.parametrize("method", ["get", "post"])
def test_staff_who_are_not_members_get_404_too(
    profile: None, project: Project, image: Image, method: str
) -> None:
    client = signed_in(user_make("root", is_staff=True, is_superuser=True))
    for url in project_urls(project, image):
        assert getattr(client, method)(url).status_code == 404, url


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_are_redirected_to_login(
    profile: None, project: Project, image: Image, method: str
) -> None:
    client = Client()
    for url in [reverse("studio:project_list"), *project_urls(project, image)]:
        response = getattr(client, method)(url, {"verdict": "approve"})
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{reverse('login')}?next="), url
    assert not HumanDecision.objects.exists()


def test_members_can_open_every_page(profile: None, project: Project, image: Image) -> None:
    member = user_make("mia")
    Membership.objects.create(project=project, user=member, role=Role.MEMBER)
    client = signed_in(member)
    *pages, decide = project_urls(project, image)
    for url in pages:
        assert client.get(url).status_code == 200, url
    assert client.get(decide).status_code == 405
    assert client.post(reverse("studio:project_detail", args=[project.pk])).status_code == 405


def test_the_login_page_renders_without_a_session() -> None:
    response = Client().get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b"Sign in" in response.content


def test_signing_in_lands_on_the_project_list(profile: None, owner: AbstractUser) -> None:
    response = Client().post(
        reverse("login"), {"username": "olive", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("studio:project_list")
    assert b"olive" in response.content


# ---- Projects ----


def test_the_project_list_shows_only_my_projects(profile: None, owner: AbstractUser) -> None:
    project_make(owner=owner, name="Mine")
    project_make(owner=user_make(), name="Someone else's")
    content = signed_in(owner).get(reverse("studio:project_list")).content.decode()
    assert "Mine" in content
    assert "Someone else" not in content


def test_creating_a_project_makes_the_creator_its_owner(owner: AbstractUser) -> None:
    response = signed_in(owner).post(
        reverse("studio:project_list"), {"name": "Chairs", "brief": "Stackable, recycled PP."}
    )
    project = Project.objects.get(name="Chairs")
    assert response.status_code == 302
    assert response["Location"] == reverse("studio:project_detail", args=[project.pk])
    assert project.brief == "Stackable, recycled PP."
    assert project.created_by == owner
    assert Membership.objects.get(project=project).role == Role.OWNER
    assert AuditEvent.objects.filter(action="project.created", project=project).exists()


@pytest.mark.parametrize(
    ("name", "error"),
    [("   ", "This field is required."), ("x" * 121, "at most 120 characters")],
)
def test_a_bad_project_name_is_refused_and_nothing_is_created(
    owner: AbstractUser, name: str, error: str
) -> None:
    response = signed_in(owner).post(
        reverse("studio:project_list"), {"name": name, "brief": "kept brief"}
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert "kept brief" in response.content.decode()
    assert not Project.objects.exists()


def test_hostile_html_in_the_brief_is_shown_escaped(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    client = signed_in(owner)
    response = client.post(
        reverse("studio:project_edit", args=[project.pk]),
        {
            "name": f"Lamps {HOSTILE}",
            "brief": HOSTILE,
            "taste_notes": f"<img src=x onerror=alert(2)> {HOSTILE}",
            "manufacturability": "Injection-moulded <b>ABS</b>",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.brief == HOSTILE  # stored as typed, escaped when shown
    for url in [
        reverse("studio:project_detail", args=[project.pk]),
        reverse("studio:project_list"),
        reverse("studio:project_edit", args=[project.pk]),
    ]:
        content = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in content, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content, url
        assert "<img src=x" not in content, url
        assert "<b>ABS</b>" not in content, url


def test_editing_the_project_saves_every_field_and_audits_it(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    response = signed_in(owner).post(
        reverse("studio:project_edit", args=[project.pk]),
        {
            "name": "Desk lamps v2",
            "brief": "For small flats.",
            "taste_notes": "Warm light, no chrome.",
            "manufacturability": "Sheet steel, max 2 bends.",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.name == "Desk lamps v2"
    assert project.taste_notes == "Warm light, no chrome."
    assert project.manufacturability == "Sheet steel, max 2 bends."
    event = AuditEvent.objects.get(action="project.updated")
    assert event.data["fields"] == ["brief", "manufacturability", "name", "taste_notes"]


def test_an_overlong_brief_is_refused_and_what_was_typed_is_kept(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    response = signed_in(owner).post(
        reverse("studio:project_edit", args=[project.pk]),
        {"name": "Desk lamps", "brief": "b" * 8001, "taste_notes": "keep me"},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "at most 8000 characters (it has 8001)" in content
    assert "keep me" in content
    project.refresh_from_db()
    assert project.brief == "Desk lamps for small flats."


# ---- Composer ----


def test_the_composer_offers_the_active_profiles_choices_and_model_defaults(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    content = signed_in(owner).get(reverse("studio:composer", args=[project.pk])).content.decode()
    assert '<option value="flux-dev-fp8" selected>FLUX.1-dev fp8</option>' in content
    assert '<option value="sdxl">SDXL base 1.0</option>' in content
    assert '<option value="dpmpp_2m_sde">' in content
    assert 'name="steps" value="20"' in content
    assert 'id="composer-data"' in content


def test_submitting_the_composer_stores_the_request_and_queues_its_job(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    client = signed_in(owner)
    response = client.post(reverse("studio:composer", args=[project.pk]), valid_composer())
    assert response.status_code == 302
    assert response["Location"] == reverse("studio:project_detail", args=[project.pk])

    request = GenerationRequest.objects.get()
    assert request.prompt.text == "a brushed aluminium desk lamp, studio light"
    assert request.prompt.negative_text == "text, watermark"
    assert request.author == owner
    assert request.profile_name == "sim-32gb"
    assert (request.model_mode, request.width, request.height) == ("flux-dev-fp8", 1024, 768)
    assert (request.steps, request.cfg, request.sampler, request.scheduler) == (
        20,
        1.0,
        "euler",
        "simple",
    )
    assert (request.seed_policy, request.seed, request.seeds, request.count) == (
        "increment",
        42,
        [42, 43, 44],
        3,
    )

    job = Job.objects.get()
    assert job.request == request
    assert (job.kind, job.status, job.runtime, job.gpu) == (
        "generate",
        "admitted",
        "comfyui",
        "sim0",
    )
    assert (job.profile_name, job.progress_total, job.submitted_by) == ("sim-32gb", 3, owner)
    assert list(JobPhase.objects.values_list("status", "phase")) == [
        ("queued", ""),
        ("admitted", "waiting_for_gpu"),
    ]
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {
        "request.submitted",
        "job.submitted",
    }

    page = client.get(response["Location"]).content.decode()
    assert "Request queued: 3 images with FLUX.1-dev fp8 at 1024×768, seeds 42, 43, 44." in page
    assert 'class="badge badge--admitted" data-announce>Admitted<' in page
    assert "a brushed aluminium desk lamp" in page


def test_a_compatible_lora_is_stored_with_its_strength(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    data = valid_composer(model_mode="sdxl", lora="clay-sketch", lora_strength="-0.5")
    response = signed_in(owner).post(reverse("studio:composer", args=[project.pk]), data)
    assert response.status_code == 302
    request = GenerationRequest.objects.get()
    assert (request.lora_name, request.lora_strength) == ("clay-sketch", -0.5)


def test_a_bad_value_shows_its_error_keeps_what_was_typed_and_queues_nothing(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    data = valid_composer(width="1001", text="keep <this> prompt", seed="777")
    response = signed_in(owner).post(reverse("studio:composer", args=[project.pk]), data)
    assert response.status_code == 200
    content = response.content.decode()
    assert "width 1001 is not a multiple of 8." in content
    assert 'name="width" value="1001"' in content
    assert 'name="seed" value="777"' in content
    assert "keep &lt;this&gt; prompt</textarea>" in content
    assert "Nothing was queued." in content
    assert not GenerationRequest.objects.exists()
    assert not Job.objects.exists()
    assert not Prompt.objects.exists()


def test_random_seeds_are_drawn_at_submission_and_recorded(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    data = valid_composer(seed_policy="random", seed="", count="4")
    signed_in(owner).post(reverse("studio:composer", args=[project.pk]), data)
    request = GenerationRequest.objects.get()
    assert len(request.seeds) == 4
    assert all(0 <= seed <= MAX_SEED for seed in request.seeds)
    assert request.seed == request.seeds[0]
    assert len(set(request.seeds)) == 4  # four draws from 2**53 do not collide in practice


@pytest.mark.parametrize(
    ("policy", "seed", "count", "expected"),
    [
        (SeedPolicy.FIXED, 7, 3, [7, 7, 7]),
        (SeedPolicy.INCREMENT, 7, 3, [7, 8, 9]),
        (SeedPolicy.INCREMENT, MAX_SEED - 1, 2, [MAX_SEED - 1, MAX_SEED]),
        (SeedPolicy.FIXED, 0, 1, [0]),
    ],
)
def test_seeds_follow_the_policy(
    policy: SeedPolicy, seed: int, count: int, expected: list[int]
) -> None:
    assert seeds_for(policy, seed, count) == expected


def test_a_fixed_policy_without_a_seed_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs a seed"):
        seeds_for(SeedPolicy.FIXED, None, 2)


def test_submissions_beyond_the_rate_limit_are_refused_visibly(
    profile: None, owner: AbstractUser, project: Project, settings: Any
) -> None:
    settings.ARTCRITIC_SUBMIT_RATE_PER_MINUTE = 2
    client = signed_in(owner)
    url = reverse("studio:composer", args=[project.pk])
    assert client.post(url, valid_composer()).status_code == 302
    assert client.post(url, valid_composer()).status_code == 302
    response = client.post(url, valid_composer(text="the third one"))
    assert response.status_code == 200
    assert "You submitted 2 requests in the last minute" in response.content.decode()
    assert "the third one" in response.content.decode()
    assert GenerationRequest.objects.count() == 2
    assert Job.objects.count() == 2


def test_the_composer_says_so_when_no_profile_is_active(
    owner: AbstractUser, project: Project
) -> None:
    client = signed_in(owner)
    url = reverse("studio:composer", args=[project.pk])
    response = client.get(url)
    assert response.status_code == 503
    assert "has no active hardware profile" in response.content.decode()
    assert client.post(url, valid_composer()).status_code == 503
    assert not GenerationRequest.objects.exists()


# ---- Header ----


def test_the_header_shows_a_simulated_badge_only_for_a_simulated_profile(
    owner: AbstractUser, project: Project
) -> None:
    client = signed_in(owner)
    url = reverse("studio:project_detail", args=[project.pk])
    profile_load("sim-32gb")
    assert ">SIMULATED</span>" in client.get(url).content.decode()
    profile_load("rtx5090-32gb")
    content = client.get(url).content.decode()
    assert ">SIMULATED</span>" not in content
    assert "rtx5090-32gb" in content


def test_the_header_warns_when_the_gpu_has_no_profile(
    owner: AbstractUser, project: Project
) -> None:
    assert not Gpu.objects.exists()
    content = signed_in(owner).get(reverse("studio:project_list")).content.decode()
    assert "No active profile on sim0" in content


# ---- Project page, gallery and image ----


def test_the_project_page_lists_recent_jobs_with_status_and_failure_reason(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    request = request_make(prompt_make(project, owner, text="a lamp"), count=2)
    Job.objects.create(
        kind="generate",
        project=project,
        request=request,
        status=JobStatus.BLOCKED,
        runtime="comfyui",
        gpu="sim0",
        profile_name="sim-32gb",
        progress_total=2,
        error_reason="needs ≈ 36.1 GB; profile allows 30.5 GB",
        next_action="choose the fp8 model mode",
    )
    client = signed_in(owner)
    for url in [
        reverse("studio:project_detail", args=[project.pk]),
        reverse("studio:project_jobs", args=[project.pk]),
    ]:
        content = client.get(url).content.decode()
        assert "badge--blocked" in content
        assert content.count("needs ≈ 36.1 GB; profile allows 30.5 GB") == 1
        assert "<strong>Next:</strong> Choose the fp8 model mode" in content
    fragment = client.get(
        reverse("studio:project_jobs", args=[project.pk]), headers={"X-Fragment": "history"}
    ).content.decode()
    assert "<html" not in fragment
    assert "needs ≈ 36.1 GB" in fragment


def test_the_gallery_shows_thumbnails_badges_and_my_decision(
    profile: None, owner: AbstractUser, project: Project
) -> None:
    first, second = images_make(project, owner, 2)
    HumanDecision.objects.create(image=first, user=owner, verdict="approve")
    content = signed_in(owner).get(reverse("studio:gallery", args=[project.pk])).content.decode()
    assert first.thumbnail_key in content  # inside the presigned URL
    assert "X-Amz-Signature=" in content
    assert 'loading="lazy"' in content
    assert "Approved by you" in content  # the viewer's own decision, not the Critic's state
    assert "Awaiting you" in content
    assert "Reviewed" not in content
    assert f'tile tile--approve" data-image="{first.pk}"' in content
    assert f'class="tile" data-image="{second.pk}"' in content
    assert first.prompt.text in content  # the request's prompt heads its group
    # The seed waits in the lightbox (the tile's template), not on the card.
    card = content.split('<template class="tile__info">')[0]
    assert f"seed {first.seed}" not in card
    assert f"seed {first.seed}" in content


@pytest.mark.parametrize(
    ("show", "shown"), [("awaiting", [1]), ("approved", [0]), ("rejected", []), ("", [1, 0])]
)
def test_the_gallery_filters_by_my_decision(
    profile: None, owner: AbstractUser, project: Project, show: str, shown: list[int]
) -> None:
    images = images_make(project, owner, 2)
    HumanDecision.objects.create(image=images[0], user=owner, verdict="approve")
    response = signed_in(owner).get(reverse("studio:gallery", args=[project.pk]), {"show": show})
    listed = [image.pk for image in response.context["page"].images]
    assert listed == [images[i].pk for i in shown]


def test_the_image_page_shows_settings_seed_and_decision_history(
    profile: None, owner: AbstractUser, project: Project, image: Image
) -> None:
    colleague = user_make("cole")
    Membership.objects.create(project=project, user=colleague)
    HumanDecision.objects.create(
        image=image, user=owner, verdict="approve", note="old", is_current=False
    )
    HumanDecision.objects.create(image=image, user=owner, verdict="reject", note=HOSTILE)
    HumanDecision.objects.create(image=image, user=colleague, verdict="approve")
    content = signed_in(owner).get(reverse("studio:image_detail", args=[image.pk])).content.decode()
    assert f"<code>{image.seed}</code>" in content
    assert content.count("<dt>Seed</dt>") == 1  # once, not in the settings rows again
    assert "Prompt_intent" not in content
    assert "FLUX.1-dev fp8" in content  # the model's label, never its id
    assert "flux-dev-fp8" not in content.split("<main")[1].replace('value="flux-dev-fp8"', "")
    assert image.object_key in content
    assert "(superseded)" in content
    assert "cole" in content
    assert "&lt;script&gt;" in content
    assert "<script>alert" not in content
    assert "No Critic review yet" in content
    assert 'decision__reject" aria-pressed="true"' in content


# ---- Query counts ----


def test_the_gallery_runs_the_same_queries_for_few_and_many_images(
    profile: None,
    owner: AbstractUser,
    project: Project,
    django_assert_num_queries: Any,
) -> None:
    client = signed_in(owner)
    url = reverse("studio:gallery", args=[project.pk])
    images_make(project, owner, 2)
    # session, user, project access, images with annotations, counts, the project's model
    # modes (filter), model labels, header badge
    with django_assert_num_queries(8):
        assert client.get(url).status_code == 200
    for image in images_make(project, owner, 10):
        HumanDecision.objects.create(image=image, user=owner, verdict="reject")
    with django_assert_num_queries(8):
        response = client.get(url)
    assert len(response.context["page"].images) == 12


def test_the_project_list_runs_the_same_queries_for_few_and_many_projects(
    profile: None, owner: AbstractUser, django_assert_num_queries: Any
) -> None:
    client = signed_in(owner)
    url = reverse("studio:project_list")
    project_make(owner=owner)
    # session, user, projects with role and counts, header badge
    with django_assert_num_queries(4):
        assert client.get(url).status_code == 200
    for _ in range(6):
        images_make(project_make(owner=owner), owner, 2)
    with django_assert_num_queries(4):
        response = client.get(url)
    assert len(response.context["projects"]) == 7
    assert {p.image_count for p in response.context["projects"]} == {0, 2}


def test_the_project_page_runs_the_same_queries_for_few_and_many_jobs(
    profile: None,
    owner: AbstractUser,
    project: Project,
    django_assert_num_queries: Any,
) -> None:
    client = signed_in(owner)
    url = reverse("studio:project_detail", args=[project.pk])
    client.post(reverse("studio:composer", args=[project.pk]), valid_composer())
    client.post(reverse("studio:composer", args=[project.pk]), valid_composer())
    oldest = list(Job.objects.order_by("id").values_list("pk", flat=True)[:1])
    Job.objects.filter(pk__in=oldest).update(status=JobStatus.DONE)
    # session, user, project access, requests with prompts, their images' tallies and their
    # reviews' costs, members, header badge, model labels, the live dashboard's snapshot
    # (active jobs, GPU rows, duration history (2), resident runtime, GPU panel rows, runtime
    # states, images: 8) and the Costs panel (4)
    with django_assert_num_queries(21):
        assert client.get(url).status_code == 200
    for _ in range(5):
        client.post(reverse("studio:composer", args=[project.pk]), valid_composer())
    done = list(Job.objects.order_by("id").values_list("pk", flat=True)[:4])
    Job.objects.filter(pk__in=done).update(status=JobStatus.DONE)
    with django_assert_num_queries(21):
        response = client.get(url)
    # Waiting requests are the queue panel's; the history lists what finished.
    assert len(response.context["dashboard"].queue.pending) == 3
    assert len(response.context["history"]) == 4
