"""The gallery's pages and what a designer does with a selection: decide in bulk, compare,
download as zip, star, use settings again; every bad input is refused and loses nothing."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from artcritic.audit.models import AuditEvent
from artcritic.studio.models import Favourite, HumanDecision, Image, Project
from artcritic.studio.selectors import Cursor, GalleryQuery, gallery_page
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import image_make, images_stored, review_make

pytestmark = pytest.mark.django_db


def signed_in(user: AbstractUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner() -> AbstractUser:
    profile_load()
    return user_make("olive")


@pytest.fixture
def project(owner: AbstractUser) -> Project:
    return project_make(owner=owner, name="Lamps")


def images_make(project: Project, count: int, **fields: Any) -> list[Image]:
    request = request_make(prompt_make(project, text=f"a lamp {count}"), count=count, **fields)
    return [image_make(request, index) for index in range(count)]


def test_keyset_pages_cover_every_image_once_newest_first(project: Project, owner: Any) -> None:
    images = images_make(project, 4) + images_make(project, 4) + images_make(project, 3)
    newest_first = sorted(images, key=lambda i: (i.created_at, i.pk), reverse=True)
    seen: list[int] = []
    query = GalleryQuery()
    starts = []
    while True:
        page = gallery_page(project, owner, query, size=4)
        seen += [image.pk for image in page.images]
        starts.append(page.start)
        assert page.total == 11
        if page.older is None:
            break
        query = GalleryQuery(before=page.older)
    assert seen == [image.pk for image in newest_first]
    assert starts == [1, 5, 9]
    back = gallery_page(project, owner, GalleryQuery(after=Cursor.of(newest_first[8])), size=4)
    assert [i.pk for i in back.images] == [i.pk for i in newest_first[4:8]]


def test_the_gallery_groups_images_under_their_requests_prompt(
    project: Project, owner: AbstractUser
) -> None:
    first = images_make(project, 2)
    second = images_make(project, 3)
    html = signed_in(owner).get(reverse("studio:gallery", args=[project.pk])).content.decode()
    assert html.count('class="group"') == 2
    assert html.index("a lamp 3") < html.index("a lamp 2")  # newest request first
    assert html.index(f'data-image="{second[0].pk}"') < html.index(f'data-image="{first[0].pk}"')
    assert "FLUX.1-dev fp8 · 1024×1024 · 20 steps" in html


def test_filters_by_critic_agreement_model_and_day(project: Project, owner: AbstractUser) -> None:
    agree, disagree, undecided = images_make(project, 3)
    sdxl = images_make(project, 1, model_mode="sdxl")[0]
    for image, verdict in ((agree, "approve"), (disagree, "approve"), (undecided, "reject")):
        review_make(image, verdict=verdict)
    HumanDecision.objects.create(image=agree, user=owner, verdict="approve")
    HumanDecision.objects.create(image=disagree, user=owner, verdict="reject")
    Image.objects.filter(pk=sdxl.pk).update(created_at=sdxl.created_at - timedelta(days=3))
    client = signed_in(owner)
    url = reverse("studio:gallery", args=[project.pk])

    def shown(**params: str) -> list[int]:
        return [i.pk for i in client.get(url, params).context["page"].images]

    assert shown(show="agree") == [agree.pk]
    assert shown(show="disagree") == [disagree.pk]
    assert shown(mode="sdxl") == [sdxl.pk]
    assert shown(day=(sdxl.created_at - timedelta(days=3)).date().isoformat()) == [sdxl.pk]
    # Nonsense is ignored, never an error page.
    assert len(shown(show="<script>", mode="../x", day="2024-13-45", before="1.x")) == 4


def test_bulk_approve_records_one_decision_per_image_and_says_how_many(
    project: Project, owner: AbstractUser
) -> None:
    images = images_make(project, 3)
    HumanDecision.objects.create(image=images[0], user=owner, verdict="approve")
    client = signed_in(owner)
    response = client.post(
        reverse("studio:gallery_decide", args=[project.pk]),
        {"verdict": "approve", "image": [str(i.pk) for i in images]},
        follow=True,
    )
    assert "Approved 2 images (1 already were)." in response.content.decode()
    assert HumanDecision.objects.filter(user=owner, is_current=True, verdict="approve").count() == 3
    for image in images:
        image.refresh_from_db()
        assert image.approvals == 1


@pytest.mark.parametrize(
    ("data", "status"),
    [
        ({"verdict": "maybe", "image": ["1"]}, 400),
        ({"verdict": "approve", "image": ["1 OR 1=1"]}, 400),
        ({"verdict": "approve", "image": [str(n) for n in range(1, 300)]}, 400),
    ],
)
def test_bulk_decisions_refuse_bad_input_and_record_nothing(
    project: Project, owner: AbstractUser, data: dict[str, Any], status: int
) -> None:
    images_make(project, 1)
    response = signed_in(owner).post(reverse("studio:gallery_decide", args=[project.pk]), data)
    assert response.status_code == status
    assert not HumanDecision.objects.exists()


def test_another_projects_image_in_a_selection_is_a_404_and_nothing_is_decided(
    project: Project, owner: AbstractUser
) -> None:
    mine = images_make(project, 1)[0]
    theirs = images_make(project_make(name="Secret"), 1)[0]
    response = signed_in(owner).post(
        reverse("studio:gallery_decide", args=[project.pk]),
        {"verdict": "reject", "image": [str(mine.pk), str(theirs.pk)]},
    )
    assert response.status_code == 404
    assert not HumanDecision.objects.exists()


def test_the_zip_holds_the_original_pngs_with_a_json_sidecar_each(
    project: Project, owner: AbstractUser, s3_bucket: str
) -> None:
    request = request_make(prompt_make(project, text="a teal kettle"), count=2)
    images = images_stored(request)
    review_make(images[0], verdict="reject")
    response = signed_in(owner).post(
        reverse("studio:gallery_zip", args=[project.pk]), {"image": [str(i.pk) for i in images]}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment;" in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = sorted(archive.namelist())
    assert names == sorted(
        f"image-{i.pk}-seed-{i.seed}.{ext}" for i in images for ext in ("png", "json")
    )
    first = archive.read(f"image-{images[0].pk}-seed-{images[0].seed}.png")
    assert first.startswith(b"\x89PNG")
    import hashlib

    assert hashlib.sha256(first).hexdigest() == images[0].sha256
    sidecar = json.loads(archive.read(f"image-{images[0].pk}-seed-{images[0].seed}.json"))
    assert sidecar["prompt"] == "a teal kettle"
    assert sidecar["seed"] == images[0].seed
    assert sidecar["settings"]["model_mode"] == "flux-dev-fp8"
    assert sidecar["critic"]["verdict"] == "reject"


def test_an_empty_zip_selection_is_refused_with_the_reason(
    project: Project, owner: AbstractUser
) -> None:
    response = signed_in(owner).post(
        reverse("studio:gallery_zip", args=[project.pk]), {}, follow=True
    )
    assert "No download: No images were selected." in response.content.decode()


def test_compare_shows_two_to_four_images_and_marks_the_settings_that_differ(
    project: Project, owner: AbstractUser
) -> None:
    a = images_make(project, 1)[0]
    b = images_make(project, 1, model_mode="sdxl", steps=30)[0]
    client = signed_in(owner)
    url = reverse("studio:compare", args=[project.pk])
    html = client.get(url, {"image": [a.pk, b.pk]}).content.decode()
    assert html.count('class="compare__col card"') == 2
    assert "<mark>SDXL base 1.0</mark>" in html
    assert "<mark>30</mark>" in html
    one = client.get(url, {"image": [a.pk]})
    assert one.status_code == 400
    assert "compare needs 2 to 4" in one.content.decode()
    five = images_make(project, 5)
    assert client.get(url, {"image": [i.pk for i in five]}).status_code == 400


def test_a_star_is_set_and_cleared_and_filters_the_gallery(
    project: Project, owner: AbstractUser
) -> None:
    image, other = images_make(project, 2)
    client = signed_in(owner)
    url = reverse("studio:image_favourite", args=[image.pk])
    assert client.post(url, {"on": "1"}, headers={"X-Fragment": "favourite"}).status_code == 204
    client.post(url, {"on": "1"}, headers={"X-Fragment": "favourite"})  # twice: one star
    assert Favourite.objects.filter(user=owner).count() == 1
    assert AuditEvent.objects.filter(action="image.favourite").count() == 1
    page = client.get(reverse("studio:gallery", args=[project.pk]), {"show": "favourites"})
    assert [i.pk for i in page.context["page"].images] == [image.pk]
    assert client.post(url, {"on": "yes"}).status_code == 400
    client.post(url, {"on": "0"})
    assert not Favourite.objects.exists()
    stranger = user_make("eve")
    assert signed_in(stranger).post(url, {"on": "1"}).status_code == 404
    assert other.pk


def test_use_these_settings_again_and_vary_seed_prefill_the_composer(
    project: Project, owner: AbstractUser
) -> None:
    image = images_make(project, 3, steps=28)[1]
    client = signed_in(owner)
    url = reverse("studio:composer", args=[project.pk])
    again = client.get(url, {"from": image.pk}).context["form"]
    assert again["text"].value() == "a lamp 3"
    assert (again["seed_policy"].value(), again["seed"].value()) == ("fixed", image.seed)
    assert (again["steps"].value(), again["count"].value()) == (28, 1)
    vary = client.get(url, {"from": image.pk, "vary": "1"}).context["form"]
    assert (vary["seed_policy"].value(), vary["count"].value()) == ("random", 3)
    other = images_make(project_make(name="Secret"), 1)[0]
    assert client.get(url, {"from": other.pk}).status_code == 404
    assert client.get(url, {"from": "1;drop"}).status_code == 404


def test_the_composer_never_offers_a_model_mode_that_can_never_fit(
    project: Project, owner: AbstractUser
) -> None:
    html = signed_in(owner).get(reverse("studio:composer", args=[project.pk])).content.decode()
    assert '<option value="flux-dev-bf16" disabled>FLUX.1-dev bf16 — can never fit: needs ≈' in html
    assert "FLUX.1-dev bf16 is not offered: it needs ≈" in html
    assert 'maxlength="4000"' not in html  # a long paste reaches the server whole
    assert 'data-preset data-width="1344" data-height="768"' in html  # 16:9


def test_a_14600_character_prompt_is_refused_with_the_limit_and_kept_whole(
    project: Project, owner: AbstractUser
) -> None:
    from tests.factories import composer_data

    text = ("a lamp " * 2086).strip()  # 14,601 characters
    response = signed_in(owner).post(
        reverse("studio:composer", args=[project.pk]), composer_data(text=text)
    )
    html = response.content.decode()
    assert f"The prompt is {len(text):,} characters; the most is 4,000. Nothing was cut" in html
    assert response.context["form"]["text"].value() == text
    assert not Image.objects.exists()
