"""Audit events in the admin: readable, never added, edited or deleted."""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from artcritic.audit.models import AuditEvent
from artcritic.staff.admin.base import ReadOnlyAdmin
from artcritic.staff.admin.filters import BY_DATE, GpuFilter, RuntimeFilter

SUMMARY_SHOWN = 160


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Browse and filter who did what; ``?job=<id>`` lists one job's trail."""

    list_display = ("at", "action", "actor", "project", "job", "gpu", "runtime", "summary_short")
    # Choices from small tables or fixed lists; "action" reads its (indexed) column.
    list_filter = (
        ("at", BY_DATE),
        "action",
        ("actor", admin.RelatedFieldListFilter),
        ("project", admin.RelatedFieldListFilter),
        GpuFilter,
        RuntimeFilter,
    )
    search_fields = ("summary", "action", "actor__username", "project__name", "=job__id")
    list_select_related = ("actor", "project", "job")
    list_per_page = 50
    fields = ("at", "action", "actor", "project", "job", "gpu", "runtime", "summary", "data_pretty")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return super().get_queryset(request).select_related("actor", "project", "job")

    @admin.display(description="summary")
    def summary_short(self, event: AuditEvent) -> str:
        text = event.summary
        return text if len(text) <= SUMMARY_SHOWN else f"{text[: SUMMARY_SHOWN - 1]}…"

    @admin.display(description="data")
    def data_pretty(self, event: AuditEvent) -> str:
        text = json.dumps(event.data, indent=2, ensure_ascii=False, sort_keys=True)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)
