"""Pages cost the same number of queries at 100 images as at 10,000 (bulk-made projects)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from artcritic.studio.models import Image
from artcritic.studio.selectors import Cursor
from bench.pagesbench.seed import Seeded, project_seed
from tests.factories import profile_load

pytestmark = pytest.mark.django_db


def page_queries(seeded: Seeded) -> dict[str, int]:
    """Queries of each page a designer opens, for one project."""
    project = seeded.project
    images = Image.objects.filter(project=project).order_by("-created_at", "-id")
    deep = images[seeded.images - 10]  # near the oldest: what OFFSET paging made slow
    newest = images.first()
    assert newest is not None
    pages = {
        "gallery": reverse("studio:gallery", args=[project.pk]),
        "gallery_deep": reverse("studio:gallery", args=[project.pk]) + f"?before={Cursor.of(deep)}",
        "gallery_disagree": reverse("studio:gallery", args=[project.pk]) + "?show=disagree",
        "review": reverse("studio:review", args=[project.pk]),
        "review_image": reverse("studio:review", args=[project.pk])
        + f"?filter=all&image={deep.pk}",
        "dashboard": reverse("studio:project_detail", args=[project.pk]),
        "queue": reverse("live:project_queue", args=[project.pk]),
        "strip": reverse("live:project_images", args=[project.pk]),
        "image": reverse("studio:image_detail", args=[newest.pk]),
        "projects": reverse("studio:project_list"),
    }
    client = Client()
    client.force_login(seeded.designer)
    counts = {}
    for name, url in pages.items():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200, name
        counts[name] = len(captured.captured_queries)
    return counts


def test_designer_pages_run_the_same_queries_at_100_and_at_10000_images() -> None:
    profile_load()
    small = page_queries(project_seed(100, history=False, rng_seed=1))
    large = page_queries(project_seed(10_000, history=False, rng_seed=2))
    assert large == small
    # Pinned, so that a new query on any page is a decision, not an accident.
    assert small == {
        "gallery": 8,
        "gallery_deep": 8,
        "gallery_disagree": 8,
        "review": 16,
        "review_image": 18,  # + the stored calibration of the reviewed image's project
        # The live snapshot, the learned durations behind its ETAs (2) and the Costs panel.
        "dashboard": 21,
        "queue": 8,
        "strip": 4,
        "image": 12,  # the image's and its reviews' costs
        "projects": 4,
    }
