"""Real Celery GPU workers for end-to-end tests: a subprocess on the test database and bucket.

The worker is the production command (`celery -A artcritic worker -Q gpu.<name>
--concurrency 1 --prefetch-multiplier 1 --pool solo`), pointed at the pytest-django
test database, this run's S3 bucket and channel prefix, and a private simulated-GPU
directory. Tests that use it need ``transactional_db`` so the worker sees their rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from artcritic.gpu.models import Gpu, HardwareProfile
from artcritic.gpu.profiles import Profile, profile_read
from tests.simproc import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    """A running GPU worker: its PID, queue and log."""

    gpu: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL if it does not go."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed worker ends."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(10)


def sim_profile(name: str = "sim-32gb", **durations: float) -> Profile:
    """The shipped simulated profile with runtimes on free ports (parallel runs never clash)."""
    profile, _ = profile_read(ROOT / "profiles" / f"{name}.toml")
    data = profile.model_dump(mode="json")
    data["runtimes"]["comfyui"]["url"] = f"http://127.0.0.1:{free_port()}"
    data["runtimes"]["critic"]["url"] = f"http://127.0.0.1:{free_port()}"
    data["durations"].update(durations)
    return Profile.model_validate(data)


def gpu_install(gpu: str, profile: Profile) -> Gpu:
    """Store the profile and make it the GPU's active one."""
    row, _ = HardwareProfile.objects.update_or_create(
        name=profile.name,
        defaults={"data": profile.model_dump(mode="json"), "simulated": profile.simulated},
    )
    gpu_row, _ = Gpu.objects.update_or_create(name=gpu, defaults={"active_profile": row})
    return gpu_row


def worker_env(gpu: str, sim_dir: Path, *, time_scale: float) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "S3_BUCKET": settings.S3_BUCKET,
        "ARTCRITIC_GPU": gpu,
        "ARTCRITIC_SIM_DIR": str(sim_dir),
        "ARTCRITIC_SIM_TIME_SCALE": str(time_scale),
        "ARTCRITIC_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "ARTCRITIC_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }


def start_gpu_worker(
    gpu: str,
    sim_dir: Path,
    *,
    time_scale: float = 0.01,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start the production GPU worker command for ``gpu`` and wait until it is ready."""
    sim_dir.mkdir(parents=True, exist_ok=True)
    log_path = sim_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "artcritic",
        "worker",
        "-Q",
        f"gpu.{gpu}",
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--pool",
        "solo",
        "-n",
        f"gpu.{gpu}.{uuid.uuid4().hex[:6]}@%h",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "INFO",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**worker_env(gpu, sim_dir, time_scale=time_scale), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(gpu=gpu, log_path=log_path, process=process)
    wait_until(
        lambda: " ready." in worker.log() or not worker.alive(),
        timeout,
        what="the GPU worker to be ready",
        log=worker.log,
    )
    if not worker.alive():
        raise RuntimeError(f"GPU worker exited:\n{worker.log()}")
    return worker


def wait_until(
    check: Callable[[], Any],
    timeout: float,
    *,
    what: str,
    log: Callable[[], str] | None = None,
    poll: float = 0.1,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(poll)
    detail = f"\n--- log ---\n{log()[-6000:]}" if log else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
