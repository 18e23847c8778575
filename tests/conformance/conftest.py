"""Targets of the conformance suite: the simulators always, real servers when named.

Every protocol case runs twice: against the simulator (started here, always) and against
a real server when ``ARTCRITIC_REAL_COMFYUI_URL`` / ``ARTCRITIC_REAL_CRITIC_URL`` name one.
Without them the real leg is skipped with the reason printed (pytest -ra) — the only skip
this suite has. README "Runtime conformance" says how to run it against a GPU box.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from artcritic.sim.gpu import SimGpu
from tests.simproc import start_sim

COMFY_ENV = "ARTCRITIC_REAL_COMFYUI_URL"
CRITIC_ENV = "ARTCRITIC_REAL_CRITIC_URL"
CRITIC_MODEL_ENV = "ARTCRITIC_REAL_CRITIC_MODEL"
# Consent to sleep and wake a real Critic once (it frees and re-takes its GPU memory).
CRITIC_SLEEP_ENV = "ARTCRITIC_REAL_CRITIC_SLEEP"
SIM_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
LEGS = ["simulator", "real"]


@dataclass(frozen=True)
class Target:
    """One server under test: where it is, whether it is the simulator, what it serves."""

    url: str
    leg: str
    model: str = ""
    may_sleep: bool = False

    @property
    def simulated(self) -> bool:
        return self.leg == "simulator"


def _real(env: str, what: str) -> str:
    url = os.environ.get(env, "").strip().rstrip("/")
    if not url:
        pytest.skip(
            f"{env} is not set: the real-{what} leg of the conformance suite did not run "
            f"(set it to the server's base URL; README 'Runtime conformance')."
        )
    return url


@pytest.fixture(params=LEGS)
def comfy_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """ComfyUI: the 0.3.64-shaped simulator, then the real server if named."""
    if request.param == "real":
        yield Target(_real(COMFY_ENV, "ComfyUI"), "real")
        return
    name = f"conf-{uuid.uuid4().hex[:8]}"
    env = {"ARTCRITIC_SIM_DIR": str(tmp_path), "ARTCRITIC_SIM_TIME_SCALE": "0.01"}
    sim = start_sim("comfyui", "--gpu", name, env=env)
    try:
        yield Target(sim.url, "simulator")
    finally:
        sim.stop()


@pytest.fixture(params=LEGS)
def critic_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """The Critic: the vLLM 0.34-shaped simulator, then the real server if named."""
    if request.param == "real":
        url = _real(CRITIC_ENV, "Critic")
        model = os.environ.get(CRITIC_MODEL_ENV, "").strip()
        if not model:
            cards = requests.get(url + "/v1/models", timeout=30).json()["data"]
            model = cards[0]["id"]
        yield Target(url, "real", model, may_sleep=os.environ.get(CRITIC_SLEEP_ENV) == "1")
        return
    name = f"conf-{uuid.uuid4().hex[:8]}"
    sim_dir = tmp_path / "sim"
    SimGpu(name, root=sim_dir).reset(32 * 10**9)
    env = {
        "ARTCRITIC_SIM_DIR": str(sim_dir),
        "ARTCRITIC_SIM_TIME_SCALE": "0.01",
        "VLLM_SERVER_DEV_MODE": "1",
    }
    flags = (
        "--model", SIM_MODEL, "--gpu-memory-utilization", "0.7", "--max-model-len", "8192",
        "--max-num-seqs", "4", "--enable-sleep-mode",
    )  # fmt: skip
    sim = start_sim("critic", "--gpu", name, *flags, env=env, timeout=60)
    try:
        yield Target(sim.url, "simulator", SIM_MODEL, may_sleep=True)
    finally:
        sim.stop()
