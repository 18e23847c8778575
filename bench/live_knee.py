"""The live path's knee: the most sockets × progress calls a second that still meet the goal.

    python bench/live_knee.py [--sockets 50,100,200,300,400] [--rates 25,50,100]
                              [--seconds 12] [--p99-ms 50] [--phase-p99-ms 50]

Runs ``bench/live.py`` (each run its own database, web server, worker and Chromium page)
for every rate, with more and more sockets until a run misses the goal: staleness p99 and
phase-event p99 at most the limits, nothing lost or duplicated, no resync. Each run's last
line and the machine's load average are printed as it goes; the last line is one JSON
object: {"knee_sockets", "knee_rate", "knee_socket_calls_per_s", "runs"} (the knee with
the most socket-calls a second; nulls when no run met the goal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _numbers(text: str, kind: type[float] | type[int]) -> list[float]:
    return sorted(kind(part) for part in text.split(",") if part.strip())


def meets(result: dict[str, object], p99_ms: float, phase_p99_ms: float) -> bool:
    """Whether one run's last line meets the goal (a missing figure never does)."""
    p99, phase = result.get("p99_ms"), result.get("phase_p99_ms")
    return (
        isinstance(p99, float | int)
        and isinstance(phase, float | int)
        and p99 <= p99_ms
        and phase <= phase_p99_ms
        and result.get("lost") == 0
        and result.get("duplicated") == 0
        and result.get("resyncs") == 0
    )


def run(sockets: int, rate: float, seconds: float, extra: Sequence[str]) -> dict[str, object]:
    """One run of bench/live.py; its last line (or what went wrong, as "error")."""
    events = max(60, round(rate * seconds))
    argv = [sys.executable, str(ROOT / "bench" / "live.py"), "--sockets", str(sockets)]
    argv += ["--rate", f"{rate:g}", "--events", str(events), *extra]
    finished = subprocess.run(  # noqa: S603 - our own interpreter and benchmark
        argv, cwd=ROOT, capture_output=True, text=True, check=False
    )
    lines = finished.stdout.strip().splitlines()
    if finished.returncode != 0 or not lines:
        return {"error": (finished.stderr or finished.stdout)[-400:]}
    result: dict[str, object] = json.loads(lines[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sockets", default="50,100,200,300,400", help="socket counts to try")
    parser.add_argument("--rates", default="25,50,100", help="progress calls a second to try")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of calls per run")
    parser.add_argument("--p99-ms", type=float, default=50.0, help="staleness p99 goal")
    parser.add_argument("--phase-p99-ms", type=float, default=50.0, help="phase p99 goal")
    args, extra = parser.parse_known_args(argv)
    knee: tuple[int, float] | None = None
    runs = 0
    for rate in _numbers(args.rates, float):
        for sockets in _numbers(args.sockets, int):
            load = " ".join(f"{value:.2f}" for value in os.getloadavg())
            result = run(int(sockets), rate, args.seconds, extra)
            runs += 1
            ok = meets(result, args.p99_ms, args.phase_p99_ms)
            print(f"{int(sockets)} sockets × {rate:g}/s (load {load}): "
                  f"{'meets' if ok else 'misses'} {json.dumps(result)}", flush=True)  # fmt: skip
            if not ok:
                break
            if knee is None or sockets * rate > knee[0] * knee[1]:
                knee = (int(sockets), rate)
    print(
        json.dumps(
            {
                "knee_sockets": knee[0] if knee else None,
                "knee_rate": knee[1] if knee else None,
                "knee_socket_calls_per_s": round(knee[0] * knee[1]) if knee else None,
                "runs": runs,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
