"""The GPU worker's sweeper: it asks PostgreSQL, not the broker, whether there is work.

A kick can be lost (the broker was down at submit, a message was dropped); the record of
the work cannot. While its GPU worker is idle, the sweeper looks every few seconds for
waiting jobs, and for running jobs whose worker stopped renewing the lease, and then wakes
the worker through its own queue. It also moves the work of GPUs whose worker vanished to
live GPUs (``jobs.rehome``). After a broker outage every admitted job is therefore
picked up within one sweep of the broker's return, with or without a new submission.
"""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from artcritic.jobs.kick import gpu_kick_now
from artcritic.jobs.models import PENDING_STATUSES, Job, JobStatus
from artcritic.jobs.rehome import jobs_rehome

log = logging.getLogger(__name__)

SWEEP_S = 3.0


def gpu_has_work(gpu: str) -> bool:
    """Whether a job on ``gpu`` waits to be claimed, or runs under an expired lease."""
    now = timezone.now()
    waiting = Q(status__in=PENDING_STATUSES, cancel_requested=False)
    orphaned = Q(status=JobStatus.RUNNING) & (
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    )
    return Job.objects.filter(waiting | orphaned, gpu=gpu).exists()


class Sweeper:
    """A daemon thread of the GPU worker; ``busy`` is set while a GPU task runs."""

    def __init__(self, gpu: str, busy: threading.Event, *, interval: float = SWEEP_S) -> None:
        self.gpu = gpu
        self.busy = busy
        self.interval = interval
        self.kicks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sweeper-{gpu}", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def sweep(self) -> bool:
        """One look; True when it woke the worker."""
        # Work stranded on a GPU whose worker vanished moves to a live GPU, this one or
        # another; each GPU it moved to is woken (its own sweeper would find it too).
        for gpu in sorted({move.to_gpu for move in jobs_rehome()} - {self.gpu}):
            gpu_kick_now(gpu)
        if self.busy.is_set() or not gpu_has_work(self.gpu):
            return False
        if gpu_kick_now(self.gpu):
            self.kicks += 1
            log.info("sweeper found waiting work on GPU %s and woke its worker", self.gpu)
            return True
        return False

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.sweep()
                except Exception:
                    # A lost database connection must not end the sweeps; the next one retries.
                    log.exception("sweep of GPU %s failed", self.gpu)
                    close_old_connections()
        finally:
            connection.close()
