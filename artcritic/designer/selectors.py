"""Reads for the designer pages: one queryset per page, with everything the template needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import (
    Count,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce

from artcritic.critic.feedback import review_scores
from artcritic.critic.models import Calibration, ShownContext
from artcritic.critic.services import model_of
from artcritic.critic.shown import ShownExample, examples_shown
from artcritic.gpu.models import Gpu, HardwareProfile
from artcritic.jobs.models import PENDING_STATUSES, Job, JobKind, JobStatus
from artcritic.studio.models import (
    CriticReview,
    Favourite,
    GenerationRequest,
    HumanDecision,
    Image,
    Membership,
    Project,
    Prompt,
    ReviewStatus,
    Verdict,
)
from artcritic.studio.selectors import (
    critic_agrees,
    critic_compared,
    critic_disagrees,
    show_condition,
)

RECENT_JOBS = 20
# Gallery filters by the viewer's own current decision.
MINE_FILTERS = ("undecided", Verdict.APPROVE.value, Verdict.REJECT.value)


@dataclass(frozen=True)
class ActiveProfileBadge:
    """What the header says about this site's GPU: its active profile, and whether simulated."""

    gpu: str
    profile_name: str
    simulated: bool

    @property
    def missing(self) -> bool:
        return not self.profile_name


def badge_active_profile(gpu_name: str | None = None) -> ActiveProfileBadge:
    """The active profile's name and simulated flag for the header, in one small query."""
    name = gpu_name or settings.ARTCRITIC_GPU
    row = (
        Gpu.objects.filter(name=name)
        .values_list("active_profile__name", "active_profile__simulated")
        .first()
    )
    if row is None:
        return ActiveProfileBadge(gpu=name, profile_name="", simulated=False)
    return ActiveProfileBadge(gpu=name, profile_name=row[0], simulated=row[1])


def model_labels() -> dict[str, str]:
    """Every loaded profile's model modes with their human labels ("FLUX.1-dev fp8"), in one
    query; pages show these, never the ids."""
    labels: dict[str, str] = {}
    for data in HardwareProfile.objects.values_list("data", flat=True):
        models = data.get("models") if isinstance(data, dict) else None
        for key, model in (models or {}).items():
            if isinstance(model, dict) and isinstance(model.get("label"), str):
                labels.setdefault(str(key), model["label"])
    return labels


def projects_for_user(user: Any) -> QuerySet[Project]:
    """The user's projects with their role, image count and pending jobs, newest activity first."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    images = (
        Image.objects.filter(project=OuterRef("pk"))
        .order_by()
        .values("project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    pending = (
        Job.objects.filter(
            project=OuterRef("pk"), status__in=(*PENDING_STATUSES, JobStatus.RUNNING)
        )
        .order_by()
        .values("project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Project.objects.for_user(user)
        .annotate(
            my_role=Subquery(role),
            image_count=Coalesce(Subquery(images), 0),
            active_job_count=Coalesce(Subquery(pending), 0),
        )
        .order_by("-updated_at", "-id")
    )


def jobs_recent(project: Project, limit: int = RECENT_JOBS) -> list[Job]:
    """The project's latest jobs with their request, prompt and submitter."""
    return list(
        Job.objects.filter(project=project)
        .select_related("request", "request__prompt", "submitted_by", "image")
        .order_by("-created_at", "-id")[:limit]
    )


def members_of(project: Project) -> list[Membership]:
    """Memberships of a project with their users, owners first."""
    return list(
        Membership.objects.filter(project=project)
        .select_related("user")
        .order_by("-role", "user__username")
    )


def image_reviews(image: Image) -> list[CriticReview]:
    """Critic reviews of an image, newest first, with the decisions each one was shown."""
    shown = HumanDecision.objects.select_related("user", "image")
    return list(
        CriticReview.objects.filter(image=image)
        .prefetch_related(Prefetch("shown_decisions", queryset=shown))
        .order_by("-created_at", "-id")
    )


def review_job_latest(image: Image) -> Job | None:
    """The image's latest review job (waiting, running, or how the last one ended)."""
    return (
        Job.objects.filter(image=image, kind=JobKind.REVIEW).order_by("-created_at", "-id").first()
    )


