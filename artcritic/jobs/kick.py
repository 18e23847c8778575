"""Waking a GPU worker: a best-effort message after commit, never on the request's path.

PostgreSQL holds the work: an admitted job is a row, and the kick is only a wake-up for
the GPU worker that serves its queue. When the broker is unreachable the kick is dropped
with a warning (the caller can say "the GPU queue is reconnecting" instead of failing), and
the worker's sweeper (``jobs.sweeper``) finds the row within seconds of the broker
returning. A duplicate kick is harmless: claims are atomic and an idle claim finds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis
from celery import current_app
from django.db import transaction
from kombu.exceptions import KombuError, OperationalError

log = logging.getLogger(__name__)

GPU_WORK_TASK = "artcritic.jobs.tasks.gpu_work"
# Publishing gives up quickly: the sweeper, not the request, is what waits for the broker.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    KombuError,
    redis.RedisError,
    ConnectionError,
    OSError,
)


def gpu_queue(gpu: str) -> str:
    """The Celery queue of a GPU's one worker."""
    return f"gpu.{gpu}"


@dataclass
class KickReport:
    """Kicks that could not be sent while a ``kicks_watched`` block ran (GPU names)."""

    failed: list[str] = field(default_factory=list)


_watch: ContextVar[KickReport | None] = ContextVar("artcritic_kicks", default=None)


@contextmanager
def kicks_watched() -> Iterator[KickReport]:
    """Collect the kicks that failed inside the block (they run on commit, in this thread)."""
    report = KickReport()
    token = _watch.set(report)
    try:
        yield report
    finally:
        _watch.reset(token)


def gpu_kick_now(gpu: str, *, countdown: float = 0) -> bool:
    """Send the wake-up now; False (logged, reported) when the broker cannot take it."""
    try:
        current_app.send_task(
            GPU_WORK_TASK,
            args=(gpu,),
            queue=gpu_queue(gpu),
            countdown=countdown,
            retry=True,
            retry_policy=PUBLISH_RETRY,
        )
    except BROKER_ERRORS as exc:
        log.warning(
            "GPU %s was not woken (broker unreachable: %s); its sweeper will find the work",
            gpu,
            exc,
        )
        report = _watch.get()
        if report is not None:
            report.failed.append(gpu)
        return False
    return True


def gpu_kick(gpu: str, *, countdown: float = 0) -> None:
    """Wake the GPU's worker after the current transaction commits (at once without one)."""
    transaction.on_commit(lambda: gpu_kick_now(gpu, countdown=countdown))
