"""Designer pages. Each view validates, authorizes, calls one service or selector, renders."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from artcritic.critic.tasks import calibration_refit_soon
from artcritic.designer import selectors
from artcritic.designer.forms import (
    ComposerForm,
    DecisionForm,
    ProjectCreateForm,
    ProjectEditForm,
    aspect_presets,
    initial_from_image,
)
from artcritic.designer.selectors import ReviewFilter, ReviewScreen
from artcritic.designer.templatetags.studio_tags import next_words
from artcritic.gpu.profiles import GB, Profile
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.jobs.accounting import image_costs
from artcritic.jobs.kick import kicks_watched
from artcritic.jobs.models import JobStatus
from artcritic.jobs.placing import generation_choose
from artcritic.jobs.services import JobActionRefused, request_submit, review_again
from artcritic.live.costs import costs_panel
from artcritic.live.selectors import project_dashboard, request_history
from artcritic.studio import services
from artcritic.studio.access import image_for_user, project_for_user, user_of
from artcritic.studio.models import Image, Project, Verdict

QUEUE_RECONNECTING = (
    "The GPU queue is reconnecting: your request is saved and starts as soon as it is back. "
    "There is no need to submit it again."
)
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
    history, more = request_history(project)
    context = {
        "project": project,
        "history": history,
        "history_more": more,
        "members": selectors.members_of(project),
        "dashboard": project_dashboard(project, user),
        "costs": costs_panel(project),
        "tab": "overview",
    }
    return render(request, "studio/project_detail.html", context)


def project_jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    """The request history: the fragment a live event repaints (X-Fragment), or a page of
    older requests (``?before=<job id>``)."""
    project = project_for_user(user_of(request), project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    try:
        before = _id_or_none(request.GET.get("before"))
    except ValueError as exc:
        raise Http404("No such page.") from exc
    history, more = request_history(project, before=before)
    context = {"project": project, "history": history, "history_more": more, "tab": "overview"}
    if request.headers.get("X-Fragment"):
        return render(request, "studio/project_detail.html#job-list", context)
    return render(request, "studio/requests.html", context)


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
    initial = _composer_initial(request, project, profile)
    prefill = {"initial": initial} if initial is not None else {}
    form = ComposerForm(request.POST or None, profile=profile, **prefill)
    if request.method == "POST" and form.is_valid():
        try:
            with kicks_watched() as kicks:
                generation = request_submit(project=project, user=user, data=form.draft())
        except services.SubmitRateLimited as exc:
            form.add_error(None, f"{exc.reason} {exc.next_action}")
        else:
            job = generation.jobs.order_by("-id").first()
            if job is not None and job.status == JobStatus.BLOCKED:
                # Refused by the profile before anything started: say why, keep the values.
                context["blocked"] = job
            else:
                label = profile.models[generation.model_mode].label
                images = "1 image" if generation.count == 1 else f"{generation.count} images"
                seeds = "seed" if generation.count == 1 else "seeds"
                messages.success(
                    request,
                    f"Request queued: {images} with {label} at "
                    f"{generation.width}×{generation.height}, {seeds} {_seeds(generation.seeds)}.",
                )
                if kicks.failed:
                    messages.warning(request, QUEUE_RECONNECTING)
                return redirect("studio:project_detail", project_id=project.pk)
    context.update(
        {
            "form": form,
            "profile": profile,
            "presets": aspect_presets(profile),
            "history": selectors.prompt_history(project),
        }
    )
    return render(request, "studio/composer.html", context)


def _composer_initial(
    request: HttpRequest, project: Project, profile: Profile
) -> dict[str, object] | None:
    """Values from ``?from=<image>`` ("use these settings again", ``&vary=1``: vary seed)."""
    try:
        image_id = _id_or_none(request.GET.get("from"))
    except ValueError as exc:
        raise Http404("No such image.") from exc
    if image_id is None:
        return None
    image = Image.objects.select_related("prompt", "request").filter(
        project=project, pk=image_id
    ).first()
    if image is None:
        raise Http404("No such image.")
    return initial_from_image(image, profile, vary=request.GET.get("vary") == "1")


@require_POST
def composer_check(request: HttpRequest, project_id: int) -> JsonResponse:
    """Admission as the designer types: fits, or blocked with the arithmetic. Stores nothing."""
    user = user_of(request)
    project_for_user(user, project_id)
    try:
        _gpu, profile = profile_active()
    except NoActiveProfile as exc:
        return JsonResponse({"state": "unavailable", "reason": str(exc), "next_action": ""})
    form = ComposerForm(request.POST, profile=profile)
    if not form.is_valid():
        errors = {name: [str(e) for e in errs] for name, errs in form.errors.items()}
        labels = {name: str(form.fields[name].label) for name in errors if name in form.fields}
        return JsonResponse({"state": "invalid", "errors": errors, "labels": labels})
    # Exactly what submitting would do: placed across the live GPUs, admitted on the one
    # chosen (with one GPU, that GPU's profile as before).
    try:
        choice = generation_choose(project_id, form.draft())
    except NoActiveProfile as exc:
        return JsonResponse({"state": "unavailable", "reason": str(exc), "next_action": ""})
    admission = choice.admission
    reason = admission.reason
    if choice.gpu != _gpu.name and admission.ok:
        reason = f"Runs on {choice.gpu} ({choice.profile.name}): {reason}"
        if choice.reason:
            reason = f"{reason} Placement: {choice.reason}."
    return JsonResponse(
        {
            "state": "fits" if admission.ok else "blocked",
            "reason": reason,
            "next_action": admission.next_action,
            "fields": list(admission.fields),
            "need_gb": round(admission.need_bytes / GB, 1),
            "usable_gb": round(admission.usable_bytes / GB, 1),
            "profile": choice.profile.name,
            "gpu": choice.gpu,
        }
    )


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(seed) for seed in seeds)


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
        "reviews": [
            (review, selectors.review_criteria(review))
            for review in selectors.image_reviews(image)
        ],
        "review_job": selectors.review_job_latest(image),
        "decisions": selectors.image_decisions(image),
        "image_costs": image_costs(image),
        "my_verdict": current.verdict if current else None,
        "my_decision": current,
        "favourite": selectors.image_favourite(image, user),
        "decision_next": request.get_full_path(),
        "tab": "gallery",
    }
    return render(request, "studio/image_detail.html", context)


def image_review_again(request: HttpRequest, image_id: int) -> HttpResponse:
    """Ask the Critic for a new review of an image (POST); earlier reviews are kept."""
    user = user_of(request)
    image = image_for_user(user, image_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        job = review_again(image, user=user)
    except JobActionRefused as exc:
        messages.error(request, f"{exc.reason} Next: {next_words(exc.next_action)}")
    else:
        messages.success(
            request,
            f"Image {image.pk} is in the Critic's queue again (review #{job.pk}); "
            "earlier reviews stay beside the new one.",
        )
    return redirect(_next_or(request, reverse("studio:image_detail", args=[image.pk])))


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask /favicon.ico whatever the page says: send them the vendored icon."""
    return redirect(static("favicon.ico"), permanent=True)


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
    calibration_refit_soon(image.project_id)
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


