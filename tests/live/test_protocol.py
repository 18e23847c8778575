"""The wire protocol as pure functions: what a client may say, what a viewer may see."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artcritic.live.protocol import (
    MAX_MESSAGE_BYTES,
    Ping,
    ProtocolError,
    Resync,
    client_message_parse,
    event_for_viewer,
    hello_message,
    wire_encode,
)


def job_event(project: int | None = 5, kind: str = "job.status", **fields: Any) -> dict[str, Any]:
    """An event as events.py sends it (asdict of a LiveEvent)."""
    event = {
        "type": kind,
        "project": project,
        "gpu": "sim0",
        "job": 77,
        "runtime": "comfyui",
        "status": "running",
        "phase": "loading",
        "progress": {"current": 0, "total": 0},
        "detail": {"text": "a secret prompt"},
        "at": "2026-01-01T10:00:00+00:00",
    }
    event.update(fields)
    return event


def delivered(stream: str, seq: int, event: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message events.py sends."""
    return {"type": "live.event", "stream": stream, "seq": seq, "event": event}


# --- client messages ------------------------------------------------------------------------


def test_ping_and_resync_are_the_only_client_messages() -> None:
    assert client_message_parse('{"type": "ping"}') == Ping()
    assert client_message_parse('{"type":"resync"}') == Resync()
    assert client_message_parse(' {"type" : "ping"}\n') == Ping()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "binary frames are not accepted; send JSON text"),
        ("ping", "not valid JSON (JSONDecodeError)"),
        ("", "not valid JSON (JSONDecodeError)"),
        ("[" * 5000, "message is over 4096 bytes"),
        ("[" * 2000 + "]" * 2000, "not valid JSON (RecursionError)"),
        ("[]", 'expected a JSON object such as {"type": "ping"}'),
        ("42", 'expected a JSON object such as {"type": "ping"}'),
        ("{}", "unknown message type None; expected 'ping' or 'resync'"),
        ('{"type": "hello"}', "unknown message type 'hello'; expected 'ping' or 'resync'"),
        ('{"type": ["ping"]}', "unknown message type ['ping']; expected 'ping' or 'resync'"),
        ('{"type": "ping", "seq": 3}', "unexpected keys: 'seq'"),
        ('{"type": "ping", "b": 1, "a": 2}', "unexpected keys: 'a, b'"),
        ('{"type": "\ud800"}', "unknown message type '\\ud800'; expected 'ping' or 'resync'"),
    ],
)
def test_a_bad_client_message_says_what_was_wrong(text: str | None, error: str) -> None:
    assert client_message_parse(text) == ProtocolError(error)


def test_the_size_limit_counts_bytes_not_characters() -> None:
    fits = '{"type":"ping"}' + " " * (MAX_MESSAGE_BYTES - 15)
    assert client_message_parse(fits) == Ping()
    assert client_message_parse(fits + " ") == ProtocolError("message is over 4096 bytes")
    two_byte_letters = '{"type":"' + "é" * 2100 + '"}'
    assert len(two_byte_letters) < MAX_MESSAGE_BYTES
    assert client_message_parse(two_byte_letters) == ProtocolError("message is over 4096 bytes")


def test_an_error_never_echoes_a_long_value_back() -> None:
    problem = client_message_parse(json.dumps({"type": "x" * 3000}))
    assert isinstance(problem, ProtocolError)
    assert len(problem.error) < 100


@given(st.none() | st.text(max_size=300) | st.text(st.characters(categories=["Cs", "Po", "Ll"])))
def test_the_parser_never_raises_whatever_the_text(text: str | None) -> None:
    assert isinstance(client_message_parse(text), Ping | Resync | ProtocolError)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_any_json_value_is_a_message_or_an_error(value: object) -> None:
    parsed = client_message_parse(json.dumps(value))
    if value in ({"type": "ping"}, {"type": "resync"}):
        assert isinstance(parsed, Ping | Resync)
    else:
        assert isinstance(parsed, ProtocolError)


