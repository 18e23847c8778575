"""The benchmark's worker: a process of its own that drives one job's progress for real.

    python -m bench.livebench.worker --job ID --events N --rate R --out stamps.json

It sets Django up on the benchmark's environment, publishes one warm-up event (progress
0, before any client connects, so connections and imports are warm as in a long-running
worker), prints "ready", waits for "go" on stdin, then calls the real
``job_progress(job, i, N)`` for i = 1..N on a fixed schedule of R calls a second. Just
before each call it stamps ``time.time()`` (t0), just after it stamps again (t1); both,
in epoch ms, go to ``--out`` as JSON when it is done, with the CPU time the calls took
and, to split the call into hops, when each channel-layer ``group_send`` began and ended
(the layer's method is wrapped with a stopwatch in this process; nothing else changes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import django

Sends = list[tuple[str, int, float, float]]  # group, progress.current, start ms, end ms


def group_sends_timed() -> Sends:
    """Stamp every channel-layer group_send of this process; the list fills as they run."""
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubLoopLayer

    sends: Sends = []
    for layer in (RedisChannelLayer, RedisPubSubLoopLayer):  # whichever the settings name
        untimed = layer.group_send

        async def group_send(
            self: Any, group: str, message: dict[str, Any], untimed: Any = untimed
        ) -> None:
            start = time.time() * 1000
            await untimed(self, group, message)
            progress = (message.get("event") or {}).get("progress") or {}
            sends.append((group, int(progress.get("current", -1)), start, time.time() * 1000))

        layer.group_send = group_send
    return sends


def drive(job_id: int, events: int, rate: float) -> dict[str, object]:
    """Call job_progress for 1..events at ``rate`` a second; the t0 and t1 stamps, in ms."""
    from artcritic.jobs.lifecycle import job_progress

    t0: list[float] = []
    t1: list[float] = []
    cpu = time.process_time()
    start = time.monotonic()
    for current in range(1, events + 1):
        # A fixed schedule: a slow call delays only itself, it does not slow the rate down.
        delay = start + (current - 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t0.append(time.time() * 1000)
        job_progress(job_id, current, events, detail=f"step {current}/{events}")
        t1.append(time.time() * 1000)
    return {"t0": t0, "t1": t1, "cpu_s": time.process_time() - cpu}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="live benchmark worker")
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    django.setup()
    from artcritic.jobs.lifecycle import job_progress

    sends = group_sends_timed()
    job_progress(args.job, 0, args.events, detail="warm-up")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1  # the benchmark gave up before starting
    stamps = drive(args.job, args.events, args.rate)
    args.out.write_text(json.dumps({**stamps, "sends": sends}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
