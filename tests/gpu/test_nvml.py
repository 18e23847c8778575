"""The NVML probe reads the real GPU or says clearly why it cannot, and reads the simulated GPU."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings

from artcritic.gpu.nvml import (
    GpuProcess,
    NvmlUnavailable,
    RealNvmlProbe,
    VramNotFreed,
    nvml_selftest,
    probe_for,
    wait_for_free,
)
from artcritic.gpu.profiles import GB
from artcritic.runtimes.errors import RuntimeFailure
from artcritic.sim.gpu import BASELINE_BYTES, SimGpu
from artcritic.sim.nvml import SimNvmlProbe

ROOT = Path(__file__).resolve().parents[2]


def nvidia_library_loads() -> bool:
    """Whether this host has the NVIDIA driver's NVML library (the H100 box does, CI does not)."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.fixture
def sim_gpu(tmp_path: Path) -> SimGpu:
    gpu = SimGpu(f"t{uuid.uuid4().hex[:8]}", root=tmp_path)
    gpu.reset(32 * GB)
    return gpu


@pytest.fixture
def other_process() -> Iterator[int]:
    """A live process other than this one, to own an allocation (dead owners are reaped)."""
    child = subprocess.Popen(["sleep", "120"])
    yield child.pid
    child.kill()
    child.wait()


def test_the_real_probe_reads_the_gpu_or_explains_that_there_is_no_driver() -> None:
    probe = RealNvmlProbe(0)
    if nvidia_library_loads():
        reading = probe.read()
        assert reading.total_bytes > 0
        assert reading.used_bytes + reading.free_bytes <= reading.total_bytes * 1.01
        assert reading.name
        assert not reading.simulated
        return
    with pytest.raises(NvmlUnavailable) as failed:
        probe.read()
    assert isinstance(failed.value, RuntimeFailure)
    assert failed.value.reason == (
        "NVML could not load: libnvidia-ml.so.1 not found — no NVIDIA driver on this host."
    )
    assert failed.value.next_action.startswith("Install the NVIDIA driver")
    assert "simulated profile" in failed.value.next_action
    # Asked again it says the same, rather than a half-initialised pynvml error.
    with pytest.raises(NvmlUnavailable, match=r"libnvidia-ml\.so\.1 not found"):
        probe.read()


def test_a_gpu_index_that_does_not_exist_is_explained() -> None:
    with pytest.raises(NvmlUnavailable) as failed:
        RealNvmlProbe(97).read()
    if nvidia_library_loads():
        assert "GPU index 97 does not exist" in failed.value.reason
        assert "nvidia-smi -L" in failed.value.next_action
    else:
        assert "libnvidia-ml.so.1 not found" in failed.value.reason


def test_the_selftest_prints_one_reading_or_exits_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "artcritic.gpu.nvml"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
    )
    if nvidia_library_loads():
        assert result.returncode == 0, result.stderr
        assert "NVML reading of GPU 0:" in result.stdout
        assert nvml_selftest().startswith("NVML reading of GPU 0:")
        return
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "libnvidia-ml.so.1 not found" in result.stderr
    assert "Next: Install the NVIDIA driver" in result.stderr


def test_the_sim_probe_reports_allocations_grouped_by_process(
    sim_gpu: SimGpu, tmp_path: Path, other_process: int
) -> None:
    me = os.getpid()
    sim_gpu.allocate("comfyui", "flux-transformer", 12 * GB, runtime="comfyui", pid=me)
    sim_gpu.allocate("comfyui", "t5", 5 * GB, runtime="comfyui", pid=me)
    sim_gpu.allocate("critic", "weights", 7 * GB, runtime="critic", pid=other_process)

    reading = SimNvmlProbe(sim_gpu.name, sim_dir=tmp_path).read()

    assert reading.simulated
    assert reading.driver_version == "simulated"
    assert reading.total_bytes == 32 * GB
    assert reading.used_bytes == BASELINE_BYTES + 24 * GB
    assert reading.free_bytes == 32 * GB - BASELINE_BYTES - 24 * GB
    assert set(reading.processes) == {
        GpuProcess(pid=me, used_bytes=17 * GB, name="sim-comfyui"),
        GpuProcess(pid=other_process, used_bytes=7 * GB, name="sim-critic"),
    }
    assert reading.power_watts is not None
    assert reading.power_watts > 0
    assert reading.energy_joules is not None
    assert reading.utilization_pct is None  # not modelled, so not invented


