"""State changes of the studio: projects, generation requests and human decisions.

Each public function is one atomic state change with its audit event; live events
go out only after commit (``event_publish`` defers them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.events import event_publish
from artcritic.studio.models import (
    MAX_SEED,
    Favourite,
    GenerationRequest,
    HumanDecision,
    Image,
    Membership,
    Project,
    Prompt,
    Role,
    SeedPolicy,
    Verdict,
)

_ONE_CURRENT_DECISION = "decision_one_current_per_user"
# Each failed attempt means another click committed first, and each click commits at most
# once, so n simultaneous clicks settle within n attempts; eight covers any real burst.
_DECISION_ATTEMPTS = 8


class SubmitRateLimited(Exception):
    """The user submitted more requests in the last minute than the site allows."""

    def __init__(self, limit: int) -> None:
        self.reason = f"You submitted {limit} requests in the last minute, the most allowed."
        self.next_action = "Wait a minute, then submit again; nothing was queued this time."
        super().__init__(self.reason)


@dataclass(frozen=True)
class RequestDraft:
    """A validated composer submission: what the designer asked for, against which profile."""

    profile_name: str
    text: str
    negative_text: str
    model_mode: str
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    lora_name: str
    lora_strength: float
    seed_policy: SeedPolicy
    seed: int | None
    count: int


def project_create(*, user: User, name: str, brief: str = "") -> Project:
    """Create a project with ``user`` as its owner."""
    with transaction.atomic():
        project = Project.objects.create(name=name, brief=brief, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
        audit_record(
            "project.created",
            f"{user.get_username()} created project {name!r}",
            actor=user,
            project_id=project.pk,
        )
    return project


def project_update(
    *,
    project: Project,
    user: User,
    name: str,
    brief: str,
    taste_notes: str,
    manufacturability: str,
) -> Project:
    """Save a member's edit of the project's name, brief, taste notes and constraints."""
    values = {
        "name": name,
        "brief": brief,
        "taste_notes": taste_notes,
        "manufacturability": manufacturability,
    }
    changed = sorted(key for key, value in values.items() if getattr(project, key) != value)
    if not changed:
        return project
    with transaction.atomic():
        for key, value in values.items():
            setattr(project, key, value)
        project.save(update_fields=[*changed, "updated_at"])
        audit_record(
            "project.updated",
            f"{user.get_username()} edited {', '.join(changed)} of project {project.name!r}",
            actor=user,
            project_id=project.pk,
            data={"fields": changed},
        )
    return project


def seeds_for(policy: SeedPolicy, seed: int | None, count: int) -> list[int]:
    """The seeds a request will use, one per image; random ones are drawn here and recorded."""
    if policy == SeedPolicy.RANDOM:
        return [secrets.randbelow(MAX_SEED + 1) for _ in range(count)]
    if seed is None:
        raise ValueError(f"seed policy {policy} needs a seed")
    if policy == SeedPolicy.FIXED:
        return [seed] * count
    return [seed + offset for offset in range(count)]


def request_create(*, project: Project, user: User, data: RequestDraft) -> GenerationRequest:
    """Store the prompt and its request exactly as submitted (``jobs.services.request_submit``
    also queues its generate job in the same transaction)."""
    seeds = seeds_for(data.seed_policy, data.seed, data.count)
    limit = settings.ARTCRITIC_SUBMIT_RATE_PER_MINUTE
    with transaction.atomic():
        # Serialize one user's submissions so that two tabs cannot both slip under the limit.
        User.objects.select_for_update().filter(pk=user.pk).first()
        since = timezone.now() - timedelta(minutes=1)
        recent = GenerationRequest.objects.filter(author=user, created_at__gte=since).count()
        if recent >= limit:
            raise SubmitRateLimited(limit)
        prompt = Prompt.objects.create(
            project=project, author=user, text=data.text, negative_text=data.negative_text
        )
        request = GenerationRequest.objects.create(
            project=project,
            prompt=prompt,
            author=user,
            profile_name=data.profile_name,
            model_mode=data.model_mode,
            width=data.width,
            height=data.height,
            steps=data.steps,
            cfg=data.cfg,
            sampler=data.sampler,
            scheduler=data.scheduler,
            lora_name=data.lora_name,
            lora_strength=data.lora_strength,
            seed_policy=data.seed_policy,
            seed=seeds[0],
            seeds=seeds,
            count=data.count,
        )
        audit_record(
            "request.submitted",
            f"{user.get_username()} asked for {request}",
            actor=user,
            project_id=project.pk,
            data={"request": request.pk, "prompt": prompt.text, **request.settings_snapshot()},
        )
    return request


def decision_record(
    *, image: Image, user: User, verdict: str, note: str = ""
) -> tuple[HumanDecision, bool]:
    """Record a designer's verdict; the same verdict again is the same decision (not a new row).

    Returns the current decision and whether it was created now.
    """
    chosen = Verdict(verdict)
    for _ in range(_DECISION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _decision_write(image, user, chosen, note)
        except IntegrityError as exc:
            # Another click inserted the current row after our read; read it again and decide.
            if _constraint_name(exc) != _ONE_CURRENT_DECISION:
                raise
    raise RuntimeError(
        f"Could not record the decision on image {image.pk}: it kept changing underneath."
    )


def _decisions_lock(user: User, project_id: int) -> None:
    """Serialize one user's decisions in one project (record and undo take the same lock).

    Undo must see the user's latest decision; without this, a decision committing while an
    undo reads could leave the undo working on a row that is no longer the latest.
    """
    Membership.objects.select_for_update().filter(project_id=project_id, user=user).first()


def _decision_write(
    image: Image, user: User, verdict: Verdict, note: str
) -> tuple[HumanDecision, bool]:
    _decisions_lock(user, image.project_id)
    current = (
        HumanDecision.objects.select_for_update()
        .filter(image=image, user=user, is_current=True)
        .first()
    )
    if current is not None and current.verdict == verdict and note in ("", current.note):
        return current, False
    if current is not None:
        HumanDecision.objects.filter(pk=current.pk).update(is_current=False)
    decision = HumanDecision.objects.create(
        image=image, user=user, verdict=verdict, note=note, is_current=True
    )
    audit_record(
        "decision.recorded",
        f"{user.get_username()} chose {verdict.label.lower()} for image {image.pk}",
        actor=user,
        project_id=image.project_id,
        data={
            "image": image.pk,
            "decision": decision.pk,
            "verdict": str(verdict),
            "previous": current.verdict if current is not None else None,
        },
    )
    event_publish(
        "decision.recorded",
        project=image.project_id,
        detail={"image": image.pk, "user": user.pk, "verdict": str(verdict)},
    )
    return decision, True


def decision_undo(
    *, user: User, project: Project, expected_id: int | None = None
) -> HumanDecision | None:
    """Undo the user's most recent decision in ``project`` that is not undone yet.

    The undone row stays in the history with ``undone_at`` set; the user's previous decision
    on that image (if any, and not undone itself) becomes current again, else none is. Each
    call walks one step further back through the user's decisions, newest first, like an
    editor's undo. With ``expected_id`` only that decision is undone, so a repeated request
    (a double key press, a resent form) undoes nothing more. Returns the undone decision, or
    None when there was nothing (or not that one) to undo.
    """
    with transaction.atomic():
        _decisions_lock(user, project.pk)
        latest = (
            HumanDecision.objects.select_for_update(of=("self",))
            .filter(user=user, image__project=project, undone_at__isnull=True)
            .select_related("image")
            .order_by("-created_at", "-id")
            .first()
        )
        if latest is None or (expected_id is not None and latest.pk != expected_id):
            return None
        restored = None
        if latest.is_current:
            restored = (
                HumanDecision.objects.select_for_update()
                .filter(image_id=latest.image_id, user=user, undone_at__isnull=True)
                .exclude(pk=latest.pk)
                .order_by("-created_at", "-id")
                .first()
            )
        latest.is_current = False
        latest.undone_at = timezone.now()
        # Leave the current row first: the one-current-decision constraint is checked per row.
        latest.save(update_fields=["is_current", "undone_at"])
        if restored is not None:
            restored.is_current = True
            restored.save(update_fields=["is_current"])
        audit_record(
            "decision.undone",
            f"{user.get_username()} undid their {latest.verdict} of image {latest.image_id}"
            + (f"; their {restored.verdict} is current again" if restored else ""),
            actor=user,
            project_id=project.pk,
            data={
                "image": latest.image_id,
                "decision": latest.pk,
                "verdict": latest.verdict,
                "restored": restored.pk if restored else None,
                "current": restored.verdict if restored else None,
            },
        )
        event_publish(
            "decision.recorded",
            project=project.pk,
            detail={
                "image": latest.image_id,
                "user": user.pk,
                "verdict": restored.verdict if restored else None,
                "undone": latest.pk,
            },
        )
    return latest


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return str(getattr(diag, "constraint_name", "") or "")


def decisions_record_many(
    *, images: list[Image], user: User, verdict: str
) -> tuple[list[Image], list[Image]]:
    """The same verdict on several images (a gallery's bulk action), each its own decision.

    Returns (changed, unchanged): images whose current decision this made, and those that
    already had it. Each image is ``decision_record``'s atomic change, so a failure part-way
    leaves the ones before it decided and says which.
    """
    changed: list[Image] = []
    unchanged: list[Image] = []
    for image in images:
        _decision, created = decision_record(image=image, user=user, verdict=verdict)
        (changed if created else unchanged).append(image)
    return changed, unchanged


def favourite_set(*, image: Image, user: User, on: bool) -> bool:
    """Star or unstar an image for ``user``; returns whether anything changed."""
    with transaction.atomic():
        if on:
            _row, created = Favourite.objects.get_or_create(image=image, user=user)
            changed = created
        else:
            changed = Favourite.objects.filter(image=image, user=user).delete()[0] > 0
        if changed:
            audit_record(
                "image.favourite" if on else "image.unfavourite",
                f"{user.get_username()} {'starred' if on else 'unstarred'} image {image.pk}",
                actor=user,
                project_id=image.project_id,
                data={"image": image.pk},
            )
    return changed
