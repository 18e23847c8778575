"""Counters of the live path that a metrics collector can read from Redis.

Each web process with live sockets writes its own hash ``<prefix>:live:web:<host>:<pid>``
(connected sockets, frames handed to them, frames dropped for slow sockets, resyncs) at
most once a second while it changes and every few seconds regardless, with a short
expiry, so a dead process drops out by itself; a process whose last socket left deletes
it. Resyncs also add to one counter for the whole instance, ``<prefix>:live:resyncs``,
that never expires. ``live_stats_read`` sums them up, and keeps each process's sockets.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from artcritic.events import channel_prefix, redis_client

STATS_TTL_S = 15  # a process silent this long no longer counts
STATS_EVERY_S = 5  # written at least this often, and within a second of a change


def resyncs_key() -> str:
    return f"{channel_prefix()}:live:resyncs"


def process_key(host: str | None = None, pid: int | None = None) -> str:
    """This process's hash (or another's)."""
    return f"{channel_prefix()}:live:web:{host or socket.gethostname()}:{pid or os.getpid()}"


@dataclass
class LiveCounters:
    """One web process's counts since it started (resyncs_unsent: not yet added to Redis)."""

    sockets: int = 0
    frames: int = 0
    dropped: int = 0
    resyncs: int = 0
    resyncs_unsent: int = 0
    changed: bool = True

    def write(self) -> None:
        """Store this process's counts and add its new resyncs to the instance's total."""
        client = redis_client()
        fresh, self.resyncs_unsent, self.changed = self.resyncs_unsent, 0, False
        key = process_key()
        with client.pipeline(transaction=False) as pipe:
            if fresh:
                pipe.incrby(resyncs_key(), fresh)
            if not self.sockets:
                pipe.delete(key)
                pipe.execute()
                return
            pipe.hset(
                key,
                mapping={
                    "sockets": self.sockets,
                    "frames": self.frames,
                    "dropped": self.dropped,
                    "resyncs": self.resyncs,
                },
            )
            pipe.expire(key, STATS_TTL_S)
            pipe.execute()


@dataclass(frozen=True)
class LiveStats:
    """The instance's live path now: web processes, their sockets and frames, all resyncs."""

    processes: int
    sockets: int
    frames: int
    dropped: int
    resyncs: int
    sockets_by_process: dict[str, int]  # "<host>:<pid>" → its sockets


def live_stats_read() -> LiveStats:
    """Sum every live web process's hash (raises RedisError when Redis is unreachable)."""
    client = redis_client()
    prefix = f"{channel_prefix()}:live:web:"
    totals = {"sockets": 0, "frames": 0, "dropped": 0}
    by_process: dict[str, int] = {}
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        values = client.hgetall(key)
        if not values:
            continue
        by_process[key.decode().removeprefix(prefix)] = int(values.get(b"sockets", 0))
        for name in totals:
            totals[name] += int(values.get(name.encode(), 0))
    resyncs = int(client.get(resyncs_key()) or 0)
    return LiveStats(
        processes=len(by_process), resyncs=resyncs, sockets_by_process=by_process, **totals
    )
