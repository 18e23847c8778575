"""Pure arithmetic of the live benchmark: staleness, phase latency, losses, the table, the JSON.

Staleness of progress call n at a receiver = the first moment it had that value or a newer
one (a ``job.progress`` or ``job.status`` event whose progress.current ≥ n: read by a
socket, applied by the page's live.js) − t0 of call n, the worker's stamp just before it.
Coalescing at the source means most values are never sent themselves; staleness is what a
viewer waits for the number on screen to be at least that recent.

Phase latency of phase change k = when the receiver had the ``job.status`` event whose
detail is "bench phase k" − t0 of that change. Phase events are never coalesced: one
missing at a receiver is lost, and so is the last progress value (always sent).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.livebench.receivers import Arrival


@dataclass(frozen=True)
class Received:
    """What one receiver (a socket, or the page) got."""

    name: str
    arrivals: list[Arrival]
    frames: int  # every event frame delivered to it, any stream, any type
    duplicated: int  # a (stream, number) it got twice
    gaps: int  # a number that skipped ahead: live.js would have asked for a resync


@dataclass(frozen=True)
class Score:
    """One receiver's result."""

    staleness: list[float]
    phase_latency: list[float]
    lost: int  # phase events never received, plus the last progress value if it never came
    lost_phases: int
    progress_frames: int  # job.progress events it received (after coalescing)