def image_favourite(image: Image, user: Any) -> bool:
    """Whether the viewer starred this image."""
    return Favourite.objects.filter(image=image, user=user).exists()


PROMPT_HISTORY = 12


def prompt_history(project: Project, limit: int = PROMPT_HISTORY) -> list[Prompt]:
    """The project's latest distinct prompts (text and negative), newest first, for the
    composer's history: one query over the newest 200 prompts."""
    seen: set[tuple[str, str]] = set()
    prompts: list[Prompt] = []
    for prompt in Prompt.objects.filter(project=project).order_by("-created_at", "-id")[:200]:
        key = (prompt.text, prompt.negative_text)
        if key not in seen:
            seen.add(key)
            prompts.append(prompt)
        if len(prompts) == limit:
            break
    return prompts


def image_decisions(image: Image) -> list[HumanDecision]:
    """Every decision ever made on an image (history included), newest first."""
    return list(
        HumanDecision.objects.filter(image=image)
        .select_related("user")
        .order_by("-created_at", "-id")
    )


def decision_current(image: Image, user: Any) -> HumanDecision | None:
    """The user's current decision on an image, if any."""
    return HumanDecision.objects.filter(image=image, user=user, is_current=True).first()


# ---- Review screen ----


class ReviewFilter:
    """The review screen's tabs: what the viewer still has to decide, and where to look twice."""

    AWAITING = "awaiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISAGREE = "disagree"
    ALL = "all"


# (name, label, short label for narrow screens)
REVIEW_FILTERS: tuple[tuple[str, str, str], ...] = (
    (ReviewFilter.AWAITING, "Awaiting me", "Awaiting"),
    (ReviewFilter.APPROVED, "Approved by me", "Approved"),
    (ReviewFilter.REJECTED, "Rejected by me", "Rejected"),
    (ReviewFilter.DISAGREE, "Critic disagrees", "Disagreed"),
    (ReviewFilter.ALL, "All", "All"),
)
REVIEW_FILTER_NAMES = tuple(name for name, _label, _short in REVIEW_FILTERS)
# Newest first, like the gallery; "next" is the next older image.
_QUEUE_ORDER = ("-created_at", "-id")


def _verdicts(project: Project) -> QuerySet[Image]:
    """The project's images, newest first. The Critic's latest verdict and the team's current
    approvals and rejections are the image's own columns (kept by database triggers), so the
    filters below are plain comparisons, never a count per image."""
    return Image.objects.filter(project=project).order_by(*_QUEUE_ORDER)


def review_queue(project: Project, user: Any) -> QuerySet[Image]:
    """The project's images, newest first, with the viewer's own current verdict
    (``my_verdict``, null when undecided)."""
    mine = HumanDecision.objects.filter(image=OuterRef("pk"), user=user, is_current=True)
    return _verdicts(project).annotate(my_verdict=Subquery(mine.values("verdict")[:1]))


# Review filters as gallery filters (artcritic.studio.selectors.show_condition).
_AS_GALLERY = {
    ReviewFilter.AWAITING: "awaiting",
    ReviewFilter.APPROVED: "approved",
    ReviewFilter.REJECTED: "rejected",
    ReviewFilter.DISAGREE: "disagree",
    ReviewFilter.ALL: "",
}


def _filter_condition(name: str, user: Any) -> Q:
    """The condition of one review filter on the project's images for ``user``."""
    if name not in _AS_GALLERY:
        raise ValueError(f"unknown review filter {name!r}")
    return show_condition(_AS_GALLERY[name], user)


def review_filtered(project: Project, user: Any, name: str) -> QuerySet[Image]:
    """The images one review filter shows the viewer, newest first."""
    return review_queue(project, user).filter(_filter_condition(name, user))


