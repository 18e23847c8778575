"""Several reviews on the Critic at once: one thread per review job, each its own job.

vLLM serves concurrent requests in one batch (continuous batching), so reviews waiting
for the same GPU go together, up to ``critic.batching.reviews_in_flight_for``. Each
thread runs the ordinary ``run_job`` with its own copy of the worker context (its own
meter) and lease heartbeat: its phases, verdict or failure are its own, and one failure
never ends the others. Making the Critic ready is serialised by the context's lock, so
only the first thread starts or wakes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from django.db import connection

from artcritic.jobs.runner import WorkerContext, run_job

log = logging.getLogger(__name__)

Lease = Callable[[int], AbstractContextManager[object]]


def reviews_run(job_ids: list[int], ctx: WorkerContext, lease: Lease) -> None:
    """Run these claimed review jobs concurrently; return when every one has ended."""
    if len(job_ids) == 1:
        with lease(job_ids[0]):
            run_job(job_ids[0], ctx)
        return

    def one(job_id: int) -> None:
        try:
            with lease(job_id):
                run_job(job_id, replace(ctx, meter=None))
        except Exception:
            # run_job ends its job itself; anything escaping it is logged, never spread.
            log.exception("review job %s escaped its runner", job_id)
        finally:
            connection.close()  # each thread has its own database connection

    threads = [
        threading.Thread(target=one, args=(job_id,), name=f"review-{job_id}", daemon=True)
        for job_id in job_ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
