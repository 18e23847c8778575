"""static/js/live.js in real Chromium against the real web server: order, gaps, restarts."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from playwright.sync_api import BrowserContext, Page

from artcritic.events import sequence_key, sequences_read
from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs.lifecycle import job_phase_enter
from artcritic.jobs.models import Job, Phase
from artcritic.studio.models import Project
from tests.browser.conftest import in_thread, session_cookie
from tests.factories import user_make
from tests.live.conftest import WebServer, generate_job

pytestmark = pytest.mark.browser


def page_open(context: BrowserContext, socket: str, query: str = "") -> Page:
    """The test page (live_page.html) on the web server's origin, connecting to ``socket``."""
    page = context.new_page()
    page.on("console", lambda message: print("console:", message.type, message.text))
    page.goto(f"/live-test/?url={socket}{query}")
    return page


def log_of(page: Page) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = page.evaluate("window.log")
    return entries


def events_on(page: Page, stream: str) -> list[dict[str, Any]]:
    return [e for e in log_of(page) if e["kind"] == "event" and e["stream"] == stream]


def hellos(page: Page) -> list[dict[str, Any]]:
    return [e for e in log_of(page) if e["kind"] == "hello"]


def wait_for_events(page: Page, stream: str, count: int) -> list[dict[str, Any]]:
    page.wait_for_function(
        "([stream, count]) => window.log.filter("
        "  (e) => e.kind === 'event' && e.stream === stream).length >= count",
        arg=[stream, count],
    )
    return events_on(page, stream)


def wait_for_hellos(page: Page, count: int) -> list[dict[str, Any]]:
    page.wait_for_function(
        "(count) => window.log.filter((e) => e.kind === 'hello').length >= count", arg=count
    )
    return hellos(page)


def phase(job: Job, name: Phase) -> None:
    """A GPU worker moves the job into a phase (committed, then published)."""
    in_thread(lambda: job_phase_enter(job.pk, name, runtime="comfyui"))


def channel_send(stream: str, seq: int, event: dict[str, Any]) -> None:
    """Put a message on a stream by hand, as a late or repeated delivery would."""
    message = {"type": "live.event", "stream": stream, "seq": seq, "event": event}
    in_thread(lambda: async_to_sync(get_channel_layer().group_send)(stream, message))  # type: ignore[union-attr]


def assert_replays_cleanly(page: Page) -> None:
    """Every applied event was exactly the next on each of its streams after the last hello
    or event: none applied twice, none skipped without a hello in between to cover it."""
    baselines: dict[str, int] = {}
    for entry in log_of(page):
        if entry["kind"] == "hello":
            baselines = dict(entry["streams"])
            continue
        assert entry["seq"] == entry["seqs"][entry["stream"]], entry
        for stream, seq in entry["seqs"].items():
            assert seq == baselines[stream] + 1, entry
            baselines[stream] = seq


