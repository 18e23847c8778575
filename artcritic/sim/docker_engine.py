"""A small Docker Engine API simulator, enough for the docker driver and the docker SDK.

It answers the endpoints the SDK calls to create, start, inspect, list, stop,
wait for, read the logs of and remove containers, and to inspect images, under
the ``/v<api>`` prefix the SDK sends (and without it). It records every create
payload so tests can check device requests, labels, command and environment.
An image may be mapped to a local command, its entrypoint: starting a container
of that image runs ``entrypoint + Cmd`` as a local process with the container's
environment, so a docker-driver test can bring up a simulated ComfyUI through
the Docker API and see it healthy.

    python -m artcritic.sim docker-engine --host 127.0.0.1 --port 2375 \\
        --image 'artcritic/comfyui-sim={python} -m artcritic.sim comfyui' --image vllm/vllm-openai
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import struct
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "27.0.0-artcritic-sim"
NAME_PATTERN = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"


def image_key(name: str) -> str:
    """Canonical image reference: no docker.io/library prefix, ':latest' when untagged."""
    for prefix in ("docker.io/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        name += ":latest"
    return name


def image_id(name: str) -> str:
    return "sha256:" + hashlib.sha256(image_key(name).encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _exit_status(returncode: int) -> int:
    # Docker reports death by signal N as 128 + N, as a shell does.
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class SimContainer:
    """One simulated container and, when its image is mapped, its local process."""

    id: str
    name: str
    config: dict[str, Any]
    created: str = field(default_factory=_now)
    status: str = "created"
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    process: asyncio.subprocess.Process | None = None
    output: list[tuple[int, bytes]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    @property
    def pid(self) -> int:
        return self.process.pid if self.process and self.status == "running" else 0

    def inspect(self) -> dict[str, Any]:
        running = self.status == "running"
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": (self.config.get("Cmd") or [""])[0],
            "Args": (self.config.get("Cmd") or [])[1:],
            "Name": "/" + self.name,
            "Image": image_id(self.config.get("Image", "")),
            "RestartCount": 0,
            "State": {
                "Status": self.status,
                "Running": running,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": self.pid,
                "ExitCode": self.exit_code,
                "Error": self.error,
                "StartedAt": self.started_at,
                "FinishedAt": self.finished_at,
            },
            "Config": {
                "Image": self.config.get("Image", ""),
                "Cmd": self.config.get("Cmd"),
                "Entrypoint": self.config.get("Entrypoint"),
                "Env": self.config.get("Env") or [],
                "Labels": self.labels,
                "Tty": bool(self.config.get("Tty")),
            },
            "HostConfig": self.config.get("HostConfig") or {},
            "NetworkSettings": {
                "Networks": (self.config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
            },
        }

    def summary(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": self.config.get("Image", ""),
            "ImageID": image_id(self.config.get("Image", "")),
            "Command": shlex.join(self.config.get("Cmd") or []),
            "Created": 0,
            "State": self.status,
            "Status": self.status,
            "Labels": self.labels,
        }


class DockerEngineSim:
    """The engine's state: known images (with optional local entrypoints) and containers."""

    def __init__(self, images: Mapping[str, Sequence[str] | None]) -> None:
        self.images = {image_key(k): list(v) if v else None for k, v in images.items()}
        self.containers: dict[str, SimContainer] = {}
        self.creates: list[dict[str, Any]] = []
        self.requests: list[str] = []

    # -- lookups -----------------------------------------------------------------------

    def find(self, ref: str) -> SimContainer | None:
        """A container by id, name or unique id prefix, as the engine resolves them."""
        ref = ref.lstrip("/")
        if ref in self.containers:
            return self.containers[ref]
        for container in self.containers.values():
            if container.name == ref:
                return container
        matches = [c for c in self.containers.values() if c.id.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def has_image(self, ref: str) -> bool:
        return image_key(ref) in self.images or any(image_id(n) == ref for n in self.images)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, container: SimContainer) -> None:
        """Run the mapped entrypoint + Cmd as a local process group; else just 'running'."""
        container.ended = asyncio.Event()
        container.output = []
        container.status, container.exit_code, container.error = "running", 0, ""
        container.started_at, container.finished_at = _now(), ZERO_TIME
        entrypoint = self.images.get(image_key(container.config.get("Image", "")))
        if entrypoint is None:
            return
        argv = [sys.executable if a == "{python}" else a for a in entrypoint]
        argv += list(container.config.get("Cmd") or [])
        env = dict(os.environ)
        env.update(e.split("=", 1) for e in container.config.get("Env") or [] if "=" in e)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            container.status, container.exit_code = "exited", 127
            container.error = f'exec: "{argv[0]}": {exc.strerror}'
            container.finished_at = _now()
            container.ended.set()
            raise
        container.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        container.readers = [
            asyncio.create_task(_read_lines(process.stdout, 1, container.output)),
            asyncio.create_task(_read_lines(process.stderr, 2, container.output)),
        ]
        asyncio.create_task(self._watch(container, process))  # noqa: RUF006 - ends with the process

    async def _watch(self, container: SimContainer, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        await asyncio.gather(*container.readers, return_exceptions=True)
        if container.process is process:
            container.status, container.exit_code = "exited", _exit_status(returncode)
            container.finished_at = _now()
            container.ended.set()

    async def stop(self, container: SimContainer, grace_s: float) -> None:
        """SIGTERM the process group, SIGKILL after ``grace_s``, as `docker stop` does."""
        process = container.process
        if process is None or process.returncode is not None:
            container.status, container.finished_at = "exited", _now()
            container.ended.set()
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(container.ended.wait(), grace_s)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await container.ended.wait()

    async def shutdown(self) -> None:
        """Kill every container process: the engine must not leave orphans behind."""
        for container in list(self.containers.values()):
            if container.status == "running":
                await self.stop(container, grace_s=0)


async def _read_lines(
    stream: asyncio.StreamReader, kind: int, into: list[tuple[int, bytes]]
) -> None:
    while line := await stream.readline():
        into.append((kind, line))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


# -- HTTP ------------------------------------------------------------------------------


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _no_such_container(ref: str) -> web.Response:
    return _error(404, f"No such container: {ref}")


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    return default if raw is None else raw.lower() in {"1", "true", "yes"}


def _engine(request: web.Request) -> DockerEngineSim:
    return request.app[ENGINE_KEY]


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers={"Api-Version": API_VERSION})


