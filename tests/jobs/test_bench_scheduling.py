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
    shape_run,
    shown_bounds,
    simulate,
)
from bench.workloads import (
    SHAPES,
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
    "bound_misses",
}
SHAPE_KEYS = {
    "profile",
    "shape",
    "release",
    "max_wait_s",
    "seeds",
    "worst_seed",
    "worst_makespan_over_lower_bound",
    "best_makespan_over_lower_bound",
    "worst_fifo_over_lower_bound",
    "swaps_at_worst_seed",
    "fifo_swaps_at_worst_seed",
    "longest_wait_s",
    "its_bound_s",
    "least_slack_s",
    "bound_misses",
    "longest_interactive_wait_s",
    "headline_bound_s",
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
    line = json.loads(lines[-1])
    assert [set(entry) for entry in line["strategy_results"]] == [KEYS, KEYS]
    shapes = line["shapes"]
    assert {(entry["shape"], entry["release"]) for entry in shapes} == {
        (shape, strategy.name) for shape in SHAPES for strategy in STRATEGIES
    }
    for entry in shapes:
        assert set(entry) == SHAPE_KEYS
        assert entry["seeds"] == 12
        assert 1 <= entry["worst_seed"] <= 12
        assert entry["worst_makespan_over_lower_bound"] >= entry["best_makespan_over_lower_bound"]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_builds_admitted_requests_the_same_way_for_the_same_seed(shape: str) -> None:
    first, again, other = (SHAPES[shape](BASE, seed) for seed in (5, 5, 6))
    assert first == again
    assert first != other
    assert [s.id for s in first] == list(range(1, len(first) + 1))
    assert [s.at for s in first] == sorted(s.at for s in first)
    assert any(s.interactive for s in first)
    assert any(not s.interactive for s in first)


def test_the_worst_seed_is_the_one_with_the_largest_ratio_and_each_job_has_a_bound() -> None:
    strategy = STRATEGIES[0]
    seeds = [1, 2, 3]
    result = shape_run(BASE, "many-projects", strategy, seeds)
    profile = profile_with_release(BASE, strategy)
    policy = policy_from_profile(profile)
    ratios = {}
    for seed in seeds:
        workload = SHAPES["many-projects"](BASE, seed)
        runs = simulate(workload, profile, policy, scheduler_choose)
        ratios[seed] = outcome(runs).makespan_s / lower_bound(workload, profile).seconds
        bounds = shown_bounds(runs, policy)
        assert len(bounds) == len(runs)
        assert all(b >= policy.max_wait_s for b in bounds)
    assert ratios[result.worst_seed] == max(ratios.values())
    assert result.worst_ratio == max(ratios.values())
    assert result.best_ratio == min(ratios.values())
    assert result.seeds == 3
    assert result.jobs > 0


def test_a_sweep_with_no_seeds_is_refused_on_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scheduling.py"), "--seeds", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "--seeds must be at least 1, not 0" in done.stderr
