"""A batch's phases follow the runtime: the page never shows a stale phase beside live progress.

A real GPU worker runs a 4-image batch (one ComfyUI prompt per image) on the simulators;
the test listens to the project's live stream as the dashboard does and checks the
phase/progress pairs it receives, in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artcritic.events import group_for_project
from artcritic.jobs.models import JobPhase, JobStatus
from tests.jobs.e2e import Stack, finished, stack_run, submit
from tests.livelisten import StreamListener
from tests.workerproc import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEPS = 5


@pytest.fixture
def stack(tmp_path: Path, settings: Any, s3_bucket: str) -> Iterator[Stack]:
    yield from stack_run(tmp_path, settings, time_scale=0.02)


def events_of(
    listener: StreamListener, job_id: int, until_done: float = 90.0
) -> list[dict[str, Any]]:
    """The job's job.status and job.progress events, in arrival order, until it is done."""
    events: list[dict[str, Any]] = []
    while True:
        message = listener.take(timeout=until_done)
        assert message is not None, f"no event for {until_done} s; got {events[-5:]}"
        event = message["event"]
        if event["job"] != job_id or event["type"] not in ("job.status", "job.progress"):
            continue
        events.append(event)
        if event["type"] == "job.status" and event["status"] == JobStatus.DONE:
            return events


def test_a_four_image_batch_shows_generating_and_uploading_image_by_image_in_order(
    stack: Stack,
) -> None:
    with StreamListener(group_for_project(stack.project.pk)) as listener:
        job = submit(stack, count=4, steps=STEPS)
        events = events_of(listener, job.pk)

    done = wait_until(lambda: finished(job.pk), 30, what="the job row", log=stack.log)
    assert done.status == JobStatus.DONE, done.error_reason

    # Every progress line arrives while the job's phase is generating, for the image whose
    # generation was announced last, and counts that image's steps.
    phase, image = "", 0
    pairs: list[tuple[str, int]] = []
    for event in events:
        text = event["detail"].get("text", "")
        if event["type"] == "job.status":
            phase = event["phase"]
            found = re.match(r"generating image (\d)/4", text)
            image = int(found.group(1)) if found else image
            pairs.append((phase, image))
            continue
        assert phase == "generating", f"progress {text!r} beside a stale phase {phase!r}"
        assert re.fullmatch(rf"generating image {image}/4, step \d/{STEPS}", text), text
        current = event["progress"]["current"]
        assert (image - 1) * STEPS < current <= image * STEPS, (image, current)
        assert event["progress"]["total"] == 4 * STEPS

    after_claim = pairs[[p for p, _ in pairs].index("waiting_for_gpu") :]
    runtime_work = [pair for pair in after_claim if pair[0] in ("generating", "uploading")]
    assert runtime_work == [
        ("generating", 1), ("uploading", 1), ("generating", 2), ("uploading", 2),
        ("generating", 3), ("uploading", 3), ("generating", 4), ("uploading", 4),
    ]  # fmt: skip
    assert pairs[-1][0] == ""  # done: no phase left behind

    # The uploading events say which image is stored, and that the next one is under way.
    uploads = [
        e["detail"]["text"]
        for e in events
        if e["type"] == "job.status" and e["phase"] == "uploading"
    ]
    assert uploads[0] == "storing image 1 of 4; image 2/4 is queued in ComfyUI"
    assert uploads[-1] == "storing image 4 of 4"

    # The history the page resyncs from says the same.
    history = list(
        JobPhase.objects.filter(job=job, status=JobStatus.RUNNING)
        .order_by("started_at", "id")
        .values_list("phase", flat=True)
    )
    assert [p for p in history if p in ("generating", "uploading")] == [
        "generating", "uploading"
    ] * 4  # fmt: skip
