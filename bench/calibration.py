"""Calibration fit cost: seeded decided images with scattered scores, grouped and fitted
(5-fold held out plus the full fit) as a refit does. Pure Python, no database.

Prints one line per size and a last JSON line: {"sizes": [...], "ms": [...], "groups": [...]}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time

from artcritic.critic.calibration import Row, calibration_fit, rows_group


def rows_seeded(n: int, seed: int) -> list[Row]:
    """Scores around 6 ± 2; the team follows taste with noise; the Critic a fixed rule."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        scores = tuple(min(10, max(0, round(rng.gauss(6, 2)))) for _ in range(4))
        team = rng.random() < 1 / (1 + math.exp(-(scores[0] - 6)))
        rows.append(Row(scores, team, scores[0] + scores[1] >= 12))  # type: ignore[arg-type]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,3000,10000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    best_ms, groups = [], []
    for n in sizes:
        grouped = rows_group(rows_seeded(n, args.seed))
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            fit = calibration_fit(grouped)
            times.append((time.perf_counter() - started) * 1000)
        best_ms.append(round(min(times), 1))
        groups.append(len(grouped))
        print(
            f"{n:>6} decided images, {len(grouped):>5} distinct rows: best of {args.repeat} "
            f"{min(times):7.1f} ms; held out {fit.held_out_agreeing}/{fit.held_out_compared}, "
            f"raw {fit.raw_agreeing}/{fit.raw_compared}"
        )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(json.dumps({"sizes": sizes, "ms": best_ms, "groups": groups}))


if __name__ == "__main__":
    main()
