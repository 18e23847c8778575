"""Pure arithmetic of the live benchmark: losses, duplicates, latencies, the table, the JSON.

Latency of an event at a receiver = the moment it got the event's ``project.<id>`` copy
(socket: frame read; page: live.js applied it) − t0, the worker's stamp just before its
``job_progress`` call. ``progress.current`` = i joins the two.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.livebench.receivers import Arrival


@dataclass(frozen=True)
class Score:
    """One receiver's result: latency of each delivered event, and what went wrong."""

    latencies: list[float]
    lost: int  # events whose project copy never arrived
    duplicated: int  # arrivals repeating a (stream, seq) or a progress value on a stream
    gpu_missing: int  # events whose gpu copy never arrived (reported, not in "lost")


def receiver_score(
    arrivals: Sequence[Arrival], t0: Sequence[float], project_stream: str, gpu_stream: str
) -> Score:
    """Score one receiver's arrivals against the worker's t0 (t0[i - 1] is event i's)."""
    numbers: set[tuple[str, int]] = set()
    values: set[tuple[str, int]] = set()
    first: dict[str, dict[int, float]] = {project_stream: {}, gpu_stream: {}}
    duplicated = 0
    for stream, seq, current, at_ms, _ in arrivals:
        if not 1 <= current <= len(t0):
            continue  # the warm-up event, or some other job's
        if (stream, seq) in numbers or (stream, current) in values:
            duplicated += 1
            continue
        numbers.add((stream, seq))
        values.add((stream, current))
        first.setdefault(stream, {})[current] = at_ms
    project = first[project_stream]
    events = range(1, len(t0) + 1)
    return Score(
        latencies=[project[i] - t0[i - 1] for i in events if i in project],
        lost=sum(1 for i in events if i not in project),
        duplicated=duplicated,
        gpu_missing=sum(1 for i in events if i not in first[gpu_stream]),
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 600 values is the 594th smallest); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        top = max(values) if values else math.nan
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        return cls(len(values), p50, p95, p99, top)

    def words(self) -> str:
        return (
            f"p50 {self.p50:7.1f}  p95 {self.p95:7.1f}  p99 {self.p99:7.1f}  "
            f"max {self.max:7.1f} ms  (n={self.count})"
        )


def epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


@dataclass
class RunFacts:
    """Everything one run measured, before any arithmetic."""

    events: int
    sockets: int
    rate: float
    cores: int
    project_stream: str
    gpu_stream: str
    t0: list[float]
    t1: list[float]
    sends: list[tuple[str, int, float, float]]  # group_send: group, current, start, end ms
    socket_arrivals: list[list[Arrival]]
    page_applied: list[Arrival] | None = None  # None: run without the browser
    page_received: list[Arrival] = field(default_factory=list)
    page_counters: dict[str, Any] = field(default_factory=dict)
    clock_offset_ms: tuple[float, float] | None = None
    cpu_percent: dict[str, float] = field(default_factory=dict)
    server_us_per_frame: float | None = None  # daphne CPU from go to drained / frames sent
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    page: Score | None
    sockets: list[Score]
    headline: Spread  # the page's latencies (the sockets' without a browser)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.sockets) + (self.page.lost if self.page else 0)

    @property
    def gpu_missing(self) -> int:
        return sum(s.gpu_missing for s in self.sockets) + (
            self.page.gpu_missing if self.page else 0
        )

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.sockets) + (self.page.duplicated if self.page else 0)


def summarise(facts: RunFacts) -> Summary:
    streams = (facts.project_stream, facts.gpu_stream)
    sockets = [receiver_score(a, facts.t0, *streams) for a in facts.socket_arrivals]
    page = None
    if facts.page_applied is not None:
        page = receiver_score(facts.page_applied, facts.t0, *streams)
    pooled = [value for score in sockets for value in score.latencies]
    return Summary(page, sockets, Spread.of(page.latencies if page else pooled))


