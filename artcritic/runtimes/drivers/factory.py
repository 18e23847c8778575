"""Build a runtime's driver from the active profile: fill the command's placeholders, pick the kind.

Placeholders are Python format fields over a fixed vocabulary (below); a
doubled brace stays a literal brace, so JSON arguments such as
``{{"image": 1}}`` pass through. Anything else is a profile error that names
the runtime, the argument and the placeholders that exist.
"""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from artcritic.gpu.profiles import ComfyRuntime, CriticRuntime, Profile, ProfileError
from artcritic.runtimes.drivers.base import LaunchSpec, RuntimeDriver, RuntimeKey
from artcritic.runtimes.drivers.docker import DockerDriver
from artcritic.runtimes.drivers.external import ExternalDriver
from artcritic.runtimes.drivers.process import ProcessDriver

GPU_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def command_values(runtime_key: RuntimeKey, profile: Profile, *, gpu: str) -> dict[str, str]:
    """The placeholder vocabulary of a runtime's command, as strings."""
    runtime = _runtime(profile, runtime_key)
    probe = LaunchSpec(
        runtime=runtime_key,
        gpu=gpu,
        kind=runtime.driver,
        url=runtime.url,
        health_path=runtime.health_path,
    )
    critic = profile.runtimes.critic
    return {
        "python": sys.executable,
        "host": probe.host,
        "port": str(probe.port),
        "gpu": gpu,
        "model": profile.critic.model,
        "served_model_name": critic.served_model_name or profile.critic.model,
        "gpu_memory_utilization": str(critic.gpu_memory_utilization),
        "max_model_len": str(critic.max_model_len),
        "max_num_seqs": str(critic.max_num_seqs),
    }


def format_template(template: str, values: Mapping[str, str], *, where: str) -> str:
    """Fill ``{name}`` fields from ``values``; unknown or fancy fields are a ProfileError."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ProfileError(
            f"{where}: {exc} in {template!r}; write {{{{ and }}}} for literal braces."
        ) from None
    for _literal, field, spec, conversion in fields:
        if field is None:
            continue
        if field not in values or spec or conversion:
            known = ", ".join("{" + name + "}" for name in sorted(values))
            raise ProfileError(
                f"{where}: unknown placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} in {template!r}. Known placeholders: {known}; "
                "write {{ and }} for literal braces."
            )
    return template.format_map(values)


def launch_spec(
    runtime_key: RuntimeKey,
    profile: Profile,
    *,
    gpu: str,
    env: Mapping[str, str] | None = None,
    gpu_device_ids: Sequence[str] = (),
    docker_network: str = "",
) -> LaunchSpec:
    """Everything the driver needs, formatted from the profile (and fingerprintable)."""
    if not GPU_NAME.match(gpu):
        raise ValueError(f"GPU name {gpu!r} must be a slug (letters, digits, _ . -)")
    runtime = _runtime(profile, runtime_key)
    values = command_values(runtime_key, profile, gpu=gpu)
    where = f"profile {profile.name}: runtimes.{runtime_key}"
    argv = tuple(
        format_template(arg, values, where=f"{where}.command[{i}]")
        for i, arg in enumerate(runtime.command)
    )
    container_name = format_template(
        runtime.container_name or "artcritic-{runtime}-{gpu}",
        {"gpu": gpu, "runtime": runtime_key},
        where=f"{where}.container_name",
    )
    run_env = dict(env or {})
    if isinstance(runtime, CriticRuntime) and runtime.release.startswith("sleep"):
        # vLLM only mounts /sleep, /wake_up and /is_sleeping in dev mode (protocols.md 2.4).
        run_env["VLLM_SERVER_DEV_MODE"] = "1"
    if gpu_device_ids and runtime.driver == "process":
        run_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_device_ids)
    return LaunchSpec(
        runtime=runtime_key,
        gpu=gpu,
        kind=runtime.driver,
        url=runtime.url.rstrip("/"),
        health_path=runtime.health_path,
        argv=argv,
        image=runtime.image,
        container_name=container_name,
        env=run_env,
        gpu_device_ids=tuple(gpu_device_ids),
        docker_network=docker_network if runtime.driver == "docker" else "",
        start_timeout_s=runtime.start_timeout_s,
    )


def driver_for(
    runtime_key: RuntimeKey,
    profile: Profile,
    *,
    gpu: str,
    docker_base_url: str | None = None,
    run_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    gpu_device_ids: Sequence[str] = (),
    docker_network: str = "",
) -> RuntimeDriver:
    """The driver the profile names for ``runtime_key`` on ``gpu``."""
    spec = launch_spec(
        runtime_key,
        profile,
        gpu=gpu,
        env=env,
        gpu_device_ids=gpu_device_ids,
        docker_network=docker_network,
    )
    if spec.kind == "docker":
        return DockerDriver(spec, base_url=docker_base_url)
    if spec.kind == "process":
        return ProcessDriver(spec, run_dir=run_dir)
    return ExternalDriver(spec)


def _runtime(profile: Profile, runtime_key: RuntimeKey) -> ComfyRuntime | CriticRuntime:
    if runtime_key == "comfyui":
        return profile.runtimes.comfyui
    if runtime_key == "critic":
        return profile.runtimes.critic
    raise ValueError(f"unknown runtime {runtime_key!r}; expected 'comfyui' or 'critic'")
