"""Audit events in the admin: readable, never added, edited or deleted."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from artcritic.audit.models import AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records the system writes (history, requests as submitted): view only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "actor", "project", "job", "gpu", "runtime", "summary")
    list_filter = ("action", "gpu", "runtime")
    search_fields = ("summary", "action", "actor__username", "project__name")
    date_hierarchy = "at"
    list_select_related = ("actor", "project", "job")
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return super().get_queryset(request).select_related("actor", "project", "job")
