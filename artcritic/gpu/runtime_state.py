"""Runtime state per GPU: one row per (GPU, runtime), changed here and published live."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from artcritic.events import event_publish
from artcritic.gpu.models import Gpu, RuntimeName, RuntimeState, RuntimeStatus

# States in which a runtime holds (or is about to hold) its VRAM.
RESIDENT = frozenset(
    {
        RuntimeStatus.STARTING,
        RuntimeStatus.LOADING,
        RuntimeStatus.WARMING,
        RuntimeStatus.READY,
        RuntimeStatus.BUSY,
        RuntimeStatus.RELEASING,
        RuntimeStatus.UNHEALTHY,
    }
)


def runtime_states(gpu: Gpu) -> dict[str, RuntimeState]:
    """Every runtime's row for this GPU, created as ``stopped`` when missing."""
    rows = {row.runtime: row for row in RuntimeState.objects.filter(gpu=gpu)}
    for name in RuntimeName.values:
        if name not in rows:
            rows[name], _ = RuntimeState.objects.get_or_create(
                gpu=gpu,
                runtime=name,
                defaults={"status": RuntimeStatus.STOPPED, "status_since": timezone.now()},
            )
    return rows


def resident_runtime(gpu: Gpu) -> str | None:
    """The runtime holding the GPU now (for the scheduler), preferring a busy/ready one."""
    # Read only: a page view must never write; a missing row simply means "stopped".
    rows = {row.runtime: row for row in RuntimeState.objects.filter(gpu=gpu)}
    order = [
        RuntimeStatus.BUSY,
        RuntimeStatus.READY,
        RuntimeStatus.WARMING,
        RuntimeStatus.LOADING,
        RuntimeStatus.STARTING,
    ]
    for status in order:
        for name, row in rows.items():
            if row.status == status:
                return name
    return None


def runtime_state_set(
    gpu: Gpu,
    runtime: str,
    status: RuntimeStatus,
    *,
    detail: str = "",
    fingerprint: str | None = None,
    profile_name: str | None = None,
    driver: str | None = None,
    endpoint: str | None = None,
    simulated: bool | None = None,
    version: str | None = None,
) -> RuntimeState:
    """Record a runtime's new state (its start time resets only when the state changes)."""
    with transaction.atomic():
        row = runtime_states(gpu)[runtime]
        row = RuntimeState.objects.select_for_update().get(pk=row.pk)
        if row.status != status:
            row.status_since = timezone.now()
        row.status = status
        row.detail = detail[:2000]
        for name, value in (
            ("fingerprint", fingerprint),
            ("profile_name", profile_name),
            ("driver", driver),
            ("endpoint", endpoint),
            ("simulated", simulated),
            ("version", version[:80] if version is not None else None),
        ):
            if value is not None:
                setattr(row, name, value)
        row.save()
        event_publish(
            "runtime.state",
            gpu=gpu.name,
            runtime=runtime,
            status=status,
            detail={
                "text": row.detail,
                "since": row.status_since.isoformat(),
                "simulated": row.simulated,
                "profile": row.profile_name,
                "version": row.version,
            },
        )
        return row
