"""Request size limits applied before Django reads a body, so nothing big is ever buffered.

Django's ASGI handler spools a whole request body before a view (or a middleware) can look
at it, and its own upload limits skip file parts. This ASGI middleware answers 413 as soon
as a request declares, or sends, more than ARTCRITIC_MAX_REQUEST_BYTES; a body within the
limit is passed on unchanged. No form of artcritic takes files, so one limit serves all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[..., Awaitable[None]]


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f}".removesuffix(".0") + " MB"


class BodyLimit:
    """ASGI middleware for HTTP: 413 for a body over ``limit`` bytes; others pass unchanged."""

    def __init__(self, application: App, limit: int) -> None:
        self.application = application
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send, declared)
            return
        # Read the body ourselves, never past the limit, then hand it on as it came.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(send, received, at_least=True)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.application(scope, replayed, send)

    async def _refuse(self, send: Send, size: int, *, at_least: bool = False) -> None:
        amount = f"more than {_megabytes(self.limit)}" if at_least else _megabytes(size)
        body = (
            f"Request too large: {amount}; the limit is {_megabytes(self.limit)} "
            f"({self.limit:,} bytes). Nothing was saved. Next: send less (a prompt or note "
            "is text; no form here takes files).\n"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
