"""Celery tasks. ``gpu_work`` runs on the GPU's own queue, one worker process, concurrency 1.

The task carries only the GPU name. It re-reads everything from PostgreSQL, claims
the scheduler's choice with SELECT … FOR UPDATE SKIP LOCKED, runs it under a lease
kept alive by a heartbeat thread, and asks for the next until nothing is pending.
Running it twice, or after a crash, is safe: claims are atomic and leases expire.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial
from types import TracebackType
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from artcritic.critic.batching import reviews_in_flight_for
from artcritic.gpu.nvml import probe_for
from artcritic.gpu.profiles import Profile
from artcritic.gpu.readings import ReadingsThread
from artcritic.gpu.runtime_state import resident_runtime
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.jobs import lifecycle
from artcritic.jobs.coordinator import Coordinator, Runtimes
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.history import duration_model
from artcritic.jobs.kick import gpu_kick_now, gpu_queue
from artcritic.jobs.models import Job, JobKind, JobStatus
from artcritic.jobs.review_batch import reviews_run
from artcritic.jobs.runner import WorkerContext, run_job
from artcritic.jobs.sweeper import Sweeper
from artcritic.procs import pid_alive
from artcritic.runtimes.comfyui import ComfyClient
from artcritic.runtimes.critic import CriticClient
from artcritic.runtimes.drivers.base import RuntimeDriver, RuntimeKey
from artcritic.runtimes.drivers.factory import driver_for

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_context(gpu_name: str) -> WorkerContext:
    """Build the coordinator for this GPU from its active profile (re-read on every run)."""
    gpu, profile = profile_active(gpu_name)
    runtime_keys: tuple[RuntimeKey, ...] = ("comfyui", "critic")
    drivers: dict[str, RuntimeDriver] = {
        runtime: driver_for(
            runtime,
            profile,
            gpu=gpu_name,
            docker_base_url=settings.ARTCRITIC_DOCKER_URL or None,
            docker_network=settings.ARTCRITIC_DOCKER_NETWORK,
            # Only this worker's GPU: a container must never see the whole machine's GPUs.
            gpu_device_ids=[str(gpu.nvml_index)],
        )
        for runtime in runtime_keys
    }
    critic_cfg = profile.runtimes.critic
    runtimes = Runtimes(
        drivers=drivers,
        comfy=ComfyClient(
            profile.runtimes.comfyui.url, timeout=profile.runtimes.comfyui.request_timeout_s
        ),
        critic=CriticClient(
            critic_cfg.url,
            model=critic_cfg.served_model_name or profile.critic.model,
            timeout=critic_cfg.request_timeout_s,
            max_model_len=critic_cfg.max_model_len,
        ),
    )
    probe = probe_for(
        gpu_name, simulated=profile.simulated, index=gpu.nvml_index, total_bytes=profile.total_bytes
    )
    coordinator = Coordinator(gpu, profile, probe=probe, runtimes=runtimes)
    return WorkerContext(gpu=gpu, profile=profile, coordinator=coordinator, worker=worker_id())


class Heartbeat:
    """Renews the job's lease from a thread while the job runs in this one."""

    def __init__(self, job_id: int, worker: str, interval: float = HEARTBEAT_S) -> None:
        self.job_id, self.worker, self.interval = job_id, worker, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                if not lifecycle.lease_renew(self.job_id, worker=self.worker):
                    log.warning("lost the lease of job %s", self.job_id)
                    return
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ModelPrefetch:
    """Reads the GPU's duration history in a thread while a job runs, for the next claim.

    The GPU would otherwise sit idle while the worker reads its history between two jobs;
    the model misses only the job running now, which the one after it will see.
    """

    def __init__(self, gpu_name: str, profile: Profile) -> None:
        self.gpu_name, self.profile = gpu_name, profile
        self.model: DurationModel | None = None
        self._thread = threading.Thread(target=self._read, name="history-read", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self.model = duration_model(self.gpu_name, self.profile)
        except Exception:
            log.exception("reading the duration history of %s failed", self.gpu_name)
        finally:
            connection.close()

    def take(self, profile: Profile) -> DurationModel:
        """The prefetched model, or a fresh one if the profile changed or the read failed."""
        self._thread.join()
        if self.model is not None and profile == self.profile:
            return self.model
        return duration_model(self.gpu_name, profile)


def _reap_dead_local_owners(gpu: str) -> None:
    """Leases held by a dead process on this host expire now, not in 30 s."""
    host = socket.gethostname()
    for job in Job.objects.filter(
        gpu=gpu, status=JobStatus.RUNNING, lease_owner__startswith=f"{host}:"
    ):
        pid = int(job.lease_owner.rsplit(":", 1)[1] or 0)
        if pid and pid != os.getpid() and not pid_alive(pid):
            Job.objects.filter(pk=job.pk, lease_owner=job.lease_owner).update(
                lease_expires_at=timezone.now()
            )


@shared_task(acks_late=True, ignore_result=True)
def gpu_work(gpu_name: str) -> int:
    """Run pending jobs of ``gpu_name`` until none is left; return how many ran."""
    _busy.set()
    close_old_connections()
    me = worker_id()
    ran = 0
    prefetch: ModelPrefetch | None = None
    try:
        _reap_dead_local_owners(gpu_name)
        lifecycle.jobs_reap_expired(gpu_name)
        while True:
            try:
                ctx = worker_context(gpu_name)
            except NoActiveProfile:
                log.error("GPU %s has no active profile; nothing can run", gpu_name)
                return ran
            # What this GPU did so far prices the scheduler's swaps and the reviews' ETAs.
            if prefetch is not None:
                ctx.model = prefetch.take(ctx.profile)
            else:
                ctx.model = duration_model(gpu_name, ctx.profile)
            try:
                claim = lifecycle.job_claim_next(
                    gpu_name,
                    worker=me,
                    resident=resident_runtime(ctx.gpu),
                    profile=ctx.profile,
                    model=ctx.model,
                )
            except lifecycle.ProfileChanged as exc:
                log.info("%s; reading it again", exc)
                continue
            if claim is None:
                break
            prefetch = ModelPrefetch(gpu_name, ctx.profile)
            if Job.objects.filter(pk=claim.job_id, kind=JobKind.REVIEW).exists():
                # The Critic batches: the reviews waiting behind this one go with it.
                claim_reviews = partial(
                    lifecycle.job_claim_reviews, gpu_name, worker=me, profile=ctx.profile
                )
                more = claim_reviews(limit=reviews_in_flight_for(ctx.profile) - 1)
                ran += reviews_run(
                    [claim.job_id, *more],
                    ctx,
                    partial(Heartbeat, worker=me),
                    refill=partial(claim_reviews, unless_others=True),
                )
                continue
            with Heartbeat(claim.job_id, me):
                run_job(claim.job_id, ctx)
            ran += 1
        # Someone else's lease still running here (another worker life): look again later.
        remaining = (
            Job.objects.filter(gpu=gpu_name, status=JobStatus.RUNNING)
            .exclude(lease_owner=me)
            .values_list("lease_expires_at", flat=True)
            .first()
        )
        if remaining is not None:
            wait = max(1.0, (remaining - timezone.now()).total_seconds() + 1)
            gpu_kick_now(gpu_name, countdown=wait)
    finally:
        _busy.clear()
        close_old_connections()
    return ran


@worker_ready.connect
def _resume_after_restart(sender: Any = None, **_: Any) -> None:
    """A (re)started GPU worker looks for work left by its previous life."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", [])}
    gpu = settings.ARTCRITIC_GPU
    if gpu_queue(gpu) in queues:
        gpu_kick_now(gpu)


_readings: dict[str, ReadingsThread] = {}
_sweepers: dict[str, Sweeper] = {}
# Set while gpu_work runs in this (solo) worker: the sweeper wakes only an idle worker.
_busy = threading.Event()


@worker_ready.connect
def _start_nvml_readings(sender: Any = None, **_: Any) -> None:
    """The worker that owns a GPU also reads its NVML numbers, every 2 s, for the pages."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", [])}
    gpu = settings.ARTCRITIC_GPU
    if gpu_queue(gpu) in queues and gpu not in _readings:
        _readings[gpu] = ReadingsThread(gpu).start()


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    """The GPU worker looks in PostgreSQL for work a lost kick would otherwise strand."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", [])}
    gpu = settings.ARTCRITIC_GPU
    if gpu_queue(gpu) in queues and gpu not in _sweepers:
        _sweepers[gpu] = Sweeper(gpu, _busy).start()
