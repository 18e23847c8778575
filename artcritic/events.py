"""Typed live events from one publisher, sent only after the write they describe commits.

Every event goes to ``project.<id>`` (designers of that project) and/or ``gpu.<name>``
(anyone watching that GPU). Each stream numbers its events (a Redis counter): a client
that sees a gap — a missed event, a reconnect, a Redis restart that reset the counter —
asks for a fresh snapshot instead of showing a wrong screen. PostgreSQL stays the
record: losing an event loses nothing but a repaint.

One Redis script numbers an event on all its streams and publishes it, serialised once,
to each stream's channel-layer group, carrying every stream's number: a web process
that watches both streams shows it once, and numbers reach each stream in order even
when several processes publish at once.

``job.progress`` is latest-wins per job (``ProgressGate``): the first step after a
status change and the last step go out at once; a step goes out at once too when the
job's last one went out at least ``ARTCRITIC_LIVE_PROGRESS_MS`` ago; otherwise it waits,
replaced by any newer step, until that long after the oldest step still unsent. So a job
sends at most one progress frame per interval, and no step waits longer than one interval
for itself or a newer one to be on its way. Every other event goes out at once, in order
with the job's progress.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
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


def event_streams(event: LiveEvent) -> list[str]:
    """The streams an event goes to, its project's first (a viewer of both shows it there)."""
    streams = []
    if event.project is not None:
        streams.append(group_for_project(event.project))
    if event.gpu:
        streams.append(group_for_gpu(event.gpu))
    return streams


_redis: redis.Redis | None = None


def channel_prefix() -> str:
    """The channel layer's key prefix (tests give each run its own)."""
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    return str(layer["CONFIG"].get("prefix", "artcritic"))


def sequence_key(stream: str) -> str:
    """The Redis key holding a stream's last sequence number."""
    return f"{channel_prefix()}:seq:{stream}"


def group_channel(stream: str) -> str:
    """The Redis channel of a stream's channel-layer group (channels_redis' pub/sub layer)."""
    return f"{channel_prefix()}__group__{stream}"


def redis_client() -> redis.Redis:
    """This process's connection pool to the channel layer's Redis."""
    global _redis  # noqa: PLW0603 - one lazily-made connection pool per process
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _redis


def sequences_read(streams: Sequence[str]) -> dict[str, int]:
    """Each stream's last sequence number (0 when none was published since Redis started).

    Raises RedisError: a hello with made-up numbers would hide missed events.
    """
    if not streams:
        return {}
    values = redis_client().mget([sequence_key(stream) for stream in streams])
    return {stream: int(value or 0) for stream, value in zip(streams, values, strict=True)}


# Numbers the event on each stream (KEYS) and publishes it to each stream's group channel
# (ARGV[1] .. stream) as the channel layer's JSON message, in one step: no other publisher
# can take a number between ours and our PUBLISH. ARGV[2] is the event's JSON, serialised
# once by the publisher; ARGV[3..] name the streams. Lua prints integers below 1e14 exactly.
_PUBLISH_LUA = """
local seqs, named = {}, {}
for i, key in ipairs(KEYS) do
  seqs[i] = redis.call('INCR', key)
  named[i] = cjson.encode(ARGV[2 + i]) .. ':' .. seqs[i]
end
local all = '{' .. table.concat(named, ',') .. '}'
for i = 1, #KEYS do
  local stream = ARGV[2 + i]
  redis.call('PUBLISH', ARGV[1] .. stream,
    '{"type":"live.event","stream":' .. cjson.encode(stream) .. ',"seq":' .. seqs[i] ..
    ',"seqs":' .. all .. ',"event":' .. ARGV[2] .. '}')
end
return seqs
"""
_publish_script: Any = None


def _send(event: LiveEvent) -> None:
    """Number and publish one event on its streams; a Redis failure is logged, never raised."""
    global _publish_script  # noqa: PLW0603 - registered once per process
    streams = event_streams(event)
    if not streams:
        return
    if _publish_script is None:
        _publish_script = redis_client().register_script(_PUBLISH_LUA)
    body = json.dumps(asdict(event), separators=(",", ":"))
    try:
        _publish_script(
            keys=[sequence_key(stream) for stream in streams],
            args=[f"{channel_prefix()}__group__", body, *streams],
        )
    except redis.RedisError:  # a lost event is repaired by the client's resync, never fatal
        log.warning("live event to %s not delivered", ", ".join(streams), exc_info=True)


# -- latest-wins progress ------------------------------------------------------------------


def progress_due_now(
    *, now: float, last_sent: float | None, interval_s: float, current: int, total: int
) -> bool:
    """Whether a job's progress goes out at once: its first since a status change, its last
    step (or beyond), or one interval has passed since the job's last progress went out."""
    return last_sent is None or current >= total or now - last_sent >= interval_s


