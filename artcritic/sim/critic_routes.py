"""The simulated Critic's routes: /health, /version, /v1/models, chat, /tokenize, /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid

from aiohttp import web

from artcritic.gpu.budget import KV_BLOCK_TOKENS
from artcritic.runtimes.critic_tokens import vision_grid_for_model
from artcritic.sim.clock import scaled
from artcritic.sim.critic_answer import (
    CHARS_PER_TOKEN,
    PROSE_SHAPE,
    Seeds,
    broken_schema_answer,
    garbage_answer,
    prompt_words,
    prose_answer,
    schema_answer,
    scrambled_answer,
    text_tokens,
)
from artcritic.sim.critic_config import CONFIG, ENGINE, SLOTS, Config, dead_response, json_body
from artcritic.sim.critic_engine import (
    DEAD_CLIENT_MESSAGE,
    ENGINE_DEAD_MESSAGE,
    PAUSED_MESSAGE,
    Engine,
)
from artcritic.sim.critic_request import ApiError, ChatRequest, chat_request_parse, messages_read

log = logging.getLogger("artcritic.sim.critic")
# Per-request latency grows by this share for every other sequence in the batch (decode is
# memory-bound: a batch of 4 costs a forward pass little more than 1 does).
BATCH_SLOWDOWN = 0.04
SLOW_REVIEW_FACTOR = 100.0  # fault slow_review: long enough to sleep or pause it midway


async def health(request: web.Request) -> web.Response:
    """200 with an empty body while the engine lives, 503 once it is dead."""
    return web.Response(status=503 if request.app[ENGINE].dead else 200)


async def version(request: web.Request) -> web.Response:
    """GET /version: the reproduced release with a local tag, as vLLM builds print theirs."""
    return web.json_response({"version": f"{request.app[CONFIG].vllm_version}+sim"})


async def tokenize(request: web.Request) -> web.Response:
    """POST /tokenize with ``messages``: the count the chat route would use, as vLLM answers."""
    cfg = request.app[CONFIG]
    try:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        if "prompt" in body and isinstance(body["prompt"], str):
            count = text_tokens(body["prompt"])
        else:
            count = messages_read(body, vision_grid_for_model(cfg.model)).tokens
    except ApiError as exc:
        return exc.response()
    # The simulated tokenizer has no real ids; the count is what clients read.
    return web.json_response(
        {"count": count, "max_model_len": cfg.max_model_len, "tokens": [], "token_strs": None}
    )


async def models(request: web.Request) -> web.Response:
    """The served model names with their max_model_len."""
    cfg = request.app[CONFIG]
    now = int(time.time())
    cards = [
        {
            "id": name,
            "object": "model",
            "created": now,
            "owned_by": "vllm",
            "root": cfg.model,
            "parent": None,
            "max_model_len": cfg.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": now,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        for name in cfg.served
    ]
    return web.json_response({"object": "list", "data": cards})


def _sampling_key(req: ChatRequest) -> bytes:
    if req.temperature == 0:
        return b"greedy"  # greedy decoding ignores the seed
    if req.seed is not None:
        return f"seed:{req.seed}:{req.temperature}".encode()
    return os.urandom(16)  # sampling without a seed is not reproducible, as in vLLM


def _answer(engine: Engine, req: ChatRequest) -> tuple[str, str]:
    """The model's text and finish_reason before the token limit is applied."""
    if not engine.weights_valid:
        return scrambled_answer(req.constrained, req.max_tokens), "length"
    seeds = Seeds(req.images[0] if req.images else None, req.text, _sampling_key(req))
    words = prompt_words(req.text)
    schema = req.schema if req.schema is not None else PROSE_SHAPE
    if "garbage_output" in engine.faults:
        return garbage_answer(seeds), "stop"
    if "invalid_json_schema" in engine.faults:
        return broken_schema_answer(schema, seeds, words), "stop"
    if req.choices is not None:
        content = req.choices[seeds.number(("choice",)) % len(req.choices)]
    elif req.schema is not None or req.json_object:
        content = schema_answer(schema, seeds, words)
    else:
        content = prose_answer(seeds, words)
    if "truncate" in engine.faults:
        return content[: len(content) // 2], "length"
    return content, "stop"


async def _aborted_while_waiting(engine: Engine, seconds: float) -> bool:
    """Wait ``seconds`` of simulated time; True when a sleep or pause aborted the request."""
    epoch = engine.abort_epoch
    deadline = asyncio.get_running_loop().time() + scaled(seconds)
    while True:
        if engine.abort_epoch != epoch or engine.dead:
            return True
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return False
        await asyncio.sleep(min(left, 0.02))


async def _run(cfg: Config, engine: Engine, req: ChatRequest) -> tuple[str, str, int]:
    if "hang" in engine.faults:
        await asyncio.Event().wait()  # never answers; the client's timeout must fire
    if "crash_mid_run" in engine.faults:
        await _aborted_while_waiting(engine, cfg.profile.durations.critic_review / 2)
        log.critical("EngineCore died mid-request (fault crash_mid_run); the server exits")
        logging.shutdown()
        os._exit(1)  # no cleanup: the simulated driver reaps our VRAM as for a dead process
    slow = SLOW_REVIEW_FACTOR if "slow_review" in engine.faults else 1.0
    # Continuous batching: sequences share each forward pass, so one review takes a little
    # longer for every other one running beside it, while the batch's throughput rises.
    batch = 1.0 + BATCH_SLOWDOWN * max(0, engine.counters.running - 1)
    seconds = cfg.profile.durations.critic_review * slow * batch
    aborted = await _aborted_while_waiting(engine, seconds)
    if engine.dead:
        dead = DEAD_CLIENT_MESSAGE if cfg.v034 else ENGINE_DEAD_MESSAGE
        raise ApiError(500, dead, "InternalServerError")
    if aborted:
        if cfg.v034:
            # v1/engine/core.py: /sleep (mode=abort) finishes running requests as aborted.
            return "", "abort", 0
        raise ApiError(
            500,
            "The request was aborted: the engine was put to sleep (mode=abort).",
            "InternalServerError",
        )
    content, finish = _answer(engine, req)
    tokens = text_tokens(content)
    if tokens > req.max_tokens:
        content, finish, tokens = (
            content[: req.max_tokens * CHARS_PER_TOKEN],
            "length",
            req.max_tokens,
        )
    return content, finish, max(1, tokens)


async def _wait_awake(engine: Engine) -> None:
    """vLLM 0.34 queues a request that reaches a sleeping engine until it is woken."""
    while engine.is_sleeping and not engine.dead:  # noqa: ASYNC110 - the engine is plain state
        await asyncio.sleep(0.02)


def kv_capacity(cfg: Config, engine: Engine) -> int:
    """Tokens the KV cache holds: --num-gpu-blocks-override blocks, else what memory leaves."""
    if cfg.num_gpu_blocks is not None:
        return cfg.num_gpu_blocks * KV_BLOCK_TOKENS
    return max(1, engine.plan.kv_available // engine.plan.kv_bytes_per_token)


async def _kv_wait(cfg: Config, engine: Engine, tokens: int, request_id: str) -> None:
    """Wait until ``tokens`` of KV cache are free (a sequence alone always fits, as vLLM checks
    at start-up); report it as vLLM does when the cache runs out: a preemption warning and
    vllm:num_preemptions_total."""
    counters = engine.counters
    told = False
    while counters.running > 0 and counters.running_tokens + tokens > kv_capacity(cfg, engine):
        if not told:
            told = True
            counters.preemptions += 1
            log.warning(
                "Sequence group %s is preempted by PreemptionMode.RECOMPUTE mode because there "
                "is not enough KV cache space. This can affect the end-to-end performance. "
                "Increase gpu_memory_utilization or tensor_parallel_size to provide more KV "
                "cache memory. total_num_cumulative_preemption=%d",
                request_id,
                counters.preemptions,
            )
        await asyncio.sleep(0.01)


async def _generate(app: web.Application, req: ChatRequest) -> tuple[str, str, int]:
    """Run one request in one of max_num_seqs slots, keeping the gauges honest."""
    cfg, engine, counters = app[CONFIG], app[ENGINE], app[ENGINE].counters
    # Worst case held in KV: the prompt and every answer token it may generate.
    kv_tokens = req.prompt_tokens + req.max_tokens
    counters.waiting += 1
    try:
        await app[SLOTS].acquire()
        try:
            await _kv_wait(cfg, engine, kv_tokens, f"chatcmpl-{id(req):x}")
        except BaseException:
            app[SLOTS].release()
            raise
    finally:
        counters.waiting -= 1
    counters.running += 1
    counters.running_tokens += kv_tokens
    if counters.running == 1:
        engine.busy(True)
    try:
        return await _run(cfg, engine, req)
    finally:
        counters.running -= 1
        counters.running_tokens -= kv_tokens
        if counters.running == 0 and not engine.dead:
            engine.busy(False)
        app[SLOTS].release()


def _count(engine: Engine, req: ChatRequest, finish: str, tokens: int) -> None:
    counters = engine.counters
    counters.prompt_tokens += req.prompt_tokens
    counters.generation_tokens += tokens
    counters.success[finish] = counters.success.get(finish, 0) + 1
    counters.prefix_queries += req.prompt_tokens
    key = hashlib.sha256(req.text.encode("utf-8", "replace")).hexdigest()
    if key in engine.prefix_seen:
        counters.prefix_hits += req.prompt_tokens
    engine.prefix_seen.add(key)


async def chat_completions(request: web.Request) -> web.Response:
    """POST /v1/chat/completions, non-streaming, with structured outputs."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    if engine.dead:
        return dead_response(cfg)
    try:
        req = chat_request_parse(
            await json_body(request),
            served=cfg.served,
            max_model_len=cfg.max_model_len,
            grid=vision_grid_for_model(cfg.model),
            version=cfg.vllm_version,
        )
        if cfg.v034 and engine.paused:
            raise ApiError(503, PAUSED_MESSAGE, "ServiceUnavailableError")
        if engine.is_sleeping and not cfg.v034:
            engine.die(
                "CUDA error: an illegal memory access was encountered "
                "(a request reached the engine while it slept; vLLM issue #15483)"
            )
            log.critical("EngineCore died: %s", engine.dead)
            return dead_response(cfg)
        await _wait_awake(engine)
        if "die_on_request" in engine.faults:
            engine.faults.discard("die_on_request")
            engine.die("EngineCore died while serving a request (simulated fault die_on_request)")
            log.critical("EngineCore died: %s", engine.dead)
        if engine.dead:
            return dead_response(cfg)
        content, finish, tokens = await _generate(request.app, req)
    except ApiError as exc:
        return exc.response()
    _count(engine, req, finish, tokens)
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": cfg.served[0],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "reasoning": None},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        ],
        "usage": {
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": req.prompt_tokens + tokens,
            "prompt_tokens_details": None,
        },
    }
    return web.json_response(body)


def _metric(
    lines: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, float]]
) -> None:
    lines += [f"# HELP vllm:{name} {help_text}", f"# TYPE vllm:{name} {kind}"]
    lines += [f"vllm:{name}{{{labels}}} {value}" for labels, value in samples]


async def metrics(request: web.Request) -> web.Response:
    """A few vllm: gauges and counters in Prometheus text format."""
    cfg, engine = request.app[CONFIG], request.app[ENGINE]
    c = engine.counters
    label = f'engine="0",model_name="{cfg.served[0]}"'
    capacity = kv_capacity(cfg, engine)
    usage = min(1.0, c.running_tokens / capacity) if engine.kv_on_gpu else 0.0
    lines: list[str] = []
    _metric(
        lines,
        "num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        [(label, c.running)],
    )
    _metric(
        lines,
        "num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        [(label, c.waiting)],
    )
    _metric(
        lines,
        "kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        [(label, usage)],
    )
    _metric(
        lines,
        "num_preemptions_total",
        "counter",
        "Cumulative number of preemption from the engine.",
        [(label, c.preemptions)],
    )
    _metric(
        lines,
        "prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        [(label, c.prompt_tokens)],
    )
    _metric(
        lines,
        "generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        [(label, c.generation_tokens)],
    )
    _metric(
        lines,
        "request_success_total",
        "counter",
        "Count of successfully processed requests.",
        [(f'{label},finished_reason="{k}"', v) for k, v in sorted(c.success.items())],
    )
    _metric(
        lines,
        "prefix_cache_queries_total",
        "counter",
        "Prefix cache queries, in tokens.",
        [(label, c.prefix_queries)],
    )
    _metric(
        lines,
        "prefix_cache_hits_total",
        "counter",
        "Prefix cache hits, in tokens.",
        [(label, c.prefix_hits)],
    )
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
