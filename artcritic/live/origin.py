"""WebSocket handshakes only from this site's own pages: scheme, host AND port must match.

Channels' AllowedHostsOriginValidator compares host names alone, so a page served by any
other program on the same host (another port) could open a signed-in user's live socket.
This check is Django's CSRF origin rule for sockets: the Origin header must be exactly the
origin the browser used to reach us (the Host header, which carries the port, under an
allowed host name), or one listed in ARTCRITIC_CSRF_TRUSTED_ORIGINS (a TLS proxy in front).
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

Scope = dict[str, Any]

# A socket's scheme is ws or wss; the page that opened it was http or https.
PAGE_SCHEME = {"ws": "http", "wss": "https"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return str(value.decode("latin1"))
            except UnicodeDecodeError:
                return None
    return None


def origin_allowed(scope: Scope) -> bool:
    """Whether the handshake's Origin is this site's own origin (or a trusted one)."""
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    if not origin or not host:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = PAGE_SCHEME.get(str(scope.get("scheme", "ws")), "http")
    return origin == f"{scheme}://{host}"


class SameOriginValidator:
    """ASGI middleware: refuse a WebSocket handshake from any other origin (HTTP 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
