"""`manage.py gpu_status` shows each GPU's memory and processes, or why NVML cannot read it."""

from __future__ import annotations

import ctypes
import os
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import GB
from artcritic.sim.gpu import SimGpu
from tests.factories import profile_load

pytestmark = pytest.mark.django_db


def nvidia_library_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.fixture
def sim_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Path:
    monkeypatch.setenv("ARTCRITIC_SIM_DIR", str(tmp_path))
    settings.ARTCRITIC_NVML = "auto"
    return tmp_path


def run(*args: str) -> str:
    out = StringIO()
    call_command("gpu_status", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_prints_a_simulated_gpu_with_its_memory_and_processes(sim_dir: Path) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    profile_load("sim-32gb", gpu=name)
    SimGpu(name, root=sim_dir).allocate("comfyui", "flux", 17 * GB, runtime="comfyui")

    output = run()

    assert f"GPU {name} — profile sim-32gb (SIMULATED)" in output
    assert "total 32.0 GB · used 17.3 GB · free 14.7 GB" in output
    assert "utilisation  –" in output
    assert f"{os.getpid():>8}    17.0 GB  sim-comfyui" in output


def test_a_gpu_without_a_row_can_be_read_as_simulated_by_name(sim_dir: Path) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    SimGpu(name, root=sim_dir).reset(96 * GB)

    output = run("--gpu", name, "--sim")

    assert f"GPU {name} — profile none (SIMULATED)" in output
    assert "total 96.0 GB" in output
    assert "processes    none" in output


def test_without_a_driver_it_prints_the_nvml_reason_and_exits_non_zero(
    sim_dir: Path, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    # The command runs the system checks, and DEBUG is off here as in production: give it
    # production-like S3 credentials, or artcritic.E003 refuses the public development secret.
    settings.S3_ACCESS_KEY = "artcritic-gpu-status"
    settings.S3_SECRET_KEY = "Zq7mV2xK9pL4rT8wN1cF6hB3jD5sG0aY"
    profile_load("rtx5090-32gb", gpu="card0")
    # On a GPU host index 99 is what cannot be read; here it is the missing driver.
    Gpu.objects.filter(name="card0").update(nvml_index=99)

    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "gpu_status", "--gpu", "card0"])

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if nvidia_library_loads():
        assert "GPU index 99 does not exist" in err
    else:
        assert "NVML could not load: libnvidia-ml.so.1 not found — no NVIDIA driver" in err
        assert "Next: Install the NVIDIA driver" in err


def test_a_failing_gpu_does_not_hide_the_others(sim_dir: Path) -> None:
    sim_name = f"a{uuid.uuid4().hex[:8]}"
    profile_load("sim-32gb", gpu=sim_name)
    profile_load("rtx5090-32gb", gpu="zz-real")
    Gpu.objects.filter(name="zz-real").update(nvml_index=99)
    out = StringIO()

    with pytest.raises(CommandError, match="GPU zz-real: "):
        call_command("gpu_status", stdout=out, stderr=StringIO())

    assert f"GPU {sim_name} — profile sim-32gb (SIMULATED)" in out.getvalue()
    assert "total 32.0 GB" in out.getvalue()
    assert "GPU zz-real — profile rtx5090-32gb (real)" in out.getvalue()


def test_with_no_gpus_configured_it_says_how_to_add_one(sim_dir: Path) -> None:
    with pytest.raises(CommandError, match=r"No GPUs are configured.*loadprofiles --activate"):
        run()
