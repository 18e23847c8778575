"""WebSocket URL routes (consumers arrive with the live dashboard)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
