"""bench/eta.py on a one-wave run, and its arithmetic on hand-made records.

No figure is asserted (ETA error and overhead depend on the machine), only that the
benchmark runs end to end on its own database and ends with the JSON line it promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from artcritic.gpu.profiles import profile_read
from bench.etabench.report import JobRecord, overhead, pass_errors
from bench.etabench.workload import waves_build

ROOT = Path(__file__).resolve().parents[2]
SIM = profile_read(ROOT / "profiles" / "sim-32gb.toml")[0]


def test_the_workload_is_the_same_for_the_same_seed_and_mixes_what_a_studio_asks() -> None:
    assert waves_build(9) == waves_build(9)
    assert waves_build(9) != waves_build(10)
    items = [item for wave in waves_build(9, waves=6) for item in wave]
    assert {item.model_mode for item in items} == {"flux-dev-fp8", "sdxl"}
    assert {item.seed_policy for item in items} == {"fixed", "increment"}
    assert any(item.count == 1 for item in items)
    assert any(item.count > 1 for item in items)


def test_errors_are_over_the_time_from_admission_and_percentiles_are_nearest_rank() -> None:
    records = [
        JobRecord("review", 0.0, 10.0, 11.0, 3, ()),  # 1 s off of 10: 10 %
        JobRecord("review", 0.0, 20.0, 15.0, 3, ()),  # 5 s off of 20: 25 %
        JobRecord("review", 0.0, 4.0, None, 0, ()),  # no prediction: not counted
    ]
    errors = pass_errors(records)
    assert (errors.jobs, errors.p50_pct, errors.p90_pct, errors.from_history) == (2, 10.0, 25.0, 2)


def test_overhead_is_orchestration_over_the_work_at_real_durations() -> None:
    # A review: 0.05 s lead-in, reviewing 0.35 s where the Critic took 4 s × 0.05 = 0.2 s.
    review = JobRecord(
        "review", 0, 1, 1, 1, (("waiting_for_gpu", "", 0.05), ("reviewing", "critic", 0.35))
    )
    # One SDXL image, 10 steps at 1 MP (0.25 s per step·MP): 2.5 s real, 0.125 s here; it
    # generated for 0.2 s and stored for 0.1 s after 0.05 s of lead-in.
    image = JobRecord(
        "generate", 0, 1, 1, 1,
        (("waiting_for_gpu", "", 0.05), ("generating", "comfyui", 0.2),
         ("uploading", "comfyui", 0.1)),
        shape=(10, 1000, 1000, 1, "sdxl", 1),
    )  # fmt: skip
    work = overhead([review, image], SIM, 0.05)
    # Orchestration: 0.05 + 0.15 + 0.05 + 0.075 + 0.1 = 0.425 s over 4 + 2.5 = 6.5 s real.
    assert work.orchestration_s == pytest.approx(0.425)
    assert work.work_real_s == pytest.approx(6.5)
    assert work.pct == pytest.approx(100 * 0.425 / 6.5)
    assert (work.images, work.reviews) == (1, 1)


@pytest.mark.slow
def test_a_one_wave_run_ends_with_the_promised_json_line() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    database = f"test_bencheta_{uuid.uuid4().hex[:8]}"
    finished = subprocess.run(
        [sys.executable, "bench/eta.py", "--waves", "1", "--database", database],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert list(result) == [
        "jobs", "cold_p50_err_pct", "cold_p90_err_pct", "warm_p50_err_pct",
        "warm_p90_err_pct", "overhead_pct",
    ]  # fmt: skip
    assert result["jobs"] > 0
    assert all(isinstance(result[key], float) for key in list(result)[1:])
    assert "warm:" in finished.stdout
