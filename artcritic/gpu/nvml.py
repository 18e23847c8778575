"""The NVML probe: what the GPU's memory, processes, utilisation, power and energy are now.

``RealNvmlProbe`` reads an NVIDIA GPU through pynvml; for a profile marked simulated,
``probe_for`` looks up the simulated GPU's probe by name (``SIMULATED_PROBE``): the one
wiring point between the product and ``artcritic.sim``, which the product never imports.
Without a driver the real probe raises ``NvmlUnavailable`` saying so, never a pynvml
traceback.
Fields a card does not support (power on some boards, energy before Volta)
are None rather than errors.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from artcritic.failures import RuntimeFailure
from artcritic.gpu.profiles import GB

NEXT_NO_DRIVER = (
    "Install the NVIDIA driver (nvidia-smi must work), or use a simulated profile "
    "(ARTCRITIC_NVML=sim)."
)


class NvmlUnavailable(RuntimeFailure):
    """NVML cannot be used on this host (no library, no driver, no such GPU, no permission)."""

    default_next_action = NEXT_NO_DRIVER


class VramNotFreed(RuntimeFailure):
    """Free GPU memory did not reach what is needed within the timeout."""

    default_next_action = (
        "Check `manage.py gpu_status` for the processes holding VRAM; the runtime that did not "
        "release will be recreated."
    )


@dataclass(frozen=True)
class GpuProcess:
    """A process holding GPU memory; ``used_bytes`` is None where the driver does not say."""

    pid: int
    used_bytes: int | None
    name: str


@dataclass(frozen=True)
class GpuReading:
    """One reading of one GPU."""

    index: int
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    processes: tuple[GpuProcess, ...]
    utilization_pct: int | None
    power_watts: float | None
    energy_joules: float | None
    simulated: bool
    driver_version: str


class NvmlProbe(Protocol):
    """Reads one GPU."""

    def read(self) -> GpuReading:
        """The GPU's state now; raises NvmlUnavailable when it cannot be read."""
        ...


def gb(nbytes: int | None) -> str:
    """Decimal gigabytes with one decimal, as profiles and vendors count them."""
    return "–" if nbytes is None else f"{nbytes / GB:.1f} GB"


# -- the real GPU ----------------------------------------------------------------------

_init_lock = threading.Lock()
_nvml: ModuleType | None = None


def _pynvml() -> ModuleType:
    """pynvml, initialised once per process; NvmlUnavailable with the cause otherwise."""
    global _nvml  # noqa: PLW0603 - NVML is process-wide state; init exactly once
    with _init_lock:
        if _nvml is not None:
            return _nvml
        with warnings.catch_warnings():
            # The "pynvml" distribution warns that it is a shim over nvidia-ml-py: same module.
            warnings.simplefilter("ignore", FutureWarning)
            try:
                import pynvml
            except ImportError:
                raise NvmlUnavailable(
                    "The NVML bindings are not installed (Python module pynvml).",
                    "Install them with `pip install nvidia-ml-py`, or use a simulated profile.",
                ) from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise _unavailable(pynvml, exc) from None
        _nvml = pynvml
        return pynvml


def _unavailable(pynvml: Any, exc: Exception, index: int | None = None) -> NvmlUnavailable:
    code = getattr(exc, "value", None)
    if code == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return NvmlUnavailable(
            "NVML could not load: libnvidia-ml.so.1 not found — no NVIDIA driver on this host."
        )
    if code == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return NvmlUnavailable(
            "NVML found its library but the NVIDIA kernel driver is not loaded "
            "(nvidia-smi would fail too).",
            "Load the driver (reboot after installing it, or `modprobe nvidia`), or use a "
            "simulated profile (ARTCRITIC_NVML=sim).",
        )
    if code == pynvml.NVML_ERROR_NO_PERMISSION:
        return NvmlUnavailable(
            "NVML refused access to the GPU (no permission).",
            "Run the worker as a user allowed to open /dev/nvidia*, or in a container started "
            "with the GPU device.",
        )
    if code in (pynvml.NVML_ERROR_INVALID_ARGUMENT, pynvml.NVML_ERROR_NOT_FOUND):
        count = _device_count(pynvml)
        return NvmlUnavailable(
            f"GPU index {index} does not exist; NVML sees {count} GPU(s) on this host.",
            "Set the GPU's nvml_index in the admin to an index `nvidia-smi -L` lists.",
        )
    if code == pynvml.NVML_ERROR_GPU_IS_LOST:
        return NvmlUnavailable(
            f"GPU {index} has fallen off the bus (NVML: GPU is lost).",
            "The host needs a reboot; check `dmesg` for Xid errors and the card's power.",
        )
    return NvmlUnavailable(f"NVML failed: {exc}.")


def _device_count(pynvml: Any) -> int | str:
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError:
        return "an unknown number of"


