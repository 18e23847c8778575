"""What the Critic was shown for one review: the examples, their thumbnails and the tokens."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from artcritic.studio.models import CriticReview


class ShownContext(models.Model):
    """One review's context as sent: k and m, each example, and the token arithmetic.

    ``examples`` is a list of ``{"image", "kind", "similarity", "thumbnail"}`` in the order
    the Critic saw them; ``thumbnail`` says whether its picture was attached.
    """

    review = models.OneToOneField(
        CriticReview, on_delete=models.CASCADE, related_name="shown_context"
    )
    decisions_limit = models.PositiveSmallIntegerField(help_text="k: prior decisions shown.")
    thumbnails_limit = models.PositiveSmallIntegerField(help_text="m: thumbnails attached.")
    examples = models.JSONField(default=list)
    prompt_tokens = models.PositiveIntegerField(help_text="Counted before sending.")
    image_tokens = models.PositiveIntegerField(help_text="All images, by Qwen-VL patching.")
    count_method = models.CharField(max_length=16)
    max_model_len = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(thumbnails_limit__lte=models.F("decisions_limit")),
                name="shown_thumbnails_within_decisions",
            ),
            models.CheckConstraint(
                condition=Q(count_method__in=["tokenizer", "bound"]),
                name="shown_count_method_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"context of review {self.review_id}"

    @property
    def thumbnails_shown(self) -> int:
        return sum(1 for e in self.examples if e.get("thumbnail"))
