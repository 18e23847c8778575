"""HTTP routes of the simulated ComfyUI (``server.py``'s PromptServer), each also under ``/api``.

Shapes and status codes follow the real server, including its failures: a body that is
not JSON makes ``await request.json()`` raise, and aiohttp answers 500 ``text/plain``
"500 Internal Server Error\n\nServer got itself in trouble" (recorded from ComfyUI
0.3.64); only the simulator's own /_sim routes answer 400 with a typed error.
"""

from __future__ import annotations

import json
import mimetypes
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from artcritic.sim.comfy_models import FOLDERS
from artcritic.sim.comfy_nodes import node_info
from artcritic.sim.comfy_state import FAULT_NAMES
from artcritic.sim.comfy_validate import error_make, prompt_id_valid, prompt_validate

if TYPE_CHECKING:
    from artcritic.sim.comfyui import SimComfyServer

Handler = Any


def _bad(kind: str, message: str, details: str = "") -> web.HTTPBadRequest:
    """A 400 with ComfyUI's error shape, to raise."""
    body = {"error": error_make(kind, message, details), "node_errors": {}}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The sim-only routes' body: a JSON object, or a typed 400."""
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad("invalid_json", "Request body is not valid JSON", str(exc)) from None
    if not isinstance(data, dict):
        raise _bad("invalid_json", "Request body must be a JSON object", type(data).__name__)
    return data


async def _real_json(request: web.Request) -> Any:
    """``await request.json()`` as server.py calls it: a malformed body raises (→ 500)."""
    return await request.json()


def _as_mapping(data: Any) -> dict[str, Any]:
    """The real handlers test keys with ``in`` and read them with ``[]``.

    A list or string passes ``in`` (nothing is found); any other JSON value raises
    TypeError there, which aiohttp turns into 500, as the real server does.
    """
    if isinstance(data, dict):
        return data
    if isinstance(data, list | str):
        return {}
    raise TypeError(f"argument of type {type(data).__name__!r} is not iterable")


def _number(server: SimComfyServer, data: dict[str, Any]) -> float:
    """Queue priority: the given number, else the next counter value (negated for front)."""
    if "number" in data:
        try:
            return float(data["number"])
        except (TypeError, ValueError):
            raise _bad("invalid_number", "number must be a number", repr(data["number"])) from None
    number = -server.number if data.get("front") else server.number
    server.number += 1
    return number


def _prompt_id(server: SimComfyServer, data: dict[str, Any]) -> str:
    prompt_id = data.get("prompt_id")
    if prompt_id is None:
        return str(uuid.uuid4())
    if server.version == "0.3.64":
        return str(prompt_id)  # str(json_data.get("prompt_id", uuid.uuid4())): any value
    if not prompt_id_valid(prompt_id):
        raise _bad(
            "invalid_prompt_id",
            "prompt_id must be a valid UUID",
            "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
            "omit it to let the server generate one",
        )
    return str(prompt_id)


def _prompt_shape_error(prompt: object) -> str | None:
    if not isinstance(prompt, dict):
        return f"prompt must be an object of nodes, not {type(prompt).__name__}"
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            return f"node {node_id!r} must be an object, not {type(node).__name__}"
        if "inputs" in node and not isinstance(node["inputs"], dict):
            return f"node {node_id!r}: inputs must be an object"
    return None


