"""The receiving end: dashboard sockets (aiohttp) and one real Chromium dashboard page.

Each keeps, per event about the benchmark's job, ``(type, progress.current, phase k, ms)``
where k is the number in the detail "bench phase k" (0 for progress) and ms is epoch
milliseconds: when the socket client read the frame, or when the page's live.js applied
it (its ``artcritic:applied`` event). Sockets also check the numbers as live.js does:
every number of a frame must be the next on its stream after the last hello.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    async_playwright,
)

from artcritic.devstack import CHROMIUM, CHROMIUM_ARGS

# One arrival: event type, progress.current, phase k (0: not a bench phase), epoch ms.
Arrival = tuple[str, int, int, float]
PHASE = re.compile(r"^bench phase (\d+)$")

# Installed before the page's scripts run: what live.js applied (job events only), and how
# many frames the page's socket delivered. Parsed afterwards in Python, to add as little
# as possible to the page.
PAGE_PROBE = """
(() => {
  const bench = (window.__bench = { frames: 0, applied: [] });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", () => { bench.frames += 1; });
    }
  };
  document.addEventListener("artcritic:applied", (applied) => {
    const { event, stream, seq, seqs, appliedAt } = applied.detail;
    if (event?.type === "job.progress" || event?.type === "job.status") {
      bench.applied.push([event.type, event.progress?.current ?? -1, event.detail?.text ?? "",
        appliedAt, JSON.stringify(seqs ?? { [stream]: seq })]);
    }
  });
})();
"""


def phase_number(text: object) -> int:
    match = PHASE.match(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else 0


def job_arrival(event: dict[str, Any], at_ms: float) -> Arrival | None:
    """The arrival an event makes, if it is about a job's progress or status."""
    kind = event.get("type")
    if kind not in ("job.progress", "job.status"):
        return None
    current = int((event.get("progress") or {}).get("current", -1))
    return (str(kind), current, phase_number((event.get("detail") or {}).get("text")), at_ms)


@dataclass
class Numbers:
    """Each stream's last number, checked as live.js checks it."""

    last: dict[str, int] = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)
    gaps: int = 0
    duplicated: int = 0

    def hello(self, streams: dict[str, int]) -> None:
        self.last = dict(streams)

    def take(self, numbers: dict[str, int]) -> None:
        for stream, seq in numbers.items():
            if (stream, seq) in self.seen:
                self.duplicated += 1
            self.seen.add((stream, seq))
            if stream not in self.last:
                continue
            if seq > self.last[stream] + 1:
                self.gaps += 1
            self.last[stream] = max(self.last[stream], seq)


