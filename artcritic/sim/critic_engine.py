"""The simulated vLLM engine: its VRAM plan, start-up checks and sleep/wake state.

Memory follows vLLM V1: the process claims ``gpu_memory_utilization × total``
as a whole — a CUDA context, the weights, and the rest as KV cache (the
activation workspace profiled at start-up stays inside that pool). Sleep frees
the weights and the KV cache and keeps the context and CUDA graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from artcritic.gpu.profiles import DTYPE_BYTES, GB, CriticModel
from artcritic.sim.gpu import SimGpu, SimOutOfMemory

GiB = 1024**3
CONTEXT_BYTES = 512 * 1024**2  # CUDA context + graph pools: what survives a level-1 sleep
RUNTIME = "critic"
# Before vLLM 0.34 the client saw the exception's own text.
ENGINE_DEAD_MESSAGE = (
    "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause."
)
# vLLM 0.34.0 v1/engine/exceptions.py EngineDeadError.CLIENT_MESSAGE.
DEAD_CLIENT_MESSAGE = "The server had an error while processing your request."
# vLLM 0.34.0 v1/engine/core.py _reject_add_while_paused.
PAUSED_MESSAGE = "Generation is paused. Please retry after it resumes."
FAULTS = (
    "garbage_output",
    "invalid_json_schema",
    "truncate",
    "crash_mid_run",
    "hang",
    "slow_start",
    "prefix_reset_fails",
    "engine_dead",
    "die_on_request",
    "slow_review",
)


class StartupRefused(Exception):
    """vLLM would exit during start-up; the message is what it prints."""


def gib(nbytes: float) -> str:
    """Bytes as vLLM prints them: GiB with two decimals."""
    return f"{nbytes / GiB:.2f}"


@dataclass(frozen=True)
class MemoryPlan:
    """What the engine claims on a GPU of ``total`` bytes, and what its KV cache needs."""

    total: int
    utilization: float
    weights: int
    activation: int
    kv_bytes_per_token: int
    max_model_len: int
    max_num_seqs: int

    @property
    def budget(self) -> int:
        return int(self.utilization * self.total)

    @property
    def kv_available(self) -> int:
        return self.budget - CONTEXT_BYTES - self.weights - self.activation

    @property
    def kv_one_sequence(self) -> int:
        return self.kv_bytes_per_token * self.max_model_len

    @property
    def kv_all_sequences(self) -> int:
        return self.kv_one_sequence * self.max_num_seqs

    @property
    def kv_pool(self) -> int:
        """The "kv_cache" allocation: the KV cache plus the activation workspace."""
        return self.budget - CONTEXT_BYTES - self.weights


def memory_plan(
    critic: CriticModel, *, total: int, utilization: float, max_model_len: int, max_num_seqs: int
) -> MemoryPlan:
    """Size the engine from the profile's model card (protocols.md 2.7)."""
    per_token = int(
        2 * critic.layers * critic.kv_heads * critic.head_dim * DTYPE_BYTES[critic.kv_dtype]
    )
    return MemoryPlan(
        total=total,
        utilization=utilization,
        weights=round((critic.weights_gb + critic.vision_encoder_gb) * GB),
        activation=round(critic.activation_gb * GB),
        kv_bytes_per_token=per_token,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
    )


def free_memory_check(plan: MemoryPlan, free: int) -> None:
    """Refuse like vLLM V1 when free memory is below utilization × total."""
    if free < plan.budget:
        raise StartupRefused(
            f"ValueError: Free memory on device ({gib(free)}/{gib(plan.total)} GiB) on startup "
            f"is less than desired GPU memory utilization ({plan.utilization}, "
            f"{gib(plan.budget)} GiB). Decrease GPU memory utilization or reduce GPU memory "
            "used by other processes."
        )


def kv_cache_check(plan: MemoryPlan) -> None:
    """Refuse when the KV cache left after weights and activations is too small."""
    available = max(0, plan.kv_available)
    if available < plan.kv_one_sequence:
        estimated = available // plan.kv_bytes_per_token // 16 * 16
        raise StartupRefused(
            "ValueError: To serve at least one request with the models's max seq len "
            f"({plan.max_model_len}), ({gib(plan.kv_one_sequence)} GiB KV cache is needed, which "
            f"is larger than the available KV cache memory ({gib(available)} GiB). Based on the "
            f"available memory, the estimated maximum model length is {estimated}. Try "
            "increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
            "initializing the engine."
        )
    if available < plan.kv_all_sequences:
        # Stricter than vLLM (which would only lower its concurrency): the profile promises
        # max_num_seqs full-length sequences, so the simulator holds it to that promise.
        raise StartupRefused(
            f"ValueError: To serve max_num_seqs ({plan.max_num_seqs}) requests with the "
            f"model's max seq len ({plan.max_model_len}), ({gib(plan.kv_all_sequences)} GiB KV "
            "cache is needed, which is larger than the available KV cache memory "
            f"({gib(available)} GiB). Try increasing `gpu_memory_utilization` or decreasing "
            "`max_model_len` or `max_num_seqs` when initializing the engine. (simulator check)"
        )


