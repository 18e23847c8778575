"""The benchmark's own database and child processes (web server, worker), stopped by PID."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import psycopg
from psycopg import sql

from artcritic.checkout import DEV_DATABASE_URL
from artcritic.webserver import web_argv

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / ".run" / "bench-live"  # one folder per run: logs, stamps
DEFAULT_DATABASE_URL = DEV_DATABASE_URL
START_SECONDS = 60
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark could not set up or run; the message says what to look at."""


def database_url(name: str) -> str:
    """The configured PostgreSQL server (DATABASE_URL), database ``name`` on it."""
    base = urlparse(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    return base._replace(path=f"/{name}").geturl()


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    parsed = urlparse(url)
    return psycopg.connect(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def _name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def database_ensure(url: str) -> bool:
    """Create the database if missing; True when this call created it."""
    with _admin(url) as conn:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        if conn.execute(query, [_name(url)]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_name(url))))
    return True


def database_drop(url: str) -> None:
    with _admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_name(url)))
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@dataclass
class Child:
    """One process this benchmark started; stopped by its PID, never by name."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    sink: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def fail(self, what: str) -> BenchError:
        tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        return BenchError(f"{self.name} {what} (log {self.log}):\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.sink):
            if stream is not None:
                stream.close()


def _spawn(
    name: str, argv: list[str], env: dict[str, str], folder: Path, *, piped: bool = False
) -> Child:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    sink = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
        stdout=subprocess.PIPE if piped else sink,
        stderr=sink,
    )
    return Child(name, process, log, sink)


def web_start(
    port: int, env: dict[str, str], folder: Path, *, app: str, workers: int, server: str
) -> Child:
    """The web server on 127.0.0.1:<port>, once it listens: artcritic.webserver, or daphne
    (the server artcritic shipped with before, to compare on the same machine)."""
    if server == "daphne":
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    else:
        argv = web_argv(port, app=app, workers=workers)
    child = _spawn("web", argv, env, folder)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise child.fail(f"exited with {child.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return child
        except OSError:
            time.sleep(0.1)
    child.stop()
    raise child.fail(f"did not listen on 127.0.0.1:{port} within {START_SECONDS} s")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a server's worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time so far of ``pid`` and the processes below it."""
    return sum(cpu_seconds(each) for each in process_tree(pid))


def worker_start(env: dict[str, str], folder: Path, *args: str) -> Child:
    """The worker process (``bench/livebench/worker.py``), once it says it is ready."""
    argv = [sys.executable, "-m", "bench.livebench.worker", *args]
    child = _spawn("worker", argv, env, folder, piped=True)
    assert child.process.stdout is not None
    readable, _, _ = select.select([child.process.stdout], [], [], START_SECONDS)
    # It sets Django up and publishes one warm-up event, then says "ready".
    line = child.process.stdout.readline().decode().strip() if readable else ""
    if line != "ready":
        child.stop()
        raise child.fail(f"did not get ready (said {line!r})")
    return child


def worker_go(child: Child) -> None:
    assert child.process.stdin is not None
    child.process.stdin.write(b"go\n")
    child.process.stdin.flush()


async def worker_finished(child: Child) -> None:
    """Wait for the worker to send everything and exit (it writes its stamps first).

    Woken by a pidfd, not waited on in a thread, so Ctrl-C or SIGTERM ends the wait at once.
    """
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(child.pid)
    loop.add_reader(pidfd, exited.set)
    try:
        await exited.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    if child.process.wait() != 0:
        raise child.fail(f"exited with {child.process.returncode}")


def _redis() -> Any:
    import redis

    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def resyncs_read(prefix: str) -> int:
    """The instance's resync counter (artcritic/live/stats.py), 0 before the first."""
    with _redis() as client:
        return int(client.get(f"{prefix}:live:resyncs") or 0)


def channel_keys_delete(prefix: str) -> None:
    """Remove the run's Redis keys (counters, live stats): the prefix is the run's own."""
    with _redis() as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


# What the logs say when an event was dropped before reaching a socket.
DROPPED = ("over capacity", "not delivered", "fan-out failed", "malformed live message")


def log_problems(folder: Path) -> list[str]:
    """Lines of the run's logs that tell of dropped events (events.py, live/fanout.py)."""
    found: list[str] = []
    for log in sorted(folder.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        hits = [line for line in lines if any(word in line for word in DROPPED)]
        if hits:
            found.append(f"{log.name}: {len(hits)} lines like: {hits[0].strip()[:160]}")
    return found
