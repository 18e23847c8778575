"""Which earlier decisions the Critic is shown: the most similar prompts, ranked in PostgreSQL.

An example is an image the team decided on. Its prompt's similarity to the new image's
prompt is pg_trgm's trigram similarity (``critic/migrations/0001_context.py`` enables
the extension); same model mode, then same LoRA, then the newest decision break ties.
An image on which members disagree is one *conflict* example with every member's
verdict, never averaged into either side. Approvals and rejections are balanced: each
kind may take at most half of the places while the other kind has candidates left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.postgres.search import TrigramSimilarity
from django.db.models import (
    Case,
    CharField,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber

from artcritic.studio.models import HumanDecision, Image, Verdict

MAX_EXAMPLES = 32  # the profile schema's bound for prior_decisions_shown
CONFLICT = "conflict"
KINDS = (Verdict.APPROVE.value, Verdict.REJECT.value, CONFLICT)


@dataclass(frozen=True)
class Candidate:
    """One decided image as ranked by the database (plain values, for the pure balance)."""

    image_id: int
    kind: str  # approve, reject or conflict
    similarity: float
    same_mode: bool
    same_lora: bool


@dataclass(frozen=True)
class Example:
    """A chosen example with the current decisions of every member who decided on it."""

    image_id: int
    kind: str
    similarity: float
    prompt_text: str
    thumbnail_key: str
    decisions: list[HumanDecision] = field(default_factory=list)


def balance(ranked: Sequence[Candidate], limit: int) -> list[Candidate]:
    """Up to ``limit`` candidates in rank order, no kind taking more than half while others wait.

    ``ranked`` is best first. A kind over its share is skipped, then the places the others
    could not fill go back to the skipped ones, still in rank order.
    """
    if limit <= 0:
        return []
    share = math.ceil(limit / 2)
    taken: list[Candidate] = []
    skipped: list[Candidate] = []
    counts = dict.fromkeys(KINDS, 0)
    for candidate in ranked:
        if len(taken) == limit:
            break
        if counts[candidate.kind] < share:
            counts[candidate.kind] += 1
            taken.append(candidate)
        else:
            skipped.append(candidate)
    taken.extend(skipped[: limit - len(taken)])
    order = {id(c): n for n, c in enumerate(ranked)}
    return sorted(taken, key=lambda c: order[id(c)])


def candidates_ranked(image: Image, limit: int) -> list[Candidate]:
    """The best ``limit`` decided images of each kind in ``image``'s project, best first."""
    if limit <= 0:
        return []
    request = image.request
    newest = (
        HumanDecision.objects.filter(image_id=OuterRef("pk"), is_current=True)
        .order_by("-created_at", "-id")
        .values("created_at")[:1]
    )
    ranking = (
        F("similarity").desc(),
        F("same_mode").desc(),
        F("same_lora").desc(),
        F("decided_at").desc(nulls_last=True),
        F("pk").desc(),
    )
    rows = (
        Image.objects.filter(project_id=image.project_id)
        .filter(Q(approvals__gt=0) | Q(rejections__gt=0))
        .exclude(pk=image.pk)
        .annotate(
            similarity=TrigramSimilarity("prompt__text", image.prompt.text),
            same_mode=Case(
                When(request__model_mode=request.model_mode, then=1),
                default=0,
                output_field=IntegerField(),
            ),
            same_lora=Case(
                When(request__lora_name=request.lora_name, then=1),
                default=0,
                output_field=IntegerField(),
            ),
            decided_at=Subquery(newest),
            kind=Case(
                When(rejections=0, then=Value(Verdict.APPROVE.value)),
                When(approvals=0, then=Value(Verdict.REJECT.value)),
                default=Value(CONFLICT),
                output_field=CharField(),
            ),
        )
        .annotate(place=Window(RowNumber(), partition_by=[F("kind")], order_by=ranking))
        .filter(place__lte=limit)
        .order_by(*ranking)
        .values_list("pk", "kind", "similarity", "same_mode", "same_lora")
    )
    return [
        Candidate(pk, kind, float(similarity or 0.0), bool(mode), bool(lora))
        for pk, kind, similarity, mode, lora in rows
    ]


def examples_for(image: Image, limit: int) -> list[Example]:
    """The examples the Critic is shown for ``image``: similar, balanced, conflicts kept apart."""
    if not 0 <= limit <= MAX_EXAMPLES:
        raise ValueError(f"prior decisions shown must be 0..{MAX_EXAMPLES}, not {limit}")
    chosen = balance(candidates_ranked(image, limit), limit)
    if not chosen:
        return []
    images = Image.objects.select_related("prompt").in_bulk([c.image_id for c in chosen])
    decisions: dict[int, list[HumanDecision]] = {c.image_id: [] for c in chosen}
    for decision in (
        HumanDecision.objects.filter(image_id__in=decisions, is_current=True)
        .select_related("user")
        .order_by("-created_at", "-id")
    ):
        decisions[decision.image_id].append(decision)
    return [
        Example(
            image_id=c.image_id,
            kind=c.kind,
            similarity=c.similarity,
            prompt_text=images[c.image_id].prompt.text,
            thumbnail_key=images[c.image_id].thumbnail_key,
            decisions=decisions[c.image_id],
        )
        for c in chosen
    ]
