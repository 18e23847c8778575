"""The live socket's wire protocol: message shapes, client-message validation, redaction.

Server → client: ``hello`` (each stream's current sequence number), ``event`` (one
published LiveEvent on one stream), ``pong`` and ``error``. Client → server: ``ping``
and ``resync``, nothing else. Everything here is pure: no ORM, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict

from artcritic.events import LiveEvent

MAX_MESSAGE_BYTES = 4096
MAX_BAD_MESSAGES_IN_A_ROW = 20

# Close codes. 4401/4403/4404 mean "reconnecting cannot help"; the others invite a reconnect.
CLOSE_BAD_CLIENT = 4400  # too many bad messages in a row
CLOSE_NOT_SIGNED_IN = 4401
CLOSE_FORBIDDEN = 4403  # not a member of the project (staff included), or no longer one
CLOSE_UNKNOWN_GPU = 4404
CLOSE_STREAMS_RESET = 4409  # a sequence counter went backwards (Redis lost its state)

# Event types about a GPU itself; every other type is some project's content.
GPU_PUBLIC_TYPES = frozenset({"runtime.state", "gpu.reading"})
REDACTED_TYPE = "job.other"
EVENT_FIELDS = tuple(f.name for f in fields(LiveEvent))
CLIENT_TYPES = ("ping", "resync")


class HelloMessage(TypedDict):
    type: Literal["hello"]
    streams: dict[str, int]


class EventMessage(TypedDict):
    type: Literal["event"]
    stream: str
    seq: int
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


def hello_message(streams: dict[str, int]) -> HelloMessage:
    return {"type": "hello", "streams": dict(streams)}


def error_message(problem: ProtocolError) -> ErrorMessage:
    return {"type": "error", "error": problem.error}


def event_for_viewer(
    message: dict[str, Any], streams: Collection[str], member_projects: Collection[int]
) -> EventMessage | None:
    """The channel-layer message as this socket's client may see it; None if not for it.

    On a ``gpu.*`` stream, another project's event keeps its place in the sequence but
    only says that some job is ahead (status, phase, time): no project, job or detail.
    """
    stream, seq, event = message.get("stream"), message.get("seq"), message.get("event")
    if stream not in streams or not isinstance(event, dict):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    kind = event.get("type")
    project = event.get("project")
    visible = (
        not str(stream).startswith("gpu.")
        or kind in GPU_PUBLIC_TYPES
        or (isinstance(project, int) and project in member_projects)
    )
    if visible:
        shown = {name: event.get(name) for name in EVENT_FIELDS}
    else:
        shown = {
            "type": REDACTED_TYPE,
            "gpu": event.get("gpu", ""),
            "status": event.get("status", ""),
            "phase": event.get("phase", ""),
            "at": event.get("at", ""),
        }
    return {"type": "event", "stream": str(stream), "seq": seq, "event": shown}


def wire_encode(message: ServerMessage) -> str:
    """Compact JSON text for one frame."""
    return json.dumps(message, separators=(",", ":"))