def _optional[T](pynvml: Any, read: Callable[[], T]) -> T | None:
    """A field the card may not support: None instead of NVMLError_NotSupported."""
    try:
        return read()
    except pynvml.NVMLError as exc:
        if getattr(exc, "value", None) in (
            pynvml.NVML_ERROR_NOT_SUPPORTED,
            pynvml.NVML_ERROR_NO_PERMISSION,
            pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        ):
            return None
        raise


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _process_name(pynvml: Any, pid: int) -> str:
    try:
        return os.path.basename(_text(pynvml.nvmlSystemGetProcessName(pid)))
    except pynvml.NVMLError:
        pass
    # NVML reports host PIDs; inside a container the name may only be in our /proc.
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _processes(pynvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
    """Compute and graphics processes, merged by PID (a process may appear in both lists)."""
    by_pid: dict[int, int | None] = {}
    for read in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        for proc in _optional(pynvml, partial(read, handle)) or []:
            used = proc.usedGpuMemory
            previous = by_pid.get(proc.pid)
            by_pid[proc.pid] = used if previous is None else max(previous, used or 0)
    return tuple(
        GpuProcess(pid=pid, used_bytes=used, name=_process_name(pynvml, pid))
        for pid, used in sorted(by_pid.items())
    )


class RealNvmlProbe:
    """An NVIDIA GPU by NVML index."""

    def __init__(self, index: int = 0) -> None:
        self.index = index

    def read(self) -> GpuReading:
        pynvml = _pynvml()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = _text(pynvml.nvmlDeviceGetName(handle))
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            processes = _processes(pynvml, handle)
            utilization = _optional(pynvml, lambda: pynvml.nvmlDeviceGetUtilizationRates(handle))
            power_mw = _optional(pynvml, lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
            energy_mj = _optional(
                pynvml, lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            )
        except pynvml.NVMLError as exc:
            raise _unavailable(pynvml, exc, self.index) from None
        return GpuReading(
            index=self.index,
            name=name,
            total_bytes=int(memory.total),
            used_bytes=int(memory.used),
            free_bytes=int(memory.free),
            processes=processes,
            utilization_pct=int(utilization.gpu) if utilization is not None else None,
            power_watts=power_mw / 1000.0 if power_mw is not None else None,
            energy_joules=energy_mj / 1000.0 if energy_mj is not None else None,
            simulated=False,
            driver_version=driver,
        )


# The product reaches the simulator only here, by dotted name, and only for a profile marked
# simulated (or ARTCRITIC_NVML=sim): import-linter forbids every product module to import
# artcritic.sim, so a development helper can never leak into a real GPU's code path.
SIMULATED_PROBE = "artcritic.sim.nvml.SimNvmlProbe"


def probe_for(
    gpu_name: str, *, simulated: bool, index: int = 0, total_bytes: int | None = None
) -> NvmlProbe:
    """The probe for a GPU, honouring settings.ARTCRITIC_NVML (auto | real | sim).

    ``total_bytes`` is the profile's card size: a simulated GPU that does not exist yet is
    created at that size (never at a default one); a real card reports its own.
    """
    from django.conf import settings
    from django.utils.module_loading import import_string

    mode = settings.ARTCRITIC_NVML
    if mode not in {"auto", "real", "sim"}:
        raise NvmlUnavailable(
            f"ARTCRITIC_NVML={mode!r} is not one of auto, real, sim.",
            "Set ARTCRITIC_NVML to auto (follow the profile), real or sim.",
        )
    if mode == "sim" or (mode == "auto" and simulated):
        probe: NvmlProbe = import_string(SIMULATED_PROBE)(
            gpu_name, index=index, total_bytes=total_bytes
        )
        return probe
    return RealNvmlProbe(index)


def wait_for_free(
    probe: NvmlProbe, required_bytes: int, timeout: float, poll: float = 0.2
) -> GpuReading:
    """Poll until at least ``required_bytes`` are free; VramNotFreed with the numbers if not."""
    started = time.monotonic()
    while True:
        reading = probe.read()
        if reading.free_bytes >= required_bytes:
            return reading
        waited = time.monotonic() - started
        if waited >= timeout:
            raise VramNotFreed(
                f"After {waited:.0f} s only {gb(reading.free_bytes)} free of "
                f"{gb(reading.total_bytes)}; {gb(required_bytes)} needed." + _holders(reading)
            )
        time.sleep(min(poll, max(0.0, timeout - waited)))


def _holders(reading: GpuReading) -> str:
    if not reading.processes:
        return ""
    held = ", ".join(f"pid {p.pid} {p.name} {gb(p.used_bytes)}" for p in reading.processes)
    return f" Held by: {held}."


def reading_lines(reading: GpuReading) -> list[str]:
    """A reading as aligned lines for people (gpu_status, the self-test)."""
    kind = "SIMULATED" if reading.simulated else "real"
    util = "–" if reading.utilization_pct is None else f"{reading.utilization_pct} %"
    power = "–" if reading.power_watts is None else f"{reading.power_watts:.0f} W"
    energy = "–" if reading.energy_joules is None else f"{reading.energy_joules / 1000:.1f} kJ"
    lines = [
        f"  device       {reading.name} (index {reading.index}, {kind}, driver "
        f"{reading.driver_version})",
        f"  memory       total {gb(reading.total_bytes)} · used {gb(reading.used_bytes)} · "
        f"free {gb(reading.free_bytes)}",
        f"  utilisation  {util}",
        f"  power        {power} · energy {energy}",
    ]
    if not reading.processes:
        lines.append("  processes    none")
        return lines
    lines.append(f"  processes    {'PID':>8}  {'USED':>9}  NAME")
    lines.extend(
        f"               {p.pid:>8}  {gb(p.used_bytes):>9}  {p.name}" for p in reading.processes
    )
    return lines


def nvml_selftest(index: int = 0) -> str:
    """Read the real GPU ``index`` once and return it as text (for a check on a GPU host)."""
    reading = RealNvmlProbe(index).read()
    return "\n".join([f"NVML reading of GPU {index}:", *reading_lines(reading)])


if __name__ == "__main__":
    try:
        sys.stdout.write(nvml_selftest(int(sys.argv[1]) if len(sys.argv) > 1 else 0) + "\n")
    except NvmlUnavailable as failure:
        sys.stderr.write(f"{failure.reason}\nNext: {failure.next_action}\n")
        raise SystemExit(1) from None
