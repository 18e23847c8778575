"""Listen to live streams on the real channel layer from synchronous tests, as a socket does.

The listener lives on its own event loop in a thread: the pub/sub channel layer keeps
subscriptions per event loop and drops a channel whose receive is cancelled, so a
socket-like listener keeps one loop and one pending receive for its whole life.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

from channels.layers import get_channel_layer

WAIT = 10.0


class StreamListener:
    """A channel in the given groups; ``take()`` returns the next message or None."""

    def __init__(self, *streams: str) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._subscribe(streams), self.loop).result(WAIT)

    async def _subscribe(self, streams: tuple[str, ...]) -> None:
        self.layer: Any = get_channel_layer()
        self.channel = await self.layer.new_channel()
        for stream in streams:
            await self.layer.group_add(stream, self.channel)
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            self.messages.put(await self.layer.receive(self.channel))

    def take(self, timeout: float = WAIT) -> dict[str, Any] | None:
        """The next message, or None when none comes within ``timeout``."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        async def stop() -> None:
            self.pump.cancel()
            await self.layer.flush()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def __enter__(self) -> StreamListener:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
