"""List filters that cost nothing at scale: their choices come from small tables or fixed
lists, never from a DISTINCT over tens of thousands of jobs or audit events."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from artcritic.gpu.models import Gpu, RuntimeName


class GpuFilter(admin.SimpleListFilter):
    """By GPU name, listed from the GPU table (a handful of rows)."""

    title = "GPU"
    parameter_name = "gpu"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = Gpu.objects.order_by("name").values_list("name", flat=True)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(gpu=value) if value else queryset


class RuntimeFilter(admin.SimpleListFilter):
    """By runtime, from the fixed list of runtimes."""

    title = "runtime"
    parameter_name = "runtime"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in RuntimeName.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(runtime=value) if value else queryset


class ByDate(admin.DateFieldListFilter):
    """"Today, past 7 days, this month, this year" without a query (unlike date_hierarchy,
    whose first level is a DISTINCT over the whole table)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "date"


BY_DATE = ByDate