def review_tallies(project: Project, user: Any) -> tuple[dict[str, int], Agreement]:
    """How many images each review filter holds for the viewer, and the Critic-vs-team
    agreement, in two queries over indexed columns (no per-image subqueries)."""
    images = Image.objects.filter(project=project).aggregate(
        all=Count("pk"),
        disagree=Count("pk", filter=critic_disagrees()),
        agreeing=Count("pk", filter=critic_agrees()),
        compared=Count("pk", filter=critic_compared()),
    )
    mine = dict(
        HumanDecision.objects.filter(user=user, is_current=True, image__project=project)
        .order_by()
        .values_list("verdict")
        .annotate(n=Count("pk"))
    )
    approved, rejected = int(mine.get(Verdict.APPROVE, 0)), int(mine.get(Verdict.REJECT, 0))
    counts = {
        ReviewFilter.AWAITING: int(images["all"]) - approved - rejected,
        ReviewFilter.APPROVED: approved,
        ReviewFilter.REJECTED: rejected,
        ReviewFilter.DISAGREE: int(images["disagree"]),
        ReviewFilter.ALL: int(images["all"]),
    }
    agreement = Agreement(agreeing=int(images["agreeing"]), compared=int(images["compared"]))
    return counts, agreement


def review_counts(project: Project, user: Any) -> dict[str, int]:
    """How many images each review filter holds for the viewer."""
    return review_tallies(project, user)[0]


@dataclass(frozen=True)
class Agreement:
    """How often the Critic's latest verdict equals the human majority on an image.

    Only images with a Critic review and a strict human majority count: an image nobody
    decided, or one where the team is split evenly, has nothing to agree with.
    """

    agreeing: int
    compared: int

    @property
    def rate(self) -> float | None:
        return self.agreeing / self.compared if self.compared else None

    @property
    def percent(self) -> int | None:
        rate = self.rate
        return None if rate is None else round(100 * rate)


def agreement_rate(project: Project) -> Agreement:
    """The project's Critic-vs-human agreement, in one query."""
    counts = Image.objects.filter(project=project).aggregate(
        agreeing=Count("pk", filter=critic_agrees()),
        compared=Count("pk", filter=critic_compared()),
    )
    return Agreement(agreeing=int(counts["agreeing"]), compared=int(counts["compared"]))


@dataclass(frozen=True)
class Neighbours:
    """Where an image sits in a filter: its 1-based position (None if not in it) and total."""

    previous_id: int | None
    next_id: int | None
    position: int | None
    total: int


def _newer(image: Image) -> Q:
    return Q(created_at__gt=image.created_at) | Q(created_at=image.created_at, pk__gt=image.pk)


def _older(image: Image) -> Q:
    return Q(created_at__lt=image.created_at) | Q(created_at=image.created_at, pk__lt=image.pk)


def review_neighbours(filtered: QuerySet[Image], image: Image) -> Neighbours:
    """The newer and older images around ``image`` within a filter, and its position."""
    where = filtered.order_by().aggregate(
        total=Count("pk"),
        newer=Count("pk", filter=_newer(image)),
        here=Count("pk", filter=Q(pk=image.pk)),
    )
    previous = filtered.filter(_newer(image)).order_by("created_at", "id")
    following = filtered.filter(_older(image)).order_by(*_QUEUE_ORDER)
    return Neighbours(
        previous_id=previous.values_list("pk", flat=True).first(),
        next_id=following.values_list("pk", flat=True).first(),
        position=where["newer"] + 1 if where["here"] else None,
        total=where["total"],
    )


def review_next_after(filtered: QuerySet[Image], image: Image) -> int | None:
    """The image to show after ``image`` was decided: the next older one in the filter, else
    the newest one left (the filter may have changed under us), never ``image`` itself."""
    older = filtered.filter(_older(image)).values_list("pk", flat=True).first()
    if older is not None:
        return older
    return filtered.exclude(pk=image.pk).values_list("pk", flat=True).first()


@dataclass(frozen=True)
class Criterion:
    """One of the Critic's four scores with its rationale."""

    key: str
    label: str
    score: int
    rationale: str

    @property
    def percent(self) -> int:
        return max(0, min(100, self.score * 10))

    @property
    def band(self) -> str:
        """low (0–3), mid (4–6) or high (7–10), for the bar's colour; the number is the fact."""
        return "high" if self.score >= 7 else "mid" if self.score >= 4 else "low"


# (key, label, score field, rationale keys the Critic may have used)
_CRITERIA = (
    ("taste", "Taste", "score_taste", ("taste",)),
    (
        "manufacturability",
        "Manufacturability",
        "score_manufacturability",
        ("manufacturability",),
    ),
    ("intent", "Prompt intent", "score_intent", ("prompt_intent", "intent")),
    ("consistency", "Consistency with prior decisions", "score_consistency", ("consistency",)),
)


