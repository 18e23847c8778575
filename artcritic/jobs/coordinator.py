"""The runtime coordinator: one heavy runtime at a time, coordinated, verified, visible.

``ensure(runtime, need_bytes)`` releases every resident runtime that is exclusive with
the wanted one (by the profile's strategy), verifies through NVML that the memory
really came back, then keeps, wakes, starts or recreates the wanted runtime and waits
for its health. Each step is a persisted phase of the job that asked for it and a
runtime-state change; nothing happens silently.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.nvml import NvmlProbe, wait_for_free
from artcritic.gpu.profiles import GB, Profile
from artcritic.gpu.runtime_state import RESIDENT, runtime_state_set, runtime_states
from artcritic.jobs.models import Phase
from artcritic.runtimes.comfyui import ComfyClient
from artcritic.runtimes.critic import CriticClient
from artcritic.runtimes.drivers.base import RuntimeDriver
from artcritic.runtimes.errors import RuntimeFailure, RuntimeUnavailable

log = logging.getLogger(__name__)

PhaseSink = Callable[[Phase, str, str], None]

# Log lines of a starting vLLM that tell loading from warming (compile, graph capture).
# The HTTP port only listens once everything is done, so the log is the honest signal.
CRITIC_LOADING = re.compile(r"Starting to load model|Loading weights|Loading safetensors", re.I)
CRITIC_WARMING = re.compile(
    r"Model loading took|torch\.compile|Capturing CUDA graph|Graph capturing|KV cache", re.I
)


def gb(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB"


@dataclass(frozen=True)
class Runtimes:
    """The drivers and clients of one GPU's runtimes."""

    drivers: Mapping[str, RuntimeDriver]
    comfy: ComfyClient
    critic: CriticClient


