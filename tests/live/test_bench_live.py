"""The live benchmark (bench/live.py) on a tiny run, and its scoring of staleness and losses.

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

T0 = [1000.0, 1020.0, 1040.0]  # progress calls 1, 2, 3 made at these epoch ms
PHASE_T0 = [1030.0]  # one phase change, between calls 2 and 3


def progress(current: int, at_ms: float) -> Arrival:
    return ("job.progress", current, 0, at_ms)


def phase(k: int, current: int, at_ms: float) -> Arrival:
    return ("job.status", current, k, at_ms)


def test_a_value_counts_as_shown_when_it_or_a_newer_one_arrived() -> None:
    # Call 2 was coalesced away: it is shown once call 3's value arrives.
    arrivals = [progress(1, 1005), phase(1, 2, 1036), progress(3, 1046)]
    score = receiver_score(arrivals, T0, PHASE_T0)
    assert score.staleness == [5.0, 16.0, 6.0]  # call 2: the phase event carried its value
    assert score.phase_latency == [6.0]
    assert (score.lost, score.lost_phases, score.progress_frames) == (0, 0, 2)


def test_a_coalesced_value_waits_for_the_next_one_sent() -> None:
    arrivals = [progress(1, 1005), progress(3, 1046), phase(1, 3, 1050)]
    score = receiver_score(arrivals, T0, PHASE_T0)
    assert score.staleness == [5.0, 26.0, 6.0]


def test_a_missing_phase_event_or_last_value_is_lost_and_coalesced_ones_are_not() -> None:
    assert receiver_score([progress(1, 1005)], T0, PHASE_T0).lost == 2  # phase 1 and value 3
    score = receiver_score([progress(3, 1046)], T0, PHASE_T0)
    assert (score.lost, score.lost_phases) == (1, 1)
    assert score.staleness == [46.0, 26.0, 6.0]


def test_other_values_and_the_warm_up_are_ignored() -> None:
    arrivals = [progress(0, 900), progress(1, 1005), phase(9, 1, 1006), progress(3, 1046)]
    score = receiver_score(arrivals, T0, [])
    assert (score.lost, score.phase_latency) == (0, [])


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


KEYS = [
    "events", "sockets", "p50_ms", "p99_ms", "phase_p99_ms", "lost", "duplicated", "resyncs",
    "cpu_us_per_frame",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.browser
def test_a_tiny_run_with_the_page_reports_every_phase_once_and_nothing_lost() -> None:
    output, result = bench_run(
        "--events", "60", "--sockets", "3", "--rate", "50", "--phase-every", "0.5"
    )
    assert list(result) == KEYS
    assert (result["events"], result["sockets"]) == (60, 3)
    assert (result["lost"], result["duplicated"], result["resyncs"]) == (0, 0, 0)
    assert isinstance(result["p99_ms"], float)
    assert isinstance(result["phase_p99_ms"], float)
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
    assert result["phase_p99_ms"] is None  # 0.2 s of calls: no phase change was due
    assert "(no browser)" in output
