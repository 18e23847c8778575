"""WebSocket URL routes: a project's dashboard and a GPU's panel."""

from __future__ import annotations

from typing import Any

from django.urls import path

from artcritic.live.consumers import GpuConsumer, ProjectConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/projects/<int:project_id>/", ProjectConsumer.as_asgi()),
    path("ws/gpus/<slug:gpu>/", GpuConsumer.as_asgi()),
]