def test_the_page_applies_events_in_order_resyncs_on_gaps_and_survives_a_server_restart(
    live_context: BrowserContext,
    web_server: WebServer,
    project: Project,
    gpu: Gpu,
    member: AbstractUser,
) -> None:
    own = f"project.{project.pk}"
    job = generate_job(project)
    session_cookie(live_context, web_server.url, member)
    page = page_open(live_context, f"/ws/projects/{project.pk}/")

    # Connected: one hello, which the page takes as "reload your panels".
    (hello,) = wait_for_hellos(page, 1)
    assert hello["reason"] == "connect"
    assert hello["streams"] == sequences_read([own, "gpu.sim0"])
    page.wait_for_function("window.artcriticLive.status === 'live'")

    # Events from the record, in the order they were committed.
    phase(job, Phase.WAITING_FOR_GPU)
    in_thread(lambda: runtime_state_set(gpu, "comfyui", RuntimeStatus.STARTING))
    phase(job, Phase.STARTING)
    phase(job, Phase.LOADING)
    applied = wait_for_events(page, own, 3)
    assert [e["event"]["phase"] for e in applied] == ["waiting_for_gpu", "starting", "loading"]
    assert [e["seq"] for e in applied] == [hello["streams"][own] + n for n in (1, 2, 3)]
    # Each fact once: the job's events carry the GPU stream's numbers too, so the GPU
    # stream itself delivers only the runtime's event, numbered between them.
    on_gpu = hello["streams"]["gpu.sim0"]
    assert [e["seqs"]["gpu.sim0"] for e in applied] == [on_gpu + 1, on_gpu + 3, on_gpu + 4]
    gpu_events = wait_for_events(page, "gpu.sim0", 1)
    assert [(e["event"]["type"], e["seq"]) for e in gpu_events] == [("runtime.state", on_gpu + 2)]
    details = page.evaluate("window.applied")
    assert len(details) == 4
    assert all(d["appliedAt"] > 1e12 for d in details)  # epoch milliseconds
    assert {(d["stream"], d["seq"]) for d in details} == {
        (e["stream"], e["seq"]) for e in applied + gpu_events
    }

    # A repeated delivery of the last event is ignored without a reload.
    last = [d for d in details if d["stream"] == own][-1]
    channel_send(own, last["seq"], last["event"])
    phase(job, Phase.WARMING)
    assert wait_for_events(page, own, 4)[-1]["event"]["phase"] == "warming"
    assert len(hellos(page)) == 1
    assert page.evaluate("window.artcriticLive.ignored") >= 1

    # An event that was numbered but never delivered: the next one shows the gap.
    redis.Redis.from_url(settings.REDIS_URL).incr(sequence_key(own))
    phase(job, Phase.GENERATING)
    gap = wait_for_hellos(page, 2)[-1]
    assert gap["reason"] == "gap"
    assert gap["streams"][own] == sequences_read([own])[own]
    phase(job, Phase.UPLOADING)
    assert wait_for_events(page, own, 5)[-1]["event"]["phase"] == "uploading"

    # A number that comes round again with another event: the counters restarted.
    now = page.evaluate(f"window.artcriticLive.lastSeq['{own}']")
    reused = {**last["event"], "phase": "recording", "at": "2030-01-01T00:00:00+00:00"}
    channel_send(own, now, reused)
    assert wait_for_hellos(page, 3)[-1]["reason"] == "gap"

    # The web server dies; while it is down the job moves on; it comes back on the same port.
    web_server.kill()
    page.wait_for_function("window.artcriticLive.status === 'reconnecting'")
    phase(job, Phase.RECORDING)  # committed and numbered, but no socket hears it
    web_server.start()
    back = wait_for_hellos(page, 4)[-1]
    assert back["reason"] == "reconnect"
    assert back["streams"] == sequences_read([own, "gpu.sim0"])  # includes the missed one
    page.wait_for_function("window.artcriticLive.status === 'live'")
    in_thread(lambda: runtime_state_set(gpu, "comfyui", RuntimeStatus.READY))
    phase(job, Phase.REVIEWING)
    assert wait_for_events(page, own, 6)[-1]["event"]["phase"] == "reviewing"
    gpu_now = sequences_read(["gpu.sim0"])["gpu.sim0"]
    page.wait_for_function(f"window.artcriticLive.lastSeq['gpu.sim0'] === {gpu_now}")

    assert_replays_cleanly(page)
    applied_ids = [(e["stream"], e["seq"]) for e in log_of(page) if e["kind"] == "event"]
    assert len(applied_ids) == len(set(applied_ids))
    statuses = [s["state"] for s in page.evaluate("window.statuses")]
    assert statuses[0] == "live"
    assert "reconnecting" in statuses
    assert statuses[-1] == "live"
    assert page.evaluate("window.artcriticLive.reconnects") == 1


