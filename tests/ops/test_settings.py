"""Settings fail loudly: a bad environment stops start-up with the variable's name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


SHOW_INSTANCE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DATABASES['default']['NAME'], s.DATABASES['default']['TEST']['NAME'], "
    "s.ARTCRITIC_INSTANCE, s.CHANNEL_LAYERS['default']['CONFIG']['prefix'], "
    "s.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']]))"
)


def _names(checkout: str, **overrides: str) -> list[str]:
    """The database, test database and Redis namespaces settings derive in ``checkout``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ARTCRITIC_", "DATABASE_URL"))
    }
    env.update(DJANGO_SETTINGS_MODULE="artcritic.settings", **overrides)
    result = subprocess.run(
        [sys.executable, "-c", SHOW_INSTANCE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=checkout,
        env={**env, "PYTHONPATH": checkout},
    )
    return list(json.loads(result.stdout))


def test_two_checkouts_get_their_own_databases_and_redis_namespaces(tmp_path: Path) -> None:
    # A second checkout: the same code at another path (only what settings import is needed).
    other = tmp_path / "second-checkout"
    shutil.copytree(ROOT / "artcritic", other / "artcritic", ignore=shutil.ignore_patterns("*.pyc"))
    here = _names(str(ROOT))
    there = _names(str(other))

    for names in (here, there):
        database, test_database, instance, channel_prefix, celery_prefix = names
        assert re.fullmatch(r"artcritic_[0-9a-f]{8}", database)
        assert test_database == f"test_{database}"
        # One database is one instance: Redis keys are namespaced by its name.
        assert instance == channel_prefix == database
        assert celery_prefix == f"{database}:"
    assert set(here).isdisjoint(there)


def test_workers_on_other_hosts_join_the_instance_of_their_database() -> None:
    url = "postgres://artcritic@db.example.internal:5432/artcritic"
    assert _names(str(ROOT), DATABASE_URL=url)[2:] == ["artcritic", "artcritic", "artcritic:"]
    named = _names(str(ROOT), DATABASE_URL=url, ARTCRITIC_INSTANCE="studio-b")
    assert named[2:] == ["studio-b", "studio-b", "studio-b:"]


def test_an_instance_name_redis_cannot_key_by_is_refused() -> None:
    result = _start(ARTCRITIC_INSTANCE="two words")
    assert result.returncode != 0
    assert "ARTCRITIC_INSTANCE='two words' must be 1-64 letters" in result.stderr


def test_a_deployment_is_served_over_https_unless_it_says_otherwise() -> None:
    show = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER]))"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ARTCRITIC_", "S3_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(DJANGO_SETTINGS_MODULE="artcritic.settings", ARTCRITIC_DEBUG="0")
    env["ARTCRITIC_SECRET_KEY"] = "k" * 50

    def run(**overrides: str) -> list[object]:
        result = subprocess.run(
            [sys.executable, "-c", show],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=ROOT,
            env={**env, **overrides},
        )
        return list(json.loads(result.stdout))

    assert run() == [True, True, True, 31_536_000, ["HTTP_X_FORWARDED_PROTO", "https"]]
    assert run(ARTCRITIC_HTTPS="0") == [False, False, False, 0, None]
