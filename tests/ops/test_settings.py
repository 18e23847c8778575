"""Settings fail loudly: a bad environment stops start-up with the variable's name."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from django.conf import settings

from tests.ops.conftest import ROOT

SETUP = "import django; django.setup(); print('started')"


def _start(**overrides: str) -> subprocess.CompletedProcess[str]:
    """Start Django in a fresh interpreter with only ``overrides`` of our variables set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ARTCRITIC_", "S3_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(DJANGO_SETTINGS_MODULE="artcritic.settings", **overrides)
    return subprocess.run(
        [sys.executable, "-c", SETUP],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=env,
    )


def test_debug_off_with_the_development_secret_key_refuses_to_start() -> None:
    result = _start(ARTCRITIC_DEBUG="0")
    assert result.returncode != 0
    assert "ARTCRITIC_SECRET_KEY is unset while ARTCRITIC_DEBUG is off" in result.stderr


def test_debug_off_with_a_short_secret_key_refuses_to_start() -> None:
    result = _start(ARTCRITIC_DEBUG="0", ARTCRITIC_SECRET_KEY="too-short")
    assert result.returncode != 0
    assert "ARTCRITIC_SECRET_KEY must be at least 32 characters" in result.stderr


def test_debug_off_with_a_real_secret_key_starts() -> None:
    result = _start(ARTCRITIC_DEBUG="0", ARTCRITIC_SECRET_KEY="k" * 50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


def test_a_boolean_that_is_not_one_names_the_variable() -> None:
    result = _start(ARTCRITIC_DEBUG="maybe")
    assert result.returncode != 0
    assert "ARTCRITIC_DEBUG='maybe' is not a boolean" in result.stderr


def test_an_integer_that_is_not_one_names_the_variable() -> None:
    result = _start(S3_PRESIGN_SECONDS="abc")
    assert result.returncode != 0
    assert "S3_PRESIGN_SECONDS='abc' is not an integer" in result.stderr


def test_a_number_below_its_minimum_names_the_variable() -> None:
    result = _start(S3_PRESIGN_SECONDS="1")
    assert result.returncode != 0
    assert "S3_PRESIGN_SECONDS=1 is below the minimum of 10" in result.stderr


def test_a_database_other_than_postgresql_is_refused() -> None:
    result = _start(DATABASE_URL="sqlite:///tmp/x.db")
    assert result.returncode != 0
    assert "PostgreSQL only" in result.stderr


# `settings.NAME` in code, and getattr(settings, "NAME"...) with a literal name.
SETTING_USE = re.compile(
    r"""\bsettings\.([A-Z][A-Z0-9_]*)\b|getattr\(\s*settings,\s*["']([A-Z][A-Z0-9_]*)["']"""
)


def test_every_setting_the_code_reads_is_defined() -> None:
    used: dict[str, set[str]] = {}
    for path in sorted((ROOT / "artcritic").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for match in SETTING_USE.finditer(path.read_text()):
            name = match.group(1) or match.group(2)
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert "S3_PRESIGN_SECONDS" in used  # the scan does find real uses
    missing = {name: sorted(files) for name, files in used.items() if not hasattr(settings, name)}
    assert missing == {}, f"misspelled or undefined settings: {missing}"
