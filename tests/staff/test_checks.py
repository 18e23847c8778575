"""System checks report configurations that would fail later or weaken a guarantee."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from pytest_django.fixtures import Settings as SettingsWrapper

from artcritic.staff import checks
from tests.ops.conftest import ROOT


def _ids(messages: list[object]) -> set[str]:
    return {getattr(message, "id", "") for message in messages}


def test_the_development_configuration_passes_every_check(settings: SettingsWrapper) -> None:
    settings.DEBUG = True  # as `make run` has it (pytest-django turns DEBUG off)
    messages = run_checks(tags=["artcritic", "security"])
    assert not [m for m in messages if getattr(m, "id", "").startswith("artcritic.")]


def test_a_broken_profile_file_is_reported_with_its_name_and_key(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    shutil.copy(ROOT / "profiles" / "sim-32gb.toml", tmp_path / "sim-32gb.toml")
    (tmp_path / "typo-32gb.toml").write_text(
        (ROOT / "profiles" / "sim-32gb.toml")
        .read_text()
        .replace('name = "sim-32gb"', 'name = "typo-32gb"')
        .replace("reserve_gb = 1.5", "reserve_gb = 40.0")
    )
    (tmp_path / "garbage.toml").write_text("this is = = not toml")
    settings.ARTCRITIC_PROFILES_DIR = tmp_path

    (warning,) = checks.check_profiles()

    assert warning.id == "artcritic.W003"
    assert "2 of 3 hardware profile file(s) are invalid" in warning.msg
    assert "typo-32gb.toml" in warning.msg
    assert "reserve_gb" in warning.msg
    assert "garbage.toml: not valid TOML" in warning.msg
    assert "sim-32gb.toml" not in warning.msg.replace("typo-32gb.toml", "")


def test_the_check_command_fails_on_a_broken_profile_at_warning_level(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    (tmp_path / "broken.toml").write_text('name = "broken"\n')
    settings.ARTCRITIC_PROFILES_DIR = tmp_path
    with pytest.raises(SystemCheckError, match=r"artcritic\.W003") as raised:
        call_command("check", tags=["artcritic"], fail_level="WARNING")
    assert "broken.toml" in str(raised.value)


def test_a_missing_profiles_directory_is_reported(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    settings.ARTCRITIC_PROFILES_DIR = tmp_path / "nowhere"
    assert _ids(checks.check_profiles()) == {"artcritic.W001"}


def test_an_empty_profiles_directory_is_reported(settings: SettingsWrapper, tmp_path: Path) -> None:
    settings.ARTCRITIC_PROFILES_DIR = tmp_path
    assert _ids(checks.check_profiles()) == {"artcritic.W002"}


def test_presigned_urls_longer_than_an_hour_are_an_error(settings: SettingsWrapper) -> None:
    settings.S3_PRESIGN_SECONDS = 3600
    assert checks.check_presign_lifetime() == []
    settings.S3_PRESIGN_SECONDS = 3601
    assert _ids(checks.check_presign_lifetime()) == {"artcritic.E001"}


def test_production_refuses_a_wildcard_host_and_the_dev_s3_secret(
    settings: SettingsWrapper,
) -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["artcritic.example.org", "*"]
    settings.S3_SECRET_KEY = "artcritic-dev-secret"
    assert _ids(checks.check_production_hosts()) == {"artcritic.E002", "artcritic.E003"}

    settings.ALLOWED_HOSTS = ["artcritic.example.org"]
    settings.S3_SECRET_KEY = "a-real-secret"
    assert checks.check_production_hosts() == []


def test_debug_tolerates_the_development_defaults(settings: SettingsWrapper) -> None:
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = ["*"]
    settings.S3_SECRET_KEY = "artcritic-dev-secret"
    assert checks.check_production_hosts() == []


def test_gpu_name_and_nvml_mode_are_validated(settings: SettingsWrapper) -> None:
    settings.ARTCRITIC_GPU = "GPU 0"
    settings.ARTCRITIC_NVML = "maybe"
    assert _ids(checks.check_gpu_settings()) == {"artcritic.E004", "artcritic.E005"}


def test_celery_settings_that_would_lose_gpu_work_are_errors(settings: SettingsWrapper) -> None:
    settings.CELERY_TASK_ACKS_LATE = False
    settings.CELERY_WORKER_PREFETCH_MULTIPLIER = 4
    (late, prefetch) = checks.check_celery_safety()
    assert "CELERY_TASK_ACKS_LATE=False" in late.msg
    assert "CELERY_WORKER_PREFETCH_MULTIPLIER=4" in prefetch.msg


def test_an_s3_endpoint_with_a_scheme_is_an_error(settings: SettingsWrapper) -> None:
    settings.S3_ENDPOINT = "http://minio:9000"
    assert _ids(checks.check_s3_endpoint()) == {"artcritic.E007"}
    settings.S3_ENDPOINT = "minio:9000"
    assert checks.check_s3_endpoint() == []


def test_manage_py_check_runs_the_artcritic_checks_at_startup(tmp_path: Path) -> None:
    # A fresh process imports nothing from the tests: the checks must register themselves
    # through an AppConfig.ready() for this to find the broken file.
    (tmp_path / "broken.toml").write_text('name = "broken"\n')
    env = {**os.environ, "ARTCRITIC_PROFILES_DIR": str(tmp_path)}
    argv = [sys.executable, "manage.py", "check", "--tag", "artcritic", "--fail-level", "WARNING"]
    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "artcritic.W003" in result.stderr, result.stderr
    assert "broken.toml" in result.stderr
