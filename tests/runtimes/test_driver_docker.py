"""The docker driver runs a runtime as a labelled per-GPU container (Engine-API simulator)."""

from __future__ import annotations

import socket
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from artcritic.gpu.profiles import Profile
from artcritic.runtimes.drivers.base import RuntimeDriver
from artcritic.runtimes.drivers.factory import driver_for
from artcritic.runtimes.errors import RuntimeUnavailable
from artcritic.sim.docker_engine import RunningEngine, engine_running

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
CRASH = (
    "import sys\n"
    "print('loading flux1-dev.safetensors', flush=True)\n"
    "sys.stderr.write('torch.OutOfMemoryError: CUDA out of memory\\n')\n"
    "sys.exit(3)\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_profile(runtime: str = "comfyui", **changes: Any) -> Profile:
    """The sim-32gb profile with one runtime switched to the docker driver."""
    data = tomllib.loads((ROOT / "profiles" / "sim-32gb.toml").read_text())
    # A free port unless given: the shipped one may be held by a `make run` somewhere.
    url = f"http://127.0.0.1:{free_port()}"
    data["runtimes"][runtime].update({"driver": "docker", "url": url, **changes})
    return Profile.model_validate(data)


def http_server_profile(port: int, directory: Path, *extra: str) -> Profile:
    """ComfyUI played by http.server inside the image "artcritic/http-sim" (its entrypoint)."""
    return docker_profile(
        image="artcritic/http-sim",
        url=f"http://127.0.0.1:{port}",
        health_path="/",
        container_name="artcritic-comfyui-{gpu}",
        command=["{port}", "--bind", "127.0.0.1", "--directory", str(directory), *extra],
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    crash = tmp_path / "crash.py"
    crash.write_text(CRASH)
    images = {
        "artcritic/http-sim": [PY, "-u", "-m", "http.server"],
        "artcritic/comfyui-sim": [PY, "-m", "artcritic.sim", "comfyui"],
        "artcritic/crash-sim": [PY, str(crash)],
        "artcritic/broken-sim": ["/nonexistent/bin/entrypoint"],
        "vllm/vllm-openai:latest": None,
    }
    with engine_running(images) as running:
        yield running


@pytest.fixture
def gpu() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def stop_after() -> Iterator[list[RuntimeDriver]]:
    drivers: list[RuntimeDriver] = []
    yield drivers
    for driver in drivers:
        driver.stop(timeout=5)


def test_it_creates_a_labelled_gpu_container_and_sees_the_runtime_healthy(
    engine: RunningEngine, tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    port = free_port()
    driver = driver_for(
        "comfyui",
        http_server_profile(port, tmp_path),
        gpu=gpu,
        docker_base_url=engine.base_url,
        env={"ARTCRITIC_SIM_DIR": str(tmp_path)},
        gpu_device_ids=["0"],
    )
    stop_after.append(driver)
    assert driver.kind == "docker"
    assert driver.can_start
    assert not driver.is_running()

    driver.start()
    driver.wait_healthy(timeout=30)

    assert driver.is_running()
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    [created] = engine.engine.creates
    assert created["name"] == f"artcritic-comfyui-{gpu}"
    assert created["Image"] == "artcritic/http-sim"
    assert created["Cmd"] == [str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    assert created["Labels"] == {
        "artcritic.gpu": gpu,
        "artcritic.runtime": "comfyui",
        "artcritic.fingerprint": driver.fingerprint(),
    }
    assert created["Env"] == [f"ARTCRITIC_SIM_DIR={tmp_path}"]
    host = created["HostConfig"]
    assert host["DeviceRequests"] == [
        {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": ["0"],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["PortBindings"] == {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert driver.running_fingerprint() == driver.fingerprint()
    assert f"artcritic-comfyui-{gpu} (running)" in driver.describe()
    # http.server logs each request on stderr: the health checks are in the container's log.
    assert '"GET / HTTP/1.1" 200' in driver.logs_tail()


def test_it_brings_up_the_simulated_comfyui_through_the_docker_api(
    engine: RunningEngine, tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    port = free_port()
    profile = docker_profile(
        image="artcritic/comfyui-sim",
        url=f"http://127.0.0.1:{port}",
        command=["--host", "127.0.0.1", "--port", "{port}", "--gpu", "{gpu}"],
    )
    driver = driver_for(
        "comfyui",
        profile,
        gpu=gpu,
        docker_base_url=engine.base_url,
        env={"ARTCRITIC_SIM_DIR": str(tmp_path), "ARTCRITIC_SIM_TIME_SCALE": "0.01"},
    )
    stop_after.append(driver)

    driver.start()
    driver.wait_healthy(timeout=60)

    stats = requests.get(f"http://127.0.0.1:{port}/system_stats", timeout=5).json()
    assert stats["devices"][0]["vram_total"] > 0
    assert "SIMULATED ComfyUI" in driver.logs_tail()
    driver.stop(timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/system_stats", timeout=5)


def test_the_critic_gets_dev_mode_for_sleep_the_network_alias_and_all_gpus_by_default(
    engine: RunningEngine, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    profile = docker_profile(
        "critic",
        image="vllm/vllm-openai:latest",
        url="http://critic:8000",
        container_name="artcritic-critic-{gpu}",
        command=["--model", "{model}", "--port", "{port}", "--max-model-len", "{max_model_len}"],
    )
    driver = driver_for(
        "critic",
        profile,
        gpu=gpu,
        docker_base_url=engine.base_url,
        docker_network="artcritic_default",
    )
    stop_after.append(driver)
    driver.start()

    [created] = engine.engine.creates
    assert created["Cmd"] == [
        "--model",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--port",
        "8000",
        "--max-model-len",
        "8192",
    ]
    assert "VLLM_SERVER_DEV_MODE=1" in created["Env"]
    assert created["HostConfig"]["DeviceRequests"][0]["Count"] == -1
    assert created["HostConfig"]["NetworkMode"] == "artcritic_default"
    endpoint = created["NetworkingConfig"]["EndpointsConfig"]["artcritic_default"]
    assert endpoint["Aliases"] == ["critic"]
    assert "PortBindings" not in created["HostConfig"]  # reached inside the network only
    assert driver.is_running()


def test_a_critic_released_by_stopping_gets_no_dev_mode(
    engine: RunningEngine, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    profile = docker_profile(
        "critic",
        image="vllm/vllm-openai",
        release="stop",
        url="http://critic:8000",
        command=["--model", "{model}"],
    )
    driver = driver_for("critic", profile, gpu=gpu, docker_base_url=engine.base_url)
    stop_after.append(driver)
    driver.start()
    env = engine.engine.creates[0].get("Env") or []
    assert not any(e.startswith("VLLM_SERVER_DEV_MODE") for e in env)


def test_starting_twice_creates_one_container(
    engine: RunningEngine, tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    driver = driver_for(
        "comfyui",
        http_server_profile(free_port(), tmp_path),
        gpu=gpu,
        docker_base_url=engine.base_url,
    )
    stop_after.append(driver)
    driver.start()
    driver.start()
    driver.wait_healthy(timeout=30)
    assert len(engine.engine.creates) == 1
    assert "already running" in driver.describe()


def test_a_restarted_worker_recognises_its_running_container(
    engine: RunningEngine, tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    profile = http_server_profile(free_port(), tmp_path)
    first = driver_for("comfyui", profile, gpu=gpu, docker_base_url=engine.base_url)
    first.start()
    first.wait_healthy(timeout=30)

    again = driver_for("comfyui", profile, gpu=gpu, docker_base_url=engine.base_url)
    stop_after.append(again)
    assert again.is_running()
    assert again.running_fingerprint() == again.fingerprint()
    again.start()
    assert len(engine.engine.creates) == 1


def test_a_container_started_with_other_settings_is_removed_and_recreated(
    engine: RunningEngine, tmp_path: Path, gpu: str, stop_after: list[RuntimeDriver]
) -> None:
    port = free_port()
    old = driver_for(
        "comfyui", http_server_profile(port, tmp_path), gpu=gpu, docker_base_url=engine.base_url
    )
    old.start()
    old.wait_healthy(timeout=30)
    old_id = engine.engine.find(f"artcritic-comfyui-{gpu}").id  # type: ignore[union-attr]

    new = driver_for(
        "comfyui",
        http_server_profile(port, tmp_path, "--protocol", "HTTP/1.1"),
        gpu=gpu,
        docker_base_url=engine.base_url,
    )
    stop_after.append(new)
    assert new.running_fingerprint() == old.fingerprint() != new.fingerprint()
    new.start()
    new.wait_healthy(timeout=30)

    current = engine.engine.find(f"artcritic-comfyui-{gpu}")
    assert current is not None
    assert current.id != old_id
    assert old_id not in engine.engine.containers
    assert current.labels["artcritic.fingerprint"] == new.fingerprint()
    assert engine.engine.creates[-1]["Cmd"][-2:] == ["--protocol", "HTTP/1.1"]
    assert "removed stale container" in new.describe()


def test_stop_stops_and_removes_the_container_and_keeps_its_last_log(
    engine: RunningEngine, tmp_path: Path, gpu: str
) -> None:
    port = free_port()
    driver = driver_for(
        "comfyui", http_server_profile(port, tmp_path), gpu=gpu, docker_base_url=engine.base_url
    )
    driver.start()
    driver.wait_healthy(timeout=30)

    driver.stop(timeout=10)

    assert engine.engine.containers == {}
    assert not driver.is_running()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert '"GET / HTTP/1.1" 200' in driver.logs_tail()
    assert "stopped and removed" in driver.describe()
    driver.stop()  # again: nothing to do
    assert "stop: no container" in driver.describe()


def test_a_missing_image_says_which_pull_to_run(engine: RunningEngine, gpu: str) -> None:
    profile = docker_profile(image="ghcr.io/artcritic/comfyui:latest", command=[])
    driver = driver_for("comfyui", profile, gpu=gpu, docker_base_url=engine.base_url)

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.start()

    assert "image ghcr.io/artcritic/comfyui:latest not present" in failed.value.reason
    assert "docker pull ghcr.io/artcritic/comfyui:latest" in failed.value.reason
    assert "docker pull ghcr.io/artcritic/comfyui:latest" in failed.value.next_action
    assert engine.engine.creates == []


def test_a_container_that_exits_fails_wait_healthy_with_exit_code_and_log_tail(
    engine: RunningEngine, gpu: str
) -> None:
    profile = docker_profile(image="artcritic/crash-sim", url=f"http://127.0.0.1:{free_port()}")
    driver = driver_for("comfyui", profile, gpu=gpu, docker_base_url=engine.base_url)
    driver.start()

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.wait_healthy(timeout=120)

    reason = failed.value.reason
    assert f"container artcritic-comfyui-{gpu}" in reason
    assert "exited with code 3" in reason
    assert "not healthy after" not in reason
    assert "loading flux1-dev.safetensors" in reason.splitlines()
    assert "torch.OutOfMemoryError: CUDA out of memory" in reason.splitlines()
    assert not driver.is_running()
    driver.stop()
    assert engine.engine.containers == {}


def test_a_container_the_engine_cannot_start_is_a_clear_error(
    engine: RunningEngine, gpu: str
) -> None:
    profile = docker_profile(image="artcritic/broken-sim", url=f"http://127.0.0.1:{free_port()}")
    driver = driver_for("comfyui", profile, gpu=gpu, docker_base_url=engine.base_url)

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.start()

    assert f"refused to start the container for artcritic-comfyui-{gpu}" in failed.value.reason
    assert "/nonexistent/bin/entrypoint" in failed.value.reason
    assert f"docker logs artcritic-comfyui-{gpu}" in failed.value.next_action
    assert not driver.is_running()


def test_a_container_of_that_name_artcritic_did_not_create_is_left_alone(
    engine: RunningEngine, gpu: str
) -> None:
    client = docker.DockerClient(base_url=engine.base_url, version="auto")
    stranger = client.containers.create("vllm/vllm-openai", name=f"artcritic-critic-{gpu}")
    profile = docker_profile(
        "critic",
        image="vllm/vllm-openai",
        url="http://critic:8000",
        container_name="artcritic-critic-{gpu}",
        command=[],
    )
    driver = driver_for("critic", profile, gpu=gpu, docker_base_url=engine.base_url)

    with pytest.raises(RuntimeUnavailable, match="artcritic did not create it") as failed:
        driver.start()

    assert f"docker rm -f artcritic-critic-{gpu}" in failed.value.next_action
    assert client.containers.get(stranger.id).status == "created"
    client.close()


def test_an_engine_that_does_not_answer_is_a_clear_error(gpu: str) -> None:
    base_url = f"tcp://127.0.0.1:{free_port()}"
    profile = docker_profile(image="artcritic/http-sim", url=f"http://127.0.0.1:{free_port()}")
    driver = driver_for("comfyui", profile, gpu=gpu, docker_base_url=base_url)

    with pytest.raises(RuntimeUnavailable) as failed:
        driver.start()

    assert f"Docker Engine at {base_url} did not answer" in failed.value.reason
    assert "Start Docker" in failed.value.next_action
    assert "Docker Engine not answering" in driver.describe()
