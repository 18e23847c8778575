"""NVML readings: the GPU worker stores each on the Gpu row and publishes the ones that matter."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from artcritic.events import group_for_gpu
from artcritic.gpu.models import Gpu
from artcritic.gpu.nvml import NvmlUnavailable
from artcritic.gpu.profiles import GB
from artcritic.gpu.readings import (
    ReadingRecorder,
    ReadingsThread,
    reading_changed,
    reading_store,
    reading_take,
    unavailable_payload,
)
from artcritic.sim.gpu import SimGpu
from tests.factories import profile_load
from tests.livelisten import StreamListener
from tests.workerproc import gpu_install, sim_profile, start_gpu_worker, wait_until

WAIT = 10  # seconds an event may take on a busy 2-core box; not an assertion


def a_reading(used_gb: float = 1.0, **fields: Any) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "ok": True,
        "device": "Simulated GPU r0",
        "simulated": True,
        "total_bytes": 32 * GB,
        "used_bytes": round(used_gb * GB),
        "free_bytes": round((32 - used_gb) * GB),
        "utilization_pct": None,
        "power_watts": 31.0,
        "energy_joules": 100.0,
        "processes": [],
    }
    reading.update(fields)
    return reading


@pytest.fixture
def listen() -> Iterator[Callable[[str], StreamListener]]:
    """Listeners for GPU streams, closed after the test."""
    opened: list[StreamListener] = []

    def make(gpu: str) -> StreamListener:
        opened.append(StreamListener(group_for_gpu(gpu)))
        return opened[-1]

    yield make
    for listener in opened:
        listener.close()


@pytest.fixture
def sim_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private simulated-GPU directory for this test (the probe follows ARTCRITIC_SIM_DIR)."""
    monkeypatch.setenv("ARTCRITIC_SIM_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def gpu_name() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


# ---- What counts as a change ----


@pytest.mark.parametrize(
    ("after", "changed"),
    [
        (a_reading(1.0), False),
        (a_reading(1.2), False),  # allocator noise
        (a_reading(1.3), True),  # a quarter of a gigabyte moved
        (a_reading(19.0), True),  # a model loaded
        (a_reading(1.0, power_watts=39.0), False),
        (a_reading(1.0, power_watts=481.0), True),  # the GPU started computing
        (a_reading(1.0, power_watts=None), True),
        (a_reading(1.0, energy_joules=9_000.0), False),  # energy always grows
        (a_reading(1.0, processes=[{"pid": 7, "used_bytes": GB, "name": "sim-comfyui"}]), True),
        (a_reading(1.0, total_bytes=96 * GB), True),  # another profile
        (unavailable_payload(NvmlUnavailable("no driver")), True),
    ],
)
def test_a_reading_is_worth_publishing_only_when_a_person_would_notice(
    after: dict[str, Any], changed: bool
) -> None:
    assert reading_changed(a_reading(1.0), after) is changed


def test_the_first_reading_and_a_new_reason_are_always_published() -> None:
    gone = unavailable_payload(NvmlUnavailable("no driver", "install it"))
    assert reading_changed(None, a_reading())
    assert not reading_changed(gone, unavailable_payload(NvmlUnavailable("no driver", "x")))
    assert reading_changed(gone, unavailable_payload(NvmlUnavailable("GPU is lost")))
    assert reading_changed(gone, a_reading())


# ---- Storing and publishing ----


@pytest.mark.django_db
def test_a_stored_reading_is_on_the_gpu_row_and_published_to_its_gpu_stream(
    listen: Callable[[str], StreamListener], gpu_name: str, django_capture_on_commit_callbacks: Any
) -> None:
    profile_load(gpu=gpu_name)
    before = Gpu.objects.get(name=gpu_name).updated_at
    listener = listen(gpu_name)
    with django_capture_on_commit_callbacks(execute=True):
        stored_at = reading_store(gpu_name, a_reading(18.2), publish=True)
    gpu = Gpu.objects.get(name=gpu_name)
    assert gpu.reading_at == stored_at
    assert gpu.reading["used_bytes"] == round(18.2 * GB)
    assert gpu.updated_at == before  # the admin's timestamp, not the reading's
    message = listener.take()
    assert message is not None
    event = message["event"]
    assert (event["type"], event["gpu"], event["project"]) == ("gpu.reading", gpu_name, None)
    assert event["detail"]["used_bytes"] == round(18.2 * GB)
    assert stored_at is not None
    assert event["detail"]["at"] == stored_at.isoformat()


@pytest.mark.django_db
def test_a_reading_of_a_gpu_without_a_row_is_dropped(gpu_name: str) -> None:
    assert reading_store(gpu_name, a_reading(), publish=True) is None
    assert not Gpu.objects.filter(name=gpu_name).exists()


@pytest.mark.django_db
def test_the_recorder_stores_every_reading_but_publishes_changes_and_a_heartbeat(
    listen: Callable[[str], StreamListener],
    gpu_name: str,
    sim_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    profile_load(gpu=gpu_name)
    clock = itertools.count(0.0, 2.0)  # a reading every 2 s
    recorder = ReadingRecorder(gpu_name, heartbeat_s=30.0, clock=lambda: next(clock))
    listener = listen(gpu_name)
    with django_capture_on_commit_callbacks(execute=True):
        published = [recorder.tick()]
        first_at = Gpu.objects.get(name=gpu_name).reading_at
        published.append(recorder.tick())  # nothing changed
        SimGpu(gpu_name).allocate("comfyui", "weights", 12 * GB, runtime="comfyui")
        published.append(recorder.tick())  # 12 GB loaded
        published.extend(recorder.tick() for _ in range(14))  # quiet for 28 s
        published.append(recorder.tick())  # 30 s since the last event: a heartbeat
    assert published == [True, False, True, *[False] * 14, True]
    gpu = Gpu.objects.get(name=gpu_name)
    assert first_at is not None
    assert gpu.reading_at is not None
    assert gpu.reading_at > first_at
    assert gpu.reading["simulated"] is True
    assert gpu.reading["total_bytes"] == 32 * GB  # the profile's size, not a default
    assert gpu.reading["used_bytes"] >= 12 * GB
    assert [p["name"] for p in gpu.reading["processes"]] == ["sim-comfyui"]
    used = []
    while (message := listener.take(timeout=0.5)) is not None:
        used.append(message["event"]["detail"]["used_bytes"] // GB)
    assert used == [0, 12, 12]


@pytest.mark.django_db
def test_when_nvml_cannot_read_the_gpu_the_reason_is_stored(
    gpu_name: str, settings: Settings
) -> None:
    profile_load("rtx5090-32gb", gpu=gpu_name)
    Gpu.objects.filter(name=gpu_name).update(nvml_index=99)  # no host has GPU 99
    settings.ARTCRITIC_NVML = "real"
    ReadingRecorder(gpu_name).tick()
    reading = Gpu.objects.get(name=gpu_name).reading
    assert reading["ok"] is False
    assert reading["simulated"] is False
    # Either "no NVIDIA driver" or "GPU index 99 does not exist", and what to do about it.
    assert reading["reason"]
    assert reading["next_action"]
    assert reading == reading_take(gpu_name)


# ---- The worker's thread ----


@pytest.fixture
def readings_thread() -> Iterator[list[ReadingsThread]]:
    started: list[ReadingsThread] = []
    yield started
    for thread in started:
        thread.stop()


@pytest.mark.django_db(transaction=True)
def test_the_readings_thread_keeps_the_row_fresh_and_stops_when_asked(
    gpu_name: str, sim_dir: Path, readings_thread: list[ReadingsThread]
) -> None:
    profile_load(gpu=gpu_name)
    thread = ReadingsThread(gpu_name, interval=0.05).start()
    readings_thread.append(thread)
    first = wait_until(
        lambda: Gpu.objects.get(name=gpu_name).reading_at, WAIT, what="a first reading"
    )
    wait_until(
        lambda: Gpu.objects.get(name=gpu_name).reading_at != first, WAIT, what="a later reading"
    )
    thread.stop()
    assert not thread.is_alive()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_gpu_worker_reads_nvml_and_publishes_the_reading(
    listen: Callable[[str], StreamListener], tmp_path: Path
) -> None:
    gpu_name = f"w{uuid.uuid4().hex[:6]}"
    gpu_install(gpu_name, sim_profile())
    listener = listen(gpu_name)
    worker = start_gpu_worker(gpu_name, tmp_path / "sim")
    try:
        gpu = wait_until(
            lambda: Gpu.objects.filter(name=gpu_name, reading_at__isnull=False).first(),
            30,
            what="the worker's first reading",
            log=worker.log,
        )
        assert gpu.reading["ok"] is True
        assert gpu.reading["simulated"] is True
        assert gpu.reading["device"] == f"Simulated GPU {gpu_name}"
        message = listener.take(timeout=30)
        assert message is not None, worker.log()
        assert message["event"]["type"] == "gpu.reading"
        assert message["event"]["detail"]["total_bytes"] == 32 * GB
    finally:
        worker.stop()