# ---- Review screen ----

# What a script may ask the review screen for instead of the whole page (X-Fragment header).
REVIEW_PARTS = {
    "review": "studio/review.html#review-root",
    "live": "studio/review.html#review-live",
}


def review(request: HttpRequest, project_id: int) -> HttpResponse:
    """One image large with the Critic's latest review and the team's decisions, in a filter."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    filter_name = _review_filter(request.GET.get("filter"))
    try:
        image_id = _id_or_none(request.GET.get("image"))
    except ValueError as exc:
        raise Http404("No such image.") from exc
    return _review_render(request, _review_screen(project, user, filter_name, image_id))


def review_decide(request: HttpRequest, project_id: int) -> HttpResponse:
    """Approve or reject the shown image (POST); in "awaiting me" the next image follows."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    filter_name = _review_filter(request.POST.get("filter"))
    image = _image_of(project, request.POST.get("image"))
    form = DecisionForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        if request.headers.get("X-Fragment") == "review":
            return HttpResponseBadRequest(errors, content_type="text/plain; charset=utf-8")
        messages.error(request, f"Decision not recorded: {errors}")
        return redirect(_review_url(project, filter_name, image.pk))
    decision, created = services.decision_record(
        image=image, user=user, verdict=form.cleaned_data["verdict"], note=form.cleaned_data["note"]
    )
    calibration_refit_soon(project.pk)
    verb = "Approved" if decision.verdict == Verdict.APPROVE else "Rejected"
    notice = f"{verb} image {image.pk}." + ("" if created else " (It already was.)")
    shown: int | None = image.pk
    if filter_name == ReviewFilter.AWAITING:
        awaiting = selectors.review_filtered(project, user, ReviewFilter.AWAITING)
        shown = selectors.review_next_after(awaiting, image)
        if shown is None:
            notice += " Nothing else is awaiting your decision."
    return _review_done(
        request, project=project, user=user, filter_name=filter_name, image_id=shown, notice=notice
    )