def test_events_wait_while_the_page_reloads_its_panels(
    live_context: BrowserContext,
    web_server: WebServer,
    project: Project,
    gpu: Gpu,
    member: AbstractUser,
) -> None:
    own = f"project.{project.pk}"
    job = generate_job(project)
    session_cookie(live_context, web_server.url, member)
    page = page_open(live_context, f"/ws/projects/{project.pk}/", "&slow")
    wait_for_hellos(page, 1)

    phase(job, Phase.LOADING)
    phase(job, Phase.WARMING)
    page.wait_for_function("window.artcriticLive.held === 2")  # 2 events, one frame each
    assert events_on(page, own) == []

    page.evaluate("window.reloadFinish()")
    held = wait_for_events(page, own, 2)
    assert [e["event"]["phase"] for e in held] == ["loading", "warming"]
    assert_replays_cleanly(page)


def test_a_heartbeat_keeps_asking_and_the_server_keeps_answering(
    live_context: BrowserContext,
    web_server: WebServer,
    project: Project,
    gpu: Gpu,
    member: AbstractUser,
) -> None:
    session_cookie(live_context, web_server.url, member)
    # A second between pings: a page that hears nothing for a whole interval reconnects,
    # and a loaded test machine can hold a pong back for a few hundred milliseconds.
    page = page_open(live_context, f"/ws/projects/{project.pk}/", "&heartbeat=1000")
    page.wait_for_function("window.artcriticLive.pongs >= 3")
    assert page.evaluate("window.artcriticLive.status") == "live"
    assert len(hellos(page)) == 1


def test_a_server_that_stops_answering_pings_is_left_for_a_fresh_connection(
    live_context: BrowserContext,
    web_server: WebServer,
    project: Project,
    gpu: Gpu,
    member: AbstractUser,
) -> None:
    own = f"project.{project.pk}"
    job = generate_job(project)
    session_cookie(live_context, web_server.url, member)
    page = page_open(live_context, f"/ws/projects/{project.pk}/", "&heartbeat=300")
    page.wait_for_function("window.artcriticLive.pongs >= 1")

    web_server.freeze()  # the TCP connection stays up; the browser alone would not notice
    try:
        page.wait_for_function("window.artcriticLive.status === 'reconnecting'")
        phase(job, Phase.LOADING)  # numbered while the page is not listening
    finally:
        web_server.thaw()
    back = wait_for_hellos(page, 2)[-1]
    assert back["reason"] == "reconnect"
    assert back["streams"][own] == sequences_read([own])[own]
    phase(job, Phase.WARMING)
    assert wait_for_events(page, own, 1)[-1]["event"]["phase"] == "warming"
    assert_replays_cleanly(page)


def test_an_event_the_page_fails_to_show_makes_it_reload_its_panels(
    live_context: BrowserContext,
    web_server: WebServer,
    project: Project,
    gpu: Gpu,
    member: AbstractUser,
) -> None:
    own = f"project.{project.pk}"
    job = generate_job(project)
    session_cookie(live_context, web_server.url, member)
    page = page_open(live_context, f"/ws/projects/{project.pk}/", "&fail=loading")
    wait_for_hellos(page, 1)
    phase(job, Phase.LOADING)
    assert wait_for_hellos(page, 2)[-1]["reason"] == "error"
    phase(job, Phase.WARMING)
    assert [e["event"]["phase"] for e in wait_for_events(page, own, 1)] == ["warming"]
    assert page.evaluate("window.applied.map((d) => d.event.phase)").count("loading") == 0


def test_a_refused_socket_goes_offline_and_stays_there(
    live_context: BrowserContext, web_server: WebServer, project: Project, gpu: Gpu
) -> None:
    session_cookie(live_context, web_server.url, user_make())
    page = page_open(live_context, f"/ws/projects/{project.pk}/")
    page.wait_for_function("window.statuses.length >= 1")
    page.wait_for_timeout(1500)  # longer than the first retry would wait; none must come
    assert page.evaluate("window.statuses") == [{"state": "offline", "code": 4403}]
    assert hellos(page) == []


def test_a_signed_out_page_is_told_4401(
    live_context: BrowserContext, web_server: WebServer, project: Project, gpu: Gpu
) -> None:
    page = page_open(live_context, "/ws/gpus/sim0/")
    page.wait_for_function("window.statuses.length >= 1")
    assert page.evaluate("window.statuses") == [{"state": "offline", "code": 4401}]
