"""The simulated Critic's dev-mode routes (sleep, wake, pause, reload) and its fault switch.

vLLM attaches /sleep, /wake_up and /is_sleeping only with VLLM_SERVER_DEV_MODE=1
(and they work only with --enable-sleep-mode); /_sim/* exist only here. Answers follow
the reproduced version: vLLM 0.34.0 answers /sleep with ``{"status", "level"}``,
/wake_up with ``{"status": "awake"|"sleeping", "tags"}`` and /reset_prefix_cache with
``{"success": bool}`` (``entrypoints/serve/dev/sleep/api_router.py``,
``entrypoints/serve/dev/cache/api_router.py``); older versions answer an empty 200.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from artcritic.sim.clock import sim_sleep_async
from artcritic.sim.critic_config import CONFIG, ENGINE, dead_response, json_body, slow_factor
from artcritic.sim.critic_engine import CONTEXT_BYTES, FAULTS, gib
from artcritic.sim.critic_request import ApiError
from artcritic.sim.gpu import SimOutOfMemory

log = logging.getLogger("artcritic.sim.critic")


async def sleep(request: web.Request) -> web.Response:
    """POST /sleep?level=1|2: free weights and KV cache, keep the CUDA context."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    if engine.dead:
        return dead_response(cfg)
    if "tags" in request.query:
        return ApiError(
            400, "The simulator supports level-based sleep only (?level=1|2)."
        ).response()
    level = request.query.get("level", "1")
    if level not in ("1", "2"):
        return ApiError(
            400, f"The simulator supports sleep levels 1 and 2, not {level!r}."
        ).response()
    engine.abort_epoch += 1  # mode=abort: running requests end now, before memory is freed
    await sim_sleep_async(cfg.profile.durations.critic_sleep)
    freed = engine.sleep(int(level))
    log.info(
        "Sleep mode freed %s GiB memory, %s GiB memory is still in use.",
        gib(freed),
        gib(CONTEXT_BYTES),
    )
    if cfg.v034:
        return web.json_response({"status": "sleeping", "level": int(level)})
    return web.Response(status=200)


async def wake_up(request: web.Request) -> web.Response:
    """POST /wake_up[?tags=weights|kv_cache]: re-take the memory; may run out of it."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    tags = request.query.getall("tags", [])
    unknown = sorted(set(tags) - {"weights", "kv_cache"})
    if unknown:
        return ApiError(
            400, f"Unknown wake-up tags {unknown}; use weights and/or kv_cache."
        ).response()
    if engine.dead:
        return dead_response(cfg)
    await sim_sleep_async(cfg.profile.durations.critic_wake * slow_factor(engine))
    try:
        engine.wake_up(tags or None)
    except SimOutOfMemory as exc:
        log.critical("EngineCore died while waking up: %s", engine.dead)
        return ApiError(
            500, f"torch.OutOfMemoryError: CUDA out of memory. {exc}", "InternalServerError"
        ).response()
    if cfg.v034:
        status = "sleeping" if engine.is_sleeping else "awake"
        return web.json_response({"status": status, "tags": tags or None})
    return web.Response(status=200)


async def is_sleeping(request: web.Request) -> web.Response:
    """GET /is_sleeping: {"is_sleeping": bool}."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    if engine.dead:
        return dead_response(cfg)
    return web.json_response({"is_sleeping": engine.is_sleeping})


async def collective_rpc(request: web.Request) -> web.Response:
    """POST /collective_rpc {"method": "reload_weights"}: the step after a level-2 wake."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    try:
        body = await json_body(request)
    except ApiError as exc:
        return exc.response()
    method = body.get("method") if isinstance(body, dict) else None
    if method != "reload_weights":
        return ApiError(
            400, f"The simulator implements collective_rpc 'reload_weights' only, not {method!r}."
        ).response()
    if engine.dead:
        return dead_response(cfg)
    try:
        engine.reload_weights()
    except RuntimeError as exc:
        return ApiError(500, str(exc), "InternalServerError").response()
    await sim_sleep_async(cfg.profile.durations.critic_wake)
    return web.json_response({"results": [None]})


async def reset_prefix_cache(request: web.Request) -> web.Response:
    """POST /reset_prefix_cache: forget cached prefixes (fault prefix_reset_fails: cannot)."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    if engine.dead:
        return dead_response(cfg)
    success = "prefix_reset_fails" not in engine.faults
    if success:
        engine.prefix_seen.clear()
    if cfg.v034:
        return web.json_response({"success": success})
    return web.Response(status=200 if success else 500)