def review_criteria(review: CriticReview) -> list[Criterion]:
    """The review's four scores in reading order, each with its rationale ("" if none)."""
    rationale = review.rationale if isinstance(review.rationale, dict) else {}
    rows = []
    for key, label, field_name, keys in _CRITERIA:
        text = next((str(rationale[k]) for k in keys if rationale.get(k)), "")
        rows.append(Criterion(key, label, int(getattr(review, field_name)), text))
    return rows


@dataclass(frozen=True)
class MemberDecision:
    """A project member and their current decision on the shown image (None: not decided)."""

    membership: Membership
    decision: HumanDecision | None


@dataclass(frozen=True)
class ReviewScreen:
    """Everything the review screen shows for one filter and one image."""

    project: Project
    filter: str
    counts: dict[str, int]
    agreement: Agreement
    image: Image | None
    neighbours: Neighbours | None
    review: CriticReview | None
    review_count: int
    criteria: list[Criterion]
    review_job: Job | None
    history: list[HumanDecision]
    members: list[MemberDecision]
    my_current: HumanDecision | None
    undoable: HumanDecision | None
    # Earlier reviews of the image (the latest is ``review``), newest first.
    earlier_reviews: list[CriticReview] = field(default_factory=list)
    # The project's stored calibration, and the shown review's P(team approves) under it.
    calibration: Calibration | None = None
    calibrated_p: float | None = None

    @property
    def calibrated_verdict(self) -> str:
        if self.calibrated_p is None:
            return ""
        return Verdict.APPROVE.value if self.calibrated_p >= 0.5 else Verdict.REJECT.value
    # What the latest review was shown, per example image ([] for reviews made before).
    shown_examples: list[ShownExample] = field(default_factory=list)

    @property
    def shown_context(self) -> ShownContext | None:
        """k, m and the token arithmetic of the latest review, when it was recorded."""
        if self.review is None:
            return None
        return getattr(self.review, "shown_context", None)

    @property
    def filter_label(self) -> str:
        return next(label for name, label, _short in REVIEW_FILTERS if name == self.filter)

    @property
    def tabs(self) -> list[tuple[str, str, str, int]]:
        """(name, label, short label, count) of each filter, in tab order."""
        return [(name, label, short, self.counts[name]) for name, label, short in REVIEW_FILTERS]

    @property
    def review_failed(self) -> bool:
        return self.image is not None and self.image.review_status == ReviewStatus.FAILED

    @property
    def critic_disagrees(self) -> bool:
        image = self.image
        return bool(
            image is not None
            and image.critic_verdict
            and image.human_majority
            and image.critic_verdict != image.human_majority
        )


def decision_undoable(project: Project, user: Any) -> HumanDecision | None:
    """The decision ``decision_undo`` would undo next for this user, with its image."""
    return (
        HumanDecision.objects.filter(user=user, image__project=project, undone_at__isnull=True)
        .select_related("image")
        .order_by(*_QUEUE_ORDER)
        .first()
    )


