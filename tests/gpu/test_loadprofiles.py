"""`manage.py loadprofiles`: what it prints, what it refuses, and its exit status."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from artcritic.gpu.models import Gpu, HardwareProfile

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "profiles" / "sim-32gb.toml"

pytestmark = pytest.mark.django_db


def loadprofiles(*args: str) -> str:
    out = io.StringIO()
    call_command("loadprofiles", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def bad_copy(directory: Path, old: str, new: str, source: Path = SIM) -> Path:
    path = directory / source.name
    path.write_text(source.read_text().replace(old, new))
    return path


def test_without_paths_every_shipped_profile_is_loaded_with_one_line_each() -> None:
    output = loadprofiles()

    assert output.splitlines() == [
        "Loaded rtx-pro-6000-96gb: 94.0 GB usable of 96.0 GB, real hardware "
        "(profiles/rtx-pro-6000-96gb.toml)",
        "Loaded rtx5090-32gb-compose-gpu1: 30.5 GB usable of 32.0 GB, real hardware "
        "(profiles/rtx5090-32gb-compose-gpu1.toml)",
        "Loaded rtx5090-32gb-compose: 30.5 GB usable of 32.0 GB, real hardware "
        "(profiles/rtx5090-32gb-compose.toml)",
        "Loaded rtx5090-32gb: 30.5 GB usable of 32.0 GB, real hardware "
        "(profiles/rtx5090-32gb.toml)",
        "Loaded sim-32gb: 30.5 GB usable of 32.0 GB, simulated (profiles/sim-32gb.toml)",
    ]
    assert HardwareProfile.objects.count() == 5


def test_the_default_directory_comes_from_settings(settings: Any, tmp_path: Path) -> None:
    (tmp_path / "sim-32gb.toml").write_text(SIM.read_text())
    settings.ARTCRITIC_PROFILES_DIR = tmp_path

    output = loadprofiles()

    assert output.startswith("Loaded sim-32gb: 30.5 GB usable")
    assert list(HardwareProfile.objects.values_list("name", flat=True)) == ["sim-32gb"]


def test_an_empty_profiles_directory_is_an_error(settings: Any, tmp_path: Path) -> None:
    settings.ARTCRITIC_PROFILES_DIR = tmp_path

    with pytest.raises(CommandError, match=rf"No \*\.toml profile files in {tmp_path}"):
        loadprofiles()


def test_given_paths_only_those_are_loaded() -> None:
    output = loadprofiles(str(SIM))

    assert output.count("Loaded ") == 1
    assert list(HardwareProfile.objects.values_list("name", flat=True)) == ["sim-32gb"]


def test_activate_loads_and_points_the_gpu_at_the_profile() -> None:
    output = loadprofiles("--activate", "sim-32gb", "--gpu", "sim3")

    assert output.splitlines()[-1] == "GPU sim3 now uses profile sim-32gb."
    assert Gpu.objects.get(name="sim3").active_profile.name == "sim-32gb"


def test_activate_without_gpu_uses_the_configured_gpu_and_says_so(settings: Any) -> None:
    settings.ARTCRITIC_GPU = "box1"

    output = loadprofiles("--activate", "rtx5090-32gb")

    assert output.splitlines()[-1] == "GPU box1 now uses profile rtx5090-32gb."


def test_activating_again_repoints_the_existing_gpu() -> None:
    loadprofiles("--activate", "sim-32gb", "--gpu", "gpu0")

    loadprofiles("--activate", "rtx-pro-6000-96gb", "--gpu", "gpu0")

    assert Gpu.objects.count() == 1
    assert Gpu.objects.get(name="gpu0").active_profile.name == "rtx-pro-6000-96gb"


def test_gpu_without_activate_is_refused_before_anything_is_loaded() -> None:
    with pytest.raises(CommandError, match="--gpu needs --activate NAME; nothing was loaded"):
        loadprofiles("--gpu", "gpu0")

    assert not HardwareProfile.objects.exists()


def test_an_unknown_profile_to_activate_rolls_the_load_back() -> None:
    with pytest.raises(CommandError, match=r"No hardware profile named 'rtx4090'.*known: "):
        loadprofiles(str(SIM), "--activate", "rtx4090", "--gpu", "gpu0")

    assert not HardwareProfile.objects.exists()
    assert not Gpu.objects.exists()


def test_a_hostile_gpu_name_is_refused_and_nothing_is_loaded() -> None:
    with pytest.raises(CommandError, match="is not valid: use 1-64 lower-case letters"):
        loadprofiles("--activate", "sim-32gb", "--gpu", "gpu0; rm -rf /")

    assert not HardwareProfile.objects.exists()


def test_every_problem_of_every_bad_file_is_reported_and_nothing_is_loaded(
    tmp_path: Path,
) -> None:
    first = bad_copy(tmp_path, "max_batch = 4", "max_batchh = 4")
    (tmp_path / "other").mkdir()
    second = bad_copy(
        tmp_path / "other",
        "gpu_memory_utilization = 0.7",
        "gpu_memory_utilization = 1.5",
        source=ROOT / "profiles" / "rtx5090-32gb.toml",
    )

    with pytest.raises(CommandError) as refused:
        loadprofiles(str(first), str(second), str(ROOT / "profiles" / "rtx-pro-6000-96gb.toml"))

    lines = str(refused.value).splitlines()
    assert lines[0] == "2 of 3 profile file(s) are invalid; nothing was loaded."
    assert f"{first}: limits.max_batchh: Extra inputs are not permitted" in lines
    assert f"{first}: limits.max_batch: Field required" in lines
    assert (
        f"{second}: runtimes.critic.gpu_memory_utilization: "
        "Input should be less than or equal to 0.99" in lines
    )
    assert not HardwareProfile.objects.exists()


def test_a_missing_path_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=rf"{tmp_path}/nope\.toml: cannot be read"):
        loadprofiles(str(tmp_path / "nope.toml"))


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line against this test run's database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "loadprofiles", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_exits_non_zero_with_every_problem_on_stderr(tmp_path: Path) -> None:
    bad = bad_copy(tmp_path, "reserve_gb = 1.5", "reserve_gb = 32.0")

    result = _manage(str(bad), str(SIM))

    assert result.returncode == 1
    assert result.stdout == ""
    assert "1 of 2 profile file(s) are invalid; nothing was loaded." in result.stderr
    assert "reserve_gb (32.0) must be below vram_total_gb (32.0)" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_the_command_line_exits_zero_after_loading() -> None:
    result = _manage("--activate", "sim-32gb", "--gpu", "sim9")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "GPU sim9 now uses profile sim-32gb."
    assert Gpu.objects.get(name="sim9").active_profile.name == "sim-32gb"
