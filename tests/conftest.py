"""Shared fixtures: real PostgreSQL (pytest-django), real Redis, real S3 (a bucket per run)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
INSTANCE_VARIABLES = ("ARTCRITIC_INSTANCE", "ARTCRITIC_CHANNEL_PREFIX")
FAULT_ROWS: list[dict[str, object]] = []


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering, which it keeps per file
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end files first, then browser files, then the rest, each file whole and in its
    own order. Under xdist (`--dist loadfile --no-loadscope-reorder`) files are handed out
    in this order, so the long files start early instead of running alone at the end while
    the other worker sits idle (xdist's default hands out the files with most tests first)."""

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if item.get_closest_marker("browser") else 2

    by_file: dict[Path, tuple[int, int]] = {}
    for position, item in enumerate(items):
        heaviest, first = by_file.get(item.path, (2, position))
        by_file[item.path] = (min(heaviest, weight(item)), first)
    items.sort(key=lambda item: by_file[item.path])  # stable: a file's tests keep their order


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the fault-injection rows (tests/faults) wherever the tests ran."""
    if report.when == "call":
        FAULT_ROWS.extend(value for key, value in report.user_properties if key == "fault_row")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FAULT_ROWS:
        from tests.faults.conftest import FaultRow, table_lines

        terminalreporter.section("fault injection: what happened to the work")
        for line in table_lines([FaultRow(**row) for row in FAULT_ROWS]):  # type: ignore[arg-type]
            terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _isolated_message_names() -> Iterator[None]:
    """Each test run is its own instance in Redis (Celery keys, channel-layer prefix), so
    parallel runs, other checkouts and a `make run` never cross; the servers and workers the
    tests start inherit it through the environment."""
    from artcritic.celery import app

    instance = f"t{uuid.uuid4().hex[:8]}"
    saved = {name: os.environ.get(name) for name in INSTANCE_VARIABLES}
    os.environ.update(dict.fromkeys(INSTANCE_VARIABLES, instance))
    settings.ARTCRITIC_INSTANCE = instance
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = instance
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": f"{instance}:"}
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    app.conf.broker_transport_options = options
    yield
    # Leave Redis as we found it: every key this run made carries its instance's prefix.
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{instance}:*", count=1000))
    if keys:
        client.delete(*keys)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """A fresh bucket on the real S3 server for this run, removed afterwards."""
    from minio import Minio

    name = f"test-{uuid.uuid4().hex[:12]}"
    client = Minio(
        settings.S3_ENDPOINT,
        access_key=settings.S3_ACCESS_KEY,
        secret_key=settings.S3_SECRET_KEY,
        secure=settings.S3_SECURE,
    )
    client.make_bucket(name)
    previous = settings.S3_BUCKET
    settings.S3_BUCKET = name
    yield name
    settings.S3_BUCKET = previous
    for obj in client.list_objects(name, recursive=True):
        client.remove_object(name, obj.object_name or "")
    client.remove_bucket(name)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests leave artefacts a person should look at (screenshots, logs)."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: object) -> None:
    """Real hashing costs ~0.5 s per user on 2 cores; tests need logins, not key stretching."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]
