"""The live socket's wire protocol: message shapes, client-message validation, redaction.

Server → client: ``hello`` (each stream's current sequence number; ``"reason":
"overflow"`` when the server sends it unasked because the socket fell behind), ``event``
(one published LiveEvent, once per socket: ``stream``/``seq`` name the first of its
streams the socket watches, ``seqs`` every watched stream's number when there are
several), ``pong`` and ``error``. Client → server: ``ping`` and ``resync``, nothing
else. Everything here is pure: no ORM, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, NotRequired, TypedDict

from artcritic.events import LiveEvent

MAX_MESSAGE_BYTES = 4096
MAX_BAD_MESSAGES_IN_A_ROW = 20

# Close codes. 4401/4403/4404 mean "reconnecting cannot help"; the others invite a reconnect.
CLOSE_BAD_CLIENT = 4400  # too many bad messages in a row
CLOSE_NOT_SIGNED_IN = 4401
CLOSE_FORBIDDEN = 4403  # not a member of the project (staff included), or no longer one
CLOSE_UNKNOWN_GPU = 4404
CLOSE_STREAMS_RESET = 4409  # a sequence counter went backwards (Redis lost its state)
CLOSE_SERVER_ERROR = 1011  # the server could not read the numbers for a fresh hello

# Event types about a GPU itself; every other type is some project's content.
GPU_PUBLIC_TYPES = frozenset({"runtime.state", "gpu.reading"})
REDACTED_TYPE = "job.other"
EVENT_FIELDS = tuple(f.name for f in fields(LiveEvent))
CLIENT_TYPES = ("ping", "resync")


class HelloMessage(TypedDict):
    type: Literal["hello"]
    streams: dict[str, int]
    reason: NotRequired[Literal["overflow"]]


class EventMessage(TypedDict):
    type: Literal["event"]
    stream: str
    seq: int
    seqs: NotRequired[dict[str, int]]
    event: dict[str, Any]


class ErrorMessage(TypedDict):
    type: Literal["error"]
    error: str


class PongMessage(TypedDict):
    type: Literal["pong"]


ServerMessage = HelloMessage | EventMessage | ErrorMessage | PongMessage
PONG: PongMessage = {"type": "pong"}


@dataclass(frozen=True)
class Ping:
    """The client checks the socket is alive; answered with pong."""


@dataclass(frozen=True)
class Resync:
    """The client lost track (gap, reload); answered with a fresh hello."""


@dataclass(frozen=True)
class ProtocolError:
    """A client message that is not one of ours, with what was wrong in words."""

    error: str


ClientMessage = Ping | Resync


def _quoted(value: object, limit: int = 40) -> str:
    """A short repr for an error message: never echo a client's 4 KiB back at it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _json_object(text: str | None) -> dict[str, Any] | ProtocolError:
    """The frame's JSON object, or what kept it from being one."""
    if text is None:
        return ProtocolError("binary frames are not accepted; send JSON text")
    # chars ≤ bytes, so a long str is refused unencoded; surrogatepass: an odd str must not raise.
    too_big = len(text) > MAX_MESSAGE_BYTES
    if too_big or len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        return ProtocolError(f"message is over {MAX_MESSAGE_BYTES} bytes")
    try:
        content = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: deeply nested arrays
        return ProtocolError(f"not valid JSON ({type(error).__name__})")
    if not isinstance(content, dict):
        return ProtocolError('expected a JSON object such as {"type": "ping"}')
    return content


def client_message_parse(text: str | None) -> ClientMessage | ProtocolError:
    """A client frame (None: a binary one) as a message, or what was wrong; never raises."""
    content = _json_object(text)
    if isinstance(content, ProtocolError):
        return content
    kind = content.get("type")
    if kind not in CLIENT_TYPES:
        return ProtocolError(f"unknown message type {_quoted(kind)}; expected 'ping' or 'resync'")
    extra = sorted(str(key) for key in content if key != "type")
    if extra:
        return ProtocolError(f"unexpected keys: {_quoted(', '.join(extra))}")
    return Ping() if kind == "ping" else Resync()