@dataclass
class SocketWatcher:
    """One dashboard socket: it must get its hello first, then records every event."""

    index: int
    arrivals: list[Arrival] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    numbers: Numbers = field(default_factory=Numbers)
    frames: int = 0
    overflow_hellos: int = 0
    published_to_read: list[float] = field(default_factory=list)  # progress: read − "at", ms
    top_current: int = 0
    ws: aiohttp.ClientWebSocketResponse | None = None

    async def run(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        gate: asyncio.Semaphore,
    ) -> None:
        try:
            async with gate:  # a few handshakes at a time: each authorizes in the database
                self.ws = await session.ws_connect(url, headers=headers, max_msg_size=0)
                first = await self.ws.receive()
                if first.type != aiohttp.WSMsgType.TEXT:
                    self.problems.append(f"socket {self.index}: closed before its hello")
                    return
                self._take(first.data, time.time() * 1000)
            async for message in self.ws:
                at_ms = time.time() * 1000
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                self._take(message.data, at_ms)
            if self.ws.close_code not in (None, 1000):
                self.problems.append(f"socket {self.index} closed with {self.ws.close_code}")
        except (aiohttp.ClientError, OSError) as error:
            self.problems.append(f"socket {self.index}: {error!r}")
        finally:
            self.hello.set()  # never leave the benchmark waiting on a dead socket

    def _take(self, text: str, at_ms: float) -> None:
        message = json.loads(text)
        kind = message.get("type")
        if not self.hello.is_set():
            if kind != "hello":
                self.problems.append(f"socket {self.index}: first message was not a hello")
            self.numbers.hello(message.get("streams") or {})
            self.hello.set()
            return
        if kind == "hello":
            self.overflow_hellos += message.get("reason") == "overflow"
            self.numbers.hello(message.get("streams") or {})
            return
        if kind != "event":
            return
        self.frames += 1
        self.numbers.take(message.get("seqs") or {message["stream"]: message["seq"]})
        event = message.get("event") or {}
        arrival = job_arrival(event, at_ms)
        if arrival is not None:
            self.arrivals.append(arrival)
            self.top_current = max(self.top_current, arrival[1])
            if arrival[0] == "job.progress" and event.get("at"):
                published = datetime.fromisoformat(event["at"]).timestamp() * 1000
                self.published_to_read.append(at_ms - published)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def _until(page: Page, expression: str, *, timeout_s: float) -> None:
    """Poll ``expression`` until it is true. Not page.wait_for_function: its string
    predicates run through eval(), which the pages' CSP (script-src 'self') refuses;
    page.evaluate goes through the DevTools protocol, which CSP does not govern."""
    deadline = time.monotonic() + timeout_s
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still false after {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


@dataclass
class PageWatcher:
    """A signed-in Chromium tab on the project dashboard, with PAGE_PROBE installed."""

    playwright: Playwright
    browser: Browser
    page: Page
    errors: list[str]

    @classmethod
    async def open(cls, base_url: str, path: str, cookie: tuple[str, str]) -> PageWatcher:
        """Chromium signed in with the session ``cookie`` (name, value), live on ``path``."""
        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(base_url=base_url)
        await context.add_cookies([{"name": cookie[0], "value": cookie[1], "url": base_url}])
        await context.add_init_script(PAGE_PROBE)
        page = await context.new_page()
        watcher = cls(playwright, browser, page, [])
        page.on("pageerror", lambda error: watcher.errors.append(str(error)))
        page.on("console", watcher._console)
        page.on("response", watcher._response)
        await page.goto(path)
        await _until(page, "window.artcriticLive?.status === 'live'", timeout_s=30.0)
        return watcher

    def _console(self, line: ConsoleMessage) -> None:
        # "Failed to load resource" repeats a response seen below, or is /favicon.ico (none).
        if line.type == "error" and not line.text.startswith("Failed to load resource"):
            self.errors.append(line.text)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status} {response.url}")

    async def clock_offset(self) -> tuple[float, float]:
        """(page clock − Python clock, ± uncertainty) in ms, from the tightest of a few reads."""
        best: tuple[float, float] | None = None
        for _ in range(5):
            before = time.time() * 1000
            page_now = float(await self.page.evaluate("performance.timeOrigin + performance.now()"))
            after = time.time() * 1000
            reading = (page_now - (before + after) / 2, (after - before) / 2)
            if best is None or reading[1] < best[1]:
                best = reading
        assert best is not None
        return best

    async def top_current(self) -> int:
        script = "Math.max(0, ...window.__bench.applied.map((a) => a[1]))"
        return int(await self.page.evaluate(script))

    async def results(self) -> tuple[list[Arrival], Numbers, int, dict[str, Any]]:
        """(applied job events, their numbers checked, frames delivered, live.js's counters)."""
        bench = await self.page.evaluate("window.__bench")
        counters = await self.page.evaluate("({...window.artcriticLive})")
        arrivals: list[Arrival] = []
        numbers = Numbers()
        for kind, current, text, applied_at, seqs in bench["applied"]:
            arrivals.append((kind, int(current), phase_number(text), float(applied_at)))
            numbers.take(json.loads(seqs))  # live.js applies only next numbers: no gaps here
        return arrivals, numbers, int(bench["frames"]), counters

    async def close(self) -> None:
        await self.browser.close()
        await self.playwright.stop()
