"""What one job used of the GPU: NVML's energy counter over claim → finish, and peak VRAM.

The GPU worker starts a meter when it claims a job and stops it when the job ends. Energy
is the difference of the card's total-energy counter (millijoules since the driver
loaded), None when the card does not report it — never 0. Peak VRAM is the most memory
in use in the readings taken while the job ran (at the start, the end, and every
``INTERVAL_S`` between), None when NVML could not be read at all.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from artcritic.gpu.nvml import GpuReading, NvmlProbe, NvmlUnavailable

log = logging.getLogger(__name__)

INTERVAL_S = 0.5


@dataclass(frozen=True)
class Usage:
    """A job's energy (joules, None: not reported) and peak VRAM (bytes, None: no reading)."""

    energy_joules: float | None
    vram_peak_bytes: int | None


def energy_delta(before: float | None, after: float | None) -> float | None:
    """Joules between two counter readings; None when either is missing or it went back."""
    if before is None or after is None:
        return None
    if after < before:
        # The counter restarts with the driver: the job's energy is then unknown, not negative.
        log.warning("the GPU's energy counter went back (%s → %s J)", before, after)
        return None
    return after - before


class JobMeter:
    """Reads the probe at the start, every ``interval`` seconds, and at the end of a job."""

    def __init__(self, probe: NvmlProbe, *, interval: float = INTERVAL_S) -> None:
        self.probe = probe
        self.interval = interval
        self._energy_start: float | None = None
        self._peak: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-meter", daemon=True)

    def _read(self) -> GpuReading | None:
        try:
            reading = self.probe.read()
        except NvmlUnavailable:
            return None
        with self._lock:
            if self._peak is None or reading.used_bytes > self._peak:
                self._peak = reading.used_bytes
        return reading

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def start(self) -> JobMeter:
        reading = self._read()
        self._energy_start = reading.energy_joules if reading is not None else None
        self._thread.start()
        return self

    def stop(self) -> Usage:
        """Stop reading; the job's energy and peak VRAM (idempotent: later calls re-read)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        reading = self._read()
        energy = energy_delta(
            self._energy_start, reading.energy_joules if reading is not None else None
        )
        with self._lock:
            return Usage(energy_joules=energy, vram_peak_bytes=self._peak)