def test_the_sim_probe_drops_the_memory_of_a_process_that_died(
    sim_gpu: SimGpu, tmp_path: Path
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    sim_gpu.allocate("comfyui", "flux", 12 * GB, runtime="comfyui", pid=gone.pid)

    reading = SimNvmlProbe(sim_gpu.name, sim_dir=tmp_path).read()

    assert reading.processes == ()
    assert reading.used_bytes == BASELINE_BYTES


def test_the_sim_probe_follows_artcritic_sim_dir_when_no_dir_is_given(
    sim_gpu: SimGpu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTCRITIC_SIM_DIR", str(tmp_path))
    sim_gpu.allocate("critic", "weights", 3 * GB, runtime="critic")
    assert SimNvmlProbe(sim_gpu.name).read().used_bytes == BASELINE_BYTES + 3 * GB


@pytest.mark.parametrize(
    ("mode", "simulated", "expected"),
    [
        ("auto", True, SimNvmlProbe),
        ("auto", False, RealNvmlProbe),
        ("sim", False, SimNvmlProbe),
        ("real", True, RealNvmlProbe),
    ],
)
def test_probe_for_follows_the_profile_unless_artcritic_nvml_says_otherwise(
    settings: Settings, mode: str, simulated: bool, expected: type
) -> None:
    settings.ARTCRITIC_NVML = mode
    assert isinstance(probe_for("sim0", simulated=simulated, index=2), expected)


def test_probe_for_refuses_a_misspelt_mode(settings: Settings) -> None:
    settings.ARTCRITIC_NVML = "simulated"
    with pytest.raises(NvmlUnavailable, match="ARTCRITIC_NVML='simulated' is not one of"):
        probe_for("sim0", simulated=True)


def test_wait_for_free_returns_once_the_memory_comes_back(sim_gpu: SimGpu, tmp_path: Path) -> None:
    sim_gpu.allocate("comfyui", "flux", 25 * GB, runtime="comfyui")
    probe = SimNvmlProbe(sim_gpu.name, sim_dir=tmp_path)
    assert probe.read().free_bytes < 20 * GB
    releaser = threading.Timer(0.3, sim_gpu.release, args=("comfyui",))
    releaser.start()

    reading = wait_for_free(probe, 20 * GB, timeout=60, poll=0.05)

    releaser.join()
    assert reading.free_bytes >= 20 * GB
    assert reading.processes == ()


def test_wait_for_free_fails_with_the_numbers_and_who_holds_the_memory(
    sim_gpu: SimGpu, tmp_path: Path
) -> None:
    # 19.6 GB used in all (with the driver's baseline) leaves 12.4 GB of 32.0 GB.
    sim_gpu.allocate("comfyui", "flux", round(19.6 * GB) - BASELINE_BYTES, runtime="comfyui")

    with pytest.raises(VramNotFreed) as failed:
        wait_for_free(
            SimNvmlProbe(sim_gpu.name, sim_dir=tmp_path), round(19.6 * GB), timeout=0.3, poll=0.05
        )

    assert isinstance(failed.value, RuntimeFailure)
    assert "only 12.4 GB free of 32.0 GB; 19.6 GB needed." in failed.value.reason
    assert f"Held by: pid {os.getpid()} sim-comfyui 19.3 GB." in failed.value.reason
    assert "gpu_status" in failed.value.next_action
