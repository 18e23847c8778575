"""The simulated Critic's settings: ``vllm serve``-style flags checked against the profile."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from artcritic.gpu.budget import KV_BLOCK_TOKENS
from artcritic.gpu.profiles import Profile, ProfileError, profile_read
from artcritic.sim.critic_engine import (
    DEAD_CLIENT_MESSAGE,
    ENGINE_DEAD_MESSAGE,
    FAULTS,
    Engine,
    StartupRefused,
)
from artcritic.sim.critic_request import ApiError

DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "sim-32gb.toml"
SLOW_START_FACTOR = 10.0  # fault slow_start: start, load, warm and wake take ten times longer
# The vLLM versions whose answers the simulator reproduces (each differs in its wordings and
# in what a request to a sleeping engine does); the default is the newest checked one.
VLLM_VERSIONS = ("0.11.0", "0.16.0", "0.34.0")
DEFAULT_VLLM_VERSION = "0.34.0"


def version_tuple(version: str) -> tuple[int, ...]:
    """"0.34.0" → (0, 34, 0)."""
    return tuple(int(part) for part in version.split(".")[:3])


@dataclass(frozen=True)
class Config:
    """The server's settings, from ``vllm serve``-style flags and the profile."""

    host: str
    port: int
    gpu: str
    model: str
    served: list[str]
    utilization: float
    max_model_len: int
    max_num_seqs: int
    sleep_mode: bool
    enforce_eager: bool
    dev_mode: bool
    profile: Profile
    faults: frozenset[str]
    vllm_version: str = DEFAULT_VLLM_VERSION
    # vLLM's --num-gpu-blocks-override: the KV cache in 16-token blocks instead of what the
    # memory profile leaves (how a test or benchmark makes KV space run out).
    num_gpu_blocks: int | None = None

    @property
    def v034(self) -> bool:
        """vLLM 0.34's behaviour: pause answers 503, sleep queues requests, dead is generic."""
        return version_tuple(self.vllm_version) >= (0, 34)


CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", Engine)
SLOTS = web.AppKey("slots", asyncio.Semaphore)


def parser_make() -> argparse.ArgumentParser:
    """The ``vllm serve``-style command line."""
    parser = argparse.ArgumentParser(
        prog="artcritic.sim critic",
        description="Simulated vLLM OpenAI-compatible server (the Critic).",
    )
    parser.add_argument("model_tag", nargs="?", help="the model, as in `vllm serve MODEL`")
    parser.add_argument("--model", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--gpu", default="sim0", help="simulated GPU name (artcritic.sim.gpu)")
    parser.add_argument("--served-model-name", nargs="+", default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.92)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--enable-sleep-mode", action="store_true")
    parser.add_argument("--num-gpu-blocks-override", type=int, default=None)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument(
        "--enable-chunked-prefill", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument("--profile", default=str(DEFAULT_PROFILE), help="hardware profile TOML")
    parser.add_argument("--fault", action="append", default=[], choices=FAULTS)
    parser.add_argument(
        "--vllm-version",
        default=DEFAULT_VLLM_VERSION,
        choices=VLLM_VERSIONS,
        help="whose answers to reproduce (wordings, sleep and dead-engine behaviour)",
    )
    return parser


def config_from(args: argparse.Namespace) -> Config:
    """Check the flags against the profile's model card; StartupRefused with vLLM-like text."""
    try:
        profile, _ = profile_read(Path(args.profile))
    except ProfileError as exc:
        raise StartupRefused(f"cannot read the simulator's profile: {exc}") from None
    model = args.model or args.model_tag
    if not model:
        raise StartupRefused("error: a model is required (vllm serve MODEL or --model MODEL)")
    if model != profile.critic.model:
        raise StartupRefused(
            f"OSError: {model} is not a model this simulator knows; its profile "
            f"{args.profile} describes {profile.critic.model}."
        )
    limit = profile.critic.max_position_embeddings
    max_model_len = args.max_model_len or limit
    if max_model_len > limit:
        raise StartupRefused(
            f"ValueError: User-specified max_model_len ({max_model_len}) is greater than the "
            f"derived max_model_len (max_position_embeddings={limit} in model's config.json)."
        )
    if not 0 < args.gpu_memory_utilization <= 1 or args.max_num_seqs < 1 or max_model_len < 1:
        raise StartupRefused(
            "ValueError: gpu_memory_utilization must be in (0, 1], max_num_seqs and "
            "max_model_len at least 1."
        )
    blocks = args.num_gpu_blocks_override
    if blocks is not None and blocks * KV_BLOCK_TOKENS < max_model_len:
        raise StartupRefused(
            f"ValueError: The model's max seq len ({max_model_len}) is larger than the maximum "
            f"number of tokens that can be stored in KV cache ({blocks * KV_BLOCK_TOKENS}). Try "
            "increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
            "initializing the engine."
        )
    return Config(
        num_gpu_blocks=blocks,
        host=args.host,
        port=args.port,
        gpu=args.gpu,
        model=model,
        served=list(args.served_model_name or [model]),
        utilization=args.gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=args.max_num_seqs,
        sleep_mode=args.enable_sleep_mode,
        enforce_eager=args.enforce_eager,
        dev_mode=os.environ.get("VLLM_SERVER_DEV_MODE") == "1",
        profile=profile,
        faults=frozenset(args.fault),
        vllm_version=args.vllm_version,
    )


def dead_response(cfg: Config) -> web.Response:
    """500 once the engine core died: vLLM 0.34's generic client message, or EngineDeadError."""
    message = DEAD_CLIENT_MESSAGE if cfg.v034 else ENGINE_DEAD_MESSAGE
    return ApiError(500, message, "InternalServerError").response()


async def json_body(request: web.Request) -> object:
    """The request body as JSON, or ApiError 400."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON body: {exc}") from None


def slow_factor(engine: Engine) -> float:
    """How much slower start-up and wake-up run (fault slow_start)."""
    return SLOW_START_FACTOR if "slow_start" in engine.faults else 1.0
