"""Designer pages. Each view validates, authorizes, calls one service or selector, renders."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.jobs.models import JobStatus
from artcritic.studio import selectors, services
from artcritic.studio.access import image_for_user, project_for_user, user_of
from artcritic.studio.forms import ComposerForm, DecisionForm, ProjectCreateForm, ProjectEditForm

GALLERY_PAGE_SIZE = 48
SAFE_METHODS = ["GET", "HEAD"]


def project_list(request: HttpRequest) -> HttpResponse:
    """The user's projects, and a form to start a new one (the creator becomes its owner)."""
    user = user_of(request)
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(
            user=user, name=form.cleaned_data["name"], brief=form.cleaned_data["brief"]
        )
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("studio:project_detail", project_id=project.pk)
    projects = list(selectors.projects_for_user(user))
    return render(request, "studio/project_list.html", {"projects": projects, "form": form})


def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    """Brief, taste notes, constraints, members and the project's recent jobs."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    context = {
        "project": project,
        "jobs": selectors.jobs_recent(project),
        "members": selectors.members_of(project),
        "tab": "overview",
    }
    return render(request, "studio/project_detail.html", context)


def project_jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    """The recent-jobs fragment alone, for pages that repaint it after a live event."""
    project = project_for_user(user_of(request), project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    context = {"project": project, "jobs": selectors.jobs_recent(project)}
    return render(request, "studio/project_detail.html#job-list", context)


def project_edit(request: HttpRequest, project_id: int) -> HttpResponse:
    """Members edit the project's name, brief, taste notes and manufacturability constraints."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    initial = {
        "name": project.name,
        "brief": project.brief,
        "taste_notes": project.taste_notes,
        "manufacturability": project.manufacturability,
    }
    form = ProjectEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.project_update(project=project, user=user, **form.cleaned_data)
        messages.success(request, "Project saved.")
        return redirect("studio:project_detail", project_id=project.pk)
    return render(
        request, "studio/project_edit.html", {"project": project, "form": form, "tab": "edit"}
    )


def composer(request: HttpRequest, project_id: int) -> HttpResponse:
    """Compose a prompt with exact settings; a valid submission is stored and queued."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    context: dict[str, object] = {"project": project, "tab": "compose"}
    try:
        _gpu, profile = profile_active()
    except NoActiveProfile as exc:
        context["no_profile"] = str(exc)
        return render(request, "studio/composer.html", context, status=503)
    form = ComposerForm(request.POST or None, profile=profile)
    if request.method == "POST" and form.is_valid():
        try:
            generation = services.request_submit(project=project, user=user, data=form.draft())
        except services.SubmitRateLimited as exc:
            form.add_error(None, f"{exc.reason} {exc.next_action}")
        else:
            job = generation.jobs.order_by("-id").first()
            if job is not None and job.status == JobStatus.BLOCKED:
                # Refused by the profile before anything started: say why, keep the values.
                context["blocked"] = job
            else:
                messages.success(
                    request,
                    f"Request queued: {generation.count} image(s) with {generation.model_mode} "
                    f"at {generation.width}×{generation.height}, "
                    f"seeds {_seeds(generation.seeds)}.",
                )
                return redirect("studio:project_detail", project_id=project.pk)
    context.update({"form": form, "profile": profile})
    return render(request, "studio/composer.html", context)


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(seed) for seed in seeds)


def gallery(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's images as thumbnails with review status and the viewer's decision."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    mine = request.GET.get("mine", "")
    if mine not in selectors.MINE_FILTERS:
        mine = ""
    images = selectors.gallery_images(project, user, mine)
    page = Paginator(images, GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "page": page,
        "mine": mine,
        "tab": "gallery",
        "decision_next": request.get_full_path(),
    }
    return render(request, "studio/gallery.html", context)


def image_detail(request: HttpRequest, image_id: int) -> HttpResponse:
    """One image large, with its settings, seed, Critic reviews and decision history."""
    user = user_of(request)
    image = image_for_user(user, image_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    current = selectors.decision_current(image, user)
    context = {
        "project": image.project,
        "image": image,
        "reviews": selectors.image_reviews(image),
        "decisions": selectors.image_decisions(image),
        "my_verdict": current.verdict if current else None,
        "decision_next": request.get_full_path(),
        "tab": "gallery",
    }
    return render(request, "studio/image_detail.html", context)


def image_decide(request: HttpRequest, image_id: int) -> HttpResponse:
    """Approve or reject an image (POST only); the same verdict twice is one decision."""
    user = user_of(request)
    image = image_for_user(user, image_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    form = DecisionForm(request.POST)
    fragment = request.headers.get("X-Fragment") == "decision"
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        if fragment:
            return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
        messages.error(request, f"Decision not recorded: {errors}")
        return redirect(_next_or(request, reverse("studio:image_detail", args=[image.pk])))
    decision, created = services.decision_record(
        image=image, user=user, verdict=form.cleaned_data["verdict"], note=form.cleaned_data["note"]
    )
    if fragment:
        # Scripts swap just the buttons; the same partial renders them inside full pages.
        context = {
            "image": image,
            "my_verdict": decision.verdict,
            "decision_next": _next_or(request, ""),
        }
        return render(request, "studio/_decision.html", context)
    verb = "recorded" if created else "unchanged"
    messages.success(request, f"Decision {verb}: {decision.get_verdict_display().lower()}.")
    return redirect(_next_or(request, reverse("studio:image_detail", args=[image.pk])))


def _next_or(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