def receiver_score(
    arrivals: Sequence[Arrival], t0: Sequence[float], phase_t0: Sequence[float]
) -> Score:
    """Score one receiver's arrivals against the worker's stamps (t0[n - 1] is call n's)."""
    calls = len(t0)
    first_at = [math.inf] * (calls + 2)  # value → first time an event carried it
    phases: dict[int, float] = {}
    progress_frames = 0
    for kind, current, phase, at_ms in arrivals:
        if kind == "job.progress":
            progress_frames += 1
        if 1 <= current <= calls:
            first_at[current] = min(first_at[current], at_ms)
        if phase and phase not in phases:
            phases[phase] = at_ms
    # Earliest time a value ≥ n was there: a suffix minimum over the values.
    for n in range(calls - 1, 0, -1):
        first_at[n] = min(first_at[n], first_at[n + 1])
    staleness = [first_at[n] - t0[n - 1] for n in range(1, calls + 1) if first_at[n] < math.inf]
    latency = [phases[k] - phase_t0[k - 1] for k in range(1, len(phase_t0) + 1) if k in phases]
    lost_phases = len(phase_t0) - len(latency)
    final_missing = calls > 0 and first_at[calls] == math.inf
    return Score(
        staleness=staleness,
        phase_latency=latency,
        lost=lost_phases + int(final_missing),
        lost_phases=lost_phases,
        progress_frames=progress_frames,
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


@dataclass
class RunFacts:
    """Everything one run measured, before any arithmetic."""

    events: int
    sockets: int
    rate: float
    phase_every_s: float
    cores: int
    web_workers: int
    t0: list[float]
    t1: list[float]
    phase_t0: list[float]
    received: list[Received]  # every socket, then the page (if any)
    page: Received | None = None
    page_counters: dict[str, Any] = field(default_factory=dict)
    clock_offset_ms: tuple[float, float] | None = None
    cpu_percent: dict[str, float] = field(default_factory=dict)
    server_cpu_s: float = 0.0  # the web server's processes, from "go" until drained
    server_resyncs: int = 0  # sockets the server sent a fresh hello, during the run
    published_to_read: list[float] = field(default_factory=list)  # sockets, sent progress
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    scores: list[Score]  # in the order of RunFacts.received
    staleness: Spread  # pooled over every receiver
    phase: Spread
    page_staleness: Spread | None
    lost: int
    duplicated: int
    resyncs: int
    frames: int
    cpu_us_per_frame: float


def summarise(facts: RunFacts) -> Summary:
    scores = [receiver_score(r.arrivals, facts.t0, facts.phase_t0) for r in facts.received]
    page_score = scores[-1] if facts.page is not None else None
    frames = sum(r.frames for r in facts.received)
    page_resyncs = max(0, int(facts.page_counters.get("resyncs", 1)) - 1)  # the first: connect
    return Summary(
        scores=scores,
        staleness=Spread.of([v for s in scores for v in s.staleness]),
        phase=Spread.of([v for s in scores for v in s.phase_latency]),
        page_staleness=Spread.of(page_score.staleness) if page_score else None,
        lost=sum(s.lost for s in scores),
        duplicated=sum(r.duplicated for r in facts.received),
        resyncs=facts.server_resyncs + sum(r.gaps for r in facts.received) + page_resyncs,
        frames=frames,
        cpu_us_per_frame=1e6 * facts.server_cpu_s / max(1, frames),
    )


def report_lines(facts: RunFacts, summary: Summary) -> list[str]:
    receivers = f"{facts.sockets} dashboard sockets" + (
        " + 1 Chromium dashboard page" if facts.page else " (no browser)"
    )
    phases = len(facts.phase_t0)
    lines = [
        f"Live benchmark: {facts.events} job_progress calls at {facts.rate:g}/s and "
        f"{phases} phase changes (every {facts.phase_every_s:g} s) to {receivers}; "
        f"{facts.web_workers} web process(es), {facts.cores} cores",
        "",
        "staleness: from a progress call (t0) until the receiver had that value or a newer one",
        f"  {'every receiver':34s} {summary.staleness.words()}",
    ]
    if summary.page_staleness is not None:
        lines.append(f"  {'page applied (live.js)':34s} {summary.page_staleness.words()}")
    page_phase = summary.scores[-1].phase_latency if facts.page else []
    lines += [
        "phase events: from job_phase_enter (t0) until the receiver had the event",
        f"  {'every receiver':34s} {summary.phase.words()}",
    ]
    if facts.page:
        lines.append(f"  {'page applied (live.js)':34s} {Spread.of(page_phase).words()}")
    calls = Spread.of([b - a for a, b in zip(facts.t0, facts.t1, strict=True)])
    lines += [
        "",
        "where it goes (ms)",
        f"  {'worker job_progress call':34s} {calls.words()}",
        f"  {'sent progress: published → read':34s} {Spread.of(facts.published_to_read).words()}",
    ]
    sent = [s.progress_frames for s in summary.scores]
    if sent:
        lines.append(
            f"progress frames per receiver: {min(sent)}–{max(sent)} for {facts.events} calls "
            "(latest-wins per job at the source)"
        )
    lines += [
        "",
        f"lost        {summary.lost} (phase events or the last progress value, all receivers)",
        f"duplicated  {summary.duplicated}",
        f"resyncs     {summary.resyncs} (server: socket fell behind {facts.server_resyncs}; "
        f"gaps seen by sockets {sum(r.gaps for r in facts.received)}; page "
        f"{max(0, int(facts.page_counters.get('resyncs', 1)) - 1)})",
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
    seconds = facts.events / facts.rate
    lines.append(
        f"web server: {summary.frames} frames ({summary.frames / seconds:.0f}/s), "
        f"{summary.cpu_us_per_frame:.0f} µs of CPU per frame"
    )
    lines += [f"problem: {problem}" for problem in facts.problems]
    return lines


def _ms(value: float) -> float | None:
    """Milliseconds to 1 decimal; None (JSON null) when nothing was measured."""
    return None if math.isnan(value) else round(value, 1)


def json_line(facts: RunFacts, summary: Summary) -> str:
    return json.dumps(
        {
            "events": facts.events,
            "sockets": facts.sockets,
            "p50_ms": _ms(summary.staleness.p50),
            "p99_ms": _ms(summary.staleness.p99),
            "phase_p99_ms": _ms(summary.phase.p99),
            "lost": summary.lost,
            "duplicated": summary.duplicated,
            "resyncs": summary.resyncs,
            "cpu_us_per_frame": round(summary.cpu_us_per_frame, 1),
        }
    )
