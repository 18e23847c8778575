"""The process driver starts a runtime as a local process, finds it by PID file, and stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from artcritic.gpu.profiles import GB, Profile, ProfileError
from artcritic.runtimes.drivers.base import RuntimeDriver
from artcritic.runtimes.drivers.factory import driver_for, launch_spec
from artcritic.runtimes.drivers.process import ProcessDriver, pid_running, proc_start_ticks
from artcritic.runtimes.errors import RuntimeUnavailable
from artcritic.sim.nvml import SimNvmlProbe

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sim_profile(runtime: str = "comfyui", **changes: Any) -> Profile:
    """The shipped sim-32gb profile with one runtime's settings changed.

    Its URL is on a free port unless given: the shipped ports may be held by a `make run`
    of this or another checkout, and no test may depend on a fixed port being free.
    """
    data = tomllib.loads((ROOT / "profiles" / "sim-32gb.toml").read_text())
    data["runtimes"][runtime].update({"url": f"http://127.0.0.1:{free_port()}", **changes})
    return Profile.model_validate(data)


def http_server_profile(port: int, directory: Path, *extra: str) -> Profile:
    """ComfyUI played by Python's http.server: answers GET / with 200 once it listens."""
    return sim_profile(
        url=f"http://127.0.0.1:{port}",
        health_path="/",
        command=[
            "{python}",
            "-m",
            "http.server",
            "{port}",
            "--bind",
            "{host}",
            "--directory",
            str(directory),
            *extra,
        ],
    )


@pytest.fixture
def gpu() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def stop_after() -> Iterator[list[RuntimeDriver]]:
    """Drivers whose runtimes are stopped after the test, whatever happened."""
    drivers: list[RuntimeDriver] = []
    yield drivers
    for driver in drivers:
        driver.stop(timeout=5)


def recorded_pid(driver: RuntimeDriver) -> int:
    assert isinstance(driver, ProcessDriver)
    return int(driver.pid_path.read_text())


