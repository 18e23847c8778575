"""The process driver: a runtime started as a local command, tracked by PID file.

Each runtime of each GPU owns three files under the run directory:
``<gpu>-<runtime>.pid`` (the PID), ``<gpu>-<runtime>.json`` (fingerprint, argv,
start time and the kernel's start tick of that PID) and ``<gpu>-<runtime>.log``
(stdout and stderr). A worker that restarts finds the runtime again through the
PID file; the start tick proves the PID still belongs to the process we started
and not to an unrelated one that reused the number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from artcritic.procs import pid_alive
from artcritic.runtimes.drivers.base import (
    DriverKind,
    LaunchSpec,
    last_lines,
    poll_healthy,
)
from artcritic.runtimes.errors import RuntimeUnavailable

log = logging.getLogger(__name__)

DEFAULT_RUN_DIR = Path(__file__).resolve().parents[3] / ".run" / "runtimes"
KILL_WAIT_S = 5.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# Popen objects of the runtimes this Python process started, by PID, so that any driver
# instance here can reap them and read their exit codes (a zombie is not "running").
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """What the sidecar file says about the process we started."""

    pid: int
    fingerprint: str
    started_at: str
    argv: tuple[str, ...]
    start_ticks: int | None


def proc_start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks; None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def pid_running(pid: int) -> bool:
    """Whether ``pid`` exists and has not ended (unlike ``pid_alive``, zombies count as ended)."""
    if Path("/proc").is_dir():
        return proc_start_ticks(pid) is not None
    return pid_alive(pid)


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ProcessDriver:
    """Runs the profile's command as a local process group."""

    def __init__(self, spec: LaunchSpec, *, run_dir: Path | None = None) -> None:
        if not spec.argv:
            raise ValueError(f"process driver for {spec.runtime} needs a command")
        self.spec = spec
        self.run_dir = run_dir or DEFAULT_RUN_DIR
        stem = f"{spec.gpu}-{spec.runtime}"
        self.pid_path = self.run_dir / f"{stem}.pid"
        self.meta_path = self.run_dir / f"{stem}.json"
        self.log_path = self.run_dir / f"{stem}.log"
        # The last few things the driver did, for describe(): a replacement must stay visible.
        self.actions: deque[str] = deque(maxlen=4)

    # -- the contract ------------------------------------------------------------------

    @property
    def kind(self) -> DriverKind:
        return "process"

    @property
    def can_start(self) -> bool:
        return True

    @property
    def url(self) -> str:
        return self.spec.url.rstrip("/")

    def fingerprint(self) -> str:
        return self.spec.fingerprint()

    def running_fingerprint(self) -> str | None:
        record = self._live_record()
        return record.fingerprint if record else None

    def start(self) -> None:
        """Start the command unless it already runs with this fingerprint."""
        record = self._live_record()
        if record and record.fingerprint == self.fingerprint():
            self._note(f"already running as pid {record.pid}; left as is")
            return
        if record:
            self._note(
                f"pid {record.pid} runs with other settings (fingerprint "
                f"{record.fingerprint[:12]} ≠ {self.fingerprint()[:12]}); replacing it"
            )
            self._append_log(f"--- stale settings: stopping pid {record.pid} to restart")
            self.stop()
        self._forget_stale_files()
        self._refuse_taken_port()
        self._launch()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout``; only ever our own process."""
        record = self._record()
        if record is None:
            self._note("stop: not running")
            return
        if not self._is_ours(record):
            _CHILDREN.pop(record.pid, None)
            self._remove_files()
            self._note(f"stop: pid {record.pid} had already ended; PID file removed")
            return
        how = self._terminate(record.pid, timeout)
        self._remove_files()
        self._append_log(f"--- stopped pid {record.pid} ({how})")
        self._note(f"stopped pid {record.pid} ({how})")

    def is_running(self) -> bool:
        return self._live_record() is not None

    def wait_healthy(self, timeout: float) -> None:
        record = self._record()
        if record is None:
            raise RuntimeUnavailable(
                f"{self.spec.runtime} on {self.spec.gpu} is not running (no PID file at "
                f"{self.pid_path}).",
                "Start it first; the coordinator does this when a job needs it.",
            )
        poll_healthy(
            self.spec,
            timeout,
            exit_code=lambda: self._exit_code(record),
            logs_tail=lambda: self.logs_tail(20),
            what=f"process pid {record.pid}",
        )
        self._note(f"pid {record.pid} healthy at {self.spec.health_url}")

    def logs_tail(self, lines: int = 40) -> str:
        return last_lines(_read_end(self.log_path), lines)

    def describe(self) -> str:
        record = self._live_record()
        state = f"pid {record.pid} since {record.started_at}" if record else "not running"
        return (
            f"process ({state}) `{shlex.join(self.spec.argv)}` → {self.url}, "
            f"log {self.log_path}; recent: {' → '.join(self.actions) or 'nothing yet'}"
        )

    # -- records -----------------------------------------------------------------------

    def _record(self) -> ProcessRecord | None:
        """The PID file and its sidecar, or None when there is no usable PID file."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            # Without the sidecar we cannot prove the PID is ours: treat it as foreign.
            return ProcessRecord(pid, "", "", (), start_ticks=-1)
        return ProcessRecord(
            pid=pid,
            fingerprint=str(meta.get("fingerprint", "")),
            started_at=str(meta.get("started_at", "")),
            argv=tuple(meta.get("argv", ())),
            start_ticks=meta.get("start_ticks"),
        )

    def _is_ours(self, record: ProcessRecord) -> bool:
        """Alive, and the same process we started (not a later process given the same PID)."""
        child = _CHILDREN.get(record.pid)
        if child is not None and child.poll() is not None:
            return False
        ticks = proc_start_ticks(record.pid)
        if record.start_ticks is None:
            # No /proc where it was started: liveness is all we can check.
            return pid_running(record.pid)
        return ticks is not None and ticks == record.start_ticks

    def _live_record(self) -> ProcessRecord | None:
        record = self._record()
        return record if record and self._is_ours(record) else None

    def _exit_code(self, record: ProcessRecord) -> int | Literal["gone"] | None:
        child = _CHILDREN.get(record.pid)
        if child is not None:
            return child.poll()
        return None if self._is_ours(record) else "gone"

    # -- starting ----------------------------------------------------------------------

    def _forget_stale_files(self) -> None:
        record = self._record()
        if record is not None:
            _CHILDREN.pop(record.pid, None)
            self._note(f"PID file named pid {record.pid}, no longer our process; removed")
            self._remove_files()

    def _refuse_taken_port(self) -> None:
        # A foreign server on our port would answer our health checks while ours fails to bind.
        host = self.spec.host
        if host in LOOPBACK and port_in_use(host, self.spec.port):
            raise RuntimeUnavailable(
                f"Cannot start {self.spec.runtime} on {self.spec.gpu}: port {self.spec.port} on "
                f"{host} is already in use by a program this driver did not start.",
                f"Stop whatever listens on {host}:{self.spec.port} (e.g. `ss -ltnp "
                f"'sport = :{self.spec.port}'`), or change the runtime url in the profile.",
            )

    def _launch(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        argv = list(self.spec.argv)
        self._append_log(f"--- {started_at} starting: {shlex.join(argv)}")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env}
        with self.log_path.open("ab") as log_file:
            child = _spawn(argv, env, log_file, self.spec)
        _CHILDREN[child.pid] = child
        meta = {
            "pid": child.pid,
            "fingerprint": self.fingerprint(),
            "started_at": started_at,
            "argv": argv,
            "start_ticks": proc_start_ticks(child.pid),
            "url": self.url,
        }
        # Sidecar first: whoever sees the PID file must find its sidecar.
        _write_atomic(self.meta_path, json.dumps(meta, indent=1))
        _write_atomic(self.pid_path, f"{child.pid}\n")
        self._note(f"started pid {child.pid}")

    # -- stopping ----------------------------------------------------------------------

    def _terminate(self, pid: int, timeout: float) -> str:
        began = time.monotonic()
        _signal_group(pid, signal.SIGTERM)
        if self._wait_gone(pid, timeout):
            return f"SIGTERM, ended after {time.monotonic() - began:.1f} s"
        _signal_group(pid, signal.SIGKILL)
        if self._wait_gone(pid, KILL_WAIT_S):
            return f"SIGKILL after {timeout:g} s without exiting on SIGTERM"
        raise RuntimeUnavailable(
            f"{self.spec.runtime} on {self.spec.gpu} (pid {pid}) survived SIGTERM and "
            f"SIGKILL for {timeout + KILL_WAIT_S:g} s.",
            f"The process is stuck in the kernel (often a GPU driver hang); check `ps -o "
            f"stat,wchan -p {pid}` and the GPU with `nvidia-smi`.",
        )

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            _CHILDREN.pop(pid, None)
            return True
        deadline = time.monotonic() + timeout
        while pid_running(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # -- files -------------------------------------------------------------------------

    def _remove_files(self) -> None:
        for path in (self.pid_path, self.meta_path):
            path.unlink(missing_ok=True)

    def _append_log(self, line: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as fh:
            fh.write(line + "\n")

    def _note(self, action: str) -> None:
        self.actions.append(action)
        log.info("%s/%s: %s", self.spec.gpu, self.spec.runtime, action)


def _spawn(
    argv: list[str], env: dict[str, str], log_file: IO[bytes], spec: LaunchSpec
) -> subprocess.Popen[bytes]:
    """Popen in a new session (its own process group), output to the log file."""
    try:
        return subprocess.Popen(  # noqa: S603 - argv comes from the admin's profile, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise RuntimeUnavailable(
            f"Cannot start {spec.runtime} on {spec.gpu}: running {argv[0]!r} failed: "
            f"{exc.strerror or exc}.",
            "Check the runtime's command in the profile (the program must exist and be "
            "executable on this host).",
        ) from exc


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The process was started in its own session, so its group id is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _read_end(path: Path, max_bytes: int = 256 * 1024) -> str:
    """The last ``max_bytes`` of a file as text ("" if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
