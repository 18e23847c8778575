"""The page benchmark (bench/pages.py) on a tiny run: it seeds, serves with DEBUG off, times
every page and prints one JSON line. Not timed: no figure is asserted, only the machinery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from bench.pages import percentile
from tests.browser.conftest import ROOT


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (50.0, 95.0)
    assert percentile([3.0], 95) == 3.0


@pytest.mark.slow
def test_a_tiny_run_reports_every_page_with_its_queries() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    database = f"test_benchpages_{uuid.uuid4().hex[:8]}"
    command = ["bench/pages.py", "--images", "40", "--rounds", "2", "--database", database]
    finished = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert (result["images"], result["rounds"]) == (40, 2)
    pages = result["pages"]
    assert {"gallery_p1", "gallery_deep", "review", "dashboard", "admin_jobs"} <= set(pages)
    for row in pages.values():
        assert set(row) == {"p50_ms", "p95_ms", "queries"}
        assert row["queries"] > 0
        assert row["p95_ms"] >= row["p50_ms"] > 0
    assert "slowest queries per page" in finished.stdout