def test_it_starts_the_command_by_pid_and_stops_the_whole_process_group(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    port = free_port()
    driver = driver_for("comfyui", http_server_profile(port, tmp_path), gpu=gpu, run_dir=tmp_path)
    stop_after.append(driver)
    assert driver.kind == "process"
    assert driver.can_start
    assert not driver.is_running()

    driver.start()
    driver.wait_healthy(timeout=30)

    pid = recorded_pid(driver)
    assert driver.is_running()
    assert b"http.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert os.getpgid(pid) == pid  # its own process group, so a stop reaches its children
    meta = json.loads((tmp_path / f"{gpu}-comfyui.json").read_text())
    assert meta["fingerprint"] == driver.fingerprint() == driver.running_fingerprint()
    assert meta["argv"][:3] == [PY, "-m", "http.server"]
    assert meta["start_ticks"] == proc_start_ticks(pid)
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    assert f"pid {pid}" in driver.describe()

    driver.stop(timeout=10)

    assert not pid_running(pid)
    assert not driver.is_running()
    assert driver.running_fingerprint() is None
    assert not (tmp_path / f"{gpu}-comfyui.pid").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert "SIGTERM" in driver.describe()


def test_it_runs_the_simulated_comfyui_of_the_shipped_profile(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTCRITIC_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("ARTCRITIC_SIM_TIME_SCALE", "0.01")
    port = free_port()
    driver = driver_for(
        "comfyui", sim_profile(url=f"http://127.0.0.1:{port}"), gpu=gpu, run_dir=tmp_path
    )
    stop_after.append(driver)

    driver.start()
    driver.wait_healthy(timeout=60)

    pid = recorded_pid(driver)
    stats = requests.get(f"http://127.0.0.1:{port}/system_stats", timeout=5).json()
    assert stats["devices"][0]["vram_total"] > 0
    assert b"comfyui" in Path(f"/proc/{pid}/cmdline").read_bytes()
    driver.stop(timeout=10)
    assert not pid_running(pid)


def test_the_simulated_critic_claims_its_vram_and_gives_it_back_when_stopped(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTCRITIC_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("ARTCRITIC_SIM_TIME_SCALE", "0.01")
    driver = driver_for(
        "critic",
        sim_profile("critic", url=f"http://127.0.0.1:{free_port()}"),
        gpu=gpu,
        run_dir=tmp_path,
    )
    stop_after.append(driver)
    probe = SimNvmlProbe(gpu, sim_dir=tmp_path / "sim")

    driver.start()
    driver.wait_healthy(timeout=60)

    pid = recorded_pid(driver)
    [held] = probe.read().processes
    assert held.pid == pid
    assert held.name == "sim-critic"
    assert held.used_bytes is not None
    assert held.used_bytes > 10 * GB  # vLLM claims gpu_memory_utilization of the card up front
    driver.stop(timeout=10)
    assert probe.read().processes == ()


def test_starting_twice_keeps_the_one_process(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    driver = driver_for(
        "comfyui", http_server_profile(free_port(), tmp_path), gpu=gpu, run_dir=tmp_path
    )
    stop_after.append(driver)
    driver.start()
    first = recorded_pid(driver)
    driver.start()
    driver.wait_healthy(timeout=30)

    assert recorded_pid(driver) == first
    assert "already running" in driver.describe()
    assert driver.logs_tail(100).count("starting:") == 1


def test_stopping_what_is_not_running_is_a_no_op(tmp_path: Path, gpu: str) -> None:
    driver = driver_for(
        "comfyui", http_server_profile(free_port(), tmp_path), gpu=gpu, run_dir=tmp_path
    )
    driver.stop()
    driver.stop()
    assert not driver.is_running()
    assert "not running" in driver.describe()


def test_a_restarted_worker_finds_the_runtime_another_process_started(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    profile = http_server_profile(free_port(), tmp_path)
    # A separate Python process plays the worker that started the runtime and then died.
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from artcritic.gpu.profiles import Profile\n"
        "from artcritic.runtimes.drivers.factory import driver_for\n"
        "profile = Profile.model_validate(json.loads(sys.argv[1]))\n"
        "driver = driver_for('comfyui', profile, gpu=sys.argv[2], run_dir=Path(sys.argv[3]))\n"
        "driver.start()\n"
        "driver.wait_healthy(timeout=30)\n"
    )
    subprocess.run(
        [PY, "-c", script, profile.model_dump_json(), gpu, str(tmp_path)],
        check=True,
        timeout=120,
        cwd=ROOT,
    )

    driver = driver_for("comfyui", profile, gpu=gpu, run_dir=tmp_path)
    stop_after.append(driver)
    pid = recorded_pid(driver)
    assert driver.is_running()
    assert driver.running_fingerprint() == driver.fingerprint()
    driver.start()
    assert recorded_pid(driver) == pid
    driver.wait_healthy(timeout=30)

    driver.stop(timeout=10)
    assert not pid_running(pid)
    assert not driver.is_running()


def test_a_pid_file_naming_an_unrelated_process_is_never_trusted_or_signalled(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    driver = driver_for(
        "comfyui", http_server_profile(free_port(), tmp_path), gpu=gpu, run_dir=tmp_path
    )
    stop_after.append(driver)
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        # The PID was "reused": the sidecar names our command but another start tick.
        (tmp_path / f"{gpu}-comfyui.json").write_text(
            json.dumps({"fingerprint": driver.fingerprint(), "argv": ["x"], "start_ticks": 1})
        )
        (tmp_path / f"{gpu}-comfyui.pid").write_text(str(stranger.pid))

        assert not driver.is_running()
        driver.stop()
        assert stranger.poll() is None, "stop() must not signal a process it did not start"
        assert not (tmp_path / f"{gpu}-comfyui.pid").exists()

        # A PID file without its sidecar is no proof either.
        (tmp_path / f"{gpu}-comfyui.pid").write_text(str(stranger.pid))
        assert not driver.is_running()
        driver.start()
        driver.wait_healthy(timeout=30)

        assert recorded_pid(driver) != stranger.pid
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_runtime_that_exits_fails_wait_healthy_with_its_exit_code_and_log(
    tmp_path: Path, gpu: str
) -> None:
    crash = (
        "import sys; print('loading flux1-dev'); "
        "sys.stderr.write('CUDA out of memory\\n'); sys.exit(3)"
    )
    profile = sim_profile(url=f"http://127.0.0.1:{free_port()}", command=["{python}", "-c", crash])
    driver = driver_for("comfyui", profile, gpu=gpu, run_dir=tmp_path)
    driver.start()

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.wait_healthy(timeout=120)

    reason = failed.value.reason
    assert "exited with code 3" in reason
    assert "not healthy after" not in reason  # it failed on the exit, not on the timeout
    # Whole lines of output, not the command echoed in the log's start line.
    assert "loading flux1-dev" in reason.splitlines()
    assert "CUDA out of memory" in reason.splitlines()
    assert failed.value.next_action
    assert not driver.is_running()


def test_a_runtime_that_never_answers_times_out_with_seconds_waited_and_log(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    slow = "import time; print('still loading weights', flush=True); time.sleep(120)"
    port = free_port()
    driver = driver_for(
        "comfyui",
        sim_profile(url=f"http://127.0.0.1:{port}", command=["{python}", "-c", slow]),
        gpu=gpu,
        run_dir=tmp_path,
    )
    stop_after.append(driver)
    driver.start()

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.wait_healthy(timeout=1)

    assert re.search(r"was not healthy after \d+\.\d s \(limit 1 s\)", failed.value.reason)
    assert f"http://127.0.0.1:{port}/system_stats gave no answer" in failed.value.reason
    assert "start_timeout_s" in failed.value.next_action
    assert driver.is_running()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path, gpu: str) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(120)"
    )
    driver = driver_for(
        "comfyui",
        sim_profile(url=f"http://127.0.0.1:{free_port()}", command=["{python}", "-c", stubborn]),
        gpu=gpu,
        run_dir=tmp_path,
    )
    driver.start()
    deadline = time.monotonic() + 30
    while "ignoring SIGTERM" not in driver.logs_tail().splitlines():
        assert time.monotonic() < deadline, driver.logs_tail()
        time.sleep(0.05)
    pid = recorded_pid(driver)

    driver.stop(timeout=0.5)

    assert not pid_running(pid)
    assert "SIGKILL" in driver.describe()


def test_new_settings_replace_a_runtime_started_with_old_ones(
    tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    port = free_port()
    old = driver_for("comfyui", http_server_profile(port, tmp_path), gpu=gpu, run_dir=tmp_path)
    stop_after.append(old)
    old.start()
    old.wait_healthy(timeout=30)
    old_pid = recorded_pid(old)

    new = driver_for(
        "comfyui",
        http_server_profile(port, tmp_path, "--protocol", "HTTP/1.1"),
        gpu=gpu,
        run_dir=tmp_path,
    )
    assert new.fingerprint() != old.fingerprint()
    assert new.running_fingerprint() == old.fingerprint()
    new.start()
    new.wait_healthy(timeout=30)

    assert not pid_running(old_pid)
    assert recorded_pid(new) != old_pid
    assert new.running_fingerprint() == new.fingerprint()
    assert "other settings" in new.describe()
    assert "stale settings" in new.logs_tail(100)


def test_a_port_held_by_a_program_it_did_not_start_is_refused(tmp_path: Path, gpu: str) -> None:
    port = free_port()
    squatter = subprocess.Popen(
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        driver = driver_for(
            "comfyui", http_server_profile(port, tmp_path), gpu=gpu, run_dir=tmp_path
        )
        with pytest.raises(RuntimeUnavailable, match=f"port {port} on 127.0.0.1 is already in use"):
            driver.start()
        assert not driver.is_running()
        assert squatter.poll() is None
    finally:
        squatter.send_signal(signal.SIGTERM)
        squatter.wait(timeout=30)


def test_a_program_that_does_not_exist_is_a_clear_error(tmp_path: Path, gpu: str) -> None:
    driver = driver_for(
        "comfyui",
        sim_profile(command=["/nonexistent/bin/comfyui", "--port", "{port}"]),
        gpu=gpu,
        run_dir=tmp_path,
    )
    with pytest.raises(RuntimeUnavailable, match="running '/nonexistent/bin/comfyui' failed"):
        driver.start()
    assert not driver.is_running()


def test_the_sim_dir_the_time_scale_and_the_given_env_reach_the_process(
    tmp_path: Path, gpu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTCRITIC_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("ARTCRITIC_SIM_TIME_SCALE", "0.01")
    show = (
        "import os; print('|'.join(os.environ.get(k, '-') for k in "
        "('ARTCRITIC_SIM_DIR', 'ARTCRITIC_SIM_TIME_SCALE', 'EXTRA', 'VLLM_SERVER_DEV_MODE')))"
    )
    driver = driver_for(
        "critic",
        sim_profile(
            "critic", url=f"http://127.0.0.1:{free_port()}", command=["{python}", "-c", show]
        ),
        gpu=gpu,
        run_dir=tmp_path,
        env={"EXTRA": "yes"},
    )
    driver.start()
    with pytest.raises(RuntimeUnavailable, match="exited with code 0"):
        driver.wait_healthy(timeout=60)

    assert f"{tmp_path / 'sim'}|0.01|yes|1" in driver.logs_tail()


def test_command_placeholders_come_from_the_profile_and_double_braces_stay_literal() -> None:
    profile = sim_profile(
        "critic",
        url="http://127.0.0.1:18555",
        command=[
            "{python}",
            "--port",
            "{port}",
            "--gpu",
            "{gpu}",
            "--model",
            "{model}",
            "--u",
            "{gpu_memory_utilization}",
            "--len",
            "{max_model_len}",
            "--seqs",
            "{max_num_seqs}",
            "--mm",
            '{{"image": 1}}',
        ],
    )
    spec = launch_spec("critic", profile, gpu="g7")
    assert spec.argv == (
        PY,
        "--port",
        "18555",
        "--gpu",
        "g7",
        "--model",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--u",
        "0.7",
        "--len",
        "8192",
        "--seqs",
        "4",
        "--mm",
        '{"image": 1}',
    )
    assert spec.env == {"VLLM_SERVER_DEV_MODE": "1"}
    assert spec.fingerprint() == launch_spec("critic", profile, gpu="g7").fingerprint()
    assert spec.fingerprint() != launch_spec("critic", profile, gpu="g8").fingerprint()


@pytest.mark.parametrize(
    ("argument", "shown"),
    [("{modle}", "{modle}"), ("{port:05d}", "{port:05d}"), ("{}", "{}"), ("{gpu!r}", "{gpu!r}")],
)
def test_an_unknown_placeholder_is_a_profile_error_naming_it(argument: str, shown: str) -> None:
    profile = sim_profile(command=["{python}", argument])
    with pytest.raises(ProfileError) as failed:
        driver_for("comfyui", profile, gpu="g1")
    message = str(failed.value)
    assert "runtimes.comfyui.command[1]" in message
    assert f"unknown placeholder {shown}" in message
    assert "{max_model_len}" in message  # it lists what does exist


def test_an_unbalanced_brace_is_a_profile_error() -> None:
    with pytest.raises(ProfileError, match=r"command\[1\]: expected '\}' before end"):
        driver_for("comfyui", sim_profile(command=["{python}", "{oops"]), gpu="g1")


def test_a_gpu_name_that_is_not_a_slug_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a slug"):
        driver_for("comfyui", sim_profile(), gpu="../etc")
