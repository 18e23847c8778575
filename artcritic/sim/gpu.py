"""A simulated GPU: VRAM accounting shared by every simulated runtime of one GPU name.

State lives in ``<sim dir>/<gpu>.json`` guarded by an ``flock``, so separate
processes (the simulated ComfyUI, the simulated Critic, the simulated NVML probe)
see one memory. Allocations of a process that died are reaped on the next
access, as a real driver frees a dead process's CUDA context. Every change is
appended to ``<gpu>.events.jsonl`` so tests can prove that two exclusive runtimes
were never resident together.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artcritic.procs import pid_alive

DEFAULT_TOTAL_BYTES = 32 * 1_000_000_000
# A real card never reports zero use: the driver and display keep a little.
BASELINE_BYTES = 300 * 1024 * 1024


class SimOutOfMemory(Exception):
    """The simulated GPU lacks room; carries the numbers a real OOM report would."""

    def __init__(self, requested: int, free: int, total: int, label: str) -> None:
        self.requested, self.free, self.total, self.label = requested, free, total, label
        super().__init__(
            f"Tried to allocate {requested / 2**30:.2f} GiB for {label}; "
            f"GPU has a total capacity of {total / 2**30:.2f} GiB of which "
            f"{free / 2**30:.2f} GiB is free."
        )


@dataclass(frozen=True)
class Allocation:
    owner: str
    label: str
    runtime: str
    pid: int
    bytes: int


@dataclass(frozen=True)
class SimGpuSnapshot:
    name: str
    total: int
    used: int
    allocations: tuple[Allocation, ...]
    energy_joules: float
    power_watts: float
    # Cards before Volta have no total-energy counter: NVML reports "not supported".
    reports_energy: bool = True

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)

    def runtimes_resident(self) -> set[str]:
        return {a.runtime for a in self.allocations if a.bytes > 0}


def sim_dir() -> Path:
    """Where simulated GPUs keep their state (ARTCRITIC_SIM_DIR, default .run/sim)."""
    default = Path(__file__).resolve().parent.parent.parent / ".run" / "sim"
    return Path(os.environ.get("ARTCRITIC_SIM_DIR", str(default)))


def _by_runtime(state: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for alloc in state["allocations"].values():
        totals[alloc["runtime"]] = totals.get(alloc["runtime"], 0) + int(alloc["bytes"])
    return totals


class SimGpu:
    """One simulated GPU, addressed by name; cheap to construct, state on disk."""

    def __init__(self, name: str, *, root: Path | None = None) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid simulated GPU name {name!r}")
        self.name = name
        self.root = root or sim_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_path = self.root / f"{name}.json"
        self._lock_path = self.root / f"{name}.lock"
        self._events_path = self.root / f"{name}.events.jsonl"

    # -- state file ------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with self._lock_path.open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read()
                before = json.dumps(state, sort_keys=True)
                self._reap(state)
                yield state
                if json.dumps(state, sort_keys=True) != before:
                    tmp = self._state_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(state))
                    tmp.replace(self._state_path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = {
                "total": DEFAULT_TOTAL_BYTES,
                "allocations": {},
                "energy_j": 0.0,
                "energy_at": time.time(),
            }
        return state

    def _reap(self, state: dict[str, Any]) -> None:
        dead = [k for k, a in state["allocations"].items() if not pid_alive(int(a["pid"]))]
        for key in dead:
            del state["allocations"][key]
        if dead:
            self._event(state, "reaped", dead)
        # Energy accrues at the current power draw since the last access.
        now = time.time()
        state["energy_j"] = float(state.get("energy_j", 0.0)) + self._power(state) * max(
            0.0, now - float(state.get("energy_at", now))
        )
        state["energy_at"] = now

    def _power(self, state: dict[str, Any]) -> float:
        used = sum(int(a["bytes"]) for a in state["allocations"].values())
        busy = any(a.get("busy") for a in state["allocations"].values())
        return 30.0 + 40.0 * used / max(1, int(state["total"])) + (450.0 if busy else 0.0)

    def _event(self, state: dict[str, Any], kind: str, detail: Any) -> None:
        record = {
            "at": time.time(),
            "event": kind,
            "detail": detail,
            "used": BASELINE_BYTES + sum(int(a["bytes"]) for a in state["allocations"].values()),
            "runtimes": sorted({a["runtime"] for a in state["allocations"].values()}),
            "by_runtime": _by_runtime(state),
        }
        with self._events_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- public API --------------------------------------------------------------------

    def reset(self, total_bytes: int = DEFAULT_TOTAL_BYTES) -> None:
        """Create (or wipe) the GPU with an empty memory of ``total_bytes``."""
        with self._locked() as state:
            state.clear()
            state.update(
                {
                    "total": int(total_bytes),
                    "allocations": {},
                    "energy_j": 0.0,
                    "energy_at": time.time(),
                }
            )
        self._events_path.write_text("")

    def ensure(self, total_bytes: int = DEFAULT_TOTAL_BYTES) -> None:
        """Create the GPU if it does not exist yet; never wipes a live one."""
        if not self._state_path.exists():
            self.reset(total_bytes)

    def allocate(
        self, owner: str, label: str, nbytes: int, *, runtime: str, pid: int | None = None
    ) -> None:
        """Take ``nbytes`` for ``owner``/``label``; raise SimOutOfMemory when it does not fit."""
        if nbytes < 0:
            raise ValueError("allocation size must be non-negative")
        key = f"{owner}:{label}"
        with self._locked() as state:
            used = BASELINE_BYTES + sum(
                int(a["bytes"]) for k, a in state["allocations"].items() if k != key
            )
            free = int(state["total"]) - used
            if nbytes > free:
                self._event(state, "oom", {"owner": owner, "label": label, "requested": nbytes})
                raise SimOutOfMemory(nbytes, max(0, free), int(state["total"]), label)
            state["allocations"][key] = {
                "bytes": int(nbytes),
                "runtime": runtime,
                "pid": pid or os.getpid(),
                "owner": owner,
                "label": label,
                "busy": False,
            }
            self._event(state, "allocate", {"owner": owner, "label": label, "bytes": nbytes})

    def release(self, owner: str, label: str | None = None) -> int:
        """Free one allocation, or all of ``owner``'s; return the bytes freed."""
        with self._locked() as state:
            keys = [
                k
                for k, a in state["allocations"].items()
                if a["owner"] == owner and (label is None or a["label"] == label)
            ]
            freed = sum(int(state["allocations"][k]["bytes"]) for k in keys)
            for key in keys:
                del state["allocations"][key]
            if keys:
                self._event(state, "release", {"owner": owner, "label": label, "bytes": freed})
            return freed

    def energy_counter_set(self, present: bool) -> None:
        """Simulate a card with (True) or without (False) NVML's total-energy counter."""
        with self._locked() as state:
            state["reports_energy"] = bool(present)

    def set_busy(self, owner: str, busy: bool) -> None:
        """Mark an owner as computing (raises the simulated power draw)."""
        with self._locked() as state:
            for alloc in state["allocations"].values():
                if alloc["owner"] == owner:
                    alloc["busy"] = busy

    def snapshot(self) -> SimGpuSnapshot:
        with self._locked() as state:
            allocations = tuple(
                Allocation(
                    owner=a["owner"],
                    label=a["label"],
                    runtime=a["runtime"],
                    pid=int(a["pid"]),
                    bytes=int(a["bytes"]),
                )
                for a in state["allocations"].values()
            )
            return SimGpuSnapshot(
                name=self.name,
                total=int(state["total"]),
                used=BASELINE_BYTES + sum(a.bytes for a in allocations),
                allocations=allocations,
                energy_joules=float(state["energy_j"]),
                power_watts=self._power(state),
                reports_energy=bool(state.get("reports_energy", True)),
            )

    def events(self) -> list[dict[str, Any]]:
        """Every recorded change, oldest first."""
        if not self._events_path.exists():
            return []
        return [json.loads(line) for line in self._events_path.read_text().splitlines() if line]
