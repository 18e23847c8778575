"""The external driver only checks a runtime someone else runs; it never starts or stops it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artcritic.gpu.profiles import Profile
from artcritic.runtimes.drivers.base import RuntimeNotStoppable
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.runtimes.errors import RuntimeFailure, RuntimeUnavailable

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def external_profile(port: int, **changes: Any) -> Profile:
    data = tomllib.loads((ROOT / "profiles" / "sim-32gb.toml").read_text())
    data["runtimes"]["comfyui"].update(
        {
            "driver": "external",
            "url": f"http://127.0.0.1:{port}",
            "health_path": "/",
            "command": [],
            **changes,
        }
    )
    return Profile.model_validate(data)


@pytest.fixture
def someone_elses_server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """An HTTP server started outside artcritic, stopped by its PID after the test."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the external server never listened"
            time.sleep(0.05)
    yield port, server
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def test_start_succeeds_when_the_external_runtime_answers(
    someone_elses_server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, _ = someone_elses_server
    driver = driver_for("comfyui", external_profile(port), gpu="g1")

    driver.start()
    driver.wait_healthy(timeout=10)

    assert driver.kind == "external"
    assert not driver.can_start
    assert driver.is_running()
    assert driver.url == f"http://127.0.0.1:{port}"
    assert driver.running_fingerprint() is None
    assert driver.logs_tail() == ""
    assert "started and stopped outside artcritic" in driver.describe()


def test_start_says_to_start_it_yourself_when_nothing_answers() -> None:
    port = free_port()
    driver = driver_for("comfyui", external_profile(port), gpu="g1")

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.start()

    assert "comfyui on g1 is external; start it yourself" in failed.value.reason
    assert f"http://127.0.0.1:{port}/ gave no answer" in failed.value.reason
    assert "docker or process driver" in failed.value.next_action
    assert not driver.is_running()


def test_start_reports_the_status_of_an_unhealthy_external_runtime(
    someone_elses_server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, _ = someone_elses_server
    driver = driver_for("comfyui", external_profile(port, health_path="/system_stats"), gpu="g1")

    with pytest.raises(RuntimeUnavailable, match="/system_stats gave HTTP 404"):
        driver.start()
    assert driver.is_running()  # it answers, just not healthy


def test_stop_refuses_and_leaves_the_runtime_running(
    someone_elses_server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, server = someone_elses_server
    driver = driver_for("comfyui", external_profile(port), gpu="g1")

    with pytest.raises(RuntimeNotStoppable) as failed:
        driver.stop()

    assert isinstance(failed.value, RuntimeFailure)
    assert "cannot stop an external runtime" in failed.value.reason
    assert "yourself" in failed.value.next_action
    assert server.poll() is None
    assert driver.is_running()


def test_wait_healthy_times_out_with_the_seconds_waited_and_no_log_claim() -> None:
    driver = driver_for("comfyui", external_profile(free_port()), gpu="g1")

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.wait_healthy(timeout=0.5)

    assert "was not healthy after" in failed.value.reason
    assert "(limit 0.5 s)" in failed.value.reason
    assert "log" not in failed.value.reason.lower()