class ProgressGate:
    """Latest-wins ``job.progress`` per job, in order with every other event.

    ``offer`` sends an event now or holds it as its job's newest progress; ``flush_due``
    sends held progress whose time came (one interval after the oldest step it stands
    for). Both run under one lock that covers the send, so no held progress can overtake
    an event published after it. A ``job.status`` replaces held progress (it carries the
    row's progress, at least as new) and makes the next progress a first; any other
    event of the job sends held progress before itself.
    """

    def __init__(
        self, interval_s: float, send: Callable[[LiveEvent], None] = _send
    ) -> None:
        self.interval_s = interval_s
        self._send = send
        self._lock = threading.Condition(threading.Lock())
        self._last_sent: dict[int, float] = {}
        self._held: dict[int, tuple[float, LiveEvent]] = {}  # job → (due, newest progress)
        self._thread: threading.Thread | None = None

    def offer(self, event: LiveEvent, now: float) -> bool:
        """Send ``event`` now (True) or hold it until its job's turn (False)."""
        with self._lock:
            job = event.job
            if job is None:
                self._send(event)
                return True
            if event.type != "job.progress":
                held = self._held.pop(job, None)
                if event.type == "job.status":
                    self._last_sent.pop(job, None)
                elif held is not None:
                    self._send(held[1])
                self._send(event)
                return True
            progress = event.progress or {}
            last = self._last_sent.get(job)
            if progress_due_now(
                now=now,
                last_sent=last,
                interval_s=self.interval_s,
                current=int(progress.get("current", 0)),
                total=int(progress.get("total", 0)),
            ):
                self._held.pop(job, None)
                self._last_sent[job] = now
                self._send(event)
                return True
            held = self._held.get(job)
            # Due one interval after the oldest step it stands for: none waits longer.
            due = held[0] if held is not None else now + self.interval_s
            self._held[job] = (due, event)
            self._lock.notify()
            return False

    def flush_due(self, now: float) -> float | None:
        """Send held progress whose turn came; when the next one is due (None: none held)."""
        with self._lock:
            return self._flush(now)

    def _flush(self, now: float) -> float | None:
        for job, (due, event) in list(self._held.items()):
            if due <= now:
                del self._held[job]
                self._last_sent[job] = now
                self._send(event)
        return min((due for due, _ in self._held.values()), default=None)

    def held(self) -> int:
        """How many jobs have progress waiting for their turn."""
        with self._lock:
            return len(self._held)

    def start(self) -> None:
        """Run ``flush_due`` on time in a daemon thread of this process (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="live-progress", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        # All under the lock (waiting releases it), so no offer's notify falls between.
        with self._lock:
            while True:
                next_due = self._flush(time.monotonic())
                self._lock.wait(None if next_due is None else max(0.0, next_due - time.monotonic()))


_gate: ProgressGate | None = None


def _gate_reset_after_fork() -> None:
    global _gate, _redis, _publish_script
    _gate, _redis, _publish_script = None, None, None


os.register_at_fork(after_in_child=_gate_reset_after_fork)


def progress_gate() -> ProgressGate:
    """This process's gate, its flush thread started, its interval as settings say now."""
    global _gate  # noqa: PLW0603 - one gate per process
    if _gate is None:
        _gate = ProgressGate(settings.ARTCRITIC_LIVE_PROGRESS_MS / 1000)
        _gate.start()
    _gate.interval_s = settings.ARTCRITIC_LIVE_PROGRESS_MS / 1000
    return _gate


def _publish(event: LiveEvent) -> None:
    progress_gate().offer(event, time.monotonic())


def event_publish(event_type: str, **fields: Any) -> LiveEvent:
    """Publish after the current transaction commits (at once when there is none)."""
    fields.setdefault("at", datetime.now(UTC).isoformat())
    event = LiveEvent(type=event_type, **fields)
    transaction.on_commit(lambda: _publish(event))
    return event


# -- access changes -------------------------------------------------------------------------


def group_for_user_access(user_id: int) -> str:
    """The group a user's live sockets listen on for changes of that user's access."""
    return f"access.user.{user_id}"


def access_changed(user_id: int, *, signed_out_session: str = "") -> None:
    """Tell every live socket of ``user_id`` to check its access again, after commit.

    Sent when a sign-out, a password change, a deactivation or a membership change may
    have ended what a socket is allowed to see; ``signed_out_session`` closes that
    session's sockets outright (the session is flushed right after the signal). Sockets
    close at once, not at their next ping. A lost message is caught by the next ping.
    """
    message = json.dumps(
        {"type": "live.access", "user": user_id, "session": signed_out_session},
        separators=(",", ":"),
    )
    channel = f"{channel_prefix()}__group__{group_for_user_access(user_id)}"

    def send() -> None:
        try:
            redis_client().publish(channel, message)
        except redis.RedisError:
            log.warning("access change of user %s not sent to live sockets", user_id)

    transaction.on_commit(send)
