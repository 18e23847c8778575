"""Who may see and act on a job: members of its project (studio.access has the rest)."""

from __future__ import annotations

from typing import Any

from django.http import Http404

from artcritic.jobs.models import Job


def job_for_user(user: Any, job_id: int) -> Job:
    """The job if ``user`` is a member of its project; Http404 otherwise (ids do not leak)."""
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such job.")
    job = Job.objects.filter(pk=job_id, project__memberships__user=user).first()
    if job is None:
        raise Http404("No such job.")
    return job
