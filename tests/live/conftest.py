"""Live-socket fixtures: real sessions, the real ASGI app, the real Redis channel layer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.test import Client
from playwright.sync_api import Browser, BrowserContext

from artcritic.asgi import application
from artcritic.gpu.models import Gpu
from artcritic.jobs.models import Job
from artcritic.live.stats import live_stats_read
from artcritic.studio.models import Project
from artcritic.webserver import web_argv
from tests.browser.conftest import (  # noqa: F401 - browser: a fixture, shared
    ROOT,
    _database_url,
    _free_port,
    _wait_for_port,
    browser,
)
from tests.factories import (
    profile_load,
    project_make,
    prompt_make,
    request_make,
    sign_in,
    user_make,
)
from tests.factories_media import job_make

Headers = list[tuple[bytes, bytes]]
ORIGIN = b"http://127.0.0.1:8000"
HOST = b"127.0.0.1:8000"  # what a browser on ORIGIN sends: the socket's origin is checked on it
WAIT = 5  # seconds a socket may take to answer on a busy 2-core box; not an assertion


def signed_in(user: AbstractUser, origin: bytes = ORIGIN) -> Headers:
    """Headers of a browser that logged in through the real login (a real session cookie)."""
    client = Client()
    sign_in(client, user.get_username())
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [
        (b"origin", origin),
        (b"host", HOST),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]


_opened: list[WebsocketCommunicator] = []


async def layer_release(layer: Any) -> None:
    """Close the layer's connections made on the current event loop (either layer kind)."""
    if hasattr(type(layer), "close_pools"):
        await layer.close_pools()  # channels_redis core layer: pools per event loop
    else:
        await layer.flush()  # pub/sub layer: the current loop's connections


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
            # Listener pumps and the like must not outlive the loop they run on.
            current = asyncio.current_task()
            leftovers = [task for task in asyncio.all_tasks() if task is not current]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            layer: Any = get_channel_layer()
            await layer_release(layer)  # its connections belong to this scenario's event loop

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


# --- a real web server for live.js -------------------------------------------------------------


class WebServer:
    """The web server (artcritic.webserver) serving this checkout plus the /live-test/ page of
    live_asgi.py on one loopback port, which it keeps across restarts."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                web_argv(self.port, app="tests.live.live_asgi:application"),
                cwd=ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_for_port(self.process, self.port, self.log)

    def kill(self) -> None:
        """Kill it outright (SIGKILL to its PID): sockets drop without a closing handshake."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """Stop it without closing anything (SIGSTOP): its sockets look open but say nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def pids(self) -> set[int]:
        """Its process and the processes below it (uvicorn's workers)."""
        assert self.process is not None
        found, todo = set(), [self.process.pid]
        while todo:
            pid = todo.pop()
            found.add(pid)
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(child) for child in children.read_text().split()]
        return found

    def sockets_by_process(self) -> dict[int, int]:
        """Live sockets of each of its processes, as they count them in Redis (stats.py);
        a process without sockets is not there."""
        counted = live_stats_read().sockets_by_process
        mine = {int(name.rsplit(":", 1)[1]): n for name, n in counted.items()}
        return {pid: n for pid, n in mine.items() if pid in self.pids()}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def web_server_env() -> dict[str, str]:
    """Extra environment for the web server; a test module overrides it."""
    return {}


@pytest.fixture
def web_server(
    transactional_db: None, output_dir: Path, web_server_env: dict[str, str]
) -> Iterator[WebServer]:
    """A real web server on the test database and this run's channel prefix."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artcritic.settings",
        "DATABASE_URL": _database_url(),
        "ARTCRITIC_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "ARTCRITIC_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
        **web_server_env,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log = output_dir / "live-web.log"
    log.write_bytes(b"")
    server = WebServer(_free_port(), env, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_context(browser: Browser, web_server: WebServer) -> Iterator[BrowserContext]:  # noqa: F811
    """A fresh browser context (no cookies) pointed at the web server."""
    context = browser.new_context(base_url=web_server.url)
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()
