"""The one publisher: typed events, per-stream sequence numbers, sent only after commit."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from artcritic.events import LiveEvent, event_publish, sequences_read
from tests.live.conftest import WAIT, run

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    """Raised to roll a test transaction back."""


_inboxes: dict[str, asyncio.Queue[dict[str, Any]]] = {}
_pumps: set[asyncio.Future[None]] = set()


async def listener(*streams: str) -> str:
    """A fresh channel in the given groups, with one receive always pending, as a socket has.

    (The pub/sub layer drops a channel whose receive is cancelled, so the tests never time
    out a receive: a pump task fills an inbox and the tests wait on that.)
    """
    layer: Any = get_channel_layer()
    channel = str(await layer.new_channel())
    for stream in streams:
        await layer.group_add(stream, channel)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    _inboxes[channel] = inbox

    async def pump() -> None:
        while True:
            inbox.put_nowait(await layer.receive(channel))

    task = asyncio.ensure_future(pump())  # cancelled by the scenario runner's clean-up
    _pumps.add(task)
    task.add_done_callback(_pumps.discard)
    return channel


async def next_message(channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(_inboxes[channel].get(), WAIT)


async def nothing_waiting(channel: str) -> bool:
    """True when a short wait brings no message (the layer delivers in arrival order)."""
    await asyncio.sleep(0.3)
    return _inboxes[channel].empty()


def test_an_event_goes_to_its_project_and_its_gpu_each_with_the_next_number() -> None:
    def publish() -> None:
        event_publish("job.status", project=901, gpu="ev0", job=3, status="running")

    async def scenario() -> None:
        channel = await listener("project.901", "gpu.ev0")
        before = sequences_read(["project.901", "gpu.ev0"])
        await database_sync_to_async(publish)()
        first, second = await next_message(channel), await next_message(channel)
        assert (first["stream"], first["seq"]) == ("project.901", before["project.901"] + 1)
        assert (second["stream"], second["seq"]) == ("gpu.ev0", before["gpu.ev0"] + 1)
        assert first["type"] == "live.event"
        assert first["event"]["type"] == "job.status"
        assert first["event"]["job"] == 3
        assert first["event"]["at"]  # stamped by the publisher
        assert first["event"] == second["event"]

    run(scenario)


def test_a_gpu_event_without_a_project_goes_to_the_gpu_stream_only() -> None:
    def publish() -> None:
        event_publish("runtime.state", gpu="ev1", runtime="critic", status="loading")

    async def scenario() -> None:
        channel = await listener("gpu.ev1")
        await database_sync_to_async(publish)()
        message = await next_message(channel)
        assert message["stream"] == "gpu.ev1"
        assert message["event"]["project"] is None
        assert await nothing_waiting(channel)

    run(scenario)


def test_an_event_inside_a_rolled_back_transaction_is_never_sent_nor_numbered() -> None:
    def publish_then_roll_back() -> None:
        with contextlib.suppress(Rollback), transaction.atomic():
            event_publish("decision.recorded", project=902, detail={"verdict": "approve"})
            raise Rollback

    def publish_committed() -> None:
        with transaction.atomic():
            event_publish("decision.recorded", project=902, detail={"verdict": "reject"})

    async def scenario() -> None:
        channel = await listener("project.902")
        before = sequences_read(["project.902"])["project.902"]
        await database_sync_to_async(publish_then_roll_back)()
        assert await nothing_waiting(channel)
        assert sequences_read(["project.902"])["project.902"] == before
        await database_sync_to_async(publish_committed)()
        message = await next_message(channel)
        assert message["seq"] == before + 1
        assert message["event"]["detail"] == {"verdict": "reject"}

    run(scenario)


def test_an_event_waits_for_the_outermost_transaction_to_commit() -> None:
    sent_inside: list[int] = []

    def publish_in_nested_transactions() -> None:
        with transaction.atomic():
            with transaction.atomic():
                event_publish("image.created", project=903, detail={"image": 1})
            sent_inside.append(sequences_read(["project.903"])["project.903"])

    async def scenario() -> None:
        channel = await listener("project.903")
        before = sequences_read(["project.903"])["project.903"]
        await database_sync_to_async(publish_in_nested_transactions)()
        assert sent_inside == [before]  # not numbered while the outer block was open
        assert (await next_message(channel))["seq"] == before + 1

    run(scenario)


def test_sequence_numbers_of_unknown_streams_read_as_zero() -> None:
    assert sequences_read(["project.0", "gpu.never-used"]) == {"project.0": 0, "gpu.never-used": 0}
    assert sequences_read([]) == {}


def test_an_unknown_event_type_is_refused_at_the_publisher() -> None:
    with pytest.raises(ValueError, match=r"unknown live event type 'job\.secret'"):
        LiveEvent(type="job.secret")
    with pytest.raises(ValueError, match="unknown live event type"):
        event_publish("hello", project=1)


def test_each_copy_carries_every_streams_number_project_first() -> None:
    def publish() -> None:
        event_publish("job.status", project=906, gpu="ev6", job=4, status="running")

    async def scenario() -> None:
        channel = await listener("project.906", "gpu.ev6")
        before = sequences_read(["project.906", "gpu.ev6"])
        await database_sync_to_async(publish)()
        first, second = await next_message(channel), await next_message(channel)
        expected = {"project.906": before["project.906"] + 1, "gpu.ev6": before["gpu.ev6"] + 1}
        assert first["seqs"] == second["seqs"] == expected
        assert list(first["seqs"]) == ["project.906", "gpu.ev6"]

    run(scenario)


def test_a_burst_of_progress_goes_out_coalesced_first_and_last_kept_numbers_contiguous() -> None:
    steps = 30

    def burst() -> None:
        for n in range(1, steps + 1):
            event_publish(
                "job.progress", project=904, gpu="ev4", job=5,
                progress={"current": n, "total": steps},
            )  # fmt: skip

    async def scenario() -> None:
        channel = await listener("project.904")
        before = sequences_read(["project.904", "gpu.ev4"])
        await database_sync_to_async(burst)()
        received = [await next_message(channel)]
        while received[-1]["event"]["progress"]["current"] < steps:
            received.append(await next_message(channel))
        assert await nothing_waiting(channel)
        values = [m["event"]["progress"]["current"] for m in received]
        assert values[0] == 1
        assert values[-1] == steps
        assert values == sorted(set(values))
        assert len(values) < steps / 2  # 30 calls in a few ms: most were superseded
        for stream in ("project.904", "gpu.ev4"):
            numbers = [m["seqs"][stream] for m in received]
            assert numbers == list(range(before[stream] + 1, before[stream] + 1 + len(values)))

    run(scenario)


def test_a_phase_change_in_a_burst_is_never_dropped_nor_overtaken_by_older_progress() -> None:
    def burst_with_a_phase_change() -> None:
        for n in range(1, 21):
            event_publish(
                "job.progress", project=907, gpu="ev7", job=6, phase="generating",
                progress={"current": n, "total": 40},
            )  # fmt: skip
        event_publish("job.status", project=907, gpu="ev7", job=6, phase="uploading",
                      progress={"current": 20, "total": 40})  # fmt: skip
        for n in range(21, 41):
            event_publish(
                "job.progress", project=907, gpu="ev7", job=6, phase="uploading",
                progress={"current": n, "total": 40},
            )  # fmt: skip

    async def scenario() -> None:
        channel = await listener("project.907")
        await database_sync_to_async(burst_with_a_phase_change)()
        received = [(await next_message(channel))["event"]]
        while received[-1]["progress"]["current"] < 40:
            received.append((await next_message(channel))["event"])
        kinds = [(e["type"], e["phase"], e["progress"]["current"]) for e in received]
        assert ("job.status", "uploading", 20) in kinds
        at = kinds.index(("job.status", "uploading", 20))
        assert all(phase == "generating" for _, phase, _ in kinds[:at])
        assert all(phase == "uploading" for _, phase, _ in kinds[at:])
        assert kinds[at + 1] == ("job.progress", "uploading", 21)  # the new phase's first step
        values = [current for _, _, current in kinds]
        assert values == sorted(values)

    run(scenario)


def test_numbers_on_a_stream_arrive_in_order_when_several_threads_publish_at_once() -> None:
    def publish_many(tag: str) -> None:
        for n in range(40):
            event_publish("decision.recorded", project=905, detail={"by": tag, "n": n})

    async def scenario() -> None:
        channel = await listener("project.905")
        before = sequences_read(["project.905"])["project.905"]
        await asyncio.gather(
            *(database_sync_to_async(publish_many, thread_sensitive=False)(tag)
              for tag in ("a", "b", "c"))
        )  # fmt: skip
        numbers = [(await next_message(channel))["seq"] for _ in range(120)]
        assert numbers == list(range(before + 1, before + 121))  # numbered as published

    run(scenario)