def routes_make(server: SimComfyServer) -> web.RouteTableDef:  # noqa: PLR0915 - one table
    """Every route of the simulated server, bound to ``server``."""
    routes = web.RouteTableDef()
    rt, queue = server.rt, server.queue

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        return web.Response(
            text="<h1>ComfyUI (SIMULATED by artcritic)</h1>", content_type="text/html"
        )

    @routes.get("/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        return await server.websocket(request)

    @routes.get("/prompt")
    async def prompt_get(request: web.Request) -> web.Response:
        return web.json_response(server.queue_info())

    @routes.post("/prompt")
    async def prompt_post(request: web.Request) -> web.Response:
        data = _as_mapping(await _real_json(request))
        number = _number(server, data)
        if "prompt" not in data:
            raise _bad("no_prompt", "No prompt provided", "No prompt provided")
        prompt = data["prompt"]
        prompt_id = _prompt_id(server, data)
        shape = _prompt_shape_error(prompt)
        if shape is not None:
            raise _bad("invalid_prompt", "prompt is not an API-format workflow", shape)
        extra = data.get("extra_data", {})
        if not isinstance(extra, dict):
            raise _bad("invalid_extra_data", "extra_data must be an object")
        partial = data.get("partial_execution_targets")
        valid = prompt_validate(
            prompt,
            server.specs,
            partial if isinstance(partial, list) else None,
            legacy_unknown_node=server.version == "0.3.64",
        )
        if "client_id" in data:
            extra["client_id"] = data["client_id"]
        if not valid.ok:
            body = {"error": valid.error, "node_errors": valid.node_errors}
            return web.json_response(body, status=400)
        extra["create_time"] = int(time.time() * 1000)
        queue.put([number, prompt_id, prompt, extra, valid.good_outputs])
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": valid.node_errors}
        )

    @routes.get("/queue")
    async def queue_get(request: web.Request) -> web.Response:
        running, pending = queue.current()
        return web.json_response({"queue_running": running, "queue_pending": pending})

    @routes.post("/queue")
    async def queue_post(request: web.Request) -> web.Response:
        data = _as_mapping(await _real_json(request))
        if data.get("clear"):
            queue.wipe()
        for prompt_id in data.get("delete", []) or []:
            queue.delete(str(prompt_id))
        return web.Response(status=200)

    @routes.post("/interrupt")
    async def interrupt(request: web.Request) -> web.Response:
        # Like the real server: an unreadable body means a global interrupt.
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if not prompt_id or queue.is_running(str(prompt_id)):
            rt.interrupt.set()
        return web.Response(status=200)

    @routes.post("/free")
    async def free(request: web.Request) -> web.Response:
        data = await _real_json(request)
        if not isinstance(data, dict):
            # json_data.get(...) on a list or string: AttributeError, a 500 in the real server.
            raise TypeError(f"{type(data).__name__!r} object has no attribute 'get'")
        for flag in ("unload_models", "free_memory"):
            if data.get(flag):
                queue.set_flag(flag, bool(data[flag]))
        return web.Response(status=200)

    @routes.get("/history")
    async def history_all(request: web.Request) -> web.Response:
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query.get("offset", "-1"))
        except ValueError as exc:
            raise _bad("invalid_query", "max_items and offset must be integers", str(exc)) from None
        return web.json_response(queue.history_get(max_items=max_items, offset=offset))

    @routes.get("/history/{prompt_id}")
    async def history_one(request: web.Request) -> web.Response:
        return web.json_response(queue.history_get(prompt_id=request.match_info["prompt_id"]))

    @routes.post("/history")
    async def history_post(request: web.Request) -> web.Response:
        data = _as_mapping(await _real_json(request))
        if data.get("clear"):
            queue.history_wipe()
        for prompt_id in data.get("delete", []) or []:
            queue.history_delete(str(prompt_id))
        return web.Response(status=200)

    @routes.get("/view")
    async def view(request: web.Request) -> web.StreamResponse:
        return view_file(server, request)

    @routes.get("/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return web.json_response(server_stats(server))

    @routes.get("/features")
    async def features(request: web.Request) -> web.Response:
        return web.json_response(server.feature_flags())

    @routes.get("/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return web.json_response({name: node_info(spec) for name, spec in server.specs.items()})

    @routes.get("/object_info/{node_class}")
    async def object_info_one(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        spec = server.specs.get(name)
        return web.json_response({name: node_info(spec)} if spec else {})

    @routes.get("/models")
    async def models(request: web.Request) -> web.Response:
        return web.json_response(list(FOLDERS))

    @routes.get("/models/{folder}")
    async def models_folder(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in FOLDERS:
            return web.Response(status=404)
        return web.json_response(server.catalog.listing(folder))

    @routes.get("/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response([])

    @routes.post("/_sim/fault")
    async def sim_fault(request: web.Request) -> web.Response:
        data = await _json_object(request)
        name, on = data.get("name"), data.get("on", True)
        if name not in FAULT_NAMES or not isinstance(on, bool):
            raise _bad("invalid_fault", f"name must be one of {list(FAULT_NAMES)}, on a boolean")
        rt.faults.set(str(name), on)
        return web.json_response({"faults": rt.faults.names()})

    @routes.get("/_sim/faults")
    async def sim_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": rt.faults.names()})

    return routes


def server_stats(server: SimComfyServer) -> dict[str, Any]:
    """``/system_stats`` with the simulated GPU's memory, and a clear simulated marker.

    With ``--cpu`` it is shaped as ComfyUI 0.3.64 on ``--cpu`` answers: one device named
    and typed "cpu", index null, whose ``vram_*`` and ``torch_vram_*`` figures are the
    host's RAM (model_management.get_total_memory / get_free_memory for a CPU device).
    """
    snap = server.rt.gpu.snapshot()
    resident = server.rt.residency.resident_bytes()
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    free_pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    device: dict[str, Any] = {
        "name": f"cuda:0 Simulated GPU {snap.name} ({server.rt.profile.name}) : native",
        "type": "cuda",
        "index": 0,
        "vram_total": snap.total,
        "vram_free": snap.free,
        "torch_vram_total": resident,
        "torch_vram_free": 0,
    }
    if server.cpu:
        device = {
            "name": "cpu",
            "type": "cpu",
            "index": None,
            "vram_total": pages,
            "vram_free": free_pages,
            "torch_vram_total": pages,
            "torch_vram_free": free_pages,
        }
    return {
        "system": {
            "os": sys.platform,
            "ram_total": pages,
            "ram_free": free_pages,
            "comfyui_version": f"{server.version}-sim",
            "python_version": sys.version,
            "pytorch_version": "2.8.0+simulated",
            "embedded_python": False,
            "argv": sys.argv,
            "simulated": True,
            "simulated_gpu": snap.name,
            "platform": platform.platform(),
        },
        "devices": [device],
    }


def _annotated(name: str) -> tuple[str, str | None]:
    for kind in ("output", "input", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, None


def view_file(server: SimComfyServer, request: web.Request) -> web.StreamResponse:
    """``GET /view``: 400 on ``..`` or absolute names, 403 on subfolder escape, 404 if missing."""
    if "filename" not in request.query:
        return web.Response(status=404)
    filename, annotated = _annotated(request.query["filename"])
    if not filename or filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    kind = annotated or request.query.get("type", "output")
    base = server.dirs.get(kind)
    if base is None:
        return web.Response(status=400)
    folder = base
    if "subfolder" in request.query:
        folder = Path(os.path.abspath(base / request.query["subfolder"]))
        if os.path.commonpath((str(folder), str(base))) != str(base):
            return web.Response(status=403)
    path = folder / os.path.basename(filename)
    if not path.is_file():
        return web.Response(status=404)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "Content-Disposition": f'filename="{path.name}"',
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(path, headers=headers)
