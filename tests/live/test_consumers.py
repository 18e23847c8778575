"""The live sockets, through the real ASGI app, real sessions and the real Redis channel layer."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connection, transaction

from artcritic.asgi import application
from artcritic.events import sequence_key, sequences_read
from artcritic.gpu.models import Gpu, RuntimeName, RuntimeStatus
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.lifecycle import job_phase_enter, job_progress
from artcritic.jobs.models import Job, Phase
from artcritic.live.consumers import gpu_viewer, project_viewer
from artcritic.live.protocol import MAX_BAD_MESSAGES_IN_A_ROW
from artcritic.studio.models import Membership, Project
from tests.factories import project_make, user_make
from tests.live.conftest import (
    HOST,
    ORIGIN,
    close_code,
    generate_job,
    receive,
    run,
    signed_in,
    socket_open,
)

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    """Raised to roll a test transaction back."""


def project_url(project: Project) -> str:
    return f"/ws/projects/{project.pk}/"


# --- who may connect ------------------------------------------------------------------------


def test_an_anonymous_socket_is_closed_with_4401(project: Project) -> None:
    async def scenario() -> None:
        socket = await socket_open(project_url(project), [(b"origin", ORIGIN), (b"host", HOST)])
        assert await close_code(socket) == 4401

    run(scenario)


def test_a_forged_session_cookie_is_anonymous(project: Project) -> None:
    headers = [(b"origin", ORIGIN), (b"host", HOST), (b"cookie", b"sessionid=not-a-real-session")]

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        assert await close_code(socket) == 4401

    run(scenario)


def test_a_signed_in_non_member_is_closed_with_4403(project: Project) -> None:
    headers = signed_in(user_make())

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        assert await close_code(socket) == 4403

    run(scenario)


def test_staff_who_are_not_members_are_refused_too(project: Project) -> None:
    headers = signed_in(user_make(is_staff=True, is_superuser=True))

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        assert await close_code(socket) == 4403

    run(scenario)


def test_a_project_that_does_not_exist_is_refused_like_a_foreign_one(member: AbstractUser) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open("/ws/projects/999999999/", headers)
        assert await close_code(socket) == 4403

    run(scenario)


def test_a_page_on_a_foreign_origin_cannot_open_the_socket(
    member: AbstractUser, project: Project
) -> None:
    headers = signed_in(member, origin=b"https://evil.example")
    no_origin = [header for header in headers if header[0] != b"origin"]

    async def scenario() -> None:
        for attempt in (headers, no_origin):
            socket = WebsocketCommunicator(application, project_url(project), headers=attempt)
            connected, _ = await socket.connect(timeout=5)
            assert connected is False

    run(scenario)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://127.0.0.1:9999", HOST),  # another program on the same host, another port
        (b"https://127.0.0.1:8000", HOST),  # another scheme
        (b"http://127.0.0.1", HOST),  # no port: not the page's origin
        (b"http://evil.example:8000", b"evil.example:8000"),  # a host name not allowed
        (b"null", HOST),  # sandboxed frames and file: pages
    ],
)
def test_only_this_sites_exact_origin_may_open_a_socket(
    member: AbstractUser, project: Project, origin: bytes, host: bytes
) -> None:
    headers = [
        (b"origin", origin) if name == b"origin" else (b"host", host) if name == b"host" else h
        for h in signed_in(member)
        for name in [h[0]]
    ]

    async def scenario() -> None:
        socket = WebsocketCommunicator(application, project_url(project), headers=headers)
        connected, _ = await socket.connect(timeout=5)
        assert connected is False

    run(scenario)


def test_an_origin_listed_as_trusted_may_open_a_socket(
    member: AbstractUser, project: Project, settings: object
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://artcritic.example.org"]  # type: ignore[attr-defined]
    headers = signed_in(member, origin=b"https://artcritic.example.org")

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        hello = await receive(socket)
        assert hello["type"] == "hello"

    run(scenario)


def test_an_unknown_gpu_is_closed_with_4404(member: AbstractUser, gpu: Gpu) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open("/ws/gpus/no-such-gpu/", headers)
        assert await close_code(socket) == 4404

    run(scenario)


def test_authorizing_a_socket_costs_the_same_queries_however_many_gpus_and_projects(
    member: AbstractUser, project: Project, gpu: Gpu, django_assert_num_queries: Any
) -> None:
    for n in range(3):
        project_make(member)
        Gpu.objects.create(name=f"extra{n}", active_profile_id=gpu.active_profile_id)
    with django_assert_num_queries(3):
        viewer = project_viewer(member, project.pk)
    assert viewer.streams == (
        f"project.{project.pk}", "gpu.extra0", "gpu.extra1", "gpu.extra2", "gpu.sim0",
    )  # fmt: skip
    assert len(viewer.member_projects) == 4
    with django_assert_num_queries(2):
        assert gpu_viewer(member, "sim0").streams == ("gpu.sim0",)


# --- hello and events -----------------------------------------------------------------------


def test_a_member_is_greeted_with_each_streams_current_sequence_number(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    job_phase_enter(job.pk, Phase.WAITING_FOR_GPU)
    job_phase_enter(job.pk, Phase.LOADING, runtime=RuntimeName.COMFYUI)
    streams = [f"project.{project.pk}", "gpu.sim0"]
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        hello = await receive(socket)
        assert hello == {"type": "hello", "streams": sequences_read(streams)}
        assert hello["streams"][f"project.{project.pk}"] == 2
        assert await socket.receive_nothing()
        await socket.disconnect()

    run(scenario)


def test_a_stream_nothing_was_published_on_starts_at_zero(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        assert (await receive(socket))["streams"][f"project.{project.pk}"] == 0
        await socket.disconnect()

    run(scenario)


def test_job_and_runtime_changes_arrive_once_in_order_with_contiguous_numbers_on_each_stream(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)
    own = f"project.{project.pk}"

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        hello = (await receive(socket))["streams"]
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.WAITING_FOR_GPU)
        await database_sync_to_async(runtime_state_set)(gpu, "comfyui", RuntimeStatus.STARTING)
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.STARTING, runtime="comfyui")
        await database_sync_to_async(job_progress)(job.pk, 3, 20)
        received = [await receive(socket) for _ in range(4)]  # 3 job events + 1 runtime event
        assert await socket.receive_nothing()  # one copy each, though jobs are on both streams
        await socket.disconnect()

        assert all(message["type"] == "event" for message in received)
        numbers: dict[str, list[int]] = {own: [], "gpu.sim0": []}
        for message in received:
            for stream, seq in message.get("seqs", {message["stream"]: message["seq"]}).items():
                numbers[stream].append(seq)
        for stream, seqs in numbers.items():
            assert seqs == list(range(hello[stream] + 1, hello[stream] + 1 + len(seqs)))
        assert len(numbers["gpu.sim0"]) == 4
        assert [(m["stream"], m["event"]["type"], m["event"]["phase"]) for m in received] == [
            (own, "job.status", "waiting_for_gpu"),
            ("gpu.sim0", "runtime.state", ""),
            (own, "job.status", "starting"),
            (own, "job.progress", "starting"),
        ]
        for message in (received[0], received[2], received[3]):
            assert set(message["seqs"]) == {own, "gpu.sim0"}
            assert message["seq"] == message["seqs"][own]
        assert "seqs" not in received[1]  # the runtime's event is on the GPU's stream only
        progress = received[3]["event"]
        assert progress["job"] == job.pk
        assert progress["project"] == project.pk
        assert progress["progress"] == {"current": 3, "total": 20}
        assert set(progress) == {
            "type", "project", "gpu", "job", "runtime", "status", "phase",
            "progress", "detail", "at",
        }  # fmt: skip

    run(scenario)


def test_an_event_of_a_rolled_back_transaction_never_arrives(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)
    own = f"project.{project.pk}"

    def phase_then_roll_back() -> None:
        with contextlib.suppress(Rollback), transaction.atomic():
            job_phase_enter(job.pk, Phase.LOADING, runtime="comfyui")
            raise Rollback

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        hello = (await receive(socket))["streams"]
        await database_sync_to_async(phase_then_roll_back)()
        assert await socket.receive_nothing()
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.WARMING, runtime="comfyui")
        first = await receive(socket)
        assert first["stream"] == own
        assert first["seq"] == hello[own] + 1  # the rolled-back change took no number
        assert first["event"]["phase"] == "warming"
        await socket.disconnect()

    run(scenario)


def test_an_event_arrives_only_once_its_transaction_commits(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)
    written, commit = threading.Event(), threading.Event()

    def phase_in_a_transaction_held_open() -> None:
        """Another thread's transaction (like a GPU worker's), committed when told."""
        try:
            with transaction.atomic():
                job_phase_enter(job.pk, Phase.LOADING, runtime="comfyui")
                written.set()
                assert commit.wait(30)
        finally:
            connection.close()

    def committed_phase() -> str:
        return Job.objects.get(pk=job.pk).phase

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        worker = sync_to_async(phase_in_a_transaction_held_open, thread_sensitive=False)()
        writer = asyncio.ensure_future(worker)
        assert await asyncio.to_thread(written.wait, 30)
        assert await socket.receive_nothing()
        assert await database_sync_to_async(committed_phase)() == ""
        commit.set()
        await writer
        event = await receive(socket)
        assert event["event"]["phase"] == "loading"
        assert await database_sync_to_async(committed_phase)() == "loading"
        await socket.disconnect()

    run(scenario)


def test_each_viewer_gets_a_job_event_once_on_the_first_stream_it_watches(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    outsider = user_make()
    elsewhere = project_make(outsider, name="Other chairs")
    own = f"project.{project.pk}"
    mine, gpu_page, theirs = signed_in(member), signed_in(member), signed_in(outsider)

    async def scenario() -> None:
        dashboard = await socket_open(project_url(project), mine)
        panel = await socket_open("/ws/gpus/sim0/", gpu_page)
        other = await socket_open(project_url(elsewhere), theirs)
        for socket in (dashboard, panel, other):
            assert (await receive(socket))["type"] == "hello"
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.LOADING, runtime="comfyui")
        on_dashboard, on_panel, on_other = [await receive(s) for s in (dashboard, panel, other)]
        for socket in (dashboard, panel, other):
            assert await socket.receive_nothing()  # one frame each, no second copy
        # The member's dashboard watches both streams: one frame, both numbers.
        assert on_dashboard["stream"] == own
        assert set(on_dashboard["seqs"]) == {own, "gpu.sim0"}
        # The GPU page watches the GPU only; the other project sees a job ahead, no more.
        gpu_number = on_dashboard["seqs"]["gpu.sim0"]
        assert (on_panel["stream"], on_panel["seq"]) == ("gpu.sim0", gpu_number)
        assert on_panel["event"]["job"] == job.pk
        assert (on_other["stream"], on_other["seq"]) == ("gpu.sim0", gpu_number)
        assert on_other["event"]["type"] == "job.other"
        assert "seqs" not in on_panel
        assert "seqs" not in on_other

    run(scenario)


# --- privacy on GPU streams -----------------------------------------------------------------


def test_another_projects_job_shows_on_the_gpu_stream_only_as_job_other(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    secret = project_make(user_make(), name="Secret chairs")
    theirs = generate_job(secret)
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        hello = (await receive(socket))["streams"]
        await database_sync_to_async(job_phase_enter)(
            theirs.pk, Phase.LOADING, runtime="comfyui", detail="secret chair prompt"
        )
        redacted = await receive(socket)
        assert await socket.receive_nothing()  # and nothing on our project's stream
        await socket.disconnect()
        assert redacted["stream"] == "gpu.sim0"
        assert redacted["seq"] == hello["gpu.sim0"] + 1
        assert set(redacted["event"]) == {"type", "gpu", "status", "phase", "at"}
        assert redacted["event"]["type"] == "job.other"
        assert redacted["event"]["gpu"] == "sim0"
        assert redacted["event"]["status"] == "queued"
        assert redacted["event"]["phase"] == "loading"
        assert "secret" not in str(redacted).lower()

    run(scenario)


def test_a_gpu_watcher_sees_runtime_states_whole_and_foreign_jobs_redacted(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    ours = generate_job(project)
    theirs = generate_job(project_make(user_make()))
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open("/ws/gpus/sim0/", headers)
        hello = await receive(socket)
        assert set(hello["streams"]) == {"gpu.sim0"}
        await database_sync_to_async(job_phase_enter)(ours.pk, Phase.LOADING, runtime="comfyui")
        await database_sync_to_async(job_phase_enter)(theirs.pk, Phase.WARMING, runtime="comfyui")
        await database_sync_to_async(runtime_state_set)(
            gpu, "critic", RuntimeStatus.LOADING, detail="Loading Qwen"
        )
        mine, foreign, runtime = [await receive(socket) for _ in range(3)]
        await socket.disconnect()
        assert [m["seq"] for m in (mine, foreign, runtime)] == [
            hello["streams"]["gpu.sim0"] + n for n in (1, 2, 3)
        ]
        assert mine["event"]["job"] == ours.pk
        assert mine["event"]["project"] == project.pk
        assert foreign["event"]["type"] == "job.other"
        assert "job" not in foreign["event"]
        assert runtime["event"]["type"] == "runtime.state"
        assert runtime["event"]["runtime"] == "critic"
        assert runtime["event"]["detail"]["text"] == "Loading Qwen"

    run(scenario)


def test_a_user_of_no_project_may_watch_a_gpu_but_sees_no_jobs_content(
    project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(user_make())

    async def scenario() -> None:
        socket = await socket_open("/ws/gpus/sim0/", headers)
        await receive(socket)
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.LOADING, runtime="comfyui")
        assert (await receive(socket))["event"]["type"] == "job.other"
        await socket.disconnect()

    run(scenario)


def test_membership_is_read_again_on_resync(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open("/ws/gpus/sim0/", headers)
        await receive(socket)
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.LOADING, runtime="comfyui")
        assert (await receive(socket))["event"]["job"] == job.pk
        await database_sync_to_async(Membership.objects.filter(user=member).delete)()
        await socket.send_json_to({"type": "resync"})
        assert (await receive(socket))["type"] == "hello"
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.WARMING, runtime="comfyui")
        assert (await receive(socket))["event"]["type"] == "job.other"
        await socket.disconnect()

    run(scenario)


def test_a_member_removed_from_the_project_is_disconnected_at_the_next_ping(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        await database_sync_to_async(Membership.objects.filter(user=member).delete)()
        await socket.send_json_to({"type": "ping"})
        assert await close_code(socket) == 4403

    run(scenario)


# --- client messages ------------------------------------------------------------------------


def test_ping_is_answered_with_pong(member: AbstractUser, project: Project, gpu: Gpu) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        await socket.send_json_to({"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_resync_answers_a_fresh_hello_with_the_numbers_published_since(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)
    own = f"project.{project.pk}"

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        first = (await receive(socket))["streams"]
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.LOADING, runtime="comfyui")
        assert set((await receive(socket))["seqs"]) == {own, "gpu.sim0"}  # one frame, two numbers
        await socket.send_json_to({"type": "resync"})
        again = await receive(socket)
        assert again["type"] == "hello"
        assert again["streams"][own] == first[own] + 1
        assert again["streams"]["gpu.sim0"] == first["gpu.sim0"] + 1
        await socket.disconnect()

    run(scenario)


def test_a_gpu_added_later_is_joined_at_the_next_resync(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        assert set((await receive(socket))["streams"]) == {f"project.{project.pk}", "gpu.sim0"}
        await database_sync_to_async(Gpu.objects.create)(
            name="sim1", active_profile_id=gpu.active_profile_id
        )
        await socket.send_json_to({"type": "resync"})
        hello = await receive(socket)
        assert set(hello["streams"]) == {f"project.{project.pk}", "gpu.sim0", "gpu.sim1"}
        sim1 = await database_sync_to_async(Gpu.objects.get)(name="sim1")
        await database_sync_to_async(runtime_state_set)(sim1, "critic", RuntimeStatus.STARTING)
        event = await receive(socket)
        assert (event["stream"], event["seq"]) == ("gpu.sim1", hello["streams"]["gpu.sim1"] + 1)
        await socket.disconnect()

    run(scenario)


BAD_MESSAGES = {
    "not JSON": "ping",
    "empty text": "",
    "a JSON array": '["ping"]',
    "a JSON string": '"ping"',
    "JSON null": "null",
    "no type": "{}",
    "a type that is not a string": '{"type": 5}',
    "an unknown type": '{"type": "hello"}',
    "a server-side type": '{"type": "event"}',
    "an extra key": '{"type": "ping", "project": 5}',
    "deeply nested JSON": "[" * 2000 + "]" * 2000,
    "over 4 KiB": '{"type": "ping", "pad": "' + "x" * 4100 + '"}',
    "over 4 KiB in bytes, not characters": '{"type":"' + "é" * 2100 + '"}',
    "a lone surrogate": '{"type": "\ud800"}',
}


@pytest.mark.parametrize("text", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_a_bad_text_message_is_answered_with_an_error_and_the_socket_stays_open(
    member: AbstractUser, project: Project, gpu: Gpu, text: str
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        await socket.send_input({"type": "websocket.receive", "text": text})
        answer = await receive(socket)
        assert answer["type"] == "error"
        assert answer["error"]
        assert len(answer["error"]) < 200
        await socket.send_json_to({"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_a_binary_frame_is_answered_with_an_error_and_the_socket_stays_open(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        await socket.send_to(bytes_data=b'{"type": "ping"}')
        assert await receive(socket) == {
            "type": "error",
            "error": "binary frames are not accepted; send JSON text",
        }
        await socket.send_json_to({"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_an_oversized_message_names_the_limit(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        await socket.send_to(text_data="x" * 1_000_000)
        assert await receive(socket) == {"type": "error", "error": "message is over 4096 bytes"}
        await socket.disconnect()

    run(scenario)


def test_twenty_bad_messages_in_a_row_close_the_socket_with_4400(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        for _ in range(MAX_BAD_MESSAGES_IN_A_ROW - 1):
            await socket.send_to(text_data="nonsense")
            assert (await receive(socket))["type"] == "error"
        await socket.send_to(text_data="nonsense")
        assert (await receive(socket))["type"] == "error"
        assert await close_code(socket) == 4400

    run(scenario)


def test_a_good_message_resets_the_count_of_bad_ones(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    headers = signed_in(member)

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        for _ in range(2):
            for _ in range(MAX_BAD_MESSAGES_IN_A_ROW - 1):
                await socket.send_to(text_data="nonsense")
                assert (await receive(socket))["type"] == "error"
            await socket.send_json_to({"type": "ping"})
            assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


# --- when Redis loses its state --------------------------------------------------------------


def test_a_counter_that_went_backwards_closes_the_socket_with_4409_at_the_next_ping(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)
    own = f"project.{project.pk}"

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.LOADING, runtime="comfyui")
        await receive(socket)
        # What a Redis restart does to this run's counter (only this test run's key).
        redis.Redis.from_url(settings.REDIS_URL).delete(sequence_key(own))
        await socket.send_json_to({"type": "ping"})
        assert await close_code(socket) == 4409

    run(scenario)


def test_ping_rejoins_groups_a_redis_restart_would_have_dropped(
    member: AbstractUser, project: Project, gpu: Gpu
) -> None:
    job = generate_job(project)
    headers = signed_in(member)
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]

    async def scenario() -> None:
        socket = await socket_open(project_url(project), headers)
        await receive(socket)
        # channels_redis keeps group members in "<prefix>:group:<name>"; lose ours.
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.delete(f"{prefix}:group:project.{project.pk}")
        await socket.send_json_to({"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await database_sync_to_async(job_phase_enter)(job.pk, Phase.LOADING, runtime="comfyui")
        assert set((await receive(socket))["seqs"]) == {f"project.{project.pk}", "gpu.sim0"}
        await socket.disconnect()

    run(scenario)
