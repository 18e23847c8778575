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
