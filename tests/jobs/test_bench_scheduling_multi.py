"""The 2-GPU section of the scheduling benchmark: placement over two simulated GPUs.

Checks the machinery on small workloads with answers known by hand; the figures and their
goals are the benchmark's (``make bench-scheduling``).
"""

from __future__ import annotations

import json

import pytest

from artcritic.jobs.eta import generation_seconds
from bench.scheduling import json_line, main
from bench.scheduling_multi import (
    gpus_build,
    multi_benchmark,
    multi_run,
    profile_with_role,
    simulate_gpus,
)
from bench.workloads import STRATEGIES, Submission, WorkloadShape, profile_load, request_settings

BASE = profile_load("rtx5090-32gb")
TINY = WorkloadShape(projects=2, batches_per_project=2, interactive_jobs=1, span_s=90.0)
FREE_SLEEP = STRATEGIES[0]


def submission(job_id: int, at: float, count: int = 2) -> Submission:
    settings = request_settings(BASE, "sdxl", count)
    return Submission(
        id=job_id,
        project_id=1,
        at=at,
        settings=settings,
        interactive=count == 1,
        seconds=generation_seconds(BASE, settings),
    )


def test_two_batches_at_once_go_to_both_gpus_and_every_job_runs_once() -> None:
    gpus = gpus_build(BASE, FREE_SLEEP, "shared")
    simulate_gpus([submission(1, 0.0), submission(2, 0.0)], gpus)
    generations = {
        gpu.name: [run.job.id for run in gpu.runs if run.job.kind == "generate"] for gpu in gpus
    }
    # Both GPUs are idle and cold: the first goes to gpu0 (tie, by name), the second to the
    # other one, which finishes it a whole generation sooner.
    assert generations == {"gpu0": [1], "gpu1": [2]}
    ran = [run.job.id for gpu in gpus for run in gpu.runs]
    assert len(ran) == len(set(ran)) == 2 + 4  # two generations, two reviews each


def test_dedicated_roles_never_run_the_partner_and_never_swap() -> None:
    gpus = gpus_build(BASE, FREE_SLEEP, "dedicated")
    workload = [submission(n, at=5.0 * n, count=1 + n % 4) for n in range(1, 9)]
    simulate_gpus(workload, gpus)
    artist, critic = gpus
    assert {run.job.runtime for run in artist.runs} == {"comfyui"}
    assert {run.job.runtime for run in critic.runs} == {"critic"}
    assert not any(run.swap for gpu in gpus for run in gpu.runs)
    assert len(critic.runs) == sum(s.settings.count for s in workload)
    # No review starts before the first generation finished (reviews need its images).
    first_gen_end = min(run.finished_at for run in artist.runs)
    assert min(run.picked_at for run in critic.runs) >= first_gen_end


def test_a_role_must_be_valid() -> None:
    with pytest.raises(ValueError, match="role"):
        profile_with_role(BASE, "both")


def test_two_gpus_finish_a_backlog_sooner_than_one() -> None:
    workload = [submission(n, at=0.0, count=4) for n in range(1, 7)]
    result = multi_run(BASE, FREE_SLEEP, "shared", workload, "hand")
    assert result.makespan_s < result.one_gpu_makespan_s
    assert sum(result.jobs_per_gpu.values()) == 6 + 24
    assert result.reviews == 24


def test_the_json_line_keeps_one_gpu_results_and_adds_two_gpu_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = multi_benchmark(BASE, seed=3)
    assert {(r.layout, r.workload) for r in results} == {
        ("shared", "mixed"),
        ("dedicated", "mixed"),
        ("shared", "backlog"),
        ("dedicated", "backlog"),
        ("shared", "day"),
        ("dedicated", "day"),
    }
    assert all(r.swaps == 0 for r in results if r.layout == "dedicated")
    line = json.loads(json_line([], multi=[r.summary() for r in results]))
    assert all(entry["gpus"] == 2 for entry in line["multi_gpu_results"])
    assert main(["--seed", "3"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = json.loads(last)
    assert list(parsed) == ["strategy_results", "shapes", "multi_gpu_results"]
    assert len(parsed["multi_gpu_results"]) == 12
