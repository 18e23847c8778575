"""The fan-out of one web process and the outbox of one socket, on the real channel layer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from artcritic.events import event_publish
from artcritic.live.fanout import Outbox, fanout_for_loop
from tests.live.conftest import WAIT, run

pytestmark = pytest.mark.django_db(transaction=True)


class Viewer:
    """A socket as the fan-out sees one (its Watcher contract): it keeps what it is handed."""

    def __init__(self, member_projects: set[int]) -> None:
        self.member_projects = member_projects
        self.frames: list[tuple[str, dict[str, int], tuple[str, ...]]] = []
        self.arrived = asyncio.Event()

    def frame_take(self, text: str, seqs: Mapping[str, int], watched: tuple[str, ...]) -> None:
        self.frames.append((text, dict(seqs), watched))
        self.arrived.set()

    async def next_frame(self) -> str:
        await asyncio.wait_for(self.arrived.wait(), WAIT)
        self.arrived.clear()
        return self.frames[-1][0]


def test_viewers_of_one_kind_share_one_encoded_frame_and_others_get_their_own() -> None:
    async def scenario() -> None:
        fanout = fanout_for_loop()
        members = [Viewer({911}) for _ in range(3)]
        outsider = Viewer(set())
        for viewer in members:
            await fanout.join(viewer, ["project.911", "gpu.fo1"])
        await fanout.join(outsider, ["gpu.fo1"])
        await database_sync_to_async(event_publish)(
            "job.status", project=911, gpu="fo1", job=8, status="running", phase="loading"
        )
        texts = [await viewer.next_frame() for viewer in members]
        assert texts[0] is texts[1] is texts[2]  # encoded once for all three
        redacted = await outsider.next_frame()
        assert '"job.other"' in redacted
        assert '"job":8' not in redacted
        await asyncio.sleep(0.3)
        assert [len(viewer.frames) for viewer in (*members, outsider)] == [1, 1, 1, 1]
        assert members[0].frames[0][2] == ("project.911", "gpu.fo1")

    run(scenario)


def test_a_message_sent_by_hand_with_one_number_still_reaches_its_stream() -> None:
    async def scenario() -> None:
        fanout = fanout_for_loop()
        viewer = Viewer({912})
        await fanout.join(viewer, ["project.912"])
        layer: Any = get_channel_layer()
        event = {"type": "decision.recorded", "project": 912, "at": "2026-01-01T00:00:00+00:00"}
        await layer.group_send(
            "project.912", {"type": "live.event", "stream": "project.912", "seq": 7, "event": event}
        )
        text = await viewer.next_frame()
        assert text.startswith('{"type":"event","stream":"project.912","seq":7,')
        assert '"seqs"' not in text

    run(scenario)


def test_a_malformed_message_is_dropped_and_the_fanout_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        fanout = fanout_for_loop()
        viewer = Viewer({913})
        await fanout.join(viewer, ["project.913"])
        layer: Any = get_channel_layer()
        bad = {"type": "live.event", "stream": "project.913", "seq": "7", "event": {}}
        await layer.group_send("project.913", bad)
        await database_sync_to_async(event_publish)("decision.recorded", project=913)
        text = await viewer.next_frame()
        assert '"decision.recorded"' in text
        assert len(viewer.frames) == 1

    run(scenario)
    assert "malformed live message dropped" in caplog.text


def test_a_viewer_that_leaves_gets_nothing_more_and_is_no_longer_counted() -> None:
    async def scenario() -> None:
        fanout = fanout_for_loop()
        staying, leaving = Viewer({914}), Viewer({914})
        for viewer in (staying, leaving):
            await fanout.join(viewer, ["project.914"])
        await fanout.leave(leaving)
        await database_sync_to_async(event_publish)("decision.recorded", project=914)
        await staying.next_frame()
        assert leaving.frames == []
        assert fanout.counters.sockets == 1
        await fanout.leave(staying)
        assert fanout.counters.sockets == 0

    run(scenario)


def test_an_outbox_keeps_order_refuses_past_its_limit_and_closes_after_what_it_holds() -> None:
    async def scenario() -> None:
        written: list[dict[str, Any]] = []
        gate = asyncio.Event()  # the socket's buffer is full until this is set
        hellos: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            await gate.wait()
            written.append(message)

        outbox = Outbox(send, 2, lambda: hellos.append(len(written)))
        assert outbox.put("a")  # taken by the writer at once, waiting on the socket
        await asyncio.sleep(0)
        assert outbox.put("b")
        assert outbox.put("c")
        assert not outbox.put("d")  # two wait already
        assert outbox.put("pong", force=True)
        assert outbox.clear() == 3
        assert outbox.put("hello", hello=True)
        outbox.close_after(4403)
        gate.set()
        for _ in range(50):
            if len(written) == 3:
                break
            await asyncio.sleep(0.01)
        assert [m.get("text", m.get("code")) for m in written] == ["a", "hello", 4403]
        assert hellos == [2]  # after the hello reached the server
        await outbox.close()

    run(scenario)
