"""Compose what the Critic is shown for one review, and record what it was shown.

The job runner calls ``review_context_compose`` before the review and
``shown_context_record`` in the transaction that stores the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from artcritic.critic.models import ShownContext
from artcritic.critic.selection import CONFLICT, Example, examples_for
from artcritic.critic.thumbnails import thumbnail_png
from artcritic.runtimes.critic import CriticVerdict, PriorDecision, ReviewContext
from artcritic.studio.models import CriticReview, HumanDecision, Image


@dataclass(frozen=True)
class Composed:
    """A review's context with the examples behind it and the profile's k and m."""

    context: ReviewContext
    examples: list[Example]
    decisions_limit: int
    thumbnails_limit: int

    @property
    def shown_decisions(self) -> list[HumanDecision]:
        """Every member's current decision on every example (the review's shown_decisions)."""
        return [d for example in self.examples for d in example.decisions]

    def examples_record(self) -> list[dict[str, object]]:
        """The examples as stored on the review, in the order the Critic saw them."""
        return [
            {
                "image": e.image_id,
                "kind": e.kind,
                "similarity": round(e.similarity, 4),
                "thumbnail": n < self.thumbnails_limit,
                "decisions": [d.pk for d in e.decisions],
            }
            for n, e in enumerate(self.examples)
        ]


def _prior(example: Example, thumbnail: bytes | None) -> PriorDecision:
    newest = example.decisions[0]  # examples_for orders each image's decisions newest first
    return PriorDecision(
        decision_id=newest.pk,
        verdict=CONFLICT if example.kind == CONFLICT else newest.verdict,
        note=newest.note,
        prompt_text=example.prompt_text,
        votes=tuple((d.verdict, d.note) for d in example.decisions),
        thumbnail_png=thumbnail,
    )


def review_context_compose(
    image: Image, *, decisions_limit: int, thumbnails_limit: int
) -> Composed:
    """The project's material, the k most similar decided images and m of their thumbnails."""
    if not 0 <= thumbnails_limit <= decisions_limit:
        raise ValueError(
            f"thumbnails shown ({thumbnails_limit}) must be between 0 and the decisions shown "
            f"({decisions_limit})"
        )
    examples = [e for e in examples_for(image, decisions_limit) if e.decisions]
    project = image.project
    context = ReviewContext(
        prompt=image.prompt.text,
        negative=image.prompt.negative_text,
        brief=project.brief,
        taste_notes=project.taste_notes,
        manufacturability=project.manufacturability,
        prior_decisions=[
            _prior(e, thumbnail_png(e.thumbnail_key) if n < thumbnails_limit else None)
            for n, e in enumerate(examples)
        ],
    )
    return Composed(context, examples, decisions_limit, thumbnails_limit)


def shown_context_record(
    review: CriticReview, composed: Composed, verdict: CriticVerdict
) -> ShownContext:
    """Store what the review was shown; call inside the transaction that stores the review."""
    review.shown_decisions.set(composed.shown_decisions)
    return ShownContext.objects.create(
        review=review,
        decisions_limit=composed.decisions_limit,
        thumbnails_limit=composed.thumbnails_limit,
        examples=composed.examples_record(),
        prompt_tokens=verdict.estimated_prompt_tokens,
        image_tokens=verdict.image_tokens,
        count_method=verdict.count_method,
        max_model_len=verdict.max_model_len,
    )
