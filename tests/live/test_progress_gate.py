"""Latest-wins job.progress at the source (artcritic.events.ProgressGate), on a given clock."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from artcritic.events import LiveEvent, ProgressGate, progress_due_now

INTERVAL = 0.25  # and times in eighths of a second: exact in binary floating point


def progress(job: int, current: int, total: int = 100) -> LiveEvent:
    return LiveEvent(
        type="job.progress", project=1, gpu="sim0", job=job,
        progress={"current": current, "total": total},
    )  # fmt: skip


def status(job: int, phase: str = "uploading") -> LiveEvent:
    return LiveEvent(type="job.status", project=1, gpu="sim0", job=job, phase=phase)


def gate() -> tuple[ProgressGate, list[LiveEvent]]:
    sent: list[LiveEvent] = []
    return ProgressGate(INTERVAL, send=sent.append), sent


def currents(events: list[LiveEvent]) -> list[int]:
    return [e.progress["current"] for e in events if e.type == "job.progress" and e.progress]


def test_the_first_step_goes_out_at_once_and_the_steps_after_it_wait_their_turn() -> None:
    g, sent = gate()
    assert g.offer(progress(7, 1), now=10.0) is True
    assert g.offer(progress(7, 2), now=10.125) is False
    assert g.offer(progress(7, 3), now=10.25 - 1 / 64) is False  # replaces step 2: latest wins
    assert currents(sent) == [1]
    # Due one interval after step 2, the oldest step the held one stands for.
    assert g.flush_due(10.25) == 10.375
    assert g.flush_due(10.375) is None
    assert currents(sent) == [1, 3]


def test_a_step_an_interval_after_the_last_sent_one_goes_out_at_once_and_replaces_held_ones(
) -> None:
    g, sent = gate()
    g.offer(progress(7, 1), now=10.0)
    assert g.offer(progress(7, 2), now=10.125) is False
    assert g.offer(progress(7, 3), now=10.25) is True  # one interval after step 1
    assert g.held() == 0
    assert currents(sent) == [1, 3]


def test_at_a_step_every_half_interval_every_other_goes_out_and_none_waits_over_a_step(
) -> None:
    g, sent = gate()
    for n in range(1, 51):  # as 50 steps a second with a 40 ms interval
        now = 10.0 + (n - 1) * INTERVAL / 2
        g.flush_due(now)
        g.offer(progress(7, n, total=50), now=now)
    assert currents(sent) == [1, *range(3, 50, 2), 50]


def test_the_last_step_goes_out_at_once_and_takes_the_place_of_a_held_one() -> None:
    g, sent = gate()
    g.offer(progress(7, 1, total=3), now=10.0)
    g.offer(progress(7, 2, total=3), now=10.125)
    assert g.offer(progress(7, 3, total=3), now=10.1875) is True
    assert g.flush_due(11.0) is None
    assert currents(sent) == [1, 3]  # step 2 was never newer than what the page had


def test_a_status_change_goes_out_at_once_replaces_held_progress_and_makes_the_next_step_first(
) -> None:
    g, sent = gate()
    g.offer(progress(7, 1), now=10.0)
    g.offer(progress(7, 2), now=10.125)
    assert g.offer(status(7), now=10.1875) is True
    assert g.held() == 0
    assert g.offer(progress(7, 3), now=10.1875) is True  # the first step of the new phase
    assert [e.type for e in sent] == ["job.progress", "job.status", "job.progress"]
    assert currents(sent) == [1, 3]


def test_another_event_of_the_job_sends_held_progress_before_itself() -> None:
    g, sent = gate()
    g.offer(progress(7, 1), now=10.0)
    g.offer(progress(7, 2), now=10.125)
    image = LiveEvent(type="image.created", project=1, gpu="sim0", job=7, detail={"image": 3})
    g.offer(image, now=10.1875)
    assert [(e.type, e.progress) for e in sent] == [
        ("job.progress", {"current": 1, "total": 100}),
        ("job.progress", {"current": 2, "total": 100}),
        ("image.created", None),
    ]


def test_jobs_take_turns_of_their_own_and_events_of_no_job_pass_straight_through() -> None:
    g, sent = gate()
    g.offer(progress(7, 1), now=10.0)
    g.offer(progress(8, 1), now=10.0)
    g.offer(progress(8, 2), now=10.125)
    g.offer(LiveEvent(type="runtime.state", gpu="sim0", runtime="critic"), now=10.125)
    assert [(e.type, e.job) for e in sent] == [
        ("job.progress", 7), ("job.progress", 8), ("runtime.state", None),
    ]  # fmt: skip
    assert g.held() == 1


def test_the_gate_thread_flushes_held_progress_on_time() -> None:
    import threading
    import time

    arrived = threading.Event()
    sent: list[LiveEvent] = []

    def send(event: LiveEvent) -> None:
        sent.append(event)
        if len(sent) == 2:
            arrived.set()

    g = ProgressGate(0.05, send=send)
    g.start()
    g.offer(progress(7, 1), now=time.monotonic())
    g.offer(progress(7, 2), now=time.monotonic())
    assert arrived.wait(5)
    assert currents(sent) == [1, 2]


@dataclass(frozen=True)
class Offer:
    dt: float
    job: int
    kind: str  # "progress" or "status"


offers = st.lists(
    st.builds(
        Offer,
        dt=st.sampled_from([0.0, 1 / 64, 1 / 16, 1 / 8, 0.25 - 1 / 64, 0.25, 0.5, 2.0]),
        job=st.sampled_from([1, 2]),
        kind=st.sampled_from(["progress"] * 6 + ["status"]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(offers)
def test_whatever_comes_the_page_sees_progress_in_order_status_never_dropped_newest_kept(
    script: list[Offer],
) -> None:
    clock = [100.0]
    sent_at: list[tuple[float, LiveEvent]] = []
    g = ProgressGate(INTERVAL, send=lambda event: sent_at.append((clock[0], event)))

    def run_until(now: float) -> None:
        """The gate's thread: it flushes each held step exactly when it is due."""
        due = g.flush_due(clock[0])
        while due is not None and due <= now:
            clock[0] = due
            due = g.flush_due(due)
        clock[0] = now

    step, total = {1: 0, 2: 0}, 20
    offered: list[tuple[float, LiveEvent]] = []
    for offer in script:
        run_until(clock[0] + offer.dt)
        if offer.kind == "status":
            event = status(offer.job, phase=f"p{len(offered)}")
        else:
            step[offer.job] = min(total, step[offer.job] + 1)
            event = progress(offer.job, step[offer.job], total)
        offered.append((clock[0], event))
        g.offer(event, now=clock[0])
    run_until(clock[0] + 10.0)
    sent = [event for _, event in sent_at]

    # Status events are never dropped, and keep their order.
    assert [e for e in sent if e.type == "job.status"] == [
        e for _, e in offered if e.type == "job.status"
    ]
    for job in (1, 2):
        mine = [(at, e) for at, e in sent_at if e.job == job]
        # What went out for a job is what came in for it, in its order, some progress left
        # out (jobs are independent: one's held step may follow another's later event).
        remaining = iter(e for _, e in offered if e.job == job)
        assert all(any(e is candidate for candidate in remaining) for _, e in mine)
        # No step waits more than one interval for itself, a newer step or a status.
        for at, event in ((t, e) for t, e in offered if e.job == job):
            if event.type != "job.progress" or not event.progress:
                continue
            newest = event.progress["current"]
            assert any(
                at <= later_at <= at + INTERVAL
                and (later.type == "job.status" or (later.progress or {})["current"] >= newest)
                for later_at, later in mine
            ), event
        # At most one progress frame per interval, but for a first step and a last step.
        previous: float | None = None
        for at, event in mine:
            if event.type == "job.status":
                previous = None
                continue
            if previous is not None and event.progress and event.progress["current"] < total:
                assert at - previous >= INTERVAL
            previous = at


def test_due_now_is_first_last_or_an_interval_later() -> None:
    due = progress_due_now
    assert due(now=5.0, last_sent=None, interval_s=1.0, current=3, total=9)
    assert due(now=5.0, last_sent=4.9, interval_s=1.0, current=9, total=9)
    assert due(now=5.0, last_sent=4.0, interval_s=1.0, current=3, total=9)
    assert not due(now=5.0, last_sent=4.5, interval_s=1.0, current=3, total=9)
