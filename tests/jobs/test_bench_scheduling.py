"""The scheduling benchmark's machinery runs and ends with the JSON line it promises.

Smoke tests on a tiny workload: no figure is held to a threshold here; the benchmark
reports those (``make bench-scheduling``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from artcritic.jobs.scheduler import policy_from_profile
from bench.scheduling import (
    benchmark,
    fifo_choose,
    json_line,
    lower_bound,
    outcome,
    scheduler_choose,
    simulate,
)
from bench.workloads import (
    STRATEGIES,
    SimCoordinator,
    Strategy,
    WorkloadShape,
    profile_load,
    profile_with_release,
    workload_build,
)

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "release",
    "makespan_over_lower_bound",
    "fifo_over_makespan",
    "swaps",
    "fifo_swaps",
    "max_wait_s",
    "wait_bound_s",
}
TINY = WorkloadShape(projects=2, batches_per_project=2, interactive_jobs=1, span_s=90.0)
BASE = profile_load("rtx5090-32gb")


def test_the_json_line_has_one_entry_per_release_strategy_with_the_promised_keys() -> None:
    workload = workload_build(BASE, seed=1, shape=TINY)
    line = json.loads(json_line(benchmark(BASE, workload)))
    assert list(line) == ["strategy_results"]
    results = line["strategy_results"]
    assert [entry["release"] for entry in results] == ["free+sleep", "stop/start"]
    for entry in results:
        assert set(entry) == KEYS
        assert isinstance(entry["swaps"], int)
        assert isinstance(entry["fifo_swaps"], int)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_every_job_and_every_review_runs_once_and_no_order_beats_the_lower_bound(
    strategy: Strategy,
) -> None:
    workload = workload_build(BASE, seed=2, shape=TINY)
    profile = profile_with_release(BASE, strategy)
    policy = policy_from_profile(profile)
    bound = lower_bound(workload, profile)
    images = sum(s.settings.count for s in workload)
    for choose in (scheduler_choose, fifo_choose):
        runs = simulate(workload, profile, policy, choose)
        assert len({run.job.id for run in runs}) == len(runs) == len(workload) + images
        assert outcome(runs).makespan_s >= bound.seconds - 1e-6


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_after_first_starts_the_simulated_coordinator_prices_switches_like_the_policy(
    strategy: Strategy,
) -> None:
    profile = profile_with_release(BASE, strategy)
    policy = policy_from_profile(profile)
    coordinator = SimCoordinator(profile)
    assert coordinator.ensure("comfyui") == policy.switch_cost(None, "comfyui")
    coordinator.ensure("critic")  # the Critic's first start: a cold start, whatever the table
    assert coordinator.ensure("comfyui") == policy.switch_cost("critic", "comfyui")
    assert coordinator.ensure("critic") == policy.switch_cost("comfyui", "critic")
    assert coordinator.ensure("critic") == 0.0


def test_run_as_a_file_it_prints_the_tables_and_ends_with_the_json_line() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scheduling.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert "release free+sleep" in done.stdout
    assert "release stop/start" in done.stdout
    results = json.loads(lines[-1])["strategy_results"]
    assert [set(entry) for entry in results] == [KEYS, KEYS]