async def pause(request: web.Request) -> web.Response:
    """POST /pause (vLLM 0.34 dev mode): new requests get 503 "Generation is paused"."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    if engine.dead:
        return dead_response(cfg)
    mode = request.query.get("mode", "abort")
    if mode not in ("abort", "wait", "keep"):
        return web.json_response({"error": f"Invalid pause mode: {mode}"}, status=400)
    if mode == "abort":
        engine.abort_epoch += 1
    engine.paused = mode != "keep"
    return web.json_response({"status": "paused"})


async def resume(request: web.Request) -> web.Response:
    """POST /resume: accept requests again."""
    engine = request.app[ENGINE]
    engine.paused = False
    return web.json_response({"status": "resumed"})


# -- simulator-only routes ------------------------------------------------------------------


async def sim_fault(request: web.Request) -> web.Response:
    """POST /_sim/fault {"name": fault, "on": bool}: switch a fault on or off."""
    engine = request.app[ENGINE]
    try:
        body = await json_body(request)
    except ApiError as exc:
        return exc.response()
    if (
        not isinstance(body, dict)
        or body.get("name") not in FAULTS
        or not isinstance(body.get("on"), bool)
    ):
        return ApiError(
            400, f"Send {{'name': one of {list(FAULTS)}, 'on': true|false}}."
        ).response()
    if body["name"] == "engine_dead" and body["on"]:
        # The engine core process dies; the API server stays up, as in vLLM.
        engine.die("EngineCore died (simulated fault engine_dead)")
        log.critical("EngineCore died: %s", engine.dead)
    if body["on"]:
        engine.faults.add(body["name"])
    else:
        engine.faults.discard(body["name"])
    return web.json_response({"faults": sorted(engine.faults)})


async def sim_state(request: web.Request) -> web.Response:
    """GET /_sim/state: the engine's sleep, weights and fault state."""
    engine = request.app[ENGINE]
    return web.json_response(
        {
            "faults": sorted(engine.faults),
            "sleep_level": engine.sleep_level,
            "weights_on_gpu": engine.weights_on_gpu,
            "kv_on_gpu": engine.kv_on_gpu,
            "weights_valid": engine.weights_valid,
            "dead": engine.dead,
            "owner": engine.owner,
        }
    )


# Recorded answers of real servers, replayed once on their route: tests drive the client
# through a real vLLM's exact wording (quoted from its source) over a real socket.
Reply = tuple[int, str, str]
REPLIES = web.AppKey("replies", dict[str, list[Reply]])


@web.middleware
async def replay_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer the next request on a path with a queued recorded reply, if one is queued."""
    queued = request.app[REPLIES].get(request.path)
    if queued:
        status, body, content_type = queued.pop(0)
        return web.Response(status=status, text=body, content_type=content_type)
    response: web.StreamResponse = await handler(request)
    return response


async def sim_reply(request: web.Request) -> web.Response:
    """POST /_sim/reply {"path", "status", "json"|"text"}: queue one recorded answer."""
    try:
        body = await json_body(request)
    except ApiError as exc:
        return exc.response()
    if not isinstance(body, dict) or not isinstance(body.get("path"), str):
        return ApiError(400, "Send {'path': str, 'status': int, 'json' or 'text'}.").response()
    status = body.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return ApiError(400, "status must be an HTTP status code").response()
    if "json" in body:
        reply: Reply = (status, json.dumps(body["json"]), "application/json")
    elif isinstance(body.get("text"), str):
        reply = (status, body["text"], "text/plain")
    else:
        return ApiError(400, "Send the recorded body as 'json' or 'text'.").response()
    request.app[REPLIES].setdefault(body["path"], []).append(reply)
    return web.json_response({"queued": len(request.app[REPLIES][body["path"]])})
