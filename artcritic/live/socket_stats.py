"""How late events reach this web process's live sockets: a latency histogram.

Process-local on purpose: the fan-out that hands events to the sockets runs in the ASGI
process that serves /metrics too, so a scrape of that process reads its own histogram
(with several web processes, scrape each; see README "Metrics"). The fan-out calls
``event_delivered`` once per event it hands to sockets; nothing here touches the database
or Redis. Connected sockets, frames and resyncs are instance-wide (``live.stats``).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

# Seconds from an event's publication (its ``at``) to its send on a socket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_lock = threading.Lock()
_bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
_latency_sum = 0.0


@dataclass(frozen=True)
class SocketStats:
    """A snapshot of the latency histogram (cumulative counts per bucket)."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total_s: float


def event_delivered(at: str, *, now: datetime | None = None) -> None:
    """An event published at ``at`` (ISO time) was just handed to this process's sockets."""
    global _latency_sum  # noqa: PLW0603 - one process-wide histogram
    try:
        published = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return  # an event without a readable time is not timed
    if published.tzinfo is None:
        return
    seconds = max(0.0, ((now or datetime.now(UTC)) - published).total_seconds())
    with _lock:
        _bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        _latency_sum += seconds


def stats() -> SocketStats:
    with _lock:
        running, cumulative = 0, []
        for bound, count in zip(
            (*LATENCY_BUCKETS, float("inf")), _bucket_counts, strict=True
        ):
            running += count
            cumulative.append((bound, running))
        return SocketStats(buckets=tuple(cumulative), count=running, total_s=_latency_sum)
