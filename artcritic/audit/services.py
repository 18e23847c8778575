"""The one way to write an audit event."""

from __future__ import annotations

from typing import Any

from artcritic.audit.models import AuditEvent


def audit_record(
    action: str,
    summary: str,
    *,
    actor: Any = None,
    project_id: int | None = None,
    job_id: int | None = None,
    gpu: str = "",
    runtime: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit event; anonymous actors are stored as null."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
        action=action,
        summary=summary,
        actor=actor,
        project_id=project_id,
        job_id=job_id,
        gpu=gpu,
        runtime=runtime,
        data=data or {},
    )
