"""NVML readings of a GPU: read by its worker every few seconds, stored on the Gpu row, published.

The GPU worker runs ``ReadingsThread`` beside its jobs. Each tick reads the probe of
the GPU's active profile (real NVML or the simulated GPU), stores the reading — or,
when NVML cannot be read, the reason and the next action — on ``Gpu.reading``, and
publishes a ``gpu.reading`` event only when something a person would notice changed
(or, as a heartbeat, at least every ``HEARTBEAT_S``, so a page's "read 5 s ago" stays
true). PostgreSQL holds the latest reading, so a page that loads or resyncs shows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.db import close_old_connections, connection
from django.utils import timezone

from artcritic.events import event_publish
from artcritic.gpu.models import Gpu
from artcritic.gpu.nvml import GpuReading, NvmlUnavailable, probe_for
from artcritic.gpu.profiles import GB
from artcritic.gpu.selectors import NoActiveProfile, profile_active

log = logging.getLogger(__name__)

INTERVAL_S = 2.0
HEARTBEAT_S = 30.0
# What counts as a change worth an event: VRAM moves by 0.25 GB (a model loads or leaves,
# not allocator noise), power by 10 W, utilisation by 10 points.
USED_STEP_BYTES = GB // 4
POWER_STEP_W = 10.0
UTILIZATION_STEP = 10

Reading = dict[str, Any]


def reading_payload(reading: GpuReading) -> Reading:
    """A probe's reading as the JSON stored on the Gpu row and sent to pages."""
    return {
        "ok": True,
        "device": reading.name,
        "simulated": reading.simulated,
        "total_bytes": reading.total_bytes,
        "used_bytes": reading.used_bytes,
        "free_bytes": reading.free_bytes,
        "utilization_pct": reading.utilization_pct,
        "power_watts": None if reading.power_watts is None else round(reading.power_watts, 1),
        "energy_joules": None if reading.energy_joules is None else round(reading.energy_joules),
        "processes": [asdict(process) for process in reading.processes],
    }


def unavailable_payload(failure: NvmlUnavailable, *, simulated: bool = False) -> Reading:
    """Why there is no reading, in the user's words, and what to do about it."""
    return {
        "ok": False,
        "simulated": simulated,
        "reason": failure.reason,
        "next_action": failure.next_action,
    }


def reading_changed(before: Reading | None, after: Reading) -> bool:
    """Whether ``after`` differs from the last published reading enough to tell the pages."""
    if before is None or before.get("ok") != after.get("ok"):
        return True
    if not after.get("ok"):
        return before.get("reason") != after.get("reason")
    identity = ("device", "total_bytes", "simulated")
    return (
        any(before.get(key) != after.get(key) for key in identity)
        or abs(int(after["used_bytes"]) - int(before["used_bytes"])) >= USED_STEP_BYTES
        or _moved(before.get("power_watts"), after.get("power_watts"), POWER_STEP_W)
        or _moved(before.get("utilization_pct"), after.get("utilization_pct"), UTILIZATION_STEP)
        or _pids(before) != _pids(after)
    )


def _moved(before: float | None, after: float | None, step: float) -> bool:
    if before is None or after is None:
        return (before is None) != (after is None)
    return abs(after - before) >= step


def _pids(reading: Reading) -> set[int]:
    return {int(process["pid"]) for process in reading.get("processes", [])}


def reading_store(gpu_name: str, payload: Reading, *, publish: bool) -> datetime | None:
    """Store the GPU's latest reading; publish it as ``gpu.reading`` when asked.

    Returns the time stored, or None when the GPU has no row (nothing to show it on).
    """
    now = timezone.now()
    # update(), not save(): the row's updated_at is the admin's (profile changes), not ours.
    stored = Gpu.objects.filter(name=gpu_name).update(reading=payload, reading_at=now)
    if not stored:
        return None
    if publish:
        event_publish("gpu.reading", gpu=gpu_name, detail={**payload, "at": now.isoformat()})
    return now


def reading_take(gpu_name: str) -> Reading:
    """Read the GPU through the probe its active profile calls for; the reason if it cannot."""
    gpu, profile = profile_active(gpu_name)
    try:
        probe = probe_for(
            gpu_name,
            simulated=profile.simulated,
            index=gpu.nvml_index,
            total_bytes=profile.total_bytes,
        )
        return reading_payload(probe.read())
    except NvmlUnavailable as failure:
        return unavailable_payload(failure, simulated=profile.simulated)


class ReadingRecorder:
    """One GPU's readings: store every one, publish the ones that changed (or a heartbeat)."""

    def __init__(
        self,
        gpu_name: str,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        take: Callable[[str], Reading] = reading_take,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gpu_name = gpu_name
        self.heartbeat_s = heartbeat_s
        self._take = take
        self._clock = clock
        self._published: Reading | None = None
        self._published_at = 0.0

    def tick(self) -> bool:
        """Take and store one reading; True when it was published."""
        payload = self._take(self.gpu_name)
        now = self._clock()
        publish = (
            reading_changed(self._published, payload)
            or now - self._published_at >= self.heartbeat_s
        )
        if reading_store(self.gpu_name, payload, publish=publish) is None:
            return False
        if publish:
            self._published, self._published_at = payload, now
        return publish


class ReadingsThread:
    """A daemon thread of the GPU worker that records readings every ``interval`` seconds."""

    def __init__(self, gpu_name: str, *, interval: float = INTERVAL_S) -> None:
        self.recorder = ReadingRecorder(gpu_name)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"nvml-readings-{gpu_name}", daemon=True
        )

    def start(self) -> ReadingsThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        gpu = self.recorder.gpu_name
        try:
            while not self._stop.is_set():
                try:
                    self.recorder.tick()
                except NoActiveProfile:
                    log.warning("GPU %s has no active profile; no NVML reading stored", gpu)
                except Exception:
                    # A lost database connection or a probe bug must not end the readings.
                    log.exception("NVML reading of GPU %s failed", gpu)
                    close_old_connections()
                self._stop.wait(self.interval)
        finally:
            connection.close()
