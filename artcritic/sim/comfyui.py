"""A simulated ComfyUI server: the protocol of protocols.md Part 1 on a simulated GPU.

    python -m artcritic.sim comfyui --host 127.0.0.1 --port 8188 --gpu sim0 \\
        [--profile profiles/sim-32gb.toml] [--fault oom] [--preview-method latent2rgb]

aiohttp serves HTTP and the websocket; a worker thread runs prompts, as in the
real server. Model files come from the profile's model table; weights and
activations are allocated on the shared simulated GPU, so a full GPU gives a
real ``torch.OutOfMemoryError`` report. SIGTERM releases its VRAM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from artcritic.gpu.profiles import Profile, profile_read
from artcritic.sim.clock import sim_sleep_async
from artcritic.sim.comfy_exec import Executor, PromptQueue, Worker
from artcritic.sim.comfy_models import catalog_from_profile
from artcritic.sim.comfy_nodes import node_specs
from artcritic.sim.comfy_routes import routes_make
from artcritic.sim.comfy_state import FAULT_NAMES, Faults, Residency, SimRuntime
from artcritic.sim.gpu import SimGpu, sim_dir

log = logging.getLogger("artcritic.sim.comfyui")
ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_PROFILE = ROOT / "profiles" / "sim-32gb.toml"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


# 0.3.64 is the release the client was checked against on a real server; 0.3.68 stands for
# the newer shapes (missing_node_type, prompt ids that must be UUIDs).
COMFYUI_VERSIONS = ("0.3.64", "0.3.68")
DEFAULT_COMFYUI_VERSION = "0.3.64"


class SimComfyServer:
    """State shared by the routes, the websocket publisher and the worker thread."""

    def __init__(self, args: argparse.Namespace, profile: Profile, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.messages: asyncio.Queue[tuple[Any, Any, str | None]] = asyncio.Queue()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.number = 0
        self.version: str = args.comfyui_version
        self.cpu: bool = args.cpu
        self.catalog = catalog_from_profile(profile, without=frozenset(args.without_model))
        self.specs = node_specs(self.catalog)
        # Per-server folders live beside the simulated GPU state and go away on a clean stop.
        sim_dir().mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix=f"comfyui-{args.port}-", dir=sim_dir()))
        base = self.base
        output = Path(args.output_dir).resolve() if args.output_dir else base / "output"
        self.dirs = {"output": output, "temp": base / "temp", "input": base / "input"}
        for folder in self.dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        gpu = SimGpu(args.gpu)
        gpu.ensure(profile.total_bytes)
        owner = f"comfyui@{args.host}:{args.port}"
        default_mode = profile.models[profile.limits.model_modes[0]]
        reference = sum(c.weight_bytes for c in default_mode.components)
        self.rt = SimRuntime(
            profile=profile,
            catalog=self.catalog,
            gpu=gpu,
            owner=owner,
            residency=Residency(gpu, owner, profile.durations, reference),
            faults=Faults(args.fault),
            output_dir=self.dirs["output"],
            temp_dir=self.dirs["temp"],
            preview_method=args.preview_method,
            send=self.send_sync,
        )
        self.queue = PromptQueue(self.queue_updated)
        self.worker = Worker(self.queue, Executor(self.rt))

    # -- messages --------------------------------------------------------------------

    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Queue a message from any thread; one publisher keeps the order."""
        # A RuntimeError means the loop closed while the worker still ran: we are shutting down.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": self.queue_info()})

    def feature_flags(self) -> dict[str, Any]:
        return {"supports_preview_metadata": True, "max_upload_size": 100 * 1024 * 1024}

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self.messages.get()
            if event == "__drop_ws__":
                await self.close_sockets()
                continue
            if event == "__crash__":
                log.critical("crashing mid-run (fault crash_mid_run): the process exits")
                os._exit(70)
            targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
            for ws in targets:
                if ws is None or ws.closed:
                    continue
                try:
                    if isinstance(data, bytes | bytearray):
                        await ws.send_bytes(event.to_bytes(4, "big") + bytes(data))
                    else:
                        await ws.send_json({"type": event, "data": data})
                except (ConnectionError, RuntimeError) as exc:
                    log.warning("send error: %s", exc)

    async def close_sockets(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "") or uuid.uuid4().hex
        self.sockets.pop(sid, None)
        self.sockets[sid] = ws
        try:
            await ws.send_json(
                {"type": "status", "data": {"status": self.queue_info(), "sid": sid}}
            )
            if self.rt.client_id == sid and self.rt.last_node_id is not None:
                await ws.send_json({"type": "executing", "data": {"node": self.rt.last_node_id}})
            first = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    log.warning("Invalid JSON received from client %s", sid)
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data") or {}
                    if isinstance(flags, dict) and flags.get("supports_preview_metadata"):
                        self.rt.preview_metadata_clients.add(sid)
                    await ws.send_json({"type": "feature_flags", "data": self.feature_flags()})
                first = False
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
                self.rt.preview_metadata_clients.discard(sid)
        return ws