class Coordinator:
    """Owns the heavy runtimes of one GPU; only the GPU worker process creates one."""

    def __init__(
        self,
        gpu: Gpu,
        profile: Profile,
        *,
        probe: NvmlProbe,
        runtimes: Runtimes,
        poll_s: float = 0.2,
    ) -> None:
        self.gpu = gpu
        self.profile = profile
        self.probe = probe
        self.runtimes = runtimes
        self.poll_s = poll_s

    # -- state helpers -------------------------------------------------------------------

    def _set(
        self,
        runtime: str,
        status: RuntimeStatus,
        detail: str = "",
        *,
        fingerprint: str | None = None,
        driver: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        runtime_state_set(
            self.gpu,
            runtime,
            status,
            detail=detail,
            profile_name=self.profile.name,
            simulated=self.profile.simulated,
            fingerprint=fingerprint,
            driver=driver,
            endpoint=endpoint,
        )

    def _exclusive_with(self, runtime: str) -> list[str]:
        return [
            other
            for other in self.runtimes.drivers
            if other != runtime and self.profile.are_exclusive(runtime, other)
        ]

    def _healthy(self, runtime: str) -> bool:
        driver = self.runtimes.drivers[runtime]
        cfg = getattr(self.profile.runtimes, runtime)
        try:
            response = requests.get(driver.url.rstrip("/") + cfg.health_path, timeout=2)
        except requests.RequestException:
            return False
        return response.status_code == 200

    # -- public ----------------------------------------------------------------------------

    def ensure(self, runtime: str, *, need_bytes: int, phase: PhaseSink) -> str:
        """Make ``runtime`` ready for work needing ``need_bytes`` of VRAM, releasing others.

        Returns the runtime's version as it reports it (e.g. "vLLM 0.34.0"; "" if unknown).
        """
        self._ensure(runtime, need_bytes=need_bytes, phase=phase)
        return self.version_note(runtime)

    def version_note(self, runtime: str) -> str:
        """Read the runtime's version now and keep it on its runtime state."""
        try:
            if runtime == "comfyui":
                found = self.runtimes.comfy.version()
                version = f"ComfyUI {found}" if found else ""
            else:
                found = self.runtimes.critic.version()
                version = f"vLLM {found}" if found else ""
        except RuntimeFailure as exc:
            log.warning("cannot read the version of %s: %s", runtime, exc.reason)
            return ""
        state = runtime_states(self.gpu)[runtime]
        if version and state.version != version:
            runtime_state_set(
                self.gpu, runtime, RuntimeStatus(state.status), detail=state.detail, version=version
            )
        return version

    def wake_critic(self, *, phase: PhaseSink) -> None:
        """Wake a Critic found asleep or paused while a review needed it (never a restart)."""
        self._wake("critic", phase=phase)

    def runtime_lost(self, runtime: str, reason: str) -> None:
        """The runtime's engine died: mark it unhealthy so the next ensure recreates it."""
        self._set(runtime, RuntimeStatus.UNHEALTHY, f"engine lost: {reason}")

    def _ensure(self, runtime: str, *, need_bytes: int, phase: PhaseSink) -> None:
        states = runtime_states(self.gpu)
        for other in self._exclusive_with(runtime):
            if states[other].status in RESIDENT or self._other_holds_memory(other):
                self.release(other, phase=phase)
        state = runtime_states(self.gpu)[runtime]
        driver = self.runtimes.drivers[runtime]
        fingerprint = driver.fingerprint()
        warm = (
            state.status in (RuntimeStatus.READY, RuntimeStatus.BUSY)
            and state.fingerprint == fingerprint
            and self._healthy(runtime)
        )
        if warm and runtime == "comfyui" and not self._comfy_idle():
            # Answering is not enough: a prompt still running between our jobs is left over
            # from a hung or abandoned run, and a new one would only queue behind it.
            self._set(
                runtime,
                RuntimeStatus.UNHEALTHY,
                "a prompt from an earlier run is still running between jobs",
            )
            state = runtime_states(self.gpu)[runtime]
            warm = False
        if warm:
            return
        asleep = state.status == RuntimeStatus.SLEEPING and state.fingerprint == fingerprint
        if asleep and driver.is_running() and self._healthy(runtime):
            self._verify(runtime, need_bytes, phase=phase)
            self._wake(runtime, phase=phase)
            return
        if driver.is_running():
            if state.fingerprint != fingerprint:
                why = "it was started with other settings"
            elif state.status in (RuntimeStatus.READY, RuntimeStatus.BUSY):
                why = "it does not pass its health check (its engine may have died)"
            else:
                why = f"it is {state.get_status_display().lower()}"
            if (
                runtime == "comfyui"
                and state.status == RuntimeStatus.SLEEPING
                and state.fingerprint == fingerprint
                and self._healthy(runtime)
                and self._comfy_idle()
            ):
                # ComfyUI after /free is alive and loads models lazily: nothing to recreate.
                self._verify(runtime, need_bytes, phase=phase)
                self._set(
                    runtime,
                    RuntimeStatus.READY,
                    "ready; models load on first use",
                    fingerprint=fingerprint,
                )
                return
            phase(Phase.RELEASING, runtime, f"recreating {runtime}: {why}")
            self._set(runtime, RuntimeStatus.RELEASING, f"recreating: {why}")
            self._stop(runtime)
        self._verify(runtime, need_bytes, phase=phase)
        self._start(runtime, fingerprint, phase=phase)

    def release(self, runtime: str, *, phase: PhaseSink) -> None:
        """Release ``runtime``'s VRAM by the profile's strategy (it stays stopped/asleep)."""
        cfg = getattr(self.profile.runtimes, runtime)
        strategy = cfg.release
        phase(Phase.RELEASING, runtime, f"releasing {runtime} ({_strategy_words(strategy)})")
        self._set(runtime, RuntimeStatus.RELEASING, _strategy_words(strategy))
        try:
            if strategy == "free":
                self.runtimes.comfy.free(unload_models=True, free_memory=True)
                self._set(runtime, RuntimeStatus.SLEEPING, "models unloaded with /free")
            elif strategy in ("sleep1", "sleep2"):
                level = 1 if strategy == "sleep1" else 2
                self.runtimes.critic.sleep(level)
                self._set(runtime, RuntimeStatus.SLEEPING, f"vLLM sleep level {level}")
            else:
                self._stop(runtime)
        except RuntimeFailure as exc:
            # A release that fails is not papered over: stop it outright, visibly.
            log.warning("release of %s failed (%s); stopping it", runtime, exc.reason)
            self._set(runtime, RuntimeStatus.UNHEALTHY, f"release failed: {exc.reason}")
            self._stop(runtime)

    # -- steps -------------------------------------------------------------------------------

    def _comfy_idle(self) -> bool:
        """Evidence that ComfyUI runs nothing now (its own queue says so)."""
        try:
            queue = self.runtimes.comfy.queue()
        except RuntimeFailure:
            return False
        return not queue.get("queue_running") and not queue.get("queue_pending")

    def _other_holds_memory(self, runtime: str) -> bool:
        """A sleeping Critic of another GPU worker life may still be running; trust the driver."""
        state = runtime_states(self.gpu)[runtime]
        return (
            state.status == RuntimeStatus.UNHEALTHY and self.runtimes.drivers[runtime].is_running()
        )

    def _verify(self, runtime: str, need_bytes: int, *, phase: PhaseSink) -> None:
        usable = self.profile.usable_bytes
        # The reserve is the driver's and the display's; what must be free is the need.
        target = min(need_bytes, usable)
        phase(Phase.VERIFYING_VRAM, runtime, f"waiting for {gb(target)} free for {runtime} (NVML)")
        try:
            wait_for_free(
                self.probe, target, timeout=self.profile.verify_timeout_s, poll=self.poll_s
            )
            return
        except RuntimeFailure as first:
            holders = [
                other
                for other in self._exclusive_with(runtime)
                if self.runtimes.drivers[other].is_running()
                and self.runtimes.drivers[other].can_start
            ]
            if not holders:
                raise RuntimeUnavailable(
                    f"{first.reason} Nothing this worker controls is holding it.",
                    "Another process is using the GPU: check `manage.py gpu_status`, "
                    "stop it, then re-run the job.",
                ) from first
            for other in holders:
                # The release did not give the memory back: recreate it, visibly.
                self._set(
                    other,
                    RuntimeStatus.UNHEALTHY,
                    f"memory not returned after release: {first.reason}",
                )
                phase(
                    Phase.RELEASING,
                    other,
                    f"{other} did not return its memory; stopping it to recreate later",
                )
                self._stop(other)
            phase(Phase.VERIFYING_VRAM, runtime, f"re-checking {gb(target)} free (NVML)")
            wait_for_free(
                self.probe, target, timeout=self.profile.verify_timeout_s, poll=self.poll_s
            )

    def _stop(self, runtime: str) -> None:
        driver = self.runtimes.drivers[runtime]
        if driver.can_start:
            driver.stop()
            self._set(runtime, RuntimeStatus.STOPPED, "stopped")
        else:
            raise RuntimeUnavailable(
                f"{runtime} is external and cannot be stopped by artcritic.",
                f"Stop or restart {runtime} yourself, then re-run the job.",
            )

    def _wake(self, runtime: str, *, phase: PhaseSink) -> None:
        strategy = getattr(self.profile.runtimes, runtime).release
        if runtime == "critic":
            phase(Phase.STARTING, runtime, "waking the Critic from sleep")
            self._set(runtime, RuntimeStatus.STARTING, "waking from sleep")
            try:
                self.runtimes.critic.wake_up()
                if strategy == "sleep2":
                    # Level 2 discarded the weights: reload them and drop stale prefix cache.
                    phase(Phase.LOADING, runtime, "reloading weights after sleep level 2")
                    self._set(runtime, RuntimeStatus.LOADING, "reloading weights")
                    self.runtimes.critic.reload_weights()
                    self.runtimes.critic.reset_prefix_cache()
            except RuntimeFailure as exc:
                # Half awake is not ready: the next ensure recreates it, visibly.
                self._set(runtime, RuntimeStatus.UNHEALTHY, f"wake-up failed: {exc.reason}")
                raise
            self._set(runtime, RuntimeStatus.READY, "awake")
        else:
            self._set(runtime, RuntimeStatus.READY, "ready; models load on first use")

    def _start(self, runtime: str, fingerprint: str, *, phase: PhaseSink) -> None:
        driver = self.runtimes.drivers[runtime]
        cfg = getattr(self.profile.runtimes, runtime)
        if not driver.can_start:
            if self._healthy(runtime):
                self._set(
                    runtime,
                    RuntimeStatus.READY,
                    "external runtime answering",
                    fingerprint=fingerprint,
                    driver=driver.kind,
                    endpoint=driver.url,
                )
                return
            raise RuntimeUnavailable(
                f"{runtime} is an external runtime and does not answer at {driver.url}.",
                f"Start {runtime} yourself (it is not managed by artcritic), then re-run the job.",
            )
        phase(Phase.STARTING, runtime, f"starting {runtime} ({driver.describe()})")
        self._set(
            runtime,
            RuntimeStatus.STARTING,
            driver.describe(),
            fingerprint=fingerprint,
            driver=driver.kind,
            endpoint=driver.url,
        )
        driver.start()
        current = Phase.STARTING
        deadline = time.monotonic() + cfg.start_timeout_s
        started = time.monotonic()
        while True:
            if self._healthy(runtime):
                break
            if not driver.is_running():
                tail = driver.logs_tail(20)
                self._set(runtime, RuntimeStatus.UNHEALTHY, "exited during start")
                raise RuntimeUnavailable(
                    f"{runtime} exited while starting after {time.monotonic() - started:.0f} s. "
                    f"Last log lines:\n{tail}",
                    "Fix the cause shown in the log, then re-run the job.",
                )
            if time.monotonic() > deadline:
                tail = driver.logs_tail(20)
                self._set(runtime, RuntimeStatus.UNHEALTHY, "did not become healthy")
                driver.stop()
                raise RuntimeUnavailable(
                    f"{runtime} did not answer its health check within "
                    f"{cfg.start_timeout_s:.0f} s; it was stopped. Last log lines:\n{tail}",
                    "Check the runtime's log; raise start_timeout_s in the profile if it is "
                    "only slow.",
                )
            if runtime == "critic":
                current = self._critic_start_phase(current, driver, phase)
            time.sleep(self.poll_s)
        if runtime == "critic" and current != Phase.WARMING:
            # Fast starts can skip visible log lines; record the phases that did happen.
            if current == Phase.STARTING:
                phase(Phase.LOADING, runtime, "loading weights")
            phase(Phase.WARMING, runtime, "warming up (compile, CUDA graphs)")
        self._set(runtime, RuntimeStatus.READY, "healthy", fingerprint=fingerprint)

    def _critic_start_phase(self, current: Phase, driver: RuntimeDriver, phase: PhaseSink) -> Phase:
        tail = driver.logs_tail(60)
        if current == Phase.STARTING and CRITIC_LOADING.search(tail):
            phase(Phase.LOADING, "critic", "loading weights")
            self._set("critic", RuntimeStatus.LOADING, "loading weights")
            return Phase.LOADING
        if current in (Phase.STARTING, Phase.LOADING) and CRITIC_WARMING.search(tail):
            if current == Phase.STARTING:
                phase(Phase.LOADING, "critic", "loading weights")
            phase(Phase.WARMING, "critic", "warming up (compile, CUDA graphs)")
            self._set("critic", RuntimeStatus.WARMING, "warming up")
            return Phase.WARMING
        return current


def _strategy_words(strategy: str) -> str:
    return {
        "free": "ComfyUI /free: unload models and free memory",
        "sleep1": "vLLM sleep level 1: weights to host RAM, KV cache dropped",
        "sleep2": "vLLM sleep level 2: weights and KV cache dropped",
        "stop": "stop the runtime",
    }.get(strategy, strategy)
