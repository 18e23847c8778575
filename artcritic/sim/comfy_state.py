"""Services the simulated ComfyUI's worker thread shares with its HTTP side.

Residency mirrors ComfyUI's loaded-model list on the shared simulated GPU: weights
are allocated on first use and stay until ``/free`` or an OOM unloads them.
Faults are switches tests flip at start-up or at run time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artcritic.gpu.profiles import Durations, Profile
from artcritic.sim.clock import sim_sleep
from artcritic.sim.comfy_models import ModelCatalog
from artcritic.sim.gpu import SimGpu, SimOutOfMemory

FAULT_NAMES = (
    "crash_mid_run",  # the process exits during sampling
    "hang",  # the worker stops mid-run and never sends another event
    "garbage_output",  # SaveImage writes bytes that are not a PNG
    "wrong_size",  # SaveImage writes images at half the size the graph asked for
    "slow_start",  # the port opens only after ten times the profile's start time
    "drop_ws",  # every websocket is closed mid-run; the run itself goes on
    "oom",  # the next sampling run fails with CUDA out-of-memory, whatever is free
)
ONE_SHOT_FAULTS = frozenset({"oom"})
RUNTIME = "comfyui"

Send = Callable[[str | int, Any, str | None], None]


class InterruptProcessing(Exception):
    """Raised in a node after /interrupt (ComfyUI's InterruptProcessingException)."""


class Faults:
    """Thread-safe set of active fault switches."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._on: set[str] = set()
        for name in names:
            self.set(name, True)

    def set(self, name: str, on: bool) -> None:
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        with self._lock:
            if on:
                self._on.add(name)
            else:
                self._on.discard(name)

    def active(self, name: str) -> bool:
        with self._lock:
            return name in self._on

    def take(self, name: str) -> bool:
        """True if the fault is on; one-shot faults switch themselves off when taken."""
        with self._lock:
            if name not in self._on:
                return False
            if name in ONE_SHOT_FAULTS:
                self._on.discard(name)
            return True

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._on)


@dataclass(frozen=True)
class Weight:
    """One loaded file on the GPU: allocation label and size."""

    label: str
    nbytes: int


class Residency:
    """Which model files are on the simulated GPU; loads cost time proportional to their size.

    Like ComfyUI's ``load_models_gpu``, a load that does not fit first evicts the least
    recently used models the current node does not need; only then is it out of memory.
    """

    def __init__(self, gpu: SimGpu, owner: str, durations: Durations, reference_bytes: int) -> None:
        self.gpu, self.owner, self.durations = gpu, owner, durations
        # Loading the profile's default model mode takes durations.comfyui_load; others scale.
        self.reference_bytes = max(1, reference_bytes)
        self.loaded: dict[str, int] = {}  # insertion order = least recently used first
        self.warmed: set[str] = set()
        self._lock = threading.RLock()

    def ensure(self, weights: Iterable[Weight]) -> None:
        """Load what is not resident; raise SimOutOfMemory when even eviction cannot make room."""
        weights = list(weights)
        needed = {w.label for w in weights}
        for weight in weights:
            with self._lock:
                if weight.label in self.loaded:
                    self.loaded[weight.label] = self.loaded.pop(weight.label)
                    continue
            self.allocate(weight.label, weight.nbytes, keep=needed)
            sim_sleep(self.durations.comfyui_load * weight.nbytes / self.reference_bytes)
            with self._lock:
                self.loaded[weight.label] = weight.nbytes

    def allocate(self, label: str, nbytes: int, *, keep: set[str]) -> None:
        """Take VRAM, evicting unneeded models (LRU first) until it fits or nothing is left."""
        while True:
            try:
                self.gpu.allocate(self.owner, label, nbytes, runtime=RUNTIME)
                return
            except SimOutOfMemory:
                with self._lock:
                    victim = next((v for v in self.loaded if v not in keep), None)
                    if victim is None:
                        raise
                    del self.loaded[victim]
                    self.warmed.discard(victim)
                self.gpu.release(self.owner, victim)

    def warm(self, label: str) -> None:
        """The first sampling run after a model load pays the profile's warm-up time once."""
        with self._lock:
            if label in self.warmed:
                return
            self.warmed.add(label)
        sim_sleep(self.durations.comfyui_warm)

    def unload_all(self) -> int:
        """Detach every model from the GPU (``unload_all_models``); return the bytes freed."""
        with self._lock:
            self.loaded.clear()
            self.warmed.clear()
        return self.gpu.release(self.owner)

    def resident_bytes(self) -> int:
        with self._lock:
            return sum(self.loaded.values())


@dataclass
class SimRuntime:
    """Everything a running node may touch."""

    profile: Profile
    catalog: ModelCatalog
    gpu: SimGpu
    owner: str
    residency: Residency
    faults: Faults
    output_dir: Path
    temp_dir: Path
    preview_method: str
    send: Send
    interrupt: threading.Event = field(default_factory=threading.Event)
    client_id: str | None = None
    last_node_id: str | None = None
    last_prompt_id: str | None = None
    # Client ids that announced supports_preview_metadata in the feature-flag handshake.
    preview_metadata_clients: set[str] = field(default_factory=set)
    # The running prompt's ProgressRegistry: every node that started, with its state.
    progress_nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check_interrupt(self) -> None:
        if self.interrupt.is_set():
            raise InterruptProcessing("Processing interrupted")

    def progress_state(self, node: str, value: float, maximum: float, state: str) -> None:
        """``progress_state`` as comfy_execution/progress.py sends it (ComfyUI 0.3.4x–0.3.6x).

        Every frame carries the whole registry of the prompt: each node that has started so
        far (running or finished, never pending), values as floats, to the prompt's client.
        """
        if state == "finished":
            value = maximum
        self.progress_nodes[node] = {
            "value": float(value),
            "max": float(maximum),
            "state": state,
            "node_id": node,
            "prompt_id": self.last_prompt_id,
            "display_node_id": node,
            "parent_node_id": None,
            "real_node_id": node,
        }
        nodes = {key: dict(entry) for key, entry in self.progress_nodes.items()}
        self.to_client("progress_state", {"prompt_id": self.last_prompt_id, "nodes": nodes})

    def to_client(self, event: str | int, data: Any) -> None:
        """Send an event to the running prompt's client only (nothing when it gave no client_id)."""
        if self.client_id is not None:
            self.send(event, data, self.client_id)
