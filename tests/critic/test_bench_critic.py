"""bench/critic.py on a tiny run: it reviews through the real GPU worker on its own
database, serially then batched, and ends with the JSON line it promises.

No speed is asserted (it depends on the machine; `make bench-critic` prints the figures),
only that every review ran and the line's arithmetic holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from bench.livebench import stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_tiny_run_reviews_every_image_twice_and_ends_with_the_json_line() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    database = f"test_benchcritic_{uuid.uuid4().hex[:8]}"
    finished = subprocess.run(
        [sys.executable, "bench/critic.py", "--images", "6", "--time-scale", "0.05",
         "--database", database],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert list(result) == [
        "images", "serial_reviews_per_min", "batched_reviews_per_min", "speedup", "failed",
    ]  # fmt: skip
    assert (result["images"], result["failed"]) == (6, 0)
    serial, batched = result["serial_reviews_per_min"], result["batched_reviews_per_min"]
    assert serial > 0
    assert batched > 0
    assert result["speedup"] == pytest.approx(batched / serial, abs=0.01)
    assert "serial: 6 reviews at max-num-seqs 1" in finished.stdout
    assert "batched: 6 reviews at max-num-seqs 4" in finished.stdout


def test_the_configured_database_is_refused() -> None:
    """The benchmark drops its database afterwards: the one DATABASE_URL names is refused
    before anything starts."""
    configured = urlparse(os.environ.get("DATABASE_URL", stack.DEFAULT_DATABASE_URL)).path
    finished = subprocess.run(
        [sys.executable, "bench/critic.py", "--database", configured.lstrip("/")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "is the configured database; use its own" in finished.stderr


@pytest.mark.parametrize(
    "argv", [["--images", "0"], ["--images", "2001"], ["--time-scale", "0"], ["--images", "x"]]
)
def test_out_of_range_options_are_refused(argv: list[str]) -> None:
    finished = subprocess.run(
        [sys.executable, "bench/critic.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stdout + finished.stderr
