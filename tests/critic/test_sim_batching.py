"""The simulated Critic batches like vLLM: max-num-seqs at once, the rest wait, KV visibly full."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from artcritic.runtimes.critic import CriticClient, CriticVerdict, ReviewContext
from artcritic.sim.gpu import SimGpu
from tests.sim.test_sim_critic import MODEL, TOTAL, png
from tests.simproc import SimProcess, sim_wait, start_sim

CONTEXT = ReviewContext(
    prompt="a matte teal electric kettle",
    negative="",
    brief="Kitchen appliances",
    taste_notes="calm",
    manufacturability="no undercuts",
)


@pytest.fixture
def critic(tmp_path: Path) -> Iterator[list[SimProcess]]:
    started: list[SimProcess] = []
    yield started
    for proc in started:
        proc.stop(timeout=20)


def launch(
    tmp_path: Path, started: list[SimProcess], *flags: str, ready: bool = True
) -> SimProcess:
    """A simulated Critic at time scale 0.1: a review takes 0.4 s, long enough to overlap."""
    name = f"critic-{uuid.uuid4().hex[:8]}"
    SimGpu(name, root=tmp_path / "sim").reset(TOTAL)
    env = {"ARTCRITIC_SIM_DIR": str(tmp_path / "sim"), "ARTCRITIC_SIM_TIME_SCALE": "0.1"}
    proc = start_sim(
        "critic", "--gpu", name, "--model", MODEL, "--gpu-memory-utilization", "0.7",
        "--max-model-len", "8192", *flags, env=env, wait=False,
    )  # fmt: skip
    started.append(proc)
    if ready:
        sim_wait(proc, timeout=60)
    return proc


def gauges(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=5).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^vllm:(\w+)\{[^}]*\} ([0-9.e+-]+)$", text, flags=re.MULTILINE)
    }


def reviews_at_once(
    url: str, n: int
) -> tuple[list[CriticVerdict | BaseException], dict[str, float]]:
    """Send ``n`` reviews concurrently, sampling /metrics meanwhile; the most of each gauge."""
    client = CriticClient(url, model=MODEL, timeout=60)
    results: list[CriticVerdict | BaseException] = [RuntimeError("not run")] * n
    peak: dict[str, float] = {}
    done = threading.Event()

    def review(i: int) -> None:
        try:
            results[i] = client.review(png(size=(256, 256)), CONTEXT, seed=i)
        except BaseException as exc:  # kept to assert on
            results[i] = exc

    def sample() -> None:
        while not done.is_set():
            for name, value in gauges(url).items():
                peak[name] = max(peak.get(name, 0.0), value)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=review, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    peak.update({f"final_{k}": v for k, v in gauges(url).items()})
    return results, peak


def test_no_more_than_max_num_seqs_run_at_once_and_the_rest_wait(
    tmp_path: Path, critic: list[SimProcess]
) -> None:
    proc = launch(tmp_path, critic, "--max-num-seqs", "2")
    results, peak = reviews_at_once(proc.url, 6)
    assert all(isinstance(r, CriticVerdict) for r in results), results
    assert peak["num_requests_running"] == 2
    assert peak["num_requests_waiting"] >= 1
    assert peak["final_num_requests_running"] == 0
    assert peak["final_num_preemptions_total"] == 0


def test_when_the_kv_cache_runs_out_requests_wait_and_vllm_s_preemption_is_reported(
    tmp_path: Path, critic: list[SimProcess]
) -> None:
    # 600 blocks × 16 = 9,600 tokens: one review (prompt + 4,506 reserved) fits, two do not.
    proc = launch(tmp_path, critic, "--max-num-seqs", "4", "--num-gpu-blocks-override", "600")
    results, peak = reviews_at_once(proc.url, 3)
    assert all(isinstance(r, CriticVerdict) for r in results), results
    assert peak["num_requests_running"] == 1
    assert peak["final_num_preemptions_total"] >= 1
    assert peak["kv_cache_usage_perc"] > 0.5
    assert (
        "is preempted by PreemptionMode.RECOMPUTE mode because there is not enough KV cache"
        in proc.log()
    )


def test_a_kv_cache_smaller_than_one_sequence_refuses_to_start_as_vllm_does(
    tmp_path: Path, critic: list[SimProcess]
) -> None:
    proc = launch(tmp_path, critic, "--num-gpu-blocks-override", "100", ready=False)
    assert proc.process.wait(timeout=60) != 0
    assert (
        "larger than the maximum number of tokens that can be stored in KV cache (1600)"
        in proc.log()
    )
