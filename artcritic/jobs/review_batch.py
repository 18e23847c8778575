"""Several reviews on the Critic at once: one thread per review job, each its own job.

vLLM serves concurrent requests in one batch (continuous batching), so reviews waiting
for the same GPU go together, up to ``critic.batching.reviews_in_flight_for``: whenever
one ends, the next waiting review takes its seat (``refill``), until none waits or another
kind of job does (then the scheduler decides again once the seats empty). Each thread
runs the ordinary ``run_job`` with its own copy of the worker context (its own meter) and
lease heartbeat: its phases, verdict or failure are its own, and one failure never ends
the others. Making the Critic ready is serialised by the shared CriticSeats, so only the
first thread starts or wakes it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from django.db import connection

from artcritic.jobs.runner import WorkerContext, run_job

log = logging.getLogger(__name__)

Lease = Callable[[int], AbstractContextManager[object]]
Refill = Callable[..., list[int]]  # called as refill(limit=free seats)


def reviews_run(
    job_ids: list[int], ctx: WorkerContext, lease: Lease, refill: Refill | None = None
) -> int:
    """Run these claimed reviews and those ``refill`` claims as seats free; return how many."""
    seats = len(job_ids)
    ended: queue.Queue[int] = queue.Queue()

    def one(job_id: int) -> None:
        try:
            with lease(job_id):
                run_job(job_id, replace(ctx, meter=None))
        except Exception:
            # run_job ends its job itself; anything escaping it is logged, never spread.
            log.exception("review job %s escaped its runner", job_id)
        finally:
            connection.close()  # each thread has its own database connection
            ended.put(job_id)

    def start(job_id: int) -> None:
        threading.Thread(target=one, args=(job_id,), name=f"review-{job_id}", daemon=True).start()

    for job_id in job_ids:
        start(job_id)
    running, ran = len(job_ids), len(job_ids)
    while running:
        ended.get()
        running -= 1
        more = refill(limit=seats - running) if refill is not None else []
        for job_id in more:
            start(job_id)
        running += len(more)
        ran += len(more)
    return ran