@web.middleware
async def origin_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Like ComfyUI without --enable-cors-header: a loopback Host with a foreign Origin is 403."""
    host, origin = request.headers.get("Host", ""), request.headers.get("Origin")
    if origin and urlsplit(f"//{host}").hostname in LOOPBACK and urlsplit(origin).netloc != host:
        return web.Response(status=403)
    response: web.StreamResponse = await handler(request)
    return response


def app_make(server: SimComfyServer) -> web.Application:
    """The aiohttp application; every route is registered plain and under ``/api``."""
    app = web.Application(middlewares=[origin_only], client_max_size=100 * 1024 * 1024)
    routes = routes_make(server)
    api = web.RouteTableDef()
    for route in routes:
        if isinstance(route, web.RouteDef):
            api.route(route.method, "/api" + route.path)(route.handler)
    app.add_routes(api)
    app.add_routes(routes)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m artcritic.sim comfyui", description=__doc__)
    parser.add_argument("--host", "--listen", dest="host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--gpu", required=True, help="simulated GPU name (shared VRAM)")
    parser.add_argument("--profile", default=str(DEFAULT_PROFILE), help="hardware profile TOML")
    parser.add_argument("--fault", action="append", default=[], choices=FAULT_NAMES)
    parser.add_argument("--output-dir", default="", help="where SaveImage writes (default: tmp)")
    parser.add_argument(
        "--preview-method", default="none", choices=("none", "auto", "latent2rgb", "taesd")
    )
    parser.add_argument(
        "--comfyui-version",
        default=DEFAULT_COMFYUI_VERSION,
        choices=COMFYUI_VERSIONS,
        help="whose answers to reproduce: 0.3.64 (checked against a real server) or the newer "
        "0.3.68 shapes (missing_node_type, UUID-only prompt ids)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="report /system_stats as ComfyUI --cpu does: one 'cpu' device whose VRAM is RAM",
    )
    parser.add_argument(
        "--without-model",
        action="append",
        default=[],
        metavar="FILE",
        help="pretend this model file is not installed (repeatable)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, profile: Profile) -> int:
    """Run until SIGTERM/SIGINT; release the simulated VRAM on the way out."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    start = profile.durations.comfyui_start * (10 if "slow_start" in args.fault else 1)
    await sim_sleep_async(start)
    server = SimComfyServer(args, profile, loop)
    runner = web.AppRunner(app_make(server), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error("Port %s is already in use on address %s.", args.port, args.host)
            await runner.cleanup()
            return 1
        raise
    publisher = asyncio.create_task(server.publish_loop())
    server.worker.start()
    log.info("To see the GUI go to: http://%s:%s (SIMULATED ComfyUI)", args.host, args.port)
    try:
        await stop.wait()
    finally:
        server.worker.stopping.set()
        freed = server.rt.residency.unload_all()
        log.info("Stopping: released %d bytes of simulated VRAM", freed)
        publisher.cancel()
        await server.close_sockets()
        await runner.cleanup()
        shutil.rmtree(server.base, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m artcritic.sim comfyui``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    profile, _ = profile_read(Path(args.profile))
    return asyncio.run(serve(args, profile))