async def version(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
            "Arch": "amd64",
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION}],
        }
    )


async def image_inspect(request: web.Request) -> web.Response:
    ref = request.match_info["name"]
    if not _engine(request).has_image(ref):
        return _error(404, f"No such image: {ref}")
    return web.json_response(
        {"Id": image_id(ref), "RepoTags": [image_key(ref)], "Size": 0, "Config": {}}
    )


async def container_create(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = request.query.get("name") or f"sim_{uuid.uuid4().hex[:8]}"
    if not NAME_PATTERN.match(name):
        return _error(
            400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    config: dict[str, Any] = await request.json()
    engine.creates.append({"name": name, **config})
    image = str(config.get("Image", ""))
    if not engine.has_image(image):
        return _error(404, f"No such image: {image}")
    existing = engine.find(name)
    if existing is not None and existing.name == name.lstrip("/"):
        return _error(
            409,
            f'Conflict. The container name "/{existing.name}" is already in use by container '
            f'"{existing.id}". You have to remove (or rename) that container to be able to '
            "reuse that name.",
        )
    container = SimContainer(
        id=uuid.uuid4().hex + uuid.uuid4().hex, name=name.lstrip("/"), config=config
    )
    engine.containers[container.id] = container
    return web.json_response({"Id": container.id, "Warnings": []}, status=201)


async def container_inspect(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    container = _engine(request).find(ref)
    if container is None:
        return _no_such_container(ref)
    return web.json_response(container.inspect())


async def container_start(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    container = _engine(request).find(ref)
    if container is None:
        return _no_such_container(ref)
    if container.status == "running":
        return web.Response(status=304)
    try:
        await _engine(request).start(container)
    except OSError:
        return _error(
            400,
            "failed to create task for container: OCI runtime create failed: "
            f"{container.error}: unknown",
        )
    return web.Response(status=204)


async def container_stop(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    container = _engine(request).find(ref)
    if container is None:
        return _no_such_container(ref)
    if container.status != "running":
        return web.Response(status=304)
    await _engine(request).stop(container, float(request.query.get("t", "10")))
    return web.Response(status=204)


async def container_wait(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    container = _engine(request).find(ref)
    if container is None:
        return _no_such_container(ref)
    if container.status == "running":
        await container.ended.wait()
    return web.json_response({"StatusCode": container.exit_code, "Error": None})


async def container_delete(request: web.Request) -> web.Response:
    engine = _engine(request)
    ref = request.match_info["id"]
    container = engine.find(ref)
    if container is None:
        return _no_such_container(ref)
    if container.status == "running":
        if not _flag(request, "force"):
            return _error(
                409,
                f"You cannot remove a running container {container.id}. Stop the container "
                "before attempting removal or force remove",
            )
        await engine.stop(container, grace_s=0)
    del engine.containers[container.id]
    return web.Response(status=204)


def _matches(container: SimContainer, filters: Mapping[str, Sequence[str]]) -> bool:
    for label in filters.get("label", []):
        key, _, value = label.partition("=")
        if key not in container.labels or ("=" in label and container.labels[key] != value):
            return False
    if any(n.lstrip("/") not in container.name for n in filters.get("name", [])):
        return False
    statuses = filters.get("status", [])
    if statuses and container.status not in statuses:
        return False
    return all(container.id.startswith(i) for i in filters.get("id", []))


async def container_list(request: web.Request) -> web.Response:
    raw = request.query.get("filters")
    filters: dict[str, list[str]] = {}
    if raw:
        decoded = json.loads(raw)
        # Old clients send {"label": {"a=b": true}}; new ones {"label": ["a=b"]}.
        filters = {k: list(v) for k, v in decoded.items()}
    show_all = _flag(request, "all")
    found = [
        c.summary()
        for c in _engine(request).containers.values()
        if (show_all or c.status == "running") and _matches(c, filters)
    ]
    return web.json_response(found)


async def container_logs(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    container = _engine(request).find(ref)
    if container is None:
        return _no_such_container(ref)
    wanted = {1} if _flag(request, "stdout") else set()
    wanted |= {2} if _flag(request, "stderr") else set()
    lines = [(kind, line) for kind, line in list(container.output) if kind in wanted]
    tail = request.query.get("tail", "all")
    if tail != "all" and tail.isdigit():
        lines = lines[-int(tail) :] if int(tail) else []
    if container.config.get("Tty"):
        return web.Response(
            body=b"".join(line for _, line in lines),
            content_type="application/vnd.docker.raw-stream",
        )
    # Multiplexed stream: [stream, 0, 0, 0, big-endian uint32 size] before each chunk.
    body = b"".join(struct.pack(">BxxxL", kind, len(line)) + line for kind, line in lines)
    return web.Response(body=body, content_type="application/vnd.docker.multiplexed-stream")


async def sim_creates(request: web.Request) -> web.Response:
    """Every create payload received, oldest first (for tests of a separate engine process)."""
    return web.json_response(_engine(request).creates)


@web.middleware
async def _record(request: web.Request, handler: Any) -> web.StreamResponse:
    _engine(request).requests.append(f"{request.method} {request.path}")
    response: web.StreamResponse = await handler(request)
    return response


ENGINE_KEY = web.AppKey("engine", DockerEngineSim)
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/images/{name:.+}/json", image_inspect),
    ("POST", "/containers/create", container_create),
    ("GET", "/containers/json", container_list),
    ("GET", "/containers/{id}/json", container_inspect),
    ("POST", "/containers/{id}/start", container_start),
    ("POST", "/containers/{id}/stop", container_stop),
    ("POST", "/containers/{id}/wait", container_wait),
    ("GET", "/containers/{id}/logs", container_logs),
    ("DELETE", "/containers/{id}", container_delete),
]


def engine_app(engine: DockerEngineSim) -> web.Application:
    """The aiohttp application serving ``engine`` with and without the /v<api> prefix."""
    app = web.Application(middlewares=[_record])
    app[ENGINE_KEY] = engine
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{api_version:[0-9.]+}" + path, handler)
    app.router.add_get("/_sim/creates", sim_creates)

    async def _shutdown(app: web.Application) -> None:
        await app[ENGINE_KEY].shutdown()

    app.on_shutdown.append(_shutdown)
    return app


# -- running it --------------------------------------------------------------------------


@dataclass
class RunningEngine:
    """An engine serving on a background thread; ``base_url`` is what the docker SDK takes."""

    engine: DockerEngineSim
    base_url: str


@contextlib.contextmanager
def engine_running(
    images: Mapping[str, Sequence[str] | None], *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningEngine]:
    """Serve a simulated engine on a free port in a thread; kill its containers on exit."""
    engine = DockerEngineSim(images)
    loop = asyncio.new_event_loop()
    # No access log: the host process's log handlers may point at streams closed under us.
    runner = web.AppRunner(engine_app(engine), access_log=None)
    address: list[str] = []

    async def serve() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        address.append(f"tcp://{bound_host}:{bound_port}")

    thread = threading.Thread(target=loop.run_forever, name="docker-engine-sim", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=30)
    try:
        yield RunningEngine(engine=engine, base_url=address[0])
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def parse_image_option(option: str) -> tuple[str, list[str] | None]:
    """'NAME=ENTRYPOINT' → (NAME, argv); a bare 'NAME' is an image with no local command."""
    name, sep, command = option.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"--image {option!r}: the image name is empty")
    return name, shlex.split(command) if sep and command.strip() else None


def main(argv: list[str] | None = None) -> int:
    """Serve the simulator until interrupted; print the base URL once it listens."""
    parser = argparse.ArgumentParser(
        prog="python -m artcritic.sim docker-engine",
        description="Docker Engine API simulator for artcritic's docker driver.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2375, help="0 picks a free port")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        type=parse_image_option,
        metavar="NAME[=ENTRYPOINT]",
        help="an image the engine has; with =ENTRYPOINT (shell words, {python} allowed) its "
        "containers run that command plus their Cmd as a local process",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    engine = DockerEngineSim(dict(args.image))

    async def serve() -> None:
        runner = web.AppRunner(engine_app(engine))
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        sys.stdout.write(f"docker-engine simulator listening on tcp://{bound_host}:{bound_port}\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