def review_undo(request: HttpRequest, project_id: int) -> HttpResponse:
    """Undo the user's latest decision in the project (POST) and show that image again."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    filter_name = _review_filter(request.POST.get("filter"))
    try:
        expected = _id_or_none(request.POST.get("decision"))
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    shown = _image_of(project, request.POST.get("image")).pk if request.POST.get("image") else None
    undone = services.decision_undo(user=user, project=project, expected_id=expected)
    if undone is not None:
        calibration_refit_soon(project.pk)
    if undone is None:
        notice = (
            "Nothing undone: that decision was already undone or is no longer your latest."
            if expected is not None
            else "Nothing to undo: you have no decisions left to undo in this project."
        )
        return _review_done(
            request,
            project=project,
            user=user,
            filter_name=filter_name,
            image_id=shown,
            notice=notice,
        )
    current = selectors.decision_current(undone.image, user)
    notice = f"Undid your {undone.get_verdict_display().lower()} of image {undone.image_id}; " + (
        f"your earlier {current.get_verdict_display().lower()} is current again."
        if current is not None
        else "you have no decision on it now."
    )
    return _review_done(
        request,
        project=project,
        user=user,
        filter_name=filter_name,
        image_id=undone.image_id,
        notice=notice,
    )


def _review_done(
    request: HttpRequest,
    *,
    project: Project,
    user: User,
    filter_name: str,
    image_id: int | None,
    notice: str,
) -> HttpResponse:
    """After a decision or an undo: the next screen for a script, a redirect for a form."""
    if request.headers.get("X-Fragment") == "review":
        screen = _review_screen(project, user, filter_name, image_id)
        return _review_render(request, screen, notice=notice)
    messages.success(request, notice)
    return redirect(_review_url(project, filter_name, image_id))


def _review_screen(
    project: Project, user: User, filter_name: str, image_id: int | None
) -> ReviewScreen:
    try:
        return selectors.review_screen(project, user, filter_name, image_id)
    except Image.DoesNotExist as exc:
        raise Http404("No such image.") from exc


def _review_render(request: HttpRequest, screen: ReviewScreen, notice: str = "") -> HttpResponse:
    image_id = screen.image.pk if screen.image is not None else None
    address = _review_url(screen.project, screen.filter, image_id)
    context = {
        "project": screen.project,
        "screen": screen,
        "image": screen.image,
        "notice": notice,
        "review_url": address,
        "tab": "review",
    }
    part = REVIEW_PARTS.get(request.headers.get("X-Fragment", ""), "studio/review.html")
    response = render(request, part, context)
    # Scripts put this address in the location bar after swapping the fragment in.
    response["X-Review-Url"] = address
    patch_vary_headers(response, ["X-Fragment"])
    return response


def _review_url(project: Project, filter_name: str, image_id: int | None) -> str:
    query = {"filter": filter_name} | ({"image": str(image_id)} if image_id is not None else {})
    return f"{reverse('studio:review', args=[project.pk])}?{urlencode(query)}"


def _review_filter(value: str | None) -> str:
    return value if value in selectors.REVIEW_FILTER_NAMES else ReviewFilter.AWAITING


def _id_or_none(value: str | None) -> int | None:
    """A row id from a query or form field; None when absent, ValueError when not an id."""
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ValueError(f"{value[:20]!r} is not an id")
    return int(value)


def _image_of(project: Project, value: str | None) -> Image:
    """An image of ``project`` named by a form field; Http404 for anything else."""
    try:
        image_id = _id_or_none(value)
    except ValueError as exc:
        raise Http404("No such image.") from exc
    image = Image.objects.filter(project=project, pk=image_id).first() if image_id else None
    if image is None:
        raise Http404("No such image.")
    return image
