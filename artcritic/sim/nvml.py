"""The simulated GPU's NVML probe: memory, processes, power and energy from artcritic.sim.gpu.

The product finds it by name (``artcritic.gpu.nvml.SIMULATED_PROBE``) for a profile marked
simulated; it implements the product's ``NvmlProbe`` contract and returns its readings.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from artcritic.gpu.nvml import GpuProcess, GpuReading
from artcritic.sim.gpu import SimGpu


class SimNvmlProbe:
    """The simulated GPU ``gpu_name``: memory and processes from artcritic.sim.gpu."""

    def __init__(
        self,
        gpu_name: str,
        sim_dir: Path | None = None,
        index: int = 0,
        total_bytes: int | None = None,
    ) -> None:
        self.gpu_name = gpu_name
        self.sim_dir = sim_dir
        self.index = index
        if total_bytes is not None:
            # The worker creates the simulated GPU at the profile's size; never a default one.
            SimGpu(gpu_name, root=sim_dir).ensure(total_bytes)

    def read(self) -> GpuReading:
        snapshot = SimGpu(self.gpu_name, root=self.sim_dir).snapshot()
        used_by_pid: dict[int, int] = defaultdict(int)
        runtimes_by_pid: dict[int, set[str]] = defaultdict(set)
        for allocation in snapshot.allocations:
            used_by_pid[allocation.pid] += allocation.bytes
            runtimes_by_pid[allocation.pid].add(allocation.runtime)
        processes = tuple(
            GpuProcess(
                pid=pid,
                used_bytes=used,
                name="+".join(f"sim-{r}" for r in sorted(runtimes_by_pid[pid])),
            )
            for pid, used in sorted(used_by_pid.items())
        )
        return GpuReading(
            index=self.index,
            name=f"Simulated GPU {self.gpu_name}",
            total_bytes=snapshot.total,
            used_bytes=min(snapshot.used, snapshot.total),
            free_bytes=snapshot.free,
            processes=processes,
            # The simulated GPU does not model utilisation; None, not a made-up number.
            utilization_pct=None,
            power_watts=snapshot.power_watts,
            energy_joules=snapshot.energy_joules if snapshot.reports_energy else None,
            simulated=True,
            driver_version="simulated",
        )