# --- server messages ------------------------------------------------------------------------


def test_hello_and_events_are_compact_json_of_the_documented_shape() -> None:
    assert (
        wire_encode(hello_message({"project.5": 41, "gpu.sim0": 17}))
        == '{"type":"hello","streams":{"project.5":41,"gpu.sim0":17}}'
    )
    shown = event_for_viewer(delivered("project.5", 42, job_event()), ["project.5"], {5})
    assert shown is not None
    assert json.loads(wire_encode(shown)) == {
        "type": "event",
        "stream": "project.5",
        "seq": 42,
        "event": job_event(),
    }


def test_a_members_project_event_is_shown_whole_on_a_gpu_stream() -> None:
    shown = event_for_viewer(delivered("gpu.sim0", 9, job_event(5)), ["gpu.sim0"], {5, 8})
    assert shown is not None
    assert shown["event"] == job_event(5)


@pytest.mark.parametrize(
    "kind", ["job.status", "job.progress", "image.created", "review.created", "decision.recorded"]
)
def test_another_projects_event_on_a_gpu_stream_keeps_only_what_is_ahead(kind: str) -> None:
    shown = event_for_viewer(delivered("gpu.sim0", 9, job_event(6, kind)), ["gpu.sim0"], {5})
    assert shown == {
        "type": "event",
        "stream": "gpu.sim0",
        "seq": 9,
        "event": {
            "type": "job.other",
            "gpu": "sim0",
            "status": "running",
            "phase": "loading",
            "at": "2026-01-01T10:00:00+00:00",
        },
    }


def test_a_project_event_without_a_project_is_redacted_rather_than_guessed() -> None:
    shown = event_for_viewer(delivered("gpu.sim0", 3, job_event(None)), ["gpu.sim0"], {5})
    assert shown is not None
    assert shown["event"]["type"] == "job.other"


def test_an_event_type_the_viewer_does_not_know_yet_is_redacted_on_a_gpu_stream() -> None:
    # A future type is some project's content until someone says otherwise.
    shown = event_for_viewer(delivered("gpu.sim0", 3, job_event(6, "job.eta")), ["gpu.sim0"], ())
    assert shown is not None
    assert shown["event"]["type"] == "job.other"


@pytest.mark.parametrize("kind", ["runtime.state", "gpu.reading"])
def test_events_about_the_gpu_itself_are_shown_to_everyone(kind: str) -> None:
    event = job_event(None, kind, job=None, detail={"text": "Loading Qwen"})
    shown = event_for_viewer(delivered("gpu.sim0", 4, event), ["gpu.sim0"], set())
    assert shown is not None
    assert shown["event"] == event


def test_a_message_for_a_stream_the_socket_left_is_dropped() -> None:
    assert event_for_viewer(delivered("gpu.sim1", 4, job_event()), ["gpu.sim0"], {5}) is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "live.event", "stream": "gpu.sim0", "seq": "4", "event": {}},
        {"type": "live.event", "stream": "gpu.sim0", "seq": True, "event": {}},
        {"type": "live.event", "stream": "gpu.sim0", "seq": 4, "event": "job.status"},
        {"type": "live.event", "stream": "gpu.sim0"},
        {"type": "live.event", "stream": ["gpu.sim0"], "seq": 4, "event": {}},
    ],
)
def test_a_malformed_channel_message_is_dropped_not_raised(message: dict[str, Any]) -> None:
    assert event_for_viewer(message, ["gpu.sim0"], {5}) is None


def test_fields_that_are_not_part_of_a_live_event_never_reach_the_client() -> None:
    event = {**job_event(5), "internal": "lease owner host-3"}
    shown = event_for_viewer(delivered("project.5", 1, event), ["project.5"], {5})
    assert shown is not None
    assert "internal" not in shown["event"]
