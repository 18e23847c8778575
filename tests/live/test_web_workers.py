"""Several web processes on one port, one channel layer: every socket gets every event once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import websocket
from django.contrib.auth.models import AbstractUser

from artcritic.events import event_publish, sequences_read
from artcritic.gpu.models import Gpu
from artcritic.studio.models import Project
from tests.browser.conftest import in_thread
from tests.live.conftest import WebServer
from tests.live.test_slow_socket import connect

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0  # seconds, for a busy 2-core machine; not a timing assertion
MOST_SOCKETS = 40


@pytest.fixture
def web_server_env() -> dict[str, str]:
    return {"ARTCRITIC_WEB_WORKERS": "2"}


def test_two_web_processes_each_deliver_every_event_once_to_their_sockets(
    web_server: WebServer, member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    own = f"project.{project.pk}"
    sockets: list[Any] = []
    # The kernel hands connections to either process; open them until both hold some.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and len(sockets) < MOST_SOCKETS:
        for _ in range(4):
            sockets.append(connect(web_server, project, member))
            assert json.loads(sockets[-1].recv())["type"] == "hello"
        time.sleep(1.2)  # each process writes its counters once a second
        if len(web_server.sockets_by_process()) == 2:
            break
    counted = web_server.sockets_by_process()
    assert len(counted) == 2  # both processes hold sockets
    assert sum(counted.values()) == len(sockets)

    before = sequences_read([own])[own]
    in_thread(lambda: [event_publish("decision.recorded", project=project.pk) for _ in range(5)])
    for ws in sockets:
        numbers = [json.loads(ws.recv())["seq"] for _ in range(5)]
        assert numbers == list(range(before + 1, before + 6))
        ws.settimeout(0.2)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()  # and nothing twice
        ws.close()