@dataclass
class Counters:
    """Prometheus counters and gauges the simulator exports on /metrics."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: dict[str, int] = field(default_factory=dict)
    prefix_queries: int = 0
    prefix_hits: int = 0
    running: int = 0
    waiting: int = 0
    running_tokens: int = 0
    preemptions: int = 0


@dataclass
class Engine:
    """The live state of one simulated engine on one simulated GPU."""

    gpu: SimGpu
    owner: str
    pid: int
    plan: MemoryPlan
    faults: set[str] = field(default_factory=set)
    weights_on_gpu: bool = False
    kv_on_gpu: bool = False
    # After a level-2 sleep the weight buffers come back uninitialised until reload_weights.
    weights_valid: bool = True
    sleep_level: int = 0
    dead: str | None = None
    counters: Counters = field(default_factory=Counters)
    prefix_seen: set[str] = field(default_factory=set)
    # POST /pause (vLLM 0.34, dev mode): new requests answer 503 until /resume.
    paused: bool = False
    # --enable-sleep-mode: without it a sleep is recorded but frees nothing.
    sleep_mode: bool = True
    # Bumped by every sleep and pause(abort): requests running then finish as "abort".
    abort_epoch: int = 0

    @property
    def is_sleeping(self) -> bool:
        return self.sleep_level > 0

    def _take(self, label: str, nbytes: int) -> None:
        self.gpu.allocate(self.owner, label, nbytes, runtime=RUNTIME, pid=self.pid)

    def load_context(self) -> None:
        self._take("cuda_context", CONTEXT_BYTES)

    def load_weights(self) -> None:
        self._take("weights", self.plan.weights)
        self.weights_on_gpu = True

    def load_kv_cache(self) -> None:
        self._take("kv_cache", self.plan.kv_pool)
        self.kv_on_gpu = True

    def release_all(self) -> int:
        """Give every byte back (shutdown, or the engine process dying)."""
        self.weights_on_gpu = self.kv_on_gpu = False
        return self.gpu.release(self.owner)

    def sleep(self, level: int) -> int:
        """Free weights and KV cache; return the bytes freed (0 if already asleep)."""
        if self.is_sleeping:
            return 0
        if not self.sleep_mode:
            self.sleep_level = level
            return 0
        freed = self.gpu.release(self.owner, "weights") + self.gpu.release(self.owner, "kv_cache")
        self.weights_on_gpu = self.kv_on_gpu = False
        self.prefix_seen.clear()  # the prefix cache lives in the KV cache that was just freed
        self.sleep_level = level
        self.abort_epoch += 1
        if level == 2:
            self.weights_valid = False
        return freed

    def wake_up(self, tags: list[str] | None) -> None:
        """Re-take the tagged memory; SimOutOfMemory kills the engine as a real OOM would."""
        wanted = set(tags or ["weights", "kv_cache"])
        if not self.sleep_mode:
            self.sleep_level = 0  # nothing was freed, so there is nothing to take back
            return
        try:
            if "weights" in wanted and not self.weights_on_gpu:
                self.load_weights()
            if "kv_cache" in wanted and not self.kv_on_gpu:
                self.load_kv_cache()
        except SimOutOfMemory as exc:
            self.die(f"torch.OutOfMemoryError: CUDA out of memory. {exc}")
            raise
        if self.weights_on_gpu and self.kv_on_gpu:
            self.sleep_level = 0

    def reload_weights(self) -> None:
        """Load the weights from disk again into the awake weight buffers."""
        if not self.weights_on_gpu:
            raise RuntimeError(
                "reload_weights needs the weights awake; call POST /wake_up?tags=weights first"
            )
        self.weights_valid = True

    def die(self, cause: str) -> None:
        """The engine core process is gone: its memory returns to the GPU."""
        self.dead = cause
        self.release_all()

    def busy(self, on: bool) -> None:
        self.gpu.set_busy(self.owner, on)
