"""The live dashboard's fragments, the GPU pages and cancelling a job.

Each view validates, authorizes, calls one selector or service, renders. Fragments are
partials of the templates that render the full pages (STYLE item 14), so a repaint
after a live event is the same HTML as the first paint.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from artcritic.jobs.access import job_for_user
from artcritic.jobs.models import JobStatus
from artcritic.jobs.services import job_cancel
from artcritic.live import selectors
from artcritic.live.costs import costs_panel, gpu_measures
from artcritic.studio.access import project_for_user, user_of

SAFE_METHODS = ["GET", "HEAD"]


def gpu_list(request: HttpRequest) -> HttpResponse:
    """Every GPU: its profile, runtimes, memory and how many jobs wait for it."""
    user_of(request)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    return render(request, "live/gpu_list.html", {"panels": selectors.gpu_panels()})


def gpu_detail(request: HttpRequest, name: str) -> HttpResponse:
    """One GPU: its panel and its whole queue, other projects' jobs redacted."""
    user = user_of(request)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    panel = _panel(name)
    context = {
        "panel": panel,
        "queue": selectors.gpu_queue(name, user),
        "measures": gpu_measures(name),
    }
    return render(request, "live/gpu_detail.html", context)


def gpu_panel(request: HttpRequest, name: str) -> HttpResponse:
    """The GPU panel alone, repainted after runtime and reading events."""
    user_of(request)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    context = {"panel": _panel(name), "gpu_page": request.GET.get("on") == "gpu"}
    return render(request, "live/panels.html#gpu-panel", context)


def gpu_queue(request: HttpRequest, name: str) -> HttpResponse:
    """One GPU's queue alone, repainted after job events."""
    user = user_of(request)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    queue = selectors.gpu_queue(name, user)
    if queue.gpu is None:  # a GPU that does not exist is a 404, not an empty queue
        raise Http404("No such GPU.")
    return render(request, "live/gpu_detail.html#gpu-queue", {"queue": queue})


def _panel(name: str) -> selectors.GpuPanel:
    (panel,) = selectors.gpu_panels([name])
    if panel.gpu is None:
        raise Http404("No such GPU.")
    return panel


def project_queue(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's queue panel alone: its jobs, their phases, places and ETAs."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    context = {"project": project, "queue": selectors.project_queue(project, user)}
    return render(request, "live/panels.html#queue-panel", context)


def project_images(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's newest images and their reviews, repainted when one arrives."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    context = {"project": project, "images": selectors.project_images(project, user)}
    return render(request, "live/panels.html#gallery-strip", context)


def project_costs(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's Costs panel alone, repainted when a job finishes."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    context = {"project": project, "costs": costs_panel(project)}
    return render(request, "live/costs_panel.html#costs-panel", context)


def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    """Cancel a job (POST): a waiting job at once, a running one when the worker interrupts it."""
    user = user_of(request)
    job = job_for_user(user, job_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if (
        job.status == JobStatus.RUNNING
        and not job.cancel_requested
        and request.POST.get("confirm") != "yes"
    ):
        # A running job loses its work: a person must say yes (confirm.js asks in a dialog;
        # without JavaScript this page asks). Nothing is changed until then.
        context = {"job": job, "project": job.project, "next": request.POST.get("next", "")}
        status = 409 if request.headers.get("X-Fragment") else 200
        return render(request, "live/cancel_confirm.html", context, status=status)
    if not job.cancel_requested:  # a second click changes nothing and records nothing
        job = job_cancel(job, user=user)
    if request.headers.get("X-Fragment") == "queue-panel":
        project = project_for_user(user, job.project_id)
        context = {"project": project, "queue": selectors.project_queue(project, user)}
        return render(request, "live/panels.html#queue-panel", context)
    if job.status == JobStatus.RUNNING:
        messages.info(request, f"Cancelling job {job.pk}: the worker is interrupting it.")
    else:
        messages.success(request, f"Job {job.pk} is {job.get_status_display().lower()}.")
    default = reverse("studio:project_detail", args=[job.project_id])
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = default
    return redirect(target or default)