def _hops(facts: RunFacts) -> list[tuple[str, Spread]]:
    """Where the time goes, hop by hop, for the project copies."""
    project, valid = facts.project_stream, range(1, facts.events + 1)
    t0, t1 = facts.t0, facts.t1
    hops = [("worker call (t1 - t0)", Spread.of([b - a for a, b in zip(t0, t1, strict=True)]))]
    sent = {c: (start, end) for g, c, start, end in facts.sends if g == project and c in valid}
    some = facts.socket_arrivals[0] if facts.socket_arrivals else facts.page_received
    # `at` is stamped by event_publish: after the row is read and updated, before Redis.
    at = {c: epoch_ms(iso) for s, _, c, _, iso in some if s == project and c in valid}
    if at:
        hops.append(("  read+update row (at - t0)", Spread.of([at[c] - t0[c - 1] for c in at])))
        incr = [sent[c][0] - at[c] for c in at if c in sent]
        hops.append(("  INCR, async_to_sync (send - at)", Spread.of(incr)))
    hops.append(("  group_send project", Spread.of([end - start for start, end in sent.values()])))
    gpu = [end - start for g, c, start, end in facts.sends if g == facts.gpu_stream and c in valid]
    hops.append(("  group_send gpu", Spread.of(gpu)))
    # From the project copy's send on, the time is daphne's (Redis pop, every consumer,
    # one frame each) and the receiver's.
    fan_out = [
        at_ms - sent[c][1]
        for arrivals in facts.socket_arrivals
        for s, _, c, at_ms, _ in arrivals
        if s == project and c in sent
    ]
    hops.append(("sockets: read - sent", Spread.of(fan_out)))
    if facts.page_applied is not None:
        received = {c: at_ms for s, _, c, at_ms, _ in facts.page_received if s == project}
        applied = {c: at_ms for s, _, c, at_ms, _ in facts.page_applied if s == project}
        delivered = [received[c] - sent[c][1] for c in received if c in sent]
        apply = [applied[c] - received[c] for c in applied if c in received and c in valid]
        hops.append(("page: frame delivered - sent", Spread.of(delivered)))
        hops.append(("page: applied - delivered", Spread.of(apply)))
    return hops


def report_lines(facts: RunFacts, summary: Summary) -> list[str]:
    pooled = [value for score in summary.sockets for value in score.latencies]
    lines = [
        f"Live benchmark: {facts.events} job.progress events at {facts.rate:g}/s, "
        f"{facts.sockets} dashboard sockets"
        + (" + 1 Chromium dashboard page" if summary.page else " (no browser)")
        + f", {facts.cores} cores",
        "",
        "latency from the worker's job_progress call (t0) to ...",
    ]
    if summary.page:
        page = Spread.of(summary.page.latencies)
        lines.append(f"  {'page applied (live.js)':34s} {page.words()}")
    lines.append(f"  {'socket read (all sockets)':34s} {Spread.of(pooled).words()}")
    lines += ["", "hops (ms)"]
    lines += [f"  {name:34s} {spread.words()}" for name, spread in _hops(facts)]
    lines += [
        "",
        f"lost        {summary.lost} (page {summary.page.lost if summary.page else '-'}, "
        f"sockets {sum(s.lost for s in summary.sockets)})",
        f"duplicated  {summary.duplicated}",
        f"gpu copies missing (not in lost) {summary.gpu_missing}",
    ]
    if facts.page_counters:
        keys = ("applied", "ignored", "resyncs", "reconnects")
        counts = ", ".join(f"{key} {facts.page_counters.get(key)}" for key in keys)
        lines.append(f"page live.js: {counts}")
    if facts.clock_offset_ms is not None:
        offset, error = facts.clock_offset_ms
        lines.append(f"page clock - Python clock: {offset:+.2f} ms (± {error:.2f})")
    if facts.cpu_percent:
        lines.append(
            "CPU while sending (% of one core): "
            + ", ".join(f"{name} {value:.0f}" for name, value in facts.cpu_percent.items())
        )
    if facts.server_us_per_frame is not None:
        # Frames the run asked daphne for, per second of sending (both streams, every receiver).
        frames = sum(map(len, facts.socket_arrivals)) + len(facts.page_received)
        needed = frames * facts.rate / facts.events
        share = needed * facts.server_us_per_frame / 1e4
        lines.append(
            f"daphne CPU per event frame: {facts.server_us_per_frame:.0f} µs; keeping up with "
            f"{needed:.0f} frames/s takes {share:.0f}% of one core"
        )
    lines += [f"problem: {problem}" for problem in facts.problems]
    return lines


def json_line(facts: RunFacts, summary: Summary) -> str:
    return json.dumps(
        {
            "events": facts.events,
            "sockets": facts.sockets,
            "p50_ms": round(summary.headline.p50, 1),
            "p99_ms": round(summary.headline.p99, 1),
            "lost": summary.lost,
            "duplicated": summary.duplicated,
        }
    )
