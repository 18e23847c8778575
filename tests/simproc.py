"""Start a simulator as a subprocess on a free loopback port, wait for it, stop it by PID.

sim = start_sim("comfyui", "--gpu", "t1", env={"ARTCRITIC_SIM_DIR": str(tmp_path)})
try: ... sim.url ...
finally: sim.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SimProcess:
    """A running simulator: its base URL, PID and log file."""

    url: str
    pid: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM this PID (SIGKILL after ``timeout``); return the exit code."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        return self.process.returncode

    def kill(self) -> int | None:
        """SIGKILL this PID, as a crash would end it; return the exit code."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_sim(
    kind: str, *args: str, env: dict[str, str], timeout: float = START_TIMEOUT, wait: bool = True
) -> SimProcess:
    """Run ``python -m artcritic.sim KIND --host 127.0.0.1 --port P *args``; wait for the port."""
    port = free_port()
    log_dir = Path(env.get("ARTCRITIC_SIM_DIR") or tempfile.mkdtemp(prefix="simproc-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{kind}-{port}.log"
    command = [
        sys.executable,
        "-m",
        "artcritic.sim",
        kind,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    sim = SimProcess(f"http://127.0.0.1:{port}", process.pid, port, log_path, process)
    if wait:
        sim_wait(sim, timeout)
    return sim


def sim_wait(sim: SimProcess, timeout: float = START_TIMEOUT) -> None:
    """Block until the simulator's port accepts connections; fail with its log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sim.alive():
            raise RuntimeError(f"simulator exited with {sim.process.returncode}:\n{sim.log()}")
        if _listening(sim.port):
            return
        time.sleep(0.05)
    sim.stop()
    raise RuntimeError(f"simulator did not listen on {sim.port} within {timeout} s:\n{sim.log()}")
