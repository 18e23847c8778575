"""The receiving end: dashboard sockets (aiohttp) and one real Chromium dashboard page.

Both keep, per ``job.progress`` event, ``(stream, seq, progress.current, ms)`` where ms is
epoch milliseconds: when the socket client read the frame, or when the page's live.js
applied it (its ``artcritic:applied`` event) and when the page's WebSocket delivered it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
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

# One arrival: stream, seq, progress.current, epoch ms, the event's own "at" (ISO).
Arrival = tuple[str, int, int, float, str]

# Installed before the page's scripts run. The WebSocket subclass adds its listener in the
# constructor, before live.js adds its own, so it stamps the frame's delivery first; frames
# are kept raw and parsed afterwards in Python, to add as little as possible to the page.
PAGE_PROBE = """
(() => {
  const bench = (window.__bench = { received: [], applied: [] });
  const now = () => performance.timeOrigin + performance.now();
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (message) => bench.received.push([now(), message.data]));
    }
  };
  document.addEventListener("artcritic:applied", (applied) => {
    const { stream, seq, event, appliedAt } = applied.detail;
    if (event?.type === "job.progress") {
      bench.applied.push([stream, seq, event.progress?.current ?? -1, appliedAt, event.at]);
    }
  });
})();
"""


def progress_arrival(text: str, at_ms: float) -> Arrival | None:
    """The arrival a frame makes, if it is a job.progress event."""
    message = json.loads(text)
    event = message.get("event") or {}
    if message.get("type") != "event" or event.get("type") != "job.progress":
        return None
    current = (event.get("progress") or {}).get("current", -1)
    return (message["stream"], int(message["seq"]), int(current), at_ms, event.get("at", ""))


@dataclass
class SocketWatcher:
    """One dashboard socket: it must get its hello first, then records every event."""

    index: int
    arrivals: list[Arrival] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    top_current: dict[str, int] = field(default_factory=dict)
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
                ws = await session.ws_connect(url, headers=headers, max_msg_size=0)
                self.ws = ws
                first = await ws.receive()
                if first.type == aiohttp.WSMsgType.TEXT:
                    self._take(first.data, time.time() * 1000)
            async with ws:
                self.ws = ws
                async for message in ws:
                    at_ms = time.time() * 1000
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self._take(message.data, at_ms)
                    else:
                        break
                if ws.close_code not in (None, 1000):
                    self.problems.append(f"socket {self.index} closed with {ws.close_code}")
        except (aiohttp.ClientError, OSError) as error:
            self.problems.append(f"socket {self.index}: {error!r}")
        finally:
            self.hello.set()  # never leave the benchmark waiting on a dead socket

    def _take(self, text: str, at_ms: float) -> None:
        if not self.hello.is_set():
            if json.loads(text).get("type") != "hello":
                self.problems.append(f"socket {self.index}: first message was not a hello")
            self.hello.set()
            return
        arrival = progress_arrival(text, at_ms)
        if arrival is not None:
            self.arrivals.append(arrival)
            stream, current = arrival[0], arrival[2]
            self.top_current[stream] = max(self.top_current.get(stream, 0), current)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


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
        await page.wait_for_function("window.artcriticLive?.status === 'live'", timeout=30_000)
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

    async def top_current(self, stream: str) -> int:
        script = """(stream) => Math.max(0, ...window.__bench.applied
            .filter((a) => a[0] === stream).map((a) => a[2]))"""
        return int(await self.page.evaluate(script, stream))

    async def results(self) -> tuple[list[Arrival], list[Arrival], dict[str, Any]]:
        """(applied, received, live.js's debug counters)."""
        bench = await self.page.evaluate("window.__bench")
        counters = await self.page.evaluate("({...window.artcriticLive})")
        applied = [(s, int(q), int(c), float(t), at) for s, q, c, t, at in bench["applied"]]
        received = [
            arrival
            for at_ms, text in bench["received"]
            if (arrival := progress_arrival(text, float(at_ms))) is not None
        ]
        return applied, received, counters

    async def close(self) -> None:
        await self.browser.close()
        await self.playwright.stop()
