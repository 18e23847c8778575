"""What a review was shown, grouped for the review screen: one entry per example image."""

from __future__ import annotations

from dataclasses import dataclass, field

from artcritic.critic.models import ShownContext
from artcritic.studio.models import HumanDecision


@dataclass(frozen=True)
class ShownExample:
    """One example as the Critic saw it, with the decisions (as they are now) behind it."""

    image_id: int
    kind: str  # approve, reject or conflict
    thumbnail_sent: bool
    similarity: float
    thumbnail_key: str
    decisions: list[HumanDecision] = field(default_factory=list)


def examples_shown(
    context: ShownContext | None, decisions: list[HumanDecision]
) -> list[ShownExample]:
    """The review's examples in the order the Critic saw them; [] for reviews before them.

    ``decisions`` are the review's shown_decisions (prefetched with their images), so this
    reads nothing more from the database.
    """
    if context is None:
        return []
    by_id = {d.pk: d for d in decisions}
    shown: list[ShownExample] = []
    for entry in context.examples:
        found = [by_id[pk] for pk in entry.get("decisions", []) if pk in by_id]
        if not found:
            continue  # the image (and its decisions) was deleted since
        shown.append(
            ShownExample(
                image_id=int(entry["image"]),
                kind=str(entry["kind"]),
                thumbnail_sent=bool(entry.get("thumbnail")),
                similarity=float(entry.get("similarity", 0.0)),
                thumbnail_key=found[0].image.thumbnail_key,
                decisions=found,
            )
        )
    return shown
