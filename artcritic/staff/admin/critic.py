"""What the Critic was shown and learned, in the admin: read-only records.

Proposals are decided by members on the project's Feedback page (audited there), never
edited here; calibrations are refitted by the system.
"""

from __future__ import annotations

from django.contrib import admin

from artcritic.critic.models import Calibration, ShownContext, TasteProposal
from artcritic.staff.admin.base import ReadOnlyAdmin
from artcritic.staff.admin.filters import BY_DATE


@admin.register(ShownContext)
class ShownContextAdmin(ReadOnlyAdmin):
    list_display = (
        "review", "decisions_limit", "thumbnails_limit", "prompt_tokens", "image_tokens",
        "max_model_len", "count_method", "created_at",
    )  # fmt: skip
    list_filter = (("created_at", BY_DATE), "count_method")
    list_select_related = ("review",)
    raw_id_fields = ("review",)
    search_fields = ("review__image__id",)


@admin.register(Calibration)
class CalibrationAdmin(ReadOnlyAdmin):
    list_display = (
        "project", "samples", "approvals", "rejections", "held_out_agreeing",
        "held_out_compared", "raw_agreeing", "raw_compared", "fitted_at",
    )  # fmt: skip
    list_select_related = ("project",)
    search_fields = ("project__name",)


@admin.register(TasteProposal)
class TasteProposalAdmin(ReadOnlyAdmin):
    list_display = ("project", "status", "text", "decided_by", "decided_at", "created_at")
    list_filter = (("created_at", BY_DATE), "status")
    list_select_related = ("project", "decided_by")
    raw_id_fields = ("project", "job", "decided_by")
    search_fields = ("text", "final_text", "project__name")
