"""Simulated vLLM OpenAI-compatible server for the Critic (protocols.md Part 2).

``python -m artcritic.sim critic --port 18000 --gpu sim0 --model Qwen/Qwen2.5-VL-7B-Instruct
--gpu-memory-utilization 0.7 --max-model-len 8192 --max-num-seqs 4 --enable-sleep-mode``

Start-up mirrors ``vllm serve``: it refuses when the simulated GPU has less free memory than
utilization × total, claims that whole budget, and opens its port only when ready (connects
are refused while it loads). Sleep routes exist with ``VLLM_SERVER_DEV_MODE=1``; only with
``--enable-sleep-mode`` does a sleep free memory. ``--vllm-version`` picks whose answers it
gives (default 0.34.0): under 0.34 a chat request sent while sleeping waits until the engine
is woken, ``/pause`` makes new requests answer 503 "Generation is paused", a sleep aborts
running requests (200, finish_reason abort) and a dead engine answers a generic 500; under
0.11/0.16 a request while sleeping kills the engine (vLLM issue #15483) and the older
wordings are used. /health answers 503 once the engine died. After a level-2 sleep and wake,
answers are garbage until ``collective_rpc reload_weights``. Sim-only routes: ``POST
/_sim/fault {"name", "on"}``, ``GET /_sim/state`` and ``POST /_sim/reply`` (replay one
recorded answer of a real server). SIGTERM releases the simulated VRAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from artcritic.sim.clock import sim_sleep_async, time_scale
from artcritic.sim.critic_config import (
    CONFIG,
    ENGINE,
    SLOTS,
    Config,
    config_from,
    parser_make,
    slow_factor,
)
from artcritic.sim.critic_dev import (
    REPLIES,
    collective_rpc,
    is_sleeping,
    pause,
    replay_middleware,
    reset_prefix_cache,
    resume,
    sim_fault,
    sim_reply,
    sim_state,
    sleep,
    wake_up,
)
from artcritic.sim.critic_engine import (
    Engine,
    StartupRefused,
    free_memory_check,
    gib,
    kv_cache_check,
    memory_plan,
)
from artcritic.sim.critic_routes import (
    chat_completions,
    health,
    metrics,
    models,
    tokenize,
    version,
)
from artcritic.sim.gpu import SimGpu, SimOutOfMemory

EAGER_WARM_FACTOR = 0.25  # --enforce-eager skips torch.compile and CUDA-graph capture
MAX_BODY_BYTES = 64 * 1024**2  # base64 images are large; aiohttp's default is 1 MiB
ACCESS_LOG_FORMAT = '%a - "%r" %s'  # uvicorn's access line, as vLLM prints it
log = logging.getLogger("artcritic.sim.critic")


def app_build(cfg: Config, engine: Engine) -> web.Application:
    """The HTTP app; dev-mode and sleep routes only where vLLM would attach them."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[replay_middleware])
    app[CONFIG], app[ENGINE], app[SLOTS] = cfg, engine, asyncio.Semaphore(cfg.max_num_seqs)
    app[REPLIES] = {}
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_get("/metrics", metrics)
    if cfg.dev_mode:
        app.router.add_post("/collective_rpc", collective_rpc)
        app.router.add_post("/reset_prefix_cache", reset_prefix_cache)
        if cfg.v034:
            app.router.add_post("/pause", pause)
            app.router.add_post("/resume", resume)
        # Attached with dev mode alone, as in vLLM: without --enable-sleep-mode they answer,
        # but a sleep frees nothing (the weights were not allocated in the sleepable pool).
        app.router.add_post("/sleep", sleep)
        app.router.add_post("/wake_up", wake_up)
        app.router.add_get("/is_sleeping", is_sleeping)
    app.router.add_post("/_sim/fault", sim_fault)
    app.router.add_get("/_sim/state", sim_state)
    app.router.add_post("/_sim/reply", sim_reply)
    return app


# -- process ------------------------------------------------------------------------------


async def _start_engine(cfg: Config, engine: Engine) -> None:
    """Start, load and warm with the profile's (scaled) durations, as vLLM does."""
    d, plan, slow = cfg.profile.durations, engine.plan, slow_factor(engine)
    log.info("vLLM API server (simulated) for %s on simulated GPU %s", cfg.model, cfg.gpu)
    await sim_sleep_async(d.critic_start * slow)
    free_memory_check(plan, engine.gpu.snapshot().free)
    try:
        engine.load_context()
        log.info("Starting to load model %s...", cfg.model)
        await sim_sleep_async(d.critic_load * slow)
        engine.load_weights()
        log.info("Model loading took %s GiB", gib(plan.weights))
        kv_cache_check(plan)
        engine.load_kv_cache()
    except SimOutOfMemory as exc:
        raise StartupRefused(f"torch.OutOfMemoryError: CUDA out of memory. {exc}") from None
    log.info("Available KV cache memory: %s GiB", gib(plan.kv_available))
    tokens = plan.kv_available // plan.kv_bytes_per_token
    log.info("GPU KV cache size: %d tokens", tokens)
    log.info(
        "Maximum concurrency for %d tokens per request: %.2fx",
        plan.max_model_len,
        tokens / plan.max_model_len,
    )
    warm = d.critic_warm * (EAGER_WARM_FACTOR if cfg.enforce_eager else 1.0)
    await sim_sleep_async(warm * slow)


async def serve(cfg: Config) -> int:
    """Run until SIGTERM; return the process exit status."""
    gpu = SimGpu(cfg.gpu)
    gpu.ensure(cfg.profile.total_bytes)
    plan = memory_plan(
        cfg.profile.critic,
        total=gpu.snapshot().total,
        utilization=cfg.utilization,
        max_model_len=cfg.max_model_len,
        max_num_seqs=cfg.max_num_seqs,
    )
    engine = Engine(
        gpu=gpu,
        owner=f"critic-{os.getpid()}",
        pid=os.getpid(),
        plan=plan,
        faults=set(cfg.faults),
        sleep_mode=cfg.sleep_mode,
    )
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, task.cancel)
    runner: web.AppRunner | None = None
    try:
        await _start_engine(cfg, engine)
        runner = web.AppRunner(
            app_build(cfg, engine), access_log_format=ACCESS_LOG_FORMAT, shutdown_timeout=1.0
        )
        await runner.setup()
        await web.TCPSite(runner, cfg.host, cfg.port).start()
        log.info("Application startup complete: http://%s:%d", cfg.host, cfg.port)
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if task is not None:
            task.uncancel()
        log.info("Shutting down on a signal.")
    except StartupRefused as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("Cannot listen on %s:%d: %s", cfg.host, cfg.port, exc)
        return 1
    finally:
        freed = engine.release_all()
        log.info("Released %s GiB of simulated VRAM.", gib(freed))
        if runner is not None:
            await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``vllm serve``-style flags and serve; the exit status is returned."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(asctime)s [sim critic] %(message)s",
        stream=sys.stderr,
    )
    args = parser_make().parse_args(argv)
    try:
        time_scale()  # a malformed ARTCRITIC_SIM_TIME_SCALE stops start-up here, loudly
        cfg = config_from(args)
    except (StartupRefused, ValueError) as exc:
        log.error("%s", exc)
        return 1
    return asyncio.run(serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
