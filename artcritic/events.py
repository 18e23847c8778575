"""Typed live events from one publisher, sent only after the write they describe commits.

Every event goes to ``project.<id>`` (designers of that project) and/or ``gpu.<name>``
(anyone watching that GPU). Each stream carries a sequence number taken from Redis
(INCR): a client that sees a gap — a missed event, a reconnect, a Redis restart that
reset the counter — asks for a fresh snapshot instead of showing a wrong screen.
PostgreSQL stays the record: losing an event loses nothing but a repaint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

EVENT_TYPES = frozenset(
    {
        "job.status",  # a job's status/phase changed (phase history grew)
        "job.progress",  # step progress inside a phase (no history row)
        "runtime.state",  # a runtime on a GPU changed state
        "gpu.reading",  # fresh NVML numbers for a GPU
        "gpu.profile",  # a GPU's active hardware profile changed
        "image.created",  # a new image is stored
        "review.created",  # a Critic review is stored (or failed)
        "decision.recorded",  # a designer approved/rejected
    }
)


@dataclass(frozen=True)
class LiveEvent:
    """One shape: {type, job, project, gpu, runtime, status, phase, progress, detail, at}."""

    type: str
    project: int | None = None
    gpu: str = ""
    job: int | None = None
    runtime: str = ""
    status: str = ""
    phase: str = ""
    progress: dict[str, int] | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: str = ""

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown live event type {self.type!r}")


def group_for_project(project_id: int) -> str:
    return f"project.{project_id}"


def group_for_gpu(gpu: str) -> str:
    return f"gpu.{gpu}"


_redis: redis.Redis | None = None


def channel_prefix() -> str:
    """The channel layer's key prefix (tests give each run its own)."""
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    return str(layer["CONFIG"].get("prefix", "artcritic"))


def sequence_key(stream: str) -> str:
    """The Redis key holding a stream's last sequence number."""
    return f"{channel_prefix()}:seq:{stream}"


def _client() -> redis.Redis:
    global _redis  # noqa: PLW0603 - one lazily-made connection pool per process
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _redis


def _sequence(stream: str) -> int:
    """Next sequence number of a stream; 0 when Redis is unreachable (clients then resync)."""
    try:
        return int(_client().incr(sequence_key(stream)))
    except redis.RedisError:
        return 0


def sequences_read(streams: Sequence[str]) -> dict[str, int]:
    """Each stream's last sequence number (0 when none was published since Redis started).

    Raises RedisError: a hello with made-up numbers would hide missed events.
    """
    if not streams:
        return {}
    values = _client().mget([sequence_key(stream) for stream in streams])
    return {stream: int(value or 0) for stream, value in zip(streams, values, strict=True)}


def _send(event: LiveEvent) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    payload = asdict(event)
    streams = []
    if event.project is not None:
        streams.append(group_for_project(event.project))
    if event.gpu:
        streams.append(group_for_gpu(event.gpu))
    messages = [
        (stream, {"type": "live.event", "stream": stream, "seq": _sequence(stream),
                  "event": payload})
        for stream in streams
    ]

    async def send_all() -> None:
        for stream, message in messages:
            try:
                await layer.group_send(stream, message)
            except Exception:  # a lost event is repaired by the client's resync, never fatal
                log.warning("live event to %s not delivered", stream, exc_info=True)

    # One event loop for every stream of the event (each async_to_sync starts one).
    async_to_sync(send_all)()


def event_publish(event_type: str, **fields: Any) -> LiveEvent:
    """Publish after the current transaction commits (at once when there is none)."""
    fields.setdefault("at", datetime.now(UTC).isoformat())
    event = LiveEvent(type=event_type, **fields)
    transaction.on_commit(lambda: _send(event))
    return event
