"""The simulated Critic's dev-mode routes (sleep, wake, reload) and its sim-only fault switch.

vLLM attaches /sleep, /wake_up and /is_sleeping only with VLLM_SERVER_DEV_MODE=1
(and they work only with --enable-sleep-mode); /_sim/* exist only here.
"""

from __future__ import annotations

import logging

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
        return dead_response()
    if "tags" in request.query:
        return ApiError(
            400, "The simulator supports level-based sleep only (?level=1|2)."
        ).response()
    level = request.query.get("level", "1")
    if level not in ("1", "2"):
        return ApiError(
            400, f"The simulator supports sleep levels 1 and 2, not {level!r}."
        ).response()
    await sim_sleep_async(cfg.profile.durations.critic_sleep)
    freed = engine.sleep(int(level))
    log.info(
        "Sleep mode freed %s GiB memory, %s GiB memory is still in use.",
        gib(freed),
        gib(CONTEXT_BYTES),
    )
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
        return dead_response()
    await sim_sleep_async(cfg.profile.durations.critic_wake * slow_factor(engine))
    try:
        engine.wake_up(tags or None)
    except SimOutOfMemory as exc:
        log.critical("EngineCore died while waking up: %s", engine.dead)
        return ApiError(
            500, f"torch.OutOfMemoryError: CUDA out of memory. {exc}", "InternalServerError"
        ).response()
    return web.Response(status=200)


async def is_sleeping(request: web.Request) -> web.Response:
    """GET /is_sleeping: {"is_sleeping": bool}."""
    engine = request.app[ENGINE]
    if engine.dead:
        return dead_response()
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
        return dead_response()
    try:
        engine.reload_weights()
    except RuntimeError as exc:
        return ApiError(500, str(exc), "InternalServerError").response()
    await sim_sleep_async(cfg.profile.durations.critic_wake)
    return web.json_response({"results": [None]})


async def reset_prefix_cache(request: web.Request) -> web.Response:
    """POST /reset_prefix_cache: forget cached prefixes."""
    engine = request.app[ENGINE]
    if engine.dead:
        return dead_response()
    engine.prefix_seen.clear()
    return web.Response(status=200)


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
