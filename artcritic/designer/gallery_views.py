"""The gallery and what a designer does with a selection: compare, decide in bulk, download,
star. Each view validates, authorizes, calls one service or selector, renders."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from artcritic.critic.tasks import calibration_refit_soon
from artcritic.designer import selectors
from artcritic.designer.tiles import links_attach
from artcritic.studio import services
from artcritic.studio.access import image_for_user, project_for_user, user_of
from artcritic.studio.export import ExportRefused, images_zip
from artcritic.studio.models import Image, Project, Verdict
from artcritic.studio.selectors import GALLERY_SHOWS, GalleryQuery, gallery_page
from artcritic.studio.storage import StorageError

SAFE_METHODS = ["GET", "HEAD"]
COMPARE_MIN, COMPARE_MAX = 2, 4
BULK_MAX = 200


def gallery(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's images grouped by request, filtered, a keyset page at a time."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    query = GalleryQuery.from_params(request.GET)
    page = gallery_page(project, user, query)
    links_attach(page.images, project.pk)
    context = {
        "project": project,
        "page": page,
        "query": query,
        "shows": GALLERY_SHOWS,
        "modes": selectors.project_modes(project),
        "tab": "gallery",
        "decision_next": request.get_full_path(),
    }
    if request.headers.get("X-Fragment") == "gallery-page":
        # Infinite scroll: the next page's groups and pager, appended by gallery.js.
        return render(request, "studio/gallery.html#gallery-page", context)
    return render(request, "studio/gallery.html", context)


def _selected(request: HttpRequest, project: Project, limit: int) -> list[Image]:
    """The images named by repeated ``image`` fields, in the order given; 404 if any is not
    one of the project's images, 400 (ValueError) for anything that is not an id."""
    values = request.POST.getlist("image") if request.method == "POST" else []
    values = values or request.GET.getlist("image")
    if len(values) > limit:
        raise ValueError(f"{len(values)} images were selected; at most {limit} at once.")
    ids: list[int] = []
    for value in values:
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise ValueError(f"{value[:20]!r} is not an image id.")
        if int(value) not in ids:
            ids.append(int(value))
    found = {
        image.pk: image
        for image in Image.objects.filter(project=project, pk__in=ids).select_related(
            "prompt", "request", "project"
        )
    }
    if len(found) != len(ids):
        raise Http404("No such image.")
    return [found[pk] for pk in ids]


def _back(request: HttpRequest, project: Project) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("studio:gallery", args=[project.pk])


def gallery_decide(request: HttpRequest, project_id: int) -> HttpResponse:
    """Approve or reject every selected image (POST), each as the designer's own decision."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    verdict = request.POST.get("verdict", "")
    if verdict not in Verdict.values:
        return HttpResponseBadRequest("verdict must be approve or reject.")
    try:
        images = _selected(request, project, BULK_MAX)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    if not images:
        messages.error(request, "Nothing decided: no images were selected. Next: tick some.")
        return redirect(_back(request, project))
    changed, unchanged = services.decisions_record_many(images=images, user=user, verdict=verdict)
    if changed:
        calibration_refit_soon(project.pk)
    word = "Approved" if verdict == Verdict.APPROVE else "Rejected"
    note = f" ({len(unchanged)} already were)" if unchanged else ""
    messages.success(request, f"{word} {len(changed)} image{'s' * (len(changed) != 1)}{note}.")
    return redirect(_back(request, project))


def gallery_zip(request: HttpRequest, project_id: int) -> HttpResponseBase:
    """The selected images' original PNGs with a JSON sidecar each, as one zip (POST)."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        images = _selected(request, project, BULK_MAX)
        archive = images_zip(images, selectors.latest_reviews(images))
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    except (ExportRefused, StorageError) as exc:
        messages.error(request, f"No download: {exc}")
        return redirect(_back(request, project))
    name = f"artcritic-{project.pk}-{len(images)}-images.zip"
    return FileResponse(archive, as_attachment=True, filename=name, content_type="application/zip")


def compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """Two to four images side by side with their settings, Critic scores and decisions."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    try:
        images = _selected(request, project, COMPARE_MAX)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    context: dict[str, Any] = {"project": project, "tab": "gallery"}
    if len(images) < COMPARE_MIN:
        context["problem"] = (
            f"{len(images)} image{'s' * (len(images) != 1)} selected; compare needs "
            f"{COMPARE_MIN} to {COMPARE_MAX}."
        )
        return render(request, "studio/compare.html", context, status=400)
    context.update(
        {
            "columns": selectors.compare_columns(images, user),
            "decision_next": request.get_full_path(),
        }
    )
    return render(request, "studio/compare.html", context)


def image_favourite(request: HttpRequest, image_id: int) -> HttpResponse:
    """Star or unstar an image (POST ``on=1`` or ``on=0``); a script gets 204."""
    user = user_of(request)
    image = image_for_user(user, image_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    on = request.POST.get("on")
    if on not in ("0", "1"):
        return HttpResponseBadRequest("on must be 0 or 1.")
    services.favourite_set(image=image, user=user, on=on == "1")
    if request.headers.get("X-Fragment") == "favourite":
        return HttpResponse(status=204)
    return redirect(_back(request, image.project))
