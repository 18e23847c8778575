"""Switching a GPU's active profile, refused while it would strand work.

It lives with the jobs because the question it answers is about them: would a running job
change rules mid-run, or a waiting one be turned away by the new profile?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from artcritic.audit.services import audit_record
from artcritic.events import event_publish
from artcritic.gpu.admission import admit_generation, admit_review, request_settings
from artcritic.gpu.models import GPU_NAME, Gpu, HardwareProfile
from artcritic.gpu.profiles import GB, Profile, ProfileError, profile_from_data
from artcritic.jobs.models import PENDING_STATUSES, Job, JobStatus


class ActivationRefused(Exception):
    """Switching a GPU's profile is not safe now; ``reason`` and ``next_action`` say why."""

    def __init__(self, reason: str, next_action: str) -> None:
        self.reason = reason
        self.next_action = next_action
        super().__init__(f"{reason} Next: {next_action}")


@dataclass(frozen=True)
class ActivationBlocker:
    """One reason a GPU must not switch profiles now, and the jobs an admin could cancel."""

    reason: str
    job_ids: tuple[int, ...]


BLOCKED_JOBS_LISTED = 5


def gpu_activation_check(gpu: Gpu, profile: Profile) -> list[ActivationBlocker]:
    """What would strand work if ``gpu`` switched to ``profile`` now (empty: safe to switch).

    - A running job was admitted, and its runtime started, under the old profile: switching
      under it would change the rules mid-run. Wait for it or cancel it.
    - A waiting (queued or admitted) job that ``profile`` would refuse: the worker re-admits
      every job when it claims it, so after the switch it would be blocked. The switch is
      refused with the list instead, so an admin decides (cancel them, or keep the profile)
      before anyone's work is turned away.
    - Waiting jobs that ``profile`` admits do not block: they run under the new profile with
      exactly the settings they were submitted with (the worker admits them again anyway).
    - Runtime states do not block: the coordinator recreates a runtime whose fingerprint
      differs from the active profile's, and a state left behind by a dead worker must not
      lock the GPU to its profile forever.
    """
    blockers: list[ActivationBlocker] = []
    jobs = Job.objects.filter(gpu=gpu.name).select_related("request").order_by("created_at", "id")
    for job in jobs.filter(status=JobStatus.RUNNING):
        doing = "is stopping (cancel requested)" if job.cancel_requested else "is running"
        advice = "wait for it to stop" if job.cancel_requested else "wait for it or cancel it first"
        blockers.append(
            ActivationBlocker(
                f"job {job.pk} ({job.kind}) {doing} on {gpu.name} — {advice}", (job.pk,)
            )
        )
    refused: list[tuple[int, str]] = []
    review_admission = None
    for job in jobs.filter(status__in=PENDING_STATUSES, cancel_requested=False):
        if job.request is not None:  # a generate job (the job_subject_matches_kind rule)
            admission = admit_generation(profile, request_settings(job.request))
        else:
            review_admission = review_admission or admit_review(profile)
            admission = review_admission
        if not admission.ok:
            refused.append((job.pk, admission.reason.rstrip(".")))
    if refused:
        listed = "; ".join(f"job {pk}: {reason}" for pk, reason in refused[:BLOCKED_JOBS_LISTED])
        more = len(refused) - BLOCKED_JOBS_LISTED
        if more > 0:
            listed += f"; and {more} more"
        blockers.append(
            ActivationBlocker(
                f"{len(refused)} waiting job(s) would be blocked by {profile.name} — cancel "
                f"them first ({listed})",
                tuple(pk for pk, _reason in refused),
            )
        )
    return blockers


def gpu_activation_blockers(gpu: Gpu, profile: Profile | None = None) -> list[str]:
    """Reasons, in words, that ``gpu`` must not switch to ``profile`` now (empty: it may).

    Without ``profile`` the GPU's current profile is used: in effect, only running jobs.
    """
    if profile is None:
        profile = profile_from_data(gpu.active_profile.data)
    return [blocker.reason for blocker in gpu_activation_check(gpu, profile)]


def gpu_activate(gpu_name: str, profile_name: str, *, actor: Any = None) -> Gpu:
    """Make ``profile_name`` the active profile of GPU ``gpu_name``, creating the GPU row."""
    if not isinstance(gpu_name, str) or not GPU_NAME.fullmatch(gpu_name):
        raise ProfileError(
            f"GPU name {gpu_name!r} is not valid: use 1-64 lower-case letters, digits, '-' or '_' "
            "(it names the Celery queue gpu.<name>)."
        )
    with transaction.atomic():
        row = HardwareProfile.objects.filter(name=profile_name).first()
        if row is None:
            known = ", ".join(HardwareProfile.objects.values_list("name", flat=True)) or "none"
            raise ProfileError(
                f"No hardware profile named {profile_name!r} is loaded (known: {known}). "
                "Next: load it with `manage.py loadprofiles`, or pick a known one."
            )
        # Stored data may have been edited in the admin since it was loaded: check it again.
        profile = profile_from_data(row.data)
        gpu = (
            Gpu.objects.select_for_update(of=("self",))
            .select_related("active_profile")
            .filter(name=gpu_name)
            .first()
        )
        previous = gpu.active_profile.name if gpu is not None else None
        if gpu is None:
            gpu = Gpu.objects.create(name=gpu_name, active_profile=row)
        elif gpu.active_profile_id != row.pk:
            blockers = gpu_activation_blockers(gpu, profile)
            if blockers:
                raise ActivationRefused(
                    f"GPU {gpu_name} cannot switch from {previous} to {row.name}: "
                    + "; ".join(blockers)
                    + ".",
                    "Wait for those jobs to finish or cancel them, then activate again.",
                )
            gpu.active_profile = row
            gpu.save(update_fields=["active_profile", "updated_at"])
        audit_record(
            "gpu.activate",
            _activation_summary(gpu_name, row.name, previous, profile),
            actor=actor,
            gpu=gpu_name,
            data={"profile": row.name, "previous": previous, "sha256": row.source_sha256},
        )
        if previous != row.name:
            event_publish(
                "gpu.profile",
                gpu=gpu_name,
                detail={"profile": row.name, "previous": previous, "simulated": row.simulated},
            )
    return gpu


def _activation_summary(gpu: str, name: str, previous: str | None, profile: Profile) -> str:
    usable = f"{profile.usable_bytes / GB:.1f} GB usable"
    if previous is None:
        return f"GPU {gpu} created with profile {name} ({usable})."
    if previous == name:
        return f"GPU {gpu} keeps profile {name} ({usable}); it was already active."
    return f"GPU {gpu} switched from profile {previous} to {name} ({usable})."
