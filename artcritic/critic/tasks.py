"""Celery tasks of the critic app (default queue): they take ids and are safe to retry."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

from artcritic.critic.services import calibration_current
from artcritic.studio.models import Project

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def calibration_refit(project_id: int) -> int:
    """Refit the project's calibration on its current decisions; returns the samples used.
    Running it twice is harmless: the second finds the same rows and keeps the stored fit."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    return calibration_current(project).row.samples


def calibration_refit_soon(project_id: int) -> None:
    """After this transaction commits, ask the default worker to refit (a decision changed
    what the team thinks). If the broker is away the fit is only later, never wrong: the
    Feedback page refits on read, and the review screen says when its fit was made."""

    def send() -> None:
        try:
            calibration_refit.delay(project_id)
        except Exception as exc:
            log.warning(
                "calibration refit of project %s not queued (%s); the Feedback page refits "
                "it on its next view",
                project_id,
                exc,
            )

    transaction.on_commit(send)
