"""The Docker Engine API simulator answers the real docker SDK the way a daemon would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests
from docker.models.containers import Container

from artcritic.runtimes.drivers.process import pid_running
from artcritic.sim.docker_engine import RunningEngine, engine_running, image_key

PY = sys.executable
TALKER = (
    "import sys, time\n"
    "print('to stdout 1'); print('to stdout 2'); print('to stderr', file=sys.stderr)\n"
    "sys.stdout.flush(); sys.stderr.flush()\n"
    "time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)\n"
    "sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)\n"
)
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring SIGTERM', flush=True)\n"
    "time.sleep(120)\n"
)


def wait_for_log(container: Container, text: str, limit_s: float = 30) -> None:
    """Wait until the container has written ``text`` (e.g. a signal handler is installed)."""
    deadline = time.monotonic() + limit_s
    while text not in container.logs().decode():
        assert time.monotonic() < deadline, f"{text!r} never appeared in the logs"
        time.sleep(0.05)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    talker = tmp_path / "talker.py"
    talker.write_text(TALKER)
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(STUBBORN)
    images = {
        "artcritic/talker": [PY, str(talker)],
        "artcritic/stubborn:v1": [PY, str(stubborn)],
        "vllm/vllm-openai:latest": None,
    }
    with engine_running(images) as running:
        yield running


@pytest.fixture
def client(engine: RunningEngine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=engine.base_url, version="auto")
    yield client
    client.close()


def test_the_sdk_negotiates_the_api_version_and_pings(
    engine: RunningEngine, client: docker.DockerClient
) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.45"
    assert client.api.api_version == "1.45"
    # The SDK probes /version unprefixed, then sends /v1.45/... for everything else.
    assert "GET /version" in engine.engine.requests
    client.containers.list()
    assert "GET /v1.45/containers/json" in engine.engine.requests


def test_images_are_found_by_name_with_or_without_tag_and_unknown_ones_are_404(
    client: docker.DockerClient,
) -> None:
    assert client.images.get("artcritic/talker").tags == ["artcritic/talker:latest"]
    assert (
        client.images.get("artcritic/talker:latest").id
        == client.images.get("docker.io/artcritic/talker").id
    )
    with pytest.raises(docker.errors.ImageNotFound, match=r"No such image: ghcr\.io/x/y:1"):
        client.images.get("ghcr.io/x/y:1")
    assert image_key("ubuntu") == "ubuntu:latest"
    assert image_key("localhost:5000/app") == "localhost:5000/app:latest"


def test_create_records_the_payload_and_inspect_returns_it(
    engine: RunningEngine, client: docker.DockerClient
) -> None:
    container = client.containers.create(
        "vllm/vllm-openai:latest",
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct"],
        name="artcritic-critic-g1",
        labels={"artcritic.gpu": "g1", "artcritic.runtime": "critic"},
        environment={"VLLM_SERVER_DEV_MODE": "1"},
        device_requests=[
            docker.types.DeviceRequest(driver="nvidia", device_ids=["0"], capabilities=[["gpu"]])
        ],
    )
    payload = engine.engine.creates[-1]
    assert payload["name"] == "artcritic-critic-g1"
    assert payload["Cmd"] == ["--model", "Qwen/Qwen2.5-VL-7B-Instruct"]
    assert payload["Env"] == ["VLLM_SERVER_DEV_MODE=1"]
    assert payload["HostConfig"]["DeviceRequests"] == [
        {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": ["0"],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    assert container.name == "artcritic-critic-g1"
    assert container.status == "created"
    assert container.labels == {"artcritic.gpu": "g1", "artcritic.runtime": "critic"}
    assert client.containers.get(container.id[:12]).name == "artcritic-critic-g1"
    # Over HTTP too, for an engine running in another process.
    recorded = requests.get(
        engine.base_url.replace("tcp://", "http://") + "/_sim/creates", timeout=5
    )
    assert recorded.json()[-1]["name"] == "artcritic-critic-g1"


def test_a_second_container_with_the_same_name_is_a_conflict(client: docker.DockerClient) -> None:
    client.containers.create("vllm/vllm-openai", name="twice")
    with pytest.raises(docker.errors.APIError, match="already in use") as raised:
        client.containers.create("vllm/vllm-openai", name="twice")
    assert raised.value.status_code == 409


def test_creating_from_an_unknown_image_raises_image_not_found(
    client: docker.DockerClient,
) -> None:
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("nobody/nothing:1", name="never")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("never")


def test_a_mapped_image_runs_its_command_and_its_logs_come_back_multiplexed(
    client: docker.DockerClient,
) -> None:
    container = client.containers.create("artcritic/talker", ["0", "3"], name="talker")
    container.start()
    assert container.wait(timeout=30)["StatusCode"] == 3
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["ExitCode"] == 3
    stdout = container.logs(stdout=True, stderr=False).decode()
    stderr = container.logs(stdout=False, stderr=True).decode()
    assert stdout == "to stdout 1\nto stdout 2\n"
    assert stderr == "to stderr\n"
    assert container.logs(tail=1, stderr=False).decode() == "to stdout 2\n"


def test_list_filters_by_label_and_hides_stopped_containers_unless_all(
    client: docker.DockerClient,
) -> None:
    running = client.containers.create(
        "artcritic/talker", ["60"], name="busy", labels={"artcritic.gpu": "g1"}
    )
    running.start()
    client.containers.create("vllm/vllm-openai", name="idle", labels={"artcritic.gpu": "g2"})
    assert [c.name for c in client.containers.list()] == ["busy"]
    assert sorted(c.name for c in client.containers.list(all=True)) == ["busy", "idle"]
    only_g2 = client.containers.list(all=True, filters={"label": "artcritic.gpu=g2"})
    assert [c.name for c in only_g2] == ["idle"]
    assert client.containers.list(all=True, filters={"label": "artcritic.gpu=g3"}) == []
    running.stop(timeout=5)


def test_stop_terms_then_kills_a_process_that_ignores_sigterm(
    client: docker.DockerClient,
) -> None:
    container = client.containers.create("artcritic/stubborn:v1", name="stubborn")
    container.start()
    wait_for_log(container, "ignoring SIGTERM")
    container.reload()
    pid = container.attrs["State"]["Pid"]
    assert pid_running(pid)
    container.stop(timeout=1)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 128 + signal.SIGKILL
    assert not pid_running(pid)


def test_a_running_container_is_only_removed_with_force(client: docker.DockerClient) -> None:
    container = client.containers.create("artcritic/talker", ["60"], name="keep")
    container.start()
    container.reload()
    pid = container.attrs["State"]["Pid"]
    with pytest.raises(docker.errors.APIError, match="cannot remove a running container"):
        container.remove()
    assert pid_running(pid)
    container.remove(force=True)
    assert not pid_running(pid)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("keep")


def test_the_engine_runs_as_its_own_process_and_kills_its_containers_on_sigterm(
    tmp_path: Path,
) -> None:
    talker = tmp_path / "talker.py"
    talker.write_text(TALKER)
    engine = subprocess.Popen(
        [
            PY,
            "-m",
            "artcritic.sim",
            "docker-engine",
            "--port",
            "0",
            "--image",
            f"artcritic/talker={PY} {talker}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert engine.stdout is not None
        line = engine.stdout.readline()
        match = re.search(r"listening on (tcp://127\.0\.0\.1:\d+)", line)
        assert match, line
        client = docker.DockerClient(base_url=match.group(1), version="auto")
        container = client.containers.create("artcritic/talker", ["120"], name="orphan-check")
        container.start()
        container.reload()
        pid = container.attrs["State"]["Pid"]
        assert pid_running(pid)
        client.close()
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
        assert not pid_running(pid)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


def test_the_engine_cli_refuses_an_image_option_without_a_name() -> None:
    result = subprocess.run(
        [PY, "-m", "artcritic.sim", "docker-engine", "--image", "=python x"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "the image name is empty" in result.stderr
