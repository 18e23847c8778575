"""The benchmark's worker: a process of its own that drives one job for real.

    python -m bench.livebench.worker --job ID --events N --rate R --phase-every S --out f.json

It sets Django up on the benchmark's environment, publishes one warm-up event (progress
0, before any client connects, so connections and imports are warm as in a long-running
worker), prints "ready", waits for "go" on stdin, then on a fixed schedule calls the real
``job_progress(job, n, N)`` for n = 1..N, R calls a second, and every S seconds the real
``job_phase_enter`` (generating and uploading in turn, detail "bench phase k", the
progress kept at n). Just before each call it stamps ``time.time()`` (t0), just after it
stamps again (t1); all of it, in epoch ms, goes to ``--out`` as JSON when it is done,
with the CPU time the calls took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import django

PHASE_TEXT = "bench phase {k}"


def drive(job_id: int, events: int, rate: float, phase_every_s: float) -> dict[str, object]:
    """The calls, on schedule; their stamps (ms) and the CPU seconds they took."""
    from artcritic.jobs.lifecycle import job_phase_enter, job_progress
    from artcritic.jobs.models import Phase

    phases = (Phase.UPLOADING, Phase.GENERATING)
    calls = [(n / rate, "progress", n) for n in range(1, events + 1)]
    duration = events / rate
    k = 1
    while phase_every_s > 0 and k * phase_every_s < duration:
        calls.append((k * phase_every_s, "phase", k))
        k += 1
    calls.sort(key=lambda call: (call[0], call[1] == "progress"))  # a phase first on a tie

    progress_t0: list[float] = []
    progress_t1: list[float] = []
    phase_t0: list[float] = []
    current = 0
    cpu = time.process_time()
    start = time.monotonic()
    for at, kind, n in calls:
        # A fixed schedule: a slow call delays only itself, it does not slow the rate down.
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = time.time() * 1000
        if kind == "progress":
            progress_t0.append(stamp)
            current = n
            job_progress(job_id, n, events, detail=f"step {n}/{events}")
            progress_t1.append(time.time() * 1000)
        else:
            phase_t0.append(stamp)
            job_phase_enter(
                job_id,
                phases[n % 2],
                runtime="comfyui",
                detail=PHASE_TEXT.format(k=n),
                progress=(current, events),
            )
    return {
        "t0": progress_t0,
        "t1": progress_t1,
        "phase_t0": phase_t0,
        "cpu_s": time.process_time() - cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="live benchmark worker")
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--phase-every", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    django.setup()
    from artcritic.jobs.lifecycle import job_progress

    job_progress(args.job, 0, args.events, detail="warm-up")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1  # the benchmark gave up before starting
    stamps = drive(args.job, args.events, args.rate, args.phase_every)
    args.out.write_text(json.dumps(stamps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
