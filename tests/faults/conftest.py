"""The fault-injection suite: private services the tests break on purpose, and its table.

Every fault test records one row — fault, jobs submitted, done, lost, duplicated, stuck —
and the run ends by printing the table, so a reader sees at a glance that no fault lost,
duplicated or stranded work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from celery import current_app

FAULT_ROW = "fault_row"


@dataclass
class FaultRow:
    fault: str
    submitted: int
    done: int
    failed: int  # ended with a reason and a next action: visible, never silent
    lost: int
    duplicated: int
    stuck: int


@dataclass
class FaultTable:
    """One test's rows, handed to pytest with its report (``user_properties``) so the table
    is printed once by whichever process writes the summary — with pytest-xdist that is the
    controller, not the worker where the test ran (tests/conftest.py prints it)."""

    node: pytest.Item

    def record(
        self,
        fault: str,
        *,
        submitted: int,
        done: int,
        lost: int,
        duplicated: int,
        stuck: int,
        failed: int = 0,
    ) -> None:
        row = FaultRow(fault, submitted, done, failed, lost, duplicated, stuck)
        self.node.user_properties.append((FAULT_ROW, asdict(row)))


def table_lines(rows: list[FaultRow]) -> list[str]:
    width = max([len("fault"), *(len(row.fault) for row in rows)])
    head = f"{'fault':<{width}}  submitted  done  failed visibly  lost  duplicated  stuck"
    body = [
        f"{r.fault:<{width}}  {r.submitted:>9}  {r.done:>4}  {r.failed:>14}  {r.lost:>4}  "
        f"{r.duplicated:>10}  {r.stuck:>5}"
        for r in rows
    ]
    return [head, "-" * len(head), *body]


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> FaultTable:
    return FaultTable(request.node)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, started and killed by PID."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def kill(self) -> None:
        """SIGKILL, as an outage ends it: everything it held is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def broker_at(private_redis: PrivateRedis) -> Iterator[str]:
    """This test process publishes Celery messages to the private Redis."""
    app = current_app

    def point_at(url: str) -> None:
        # Celery caches its connection and producer pools per app; new ones follow the URL.
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    point_at(private_redis.url)
    try:
        yield private_redis.url
    finally:
        point_at(previous)
