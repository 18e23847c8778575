"""The docker driver: one container per runtime and GPU, over the Docker Engine API.

The container is named per GPU (the profile's ``container_name`` with ``{gpu}``)
and labelled with the GPU, the runtime and the settings fingerprint, so a later
worker recognises its own containers and replaces one started with other
settings. Images are never pulled implicitly: a multi-gigabyte download is an
admin's decision, so a missing image is an error that says which pull to run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import DeviceRequest

from artcritic.runtimes.drivers.base import DriverKind, LaunchSpec, last_lines, poll_healthy
from artcritic.runtimes.errors import RuntimeUnavailable

log = logging.getLogger(__name__)

LABEL_GPU = "artcritic.gpu"
LABEL_RUNTIME = "artcritic.runtime"
LABEL_FINGERPRINT = "artcritic.fingerprint"
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ENDED = {"exited", "dead"}


class DockerDriver:
    """Creates, starts, stops and removes the runtime's container."""

    def __init__(
        self, spec: LaunchSpec, *, base_url: str | None = None, api_timeout: float = 60
    ) -> None:
        if not spec.image:
            raise ValueError(f"docker driver for {spec.runtime} needs an image")
        if not spec.container_name:
            raise ValueError(f"docker driver for {spec.runtime} needs a container name")
        self.spec = spec
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL
        self.api_timeout = api_timeout
        # The last few things the driver did, for describe(): a replacement must stay visible.
        self.actions: deque[str] = deque(maxlen=4)
        self._client: docker.DockerClient | None = None
        # Output of a container this driver removed, so logs_tail still explains a stop.
        self._last_logs = ""

    # -- the contract ------------------------------------------------------------------

    @property
    def kind(self) -> DriverKind:
        return "docker"

    @property
    def can_start(self) -> bool:
        return True

    @property
    def url(self) -> str:
        return self.spec.url.rstrip("/")

    def fingerprint(self) -> str:
        return self.spec.fingerprint()

    def running_fingerprint(self) -> str | None:
        container = self._container()
        if container is None or container.status != "running":
            return None
        return container.labels.get(LABEL_FINGERPRINT)

    def start(self) -> None:
        """Create (or re-create, when stale) and start the container; no-op if it runs."""
        container = self._container()
        if container is not None:
            container = self._keep_or_remove(container)
        if container is not None and container.status == "running":
            self._note(f"container {self.spec.container_name} already running; left as is")
            return
        if container is None:
            self._require_image()
            container = self._create()
        with self._api("start the container"):
            container.start()
        self._note(f"started container {self.spec.container_name}")

    def stop(self, timeout: float = 30) -> None:
        """Stop the container (SIGTERM, SIGKILL after ``timeout``) and remove it."""
        container = self._container()
        if container is None:
            self._note("stop: no container")
            return
        self._last_logs = self._logs(container)
        with self._api("stop the container"), contextlib.suppress(docker.errors.NotFound):
            container.stop(timeout=math.ceil(timeout))
            container.reload()
            code = container.attrs["State"].get("ExitCode")
            container.remove(force=True)
            self._note(f"stopped and removed container {self.spec.container_name} (exit {code})")

    def is_running(self) -> bool:
        container = self._container()
        return container is not None and container.status == "running"

    def wait_healthy(self, timeout: float) -> None:
        if self._container() is None:
            raise RuntimeUnavailable(
                f"{self.spec.runtime} on {self.spec.gpu} is not running (no container "
                f"{self.spec.container_name}).",
                "Start it first; the coordinator does this when a job needs it.",
            )
        poll_healthy(
            self.spec,
            timeout,
            exit_code=self._exit_code,
            logs_tail=lambda: self.logs_tail(20),
            what=f"container {self.spec.container_name}",
        )
        self._note(f"container {self.spec.container_name} healthy at {self.spec.health_url}")

    def logs_tail(self, lines: int = 40) -> str:
        container = self._container()
        text = self._logs(container, lines) if container is not None else self._last_logs
        return last_lines(text, lines)

    def describe(self) -> str:
        # describe() feeds error messages and status pages: it must not raise itself.
        try:
            container = self._container()
            state = container.status if container is not None else "absent"
        except RuntimeUnavailable:
            state = "unknown: Docker Engine not answering"
        return (
            f"docker container {self.spec.container_name} ({state}), image {self.spec.image} "
            f"→ {self.url} via {self.base_url}; recent: {' → '.join(self.actions) or 'nothing yet'}"
        )

    # -- containers --------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            with self._api("connect"):
                self._client = docker.DockerClient(
                    base_url=self.base_url, version="auto", timeout=int(self.api_timeout)
                )
        return self._client

    def _container(self) -> Container | None:
        with self._api("look up the container"):
            try:
                return self.client.containers.get(self.spec.container_name)
            except docker.errors.NotFound:
                return None

    def _keep_or_remove(self, container: Container) -> Container | None:
        """Keep our container if its settings match; remove it if stale; refuse a stranger."""
        labels = container.labels
        if labels.get(LABEL_RUNTIME) != self.spec.runtime or labels.get(LABEL_GPU) != self.spec.gpu:
            raise RuntimeUnavailable(
                f"A container named {self.spec.container_name} exists but artcritic did not "
                f"create it for {self.spec.runtime} on {self.spec.gpu} (labels {labels}).",
                f"Remove or rename it (`docker rm -f {self.spec.container_name}`) if it is not "
                "needed, or change container_name in the profile.",
            )
        found = labels.get(LABEL_FINGERPRINT, "")
        if found == self.fingerprint():
            return container
        self._last_logs = self._logs(container)
        with self._api("remove the stale container"):
            container.remove(force=True)
        self._note(
            f"removed stale container {self.spec.container_name} (fingerprint {found[:12]} ≠ "
            f"{self.fingerprint()[:12]}: started with other settings); re-creating it"
        )
        return None

    def _require_image(self) -> None:
        image = self.spec.image
        with self._api(f"inspect image {image}"):
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                raise RuntimeUnavailable(
                    f"Cannot start {self.spec.runtime} on {self.spec.gpu}: image {image} not "
                    f"present on the Docker host at {self.base_url}; docker pull {image}",
                    f"Run `docker pull {image}` on the GPU host (artcritic never pulls images "
                    "by itself), then re-run the job.",
                ) from None

    def _create(self) -> Container:
        spec = self.spec
        kwargs: dict[str, Any] = {
            "name": spec.container_name,
            "labels": {
                LABEL_GPU: spec.gpu,
                LABEL_RUNTIME: spec.runtime,
                LABEL_FINGERPRINT: self.fingerprint(),
            },
            "environment": dict(spec.env),
            "device_requests": [_device_request(spec.gpu_device_ids)],
            "restart_policy": {"Name": "no"},
        }
        if spec.docker_network:
            kwargs["network"] = spec.docker_network
            if spec.host and spec.host not in LOOPBACK:
                # The runtime URL names a host (e.g. "comfyui"): make that name resolve.
                kwargs["networking_config"] = {
                    spec.docker_network: self.client.api.create_endpoint_config(aliases=[spec.host])
                }
        if spec.host in LOOPBACK:
            # Published on loopback only: runtime endpoints are never exposed beyond the host.
            kwargs["ports"] = {f"{spec.port}/tcp": (spec.host, spec.port)}
        with self._api("create the container"):
            container = self.client.containers.create(spec.image, list(spec.argv) or None, **kwargs)
        self._note(f"created container {spec.container_name}")
        return container

    def _exit_code(self) -> int | Literal["gone"] | None:
        container = self._container()
        if container is None:
            return "gone"
        if container.status not in ENDED:
            return None
        state = container.attrs["State"]
        return int(state.get("ExitCode", -1))

    def _logs(self, container: Container, lines: int = 200) -> str:
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            raw = container.logs(stdout=True, stderr=True, tail=lines)
            return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else ""
        return ""

    @contextlib.contextmanager
    def _api(self, action: str) -> Iterator[None]:
        """Turn Docker SDK and transport failures into RuntimeUnavailable with the reason."""
        try:
            yield
        except docker.errors.APIError as exc:
            raise RuntimeUnavailable(
                f"Docker Engine at {self.base_url} refused to {action} for "
                f"{self.spec.container_name}: {exc.explanation or exc}",
                "Read the message; `docker ps -a` and `docker logs "
                f"{self.spec.container_name}` show the container's state.",
            ) from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(
                f"Docker Engine at {self.base_url} did not answer while trying to {action}: {exc}",
                "Start Docker on the GPU host, or point DOCKER_HOST / the worker's docker URL "
                "at a running engine.",
            ) from exc

    def _note(self, action: str) -> None:
        self.actions.append(action)
        log.info("%s/%s: %s", self.spec.gpu, self.spec.runtime, action)


def _device_request(device_ids: tuple[str, ...]) -> DeviceRequest:
    """The GPUs handed to the container: the given NVML ids, else all (compose's `count: all`)."""
    if device_ids:
        return DeviceRequest(driver="nvidia", device_ids=list(device_ids), capabilities=[["gpu"]])
    return DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])
