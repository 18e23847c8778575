"""Live-socket fixtures: real sessions, the real ASGI app, the real Redis channel layer."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.test import Client

from artcritic.asgi import application
from artcritic.gpu.models import Gpu
from artcritic.jobs.models import Job
from artcritic.studio.models import Project
from tests.factories import (
    PASSWORD,
    profile_load,
    project_make,
    prompt_make,
    request_make,
    user_make,
)
from tests.factories_media import job_make

Headers = list[tuple[bytes, bytes]]
ORIGIN = b"http://127.0.0.1:8000"
WAIT = 5  # seconds a socket may take to answer on a busy 2-core box; not an assertion


def signed_in(user: AbstractUser, origin: bytes = ORIGIN) -> Headers:
    """Headers of a browser that logged in through the real login (a real session cookie)."""
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [(b"origin", origin), (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())]


_opened: list[WebsocketCommunicator] = []


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async scenario; the ORM calls it makes (through database_sync_to_async) run
    in this test's thread, where pytest-django allows them."""

    async def scenario_then_clean_up() -> None:
        try:
            await scenario()
        finally:
            # A failed assertion leaves sockets open; close them before their event loop ends.
            while _opened:
                with contextlib.suppress(Exception):
                    await _opened.pop().disconnect()
            layer: Any = get_channel_layer()
            await layer.close_pools()  # the pools belong to this scenario's event loop

    async_to_sync(scenario_then_clean_up)()


async def socket_open(path: str, headers: Headers) -> WebsocketCommunicator:
    """A socket the server accepted."""
    socket = WebsocketCommunicator(application, path, headers=headers)
    _opened.append(socket)
    connected, _ = await socket.connect(timeout=WAIT)
    assert connected, f"{path} refused the handshake"
    return socket


async def close_code(socket: WebsocketCommunicator) -> int:
    """The code of the close frame the server sends next (and nothing before it)."""
    output = await socket.receive_output(timeout=WAIT)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def receive(socket: WebsocketCommunicator) -> dict[str, Any]:
    message: dict[str, Any] = await socket.receive_json_from(timeout=WAIT)
    return message


@pytest.fixture
def gpu(transactional_db: None) -> Gpu:
    profile_load()
    return Gpu.objects.get(name="sim0")


@pytest.fixture
def member(transactional_db: None) -> AbstractUser:
    return user_make()


@pytest.fixture
def project(member: AbstractUser) -> Project:
    return project_make(member)


def generate_job(project: Project, **fields: Any) -> Job:
    """A queued generate job of ``project`` on GPU sim0."""
    return job_make(request_make(prompt_make(project)), **fields)
