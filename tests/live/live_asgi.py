"""artcritic's ASGI application plus one test page at /live-test/ (for test_live_js.py only).

The page must come from the server itself: a page from anywhere else is a foreign origin
to the socket, and Chromium blocks it from reaching a loopback address at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artcritic.asgi import application as artcritic_application

PAGE = Path(__file__).with_name("live_page.html").read_bytes()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/live-test/":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": PAGE})
        return
    await artcritic_application(scope, receive, send)
