"""The Feedback page: how the Critic's verdicts compare with the team's, and its calibration."""

from __future__ import annotations

from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from artcritic.critic import feedback
from artcritic.critic.export import FORMATS, export_lines
from artcritic.critic.models import ProposalStatus, TasteProposal
from artcritic.critic.services import calibration_current
from artcritic.critic.taste import TasteRefused, taste_decide, taste_propose
from artcritic.designer.feedback_charts import (
    NARROW_HEIGHT,
    NARROW_WIDTH,
    agreement_chart,
    distribution_chart,
)
from artcritic.designer.selectors import latest_reviews
from artcritic.studio.access import project_for_user, user_of

SAFE_METHODS = ["GET", "HEAD"]
PROPOSALS_DECIDED_SHOWN = 10


def _percent(agreeing: int, compared: int) -> float | None:
    return round(100 * agreeing / compared, 1) if compared else None


def project_feedback(request: HttpRequest, project_id: int) -> HttpResponse:
    """Agreement over time, the confusion matrix, score distributions, the calibration and
    the images the Critic and the team disagree on."""
    project = project_for_user(user_of(request), project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    calibrated = calibration_current(project)
    cal = calibrated.row
    held_out = _percent(cal.held_out_agreeing, cal.held_out_compared)
    unit, periods = feedback.agreement_over_time(project)
    line = held_out if calibrated.model else None
    disagreeing = feedback.disagreements(project)
    shown = list(disagreeing[: feedback.DISAGREEMENTS_SHOWN])
    reviews = latest_reviews(shown)
    rows = []
    for image in shown:
        review = reviews.get(image.pk)
        scores = None if review is None else feedback.review_scores(review)
        probability = (
            None
            if calibrated.model is None or scores is None
            else calibrated.model.probability(scores)
        )
        rows.append((image, review, probability))
    context = {
        "project": project,
        "tab": "feedback",
        "calibration": cal,
        "model": calibrated.model,
        "held_out_percent": held_out,
        "raw_percent": _percent(cal.raw_agreeing, cal.raw_compared),
        "unit": unit,
        "periods": periods,
        "charts": [
            ("wide", agreement_chart(periods, unit, line)),
            (
                "narrow",
                agreement_chart(periods, unit, line, width=NARROW_WIDTH, height=NARROW_HEIGHT),
            ),
        ],
        "confusion": feedback.confusion(project),
        "distributions": [
            (d, distribution_chart(d)) for d in feedback.score_distributions(calibrated.labelled)
        ],
        "disagreements": rows,
        "disagreement_count": disagreeing.count()
        if len(shown) == feedback.DISAGREEMENTS_SHOWN
        else len(shown),
        "proposals": list(
            TasteProposal.objects.filter(project=project, status=ProposalStatus.PROPOSED)
        ),
        "proposals_decided": list(
            TasteProposal.objects.filter(project=project)
            .exclude(status=ProposalStatus.PROPOSED)
            .select_related("decided_by")[:PROPOSALS_DECIDED_SHOWN]
        ),
        "weights": list(zip(feedback.CRITERIA, calibrated.model.weights, strict=False))
        if calibrated.model
        else [],
    }
    return render(request, "studio/feedback.html", context)


CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def decisions_export(request: HttpRequest, project_id: int) -> HttpResponseBase:
    """The project's decisions data set as a download (``?format=jsonl|csv``), streamed."""
    project = project_for_user(user_of(request), project_id)
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(SAFE_METHODS)
    fmt = request.GET.get("format", "jsonl")
    if fmt not in FORMATS:
        return HttpResponseBadRequest(
            f"Unknown format {fmt[:20]!r}: ask for format=jsonl or format=csv.",
            content_type="text/plain; charset=utf-8",
        )
    name = f"{slugify(project.name) or 'project'}-{project.pk}-decisions-"
    name += f"{timezone.now():%Y%m%d-%H%M}.{fmt}"
    response = StreamingHttpResponse(export_lines(project, fmt), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response


def _feedback_taste(project_id: int) -> HttpResponse:
    url = reverse("studio:project_feedback", args=[project_id]) + "#taste"
    return redirect(url)


def taste_ask(request: HttpRequest, project_id: int) -> HttpResponseBase:
    """Ask the resident Critic to propose taste notes from the recent decisions (POST)."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        rows = taste_propose(project, user)
    except TasteRefused as exc:
        messages.error(request, f"{exc.reason} Next: {exc.next_action}")
    else:
        if rows:
            n = len(rows)
            messages.success(
                request,
                f"The Critic proposed {n} taste note{'s' if n != 1 else ''}: "
                "accept, edit or discard each; nothing changes until you do.",
            )
        else:
            messages.success(request, "The Critic proposed nothing the taste notes do not say.")
    return _feedback_taste(project.pk)


def taste_proposal_decide(
    request: HttpRequest, project_id: int, proposal_id: int
) -> HttpResponseBase:
    """Accept, accept with edits, or discard one proposal (POST)."""
    user = user_of(request)
    project = project_for_user(user, project_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    action = request.POST.get("action", "")
    text = request.POST.get("text", "")
    if (
        action == "accept"
        and text.split()
        and " ".join(text.split()) != _proposed_text(proposal_id)
    ):
        action = "edit"  # the member changed the words before accepting
    try:
        proposal = taste_decide(proposal_id, project=project, user=user, action=action, text=text)
    except TasteRefused as exc:
        messages.error(request, f"{exc.reason} Next: {exc.next_action}")
    else:
        if proposal.status == ProposalStatus.DISCARDED:
            messages.success(request, "Proposal discarded; the taste notes are unchanged.")
        else:
            messages.success(request, f"Added to the taste notes: “{proposal.final_text}”.")
    return _feedback_taste(project.pk)


def _proposed_text(proposal_id: int) -> str:
    return str(
        TasteProposal.objects.filter(pk=proposal_id).values_list("text", flat=True).first() or ""
    )
