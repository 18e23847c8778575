"""The live benchmark (bench/live.py) on a tiny run, and its scoring of losses and duplicates.

Not timed: latency depends on the machine, so no figure is ever asserted, only that the
machinery runs end to end and every event arrives exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from bench.livebench.receivers import Arrival
from bench.livebench.report import percentile, receiver_score
from tests.browser.conftest import ROOT

PROJECT, GPU = "project.7", "gpu.sim0"
T0 = [1000.0, 1020.0, 1040.0]  # events 1, 2, 3 sent at these epoch ms


def arrival(stream: str, seq: int, current: int, at_ms: float) -> Arrival:
    return (stream, seq, current, at_ms, "")


def both_copies(current: int, at_ms: float) -> list[Arrival]:
    return [arrival(PROJECT, current, current, at_ms), arrival(GPU, current, current, at_ms)]


def test_each_event_counts_once_from_its_project_copy() -> None:
    arrivals = [a for i, t in enumerate(T0, 1) for a in both_copies(i, t + 5 * i)]
    score = receiver_score(arrivals, T0, PROJECT, GPU)
    assert score.latencies == [5.0, 10.0, 15.0]
    assert (score.lost, score.duplicated, score.gpu_missing) == (0, 0, 0)


def test_an_event_whose_project_copy_never_came_is_lost_even_if_its_gpu_copy_did() -> None:
    arrivals = [*both_copies(1, 1001), arrival(GPU, 2, 2, 1021), *both_copies(3, 1041)]
    score = receiver_score(arrivals, T0, PROJECT, GPU)
    assert (score.lost, score.gpu_missing, len(score.latencies)) == (1, 0, 2)


def test_a_repeated_number_or_a_repeated_progress_value_is_a_duplicate() -> None:
    arrivals = [
        *both_copies(1, 1001),
        arrival(PROJECT, 1, 1, 1002),  # the same (stream, seq) again
        arrival(PROJECT, 9, 1, 1003),  # the same progress value under another number
        *both_copies(2, 1021),
        *both_copies(3, 1041),
    ]
    score = receiver_score(arrivals, T0, PROJECT, GPU)
    assert (score.duplicated, score.lost) == (2, 0)
    assert score.latencies == [1.0, 1.0, 1.0]  # the first copy counts


def test_the_warm_up_event_and_other_values_are_ignored() -> None:
    arrivals = [arrival(PROJECT, 1, 0, 900), *[a for i in (1, 2, 3) for a in both_copies(i, 1100)]]
    assert receiver_score(arrivals, T0, PROJECT, GPU).duplicated == 0


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 601)]
    assert (percentile(values, 50), percentile(values, 99)) == (300.0, 594.0)
    assert percentile([7.0], 99) == 7.0


def bench_run(*options: str) -> tuple[str, dict[str, object]]:
    """Run bench/live.py as `make bench-live` does, on a database of its own that it creates,
    migrates and drops; its output and its last line as JSON."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    database = f"test_benchlive_{uuid.uuid4().hex[:8]}"
    finished = subprocess.run(
        [sys.executable, "bench/live.py", "--database", database, *options],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result: dict[str, object] = json.loads(finished.stdout.strip().splitlines()[-1])
    return finished.stdout, result


@pytest.mark.slow
@pytest.mark.browser
def test_a_tiny_run_with_the_page_reports_every_event_once() -> None:
    output, result = bench_run("--events", "20", "--sockets", "2", "--rate", "100")
    assert list(result) == ["events", "sockets", "p50_ms", "p99_ms", "lost", "duplicated"]
    assert (result["events"], result["sockets"]) == (20, 2)
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert isinstance(result["p99_ms"], float)
    assert "page applied (live.js)" in output
    assert "problem:" not in output, output


@pytest.mark.slow
def test_a_tiny_run_without_the_browser_scores_the_sockets() -> None:
    output, result = bench_run("--events", "20", "--sockets", "2", "--rate", "100", "--no-browser")
    assert (result["events"], result["sockets"], result["lost"], result["duplicated"]) == (
        20,
        2,
        0,
        0,
    )
    assert "(no browser)" in output