def hello_message(streams: dict[str, int], *, overflow: bool = False) -> HelloMessage:
    hello: HelloMessage = {"type": "hello", "streams": dict(streams)}
    if overflow:
        hello["reason"] = "overflow"
    return hello


def error_message(problem: ProtocolError) -> ErrorMessage:
    return {"type": "error", "error": problem.error}


@dataclass(frozen=True)
class Delivery:
    """A published event as it arrived on one stream's group, with every stream's number.

    ``seqs`` lists the event's streams in publishing order (its project's first) and
    includes ``stream``; a message sent by hand with only ``stream`` and ``seq`` has one.
    """

    stream: str
    seqs: dict[str, int]
    event: dict[str, Any]

    def earlier(self) -> tuple[str, ...]:
        """The event's streams published before this copy's: their watchers have it already."""
        streams = tuple(self.seqs)
        return streams[: streams.index(self.stream)]


def _number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def delivery_parse(message: Mapping[str, Any]) -> Delivery | None:
    """The channel-layer message as a Delivery; None for anything malformed (never raises)."""
    stream, seq, event = message.get("stream"), message.get("seq"), message.get("event")
    if not isinstance(stream, str) or not _number(seq) or not isinstance(event, dict):
        return None
    seqs = message.get("seqs")
    if seqs is None:
        seqs = {stream: seq}
    if not isinstance(seqs, dict) or seqs.get(stream) != seq:
        return None
    if not all(isinstance(name, str) and _number(n) for name, n in seqs.items()):
        return None
    return Delivery(stream, seqs, event)


def event_visible(stream: str, event: Mapping[str, Any], member_projects: Collection[int]) -> bool:
    """Whether a viewer sees the event whole: project streams and the GPU's own events
    always, another project's content on a GPU stream only as ``job.other``."""
    project = event.get("project")
    return (
        not stream.startswith("gpu.")
        or event.get("type") in GPU_PUBLIC_TYPES
        or (_number(project) and project in member_projects)
    )


def event_shown(event: Mapping[str, Any], visible: bool) -> dict[str, Any]:
    """The event's fields a viewer gets: all of a LiveEvent's (nothing else), or only that
    some job is ahead (status, phase, time): no project, job or detail."""
    if visible:
        return {name: event.get(name) for name in EVENT_FIELDS}
    return {
        "type": REDACTED_TYPE,
        "gpu": event.get("gpu", ""),
        "status": event.get("status", ""),
        "phase": event.get("phase", ""),
        "at": event.get("at", ""),
    }


def event_message(delivery: Delivery, watched: Collection[str], visible: bool) -> EventMessage:
    """The event frame for a socket that watches ``watched`` (the delivery's stream among them)."""
    message: EventMessage = {
        "type": "event",
        "stream": delivery.stream,
        "seq": delivery.seqs[delivery.stream],
        "event": event_shown(delivery.event, visible),
    }
    numbers = {stream: n for stream, n in delivery.seqs.items() if stream in watched}
    if len(numbers) > 1:
        message["seqs"] = numbers
    return message


def event_for_viewer(
    message: dict[str, Any], streams: Collection[str], member_projects: Collection[int]
) -> EventMessage | None:
    """The channel-layer message as this socket's client may see it; None if not for it
    (a stream it does not watch, or an event it had on an earlier stream).

    On a ``gpu.*`` stream, another project's event keeps its place in the sequence but
    only says that some job is ahead (status, phase, time): no project, job or detail.
    """
    delivery = delivery_parse(message)
    if delivery is None or delivery.stream not in streams:
        return None
    if any(stream in streams for stream in delivery.earlier()):
        return None
    visible = event_visible(delivery.stream, delivery.event, member_projects)
    return event_message(delivery, streams, visible)


def wire_encode(message: ServerMessage) -> str:
    """Compact JSON text for one frame."""
    return json.dumps(message, separators=(",", ":"))