def review_screen(
    project: Project, user: Any, filter_name: str, image_id: int | None
) -> ReviewScreen:
    """The review screen: ``image_id`` if given (Image.DoesNotExist if not in the project),
    else the first image of the filter; None when the filter is empty."""
    filtered = review_filtered(project, user, filter_name)
    image: Image | None
    if image_id is not None:
        image = review_queue(project, user).select_related("prompt").get(pk=image_id)
    else:
        image = filtered.select_related("prompt").first()
    counts, agreement = review_tallies(project, user)
    undoable = decision_undoable(project, user)
    if image is None:
        return ReviewScreen(
            project=project,
            filter=filter_name,
            counts=counts,
            agreement=agreement,
            image=None,
            neighbours=None,
            review=None,
            review_count=0,
            criteria=[],
            review_job=None,
            history=[],
            members=[],
            my_current=None,
            undoable=undoable,
        )
    reviews = list(
        CriticReview.objects.filter(image=image)
        .select_related("shown_context")
        .order_by(*_QUEUE_ORDER)
    )
    review = reviews[0] if reviews else None
    shown_examples: list[ShownExample] = []
    if review is not None:
        shown = HumanDecision.objects.select_related("user", "image").order_by(*_QUEUE_ORDER)
        prefetch_related_objects([review], Prefetch("shown_decisions", queryset=shown))
        shown_examples = examples_shown(
            getattr(review, "shown_context", None), list(review.shown_decisions.all())
        )
    calibration = calibrated_p = None
    if review is not None:
        # The stored fit (refitted after each decision by the default worker, and on every
        # view of the Feedback page): one row, never a fit on the way to the screen.
        calibration = Calibration.objects.filter(project=project).first()
        model = model_of(calibration) if calibration is not None else None
        calibrated_p = model.probability(review_scores(review)) if model is not None else None
    history = image_decisions(image)
    current = {d.user_id: d for d in history if d.is_current}
    members = [MemberDecision(m, current.get(m.user_id)) for m in members_of(project)]
    members.sort(key=lambda m: m.membership.user_id != user.pk)  # the viewer first
    return ReviewScreen(
        project=project,
        filter=filter_name,
        counts=counts,
        agreement=agreement,
        image=image,
        neighbours=review_neighbours(filtered, image),
        review=review,
        review_count=len(reviews),
        criteria=review_criteria(review) if review else [],
        review_job=Job.objects.filter(image=image, kind=JobKind.REVIEW)
        .order_by(*_QUEUE_ORDER)
        .first(),
        history=history,
        members=members,
        my_current=current.get(user.pk),
        undoable=undoable,
        earlier_reviews=reviews[1:],
        calibration=calibration,
        calibrated_p=calibrated_p,
        shown_examples=shown_examples,
    )


# ---- Gallery helpers ----


def project_modes(project: Project) -> list[str]:
    """The model modes this project's requests used, for the gallery's model filter."""
    return sorted(
        GenerationRequest.objects.filter(project=project)
        .order_by()
        .values_list("model_mode", flat=True)
        .distinct()
    )


def latest_reviews(images: list[Image]) -> dict[int, CriticReview]:
    """Each image's latest Critic review, in one query."""
    rows = (
        CriticReview.objects.filter(image__in=images)
        .order_by("image_id", "-created_at", "-id")
        .distinct("image_id")
    )
    return {review.image_id: review for review in rows}


# Settings compared side by side: (snapshot key, label).
COMPARED_SETTINGS = (
    ("model_mode", "Model"),
    ("steps", "Steps"),
    ("cfg", "CFG"),
    ("sampler", "Sampler"),
    ("scheduler", "Scheduler"),
    ("lora_name", "LoRA"),
    ("lora_strength", "LoRA strength"),
)


@dataclass(frozen=True)
class CompareColumn:
    """One image in the compare view: its review, scores, the viewer's verdict, and which of
    its settings differ from the other images'."""

    image: Image
    review: CriticReview | None
    criteria: list[Criterion]
    my_verdict: str
    settings: list[tuple[str, Any, bool]]  # (label, value, differs from another image)


def compare_columns(images: list[Image], user: Any) -> list[CompareColumn]:
    """The compare view's columns in the order chosen, in two queries."""
    reviews = latest_reviews(images)
    mine = dict(
        HumanDecision.objects.filter(image__in=images, user=user, is_current=True).values_list(
            "image_id", "verdict"
        )
    )

    def value(image: Image, key: str) -> Any:
        return (image.settings or {}).get(key, "")

    rows: dict[int, list[tuple[str, Any, bool]]] = {image.pk: [] for image in images}
    for key, label in (("size", "Size"), *COMPARED_SETTINGS, ("seed", "Seed")):
        values = {
            image.pk: f"{image.width}×{image.height}"
            if key == "size"
            else image.seed
            if key == "seed"
            else value(image, key)
            for image in images
        }
        differs = len({str(v) for v in values.values()}) > 1
        for image in images:
            rows[image.pk].append((label, values[image.pk], differs))
    return [
        CompareColumn(
            image=image,
            review=reviews.get(image.pk),
            criteria=review_criteria(reviews[image.pk]) if image.pk in reviews else [],
            my_verdict=mine.get(image.pk, ""),
            settings=rows[image.pk],
        )
        for image in images
    ]
