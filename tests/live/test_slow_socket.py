"""A socket that stops reading falls behind alone: the real web server, real TCP sockets.

The stuck socket asks the kernel for a 4 KiB receive buffer and then reads nothing, so the
server's buffers for it fill after a few large frames and its ``send`` waits; the web
server is told to let 64 frames wait per socket (ARTCRITIC_LIVE_SOCKET_QUEUE).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import websocket
from django.contrib.auth.models import AbstractUser

from artcritic.events import event_publish, sequences_read
from artcritic.gpu.models import Gpu
from artcritic.live.stats import live_stats_read
from artcritic.studio.models import Project
from tests.browser.conftest import in_thread
from tests.live.conftest import WebServer, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = 64  # a healthy reader may fall 64 events (0.64 s) behind without a resync
PACE_S = 0.01  # between events: the healthy readers (Python threads) keep up
PAD = "x" * 256 * 1024  # large frames fill the stuck socket's buffers in a few dozen events
WAIT = 30.0  # seconds, for a busy 2-core machine; not a timing assertion


def events_to_fill_the_buffers() -> int:
    """Enough frames to fill what the kernel may buffer for one socket (its send buffer
    grows up to tcp_wmem's maximum), the server's 64 KiB and the queue, twice over."""
    most = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return 2 * (most // len(PAD) + 1) + QUEUE + 2


EVENTS = events_to_fill_the_buffers()


@pytest.fixture
def web_server_env() -> dict[str, str]:
    return {"ARTCRITIC_LIVE_SOCKET_QUEUE": str(QUEUE)}


def connect(server: WebServer, project: Project, member: AbstractUser, **options: Any) -> Any:
    headers = {name.decode(): value.decode() for name, value in signed_in(member)}
    return websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/ws/projects/{project.pk}/",
        origin=server.url,
        header=[f"Cookie: {headers['cookie']}"],
        timeout=WAIT,
        **options,
    )


class Reader:
    """A healthy dashboard: reads every frame as it comes, in a thread of its own."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = [json.loads(ws.recv())]  # its hello
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.done.is_set():
            text = self.ws.recv()
            if not text:  # closed
                return
            message = json.loads(text)
            self.messages.append(message)
            if message.get("event", {}).get("detail", {}).get("n") == EVENTS:
                self.done.set()


def numbers_follow_on(messages: list[dict[str, Any]], stream: str) -> bool:
    """Every event's number on ``stream`` is the next after the last hello or event."""
    last = None
    for message in messages:
        if message["type"] == "hello":
            last = message["streams"][stream]
        elif message["type"] == "event":
            seq = message.get("seqs", {message["stream"]: message["seq"]})[stream]
            if last is None or seq != last + 1:
                return False
            last = seq
    return True


def test_a_socket_that_stops_reading_gets_a_fresh_hello_and_holds_nobody_back(
    web_server: WebServer, member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    own = f"project.{project.pk}"
    before = live_stats_read().resyncs
    stuck = connect(
        web_server, project, member, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
    )
    assert json.loads(stuck.recv())["type"] == "hello"
    readers = [Reader(connect(web_server, project, member)) for _ in range(3)]

    def publish() -> None:
        for n in range(1, EVENTS + 1):
            event_publish("image.created", project=project.pk, detail={"n": n, "pad": PAD})
            time.sleep(PACE_S)

    in_thread(publish)
    last = sequences_read([own])[own]
    # The healthy sockets get every event, in order, while the stuck one still reads nothing.
    for reader in readers:
        assert reader.done.wait(WAIT), f"a reader got {len(reader.messages)} messages"
        assert [m["type"] for m in reader.messages[1:]] == ["event"] * EVENTS
        assert numbers_follow_on(reader.messages, own)
    # Counted once (within a second or two: the server writes its counters each second).
    deadline = time.monotonic() + WAIT
    while live_stats_read().resyncs == before and time.monotonic() < deadline:
        time.sleep(0.2)
    stats = live_stats_read()
    assert stats.resyncs == before + 1
    assert stats.dropped > 0
    assert sum(web_server.sockets_by_process().values()) == 4

    # Now it reads: what it got before falling behind, then a hello that covers the rest.
    stuck.settimeout(WAIT)
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1].get("event", {}).get("detail", {}).get("n") != EVENTS:
        message = json.loads(stuck.recv())
        seen.append(message)
        if message["type"] == "hello" and message["streams"][own] == last:
            break  # its newest numbers include every event: nothing more to come
    hellos = [m for m in seen if m["type"] == "hello"]
    assert hellos, "the stuck socket was never told to resync"
    assert all(m.get("reason") == "overflow" for m in hellos)
    after_hello = seen[seen.index(hellos[-1]) :]
    assert numbers_follow_on(after_hello, own)
    stuck.close()
    for reader in readers:
        reader.ws.close()
