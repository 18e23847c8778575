"""compose.yaml: it parses, publishes only the web port, and runs the runtimes as profiled."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from artcritic.gpu.profiles import profile_read
from tests.ops.conftest import DUMMY_SECRETS, ROOT, compose_run

APP_SERVICES = {
    "migrate", "web", "gpu-worker", "gpu-worker-1", "gpu-worker-sim", "default-worker"
}  # fmt: skip


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_config_parses_with_secrets_from_the_environment(
    compose_cmd: list[str], tmp_path: Path
) -> None:
    result = compose_run(compose_cmd, tmp_path, "config", "--quiet", env=DUMMY_SECRETS)
    assert result.returncode == 0, result.stderr


def test_debians_docker_compose_parses_it_too(tmp_path: Path) -> None:
    # The issue names Debian's docker-compose package (1.29): the file avoids v2-only keys.
    binary = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    assert Path(binary).exists(), "install Debian's docker-compose: apt-get install docker-compose"
    result = compose_run([binary], tmp_path, "config", "--quiet", env=DUMMY_SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_the_secret_key(
    compose_cmd: list[str], tmp_path: Path
) -> None:
    secrets = {k: v for k, v in DUMMY_SECRETS.items() if k != "ARTCRITIC_SECRET_KEY"}
    result = compose_run(compose_cmd, tmp_path, "config", "--quiet", env=secrets)
    assert result.returncode != 0
    assert "ARTCRITIC_SECRET_KEY" in result.stderr


def test_no_secret_is_written_in_compose_yaml() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for value in DUMMY_SECRETS.values():
        assert value not in text
    assert "artcritic-dev-secret" not in text
    assert "PASSWORD: ${" in text  # passwords only ever come from variables


def test_only_web_publishes_a_port_and_on_loopback_by_default(compose_config: Any) -> None:
    publishing = {
        name for name, service in compose_config["services"].items() if service.get("ports")
    }
    assert publishing == {"web"}
    (port,) = compose_config["services"]["web"]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    assert port["target"] == 8000


def test_web_bind_address_can_be_overridden(compose_cmd: list[str], tmp_path: Path) -> None:
    env = {**DUMMY_SECRETS, "ARTCRITIC_BIND": "192.0.2.10", "ARTCRITIC_PORT": "9443"}
    result = compose_run(compose_cmd, tmp_path, "config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert '"host_ip": "192.0.2.10"' in result.stdout
    assert '"published": "9443"' in result.stdout


def _nvidia_reservation(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [d for d in devices.get("devices", []) if d.get("driver") == "nvidia"]


def test_real_runtimes_are_in_the_gpu_profile_and_reserve_an_nvidia_gpu(
    compose_config: Any,
) -> None:
    services = compose_config["services"]
    for name in ("comfyui", "critic", "gpu-worker"):
        assert services[name]["profiles"] == ["gpu"], name
        (device,) = _nvidia_reservation(services[name])
        assert device["capabilities"] == ["gpu"]


def test_runtimes_have_protocol_healthchecks(compose_config: Any) -> None:
    services = compose_config["services"]
    assert "/system_stats" in " ".join(services["comfyui"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["critic"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_simulated_runtimes_are_in_the_sim_profile_without_a_gpu(compose_config: Any) -> None:
    services = compose_config["services"]
    for name, runtime in (("comfyui-sim", "comfyui"), ("critic-sim", "critic")):
        service = services[name]
        assert service["profiles"] == ["sim"]
        assert service["command"][:4] == ["python", "-m", "artcritic.sim", runtime]
        # Reachable by the worker over the compose network (which publishes nothing).
        assert _flag(service["command"], "--host") == "0.0.0.0"  # noqa: S104
        assert not _nvidia_reservation(service)
    assert services["gpu-worker-sim"]["profiles"] == ["sim"]
    assert not _nvidia_reservation(services["gpu-worker-sim"])


def test_vllm_flags_match_the_rtx5090_profile(compose_config: Any) -> None:
    critic = compose_config["services"]["critic"]
    profile, _ = profile_read(ROOT / "profiles" / "rtx5090-32gb.toml")
    wanted = profile.runtimes.critic
    command = critic["command"]
    assert critic["image"].startswith("vllm/vllm-openai:")
    assert float(_flag(command, "--gpu-memory-utilization")) == wanted.gpu_memory_utilization
    assert int(_flag(command, "--max-model-len")) == wanted.max_model_len
    assert int(_flag(command, "--max-num-seqs")) == wanted.max_num_seqs
    assert command[0] == profile.critic.model  # `vllm serve MODEL …`
    assert "--enable-sleep-mode" in command
    assert critic["environment"]["VLLM_SERVER_DEV_MODE"] == "1"
    targets = {volume["target"] for volume in critic["volumes"]}
    assert {"/root/.cache/huggingface", "/root/.cache/vllm"} <= targets


def test_gpu_worker_owns_one_queue_one_task_at_a_time(compose_config: Any) -> None:
    services = compose_config["services"]
    for name in ("gpu-worker", "gpu-worker-sim"):
        command = " ".join(services[name]["command"])
        assert "-Q gpu.gpu0 " in command
        assert "--concurrency 1 --prefetch-multiplier 1 --pool solo" in command
    volumes = services["gpu-worker"]["volumes"]
    assert any(v["target"] == "/var/run/docker.sock" for v in volumes)
    assert not any(
        v.get("target") == "/var/run/docker.sock" for v in services["web"].get("volumes", [])
    )


def test_app_services_share_one_image_built_from_this_repository(compose_config: Any) -> None:
    services = compose_config["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"artcritic-app:local"}
    build = services["web"]["build"]
    assert Path(build["context"]) == ROOT
    assert build["dockerfile"] == "artcritic/deploy/Dockerfile"
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    assert "FROM python:3.12-slim" in dockerfile
    assert "collectstatic" in dockerfile
    assert "USER artcritic" in dockerfile  # never root at run time
    for name in APP_SERVICES:
        assert services[name]["environment"]["ARTCRITIC_DEBUG"] == "0"
        assert services[name]["environment"]["S3_ENDPOINT"] == "minio:9000"


def test_state_lives_in_named_volumes_and_buckets_are_created_once(compose_config: Any) -> None:
    services = compose_config["services"]
    assert services["postgres"]["volumes"][0]["source"] == "pgdata"
    assert services["minio"]["volumes"][0]["source"] == "minio"
    init = services["minio-init"]
    assert init["image"].startswith("minio/mc:")
    assert "mc mb --ignore-existing local/artcritic" in " ".join(init["command"])
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"


def test_the_compose_deployment_passes_djangos_deploy_checks(
    compose_config: Any, tmp_path: Path
) -> None:
    # The web service's environment as compose resolves it, run through `check --deploy`
    # here (the check needs no database or network; only the settings are judged).
    environment = {
        name: str(value)
        for name, value in compose_config["services"]["web"]["environment"].items()
        if value is not None
    }
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "artcritic.settings",
        **environment,
        # The image's folders; here the checkout's own.
        "ARTCRITIC_PROFILES_DIR": str(ROOT / "profiles"),
        # A key as the README says to make one (the compose test's stand-in is shorter).
        "ARTCRITIC_SECRET_KEY": secrets.token_urlsafe(48),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_second_gpu_has_its_own_worker_queue_device_and_runtimes(compose_config: Any) -> None:
    services = compose_config["services"]
    first, second = services["gpu-worker"], services["gpu-worker-1"]
    assert second["profiles"] == ["gpu2"]
    assert [d["device_ids"] for d in _nvidia_reservation(first)] == [["0"]]
    assert [d["device_ids"] for d in _nvidia_reservation(second)] == [["1"]]
    command = " ".join(second["command"])
    assert "-Q gpu.gpu1 " in command
    assert "--concurrency 1 --prefetch-multiplier 1 --pool solo" in command
    assert "--activate rtx5090-32gb-compose-gpu1 --gpu gpu1" in command
    assert second["environment"]["ARTCRITIC_GPU"] == "gpu1"
    # External runtimes only: no Docker socket on the second worker.
    assert not any(v.get("target") == "/var/run/docker.sock" for v in second.get("volumes", []))
    for name, twin in (("comfyui-1", "comfyui"), ("critic-1", "critic")):
        runtime = services[name]
        assert runtime["profiles"] == ["gpu2"]
        assert not runtime.get("ports"), f"{name} must never be published"
        assert [d["device_ids"] for d in _nvidia_reservation(runtime)] == [["1"]]
        assert runtime["command"] == services[twin]["command"]
        assert runtime["healthcheck"] == services[twin]["healthcheck"]
    # The second GPU's profile names its own runtimes; everything else is the first's.
    one, _ = profile_read(ROOT / "profiles" / "rtx5090-32gb-compose.toml")
    two, _ = profile_read(ROOT / "profiles" / "rtx5090-32gb-compose-gpu1.toml")
    assert (two.runtimes.comfyui.url, two.runtimes.critic.url) == (
        "http://comfyui-1:8188",
        "http://critic-1:8000",
    )
    assert two.model_dump(exclude={"name", "description", "runtimes"}) == one.model_dump(
        exclude={"name", "description", "runtimes"}
    )
