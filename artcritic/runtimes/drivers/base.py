"""The written contract of a runtime driver, the launch spec it works from, and health polling.

A driver starts and stops one heavy runtime (ComfyUI or the Critic) of one GPU.
The coordinator talks to every driver through ``RuntimeDriver`` only; which
kind it got (docker, process, external) matters to it just through
``can_start``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlparse

import requests

from artcritic.runtimes.errors import RuntimeFailure, RuntimeUnavailable

DriverKind = Literal["docker", "process", "external"]
RuntimeKey = Literal["comfyui", "critic"]

HEALTH_POLL_S = 0.2
# One health request must never eat the whole start timeout of a slow runtime.
HEALTH_REQUEST_TIMEOUT_S = 2.0


class RuntimeNotStoppable(RuntimeFailure):
    """The driver cannot stop this runtime (it was started outside artcritic)."""

    default_next_action = "Stop or restart the runtime yourself where it was started."


class RuntimeDriver(Protocol):
    """Starts, stops and health-checks one runtime of one GPU."""

    @property
    def kind(self) -> DriverKind:
        """Which driver this is: "docker", "process" or "external"."""
        ...

    @property
    def can_start(self) -> bool:
        """False for external runtimes: they can only be freed, slept, woken and checked."""
        ...

    @property
    def url(self) -> str:
        """Base URL the runtime answers on (no trailing slash)."""
        ...

    def fingerprint(self) -> str:
        """sha256 of the exact settings this driver would start the runtime with."""
        ...

    def running_fingerprint(self) -> str | None:
        """Fingerprint of the runtime running now, if the driver started it; else None."""
        ...

    def start(self) -> None:
        """Start the runtime; a no-op if it already runs with this fingerprint."""
        ...

    def stop(self, timeout: float = 30) -> None:
        """Stop the runtime (graceful, then forced after ``timeout``); a no-op if stopped."""
        ...

    def is_running(self) -> bool:
        """Whether the process/container we started is alive (not whether it is healthy)."""
        ...

    def wait_healthy(self, timeout: float) -> None:
        """Poll url + health_path until 200; raise RuntimeUnavailable on timeout or exit."""
        ...

    def logs_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the runtime's output ("" when there are none)."""
        ...

    def describe(self) -> str:
        """One line for people: kind, what runs, where, and the last thing the driver did."""
        ...


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a driver needs, already formatted from the profile: no placeholders left."""

    runtime: RuntimeKey
    gpu: str
    kind: DriverKind
    url: str
    health_path: str
    argv: tuple[str, ...] = ()
    image: str = ""
    container_name: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    gpu_device_ids: tuple[str, ...] = ()
    docker_network: str = ""
    start_timeout_s: float = 300.0

    @property
    def health_url(self) -> str:
        return self.url.rstrip("/") + "/" + self.health_path.lstrip("/")

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    def fingerprint(self) -> str:
        """sha256 over what decides how the runtime behaves once started."""
        material = {
            "runtime": self.runtime,
            "kind": self.kind,
            "url": self.url,
            "argv": list(self.argv),
            "image": self.image,
            "env": dict(sorted(self.env.items())),
            "gpu_device_ids": list(self.gpu_device_ids),
            "docker_network": self.docker_network,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def health_status(url: str) -> int | None:
    """HTTP status of one GET, or None when nothing answered."""
    try:
        response = requests.get(url, timeout=HEALTH_REQUEST_TIMEOUT_S)
    except requests.RequestException:
        return None
    response.close()
    return response.status_code


def poll_healthy(
    spec: LaunchSpec,
    timeout: float,
    *,
    exit_code: Callable[[], int | Literal["gone"] | None],
    logs_tail: Callable[[], str] | None,
    what: str,
) -> None:
    """Poll the health URL until 200; fail fast when ``exit_code`` reports the runtime ended.

    ``exit_code`` returns None while the runtime lives, its exit code once it has ended,
    or "gone" when it ended with an exit code nobody can know (not our child).
    ``logs_tail`` is None where the driver has no logs (external runtimes).
    """
    started = time.monotonic()
    last_status: int | None = None
    while True:
        last_status = health_status(spec.health_url)
        if last_status == 200:
            return
        ended = exit_code()
        waited = time.monotonic() - started
        if ended is not None:
            code = "an unknown code" if ended == "gone" else f"code {ended}"
            raise RuntimeUnavailable(
                f"{spec.runtime} on {spec.gpu} ({what}) exited with {code} after "
                f"{waited:.1f} s, before {spec.health_url} answered." + _tail_text(logs_tail),
                f"Read the log above, fix the cause (model files, port {spec.port} in use, "
                "GPU memory), then re-run the job.",
            )
        if waited >= timeout:
            answer = "no answer" if last_status is None else f"HTTP {last_status}"
            raise RuntimeUnavailable(
                f"{spec.runtime} on {spec.gpu} ({what}) was not healthy after {waited:.1f} s "
                f"(limit {timeout:g} s): {spec.health_url} gave {answer}." + _tail_text(logs_tail),
                "If it is still loading, raise the profile's start_timeout_s; otherwise read "
                "the log and fix the runtime, then re-run the job.",
            )
        time.sleep(min(HEALTH_POLL_S, max(0.0, timeout - waited)))


def _tail_text(logs_tail: Callable[[], str] | None) -> str:
    if logs_tail is None:
        return ""
    tail = logs_tail().strip()
    return f"\nLast log lines:\n{tail}" if tail else "\nIt wrote no log output."


def last_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``."""
    if lines <= 0:
        return ""
    return "\n".join(text.splitlines()[-lines:])
