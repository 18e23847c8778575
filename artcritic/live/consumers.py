"""Live sockets: a project's dashboard and a GPU's panel.

Each socket is a viewer of some streams. It authorizes on connect (and again on every
ping and resync, so a removed member stops seeing content), answers with a hello that
names each stream's current sequence number, then forwards events in order, redacting
other projects' events on GPU streams. The protocol itself lives in ``protocol.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from artcritic.events import group_for_gpu, group_for_project, sequences_read
from artcritic.gpu.models import Gpu
from artcritic.live import socket_stats
from artcritic.live.protocol import (
    CLOSE_BAD_CLIENT,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_SIGNED_IN,
    CLOSE_STREAMS_RESET,
    CLOSE_UNKNOWN_GPU,
    MAX_BAD_MESSAGES_IN_A_ROW,
    PONG,
    Ping,
    ProtocolError,
    ServerMessage,
    client_message_parse,
    error_message,
    event_for_viewer,
    hello_message,
    wire_encode,
)
from artcritic.studio.access import project_for_user, project_ids_for_user

# Redis calls are short and thread-safe; they need not queue behind the database thread.
_sequences_read = sync_to_async(sequences_read, thread_sensitive=False)


@dataclass(frozen=True)
class Viewer:
    """What one socket may see now: its streams, and the projects its user belongs to."""

    streams: tuple[str, ...]
    member_projects: frozenset[int]


def project_viewer(user: Any, project_id: int) -> Viewer:
    """A project's stream and every GPU's stream; Http404 unless ``user`` is a member."""
    project = project_for_user(user, project_id)
    gpus = Gpu.objects.order_by("name").values_list("name", flat=True)
    return Viewer(
        streams=(group_for_project(project.pk), *(group_for_gpu(name) for name in gpus)),
        member_projects=project_ids_for_user(user),
    )


def gpu_viewer(user: Any, gpu: str) -> Viewer:
    """One GPU's stream (any signed-in user may watch it); Http404 for an unknown GPU."""
    if not Gpu.objects.filter(name=gpu).exists():
        raise Http404("No such GPU.")
    return Viewer(streams=(group_for_gpu(gpu),), member_projects=project_ids_for_user(user))


class LiveConsumer(AsyncWebsocketConsumer):
    """The socket side of the protocol; subclasses say which viewer a URL makes."""

    refused_code: ClassVar[int] = CLOSE_FORBIDDEN

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.viewer: Viewer | None = None
        self.last_seen: dict[str, int] = {}
        self.bad_in_a_row = 0
        self.closing = False
        self.counted = False  # in socket_stats' open sockets (for /metrics)

    def viewer_read(self, user: Any) -> Viewer:
        """Authorize and list the streams (runs in the database thread); Http404 refuses."""
        raise NotImplementedError

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to the database thread (close_old_connections) before every handler.
        # A live event touches no database, and that hop was a third of daphne's CPU per
        # frame (bench/live.py); database work here goes through database_sync_to_async,
        # which does the same check itself.
        if message.get("type") == "live.event":
            await self.live_event(message)
            return
        await super().dispatch(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_NOT_SIGNED_IN)
            return
        try:
            viewer = await database_sync_to_async(self.viewer_read)(user)
        except Http404:
            await self._refuse(self.refused_code)
            return
        await self.accept()
        socket_stats.socket_opened()
        self.counted = True
        await self._streams_join(viewer)
        await self._hello_send()

    async def disconnect(self, code: int) -> None:
        if self.counted:
            socket_stats.socket_closed()
            self.counted = False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        message = client_message_parse(text_data)
        if isinstance(message, ProtocolError):
            self.bad_in_a_row += 1
            await self._send(error_message(message))
            if self.bad_in_a_row >= MAX_BAD_MESSAGES_IN_A_ROW:
                await self._close(CLOSE_BAD_CLIENT)
            return
        self.bad_in_a_row = 0
        if isinstance(message, Ping):
            await self._ping_answer()
        else:
            await self._resync_answer()

    async def live_event(self, message: dict[str, Any]) -> None:
        """A published event from the channel layer (events.py sends type ``live.event``)."""
        if self.viewer is None or self.closing:
            return
        shown = event_for_viewer(message, self.viewer.streams, self.viewer.member_projects)
        if shown is None:  # a stream left at the last resync, or not one of ours
            return
        stream = shown["stream"]
        self.last_seen[stream] = max(self.last_seen.get(stream, 0), shown["seq"])
        await self._send(shown)
        socket_stats.event_delivered(str(shown.get("event", {}).get("at", "")))

    async def _ping_answer(self) -> None:
        """Pong, after re-checking access and that Redis still holds our groups and counters."""
        viewer = await self._viewer_reread()
        if viewer is None or self.viewer is None:
            return
        # Membership may have changed; the stream list changes only on resync (with a hello).
        self.viewer = Viewer(streams=self.viewer.streams, member_projects=viewer.member_projects)
        # Re-adding refreshes the groups' expiry and restores them if Redis lost its state.
        for stream in self.viewer.streams:
            await self.channel_layer.group_add(stream, self.channel_name)
        now = await _sequences_read(self.viewer.streams)
        if any(now[stream] < self.last_seen.get(stream, 0) for stream in now):
            # Counters restarted: numbers will be reused, so only a fresh socket is honest.
            await self._close(CLOSE_STREAMS_RESET)
            return
        await self._send(PONG)

    async def _resync_answer(self) -> None:
        viewer = await self._viewer_reread()
        if viewer is None:
            return
        await self._streams_join(viewer)
        await self._hello_send()

    async def _viewer_reread(self) -> Viewer | None:
        """The viewer as of now; None (and the socket closing) if access was lost."""
        try:
            return await database_sync_to_async(self.viewer_read)(self.scope["user"])
        except Http404:
            await self._close(self.refused_code)
            return None

    async def _streams_join(self, viewer: Viewer) -> None:
        """Join the viewer's groups before reading counters, so no event falls between."""
        old = set(self.viewer.streams) if self.viewer else set()
        for stream in viewer.streams:
            await self.channel_layer.group_add(stream, self.channel_name)
        for stream in old - set(viewer.streams):
            await self.channel_layer.group_discard(stream, self.channel_name)
        self.viewer = viewer
        self.groups = list(viewer.streams)  # Channels discards these on disconnect

    async def _hello_send(self) -> None:
        assert self.viewer is not None
        streams = await _sequences_read(self.viewer.streams)
        self.last_seen = dict(streams)
        await self._send(hello_message(streams))

    async def _refuse(self, code: int) -> None:
        """Accept, then close with a code: a browser sees the code, not a bare failed handshake."""
        await self.accept()
        await self._close(code)

    async def _close(self, code: int) -> None:
        self.closing = True
        await self.close(code=code)

    async def _send(self, message: ServerMessage) -> None:
        await self.send(text_data=wire_encode(message))


class ProjectConsumer(LiveConsumer):
    """``ws/projects/<id>/``: a project's events and every GPU's (others' jobs redacted)."""

    refused_code = CLOSE_FORBIDDEN

    def viewer_read(self, user: Any) -> Viewer:
        return project_viewer(user, int(self.scope["url_route"]["kwargs"]["project_id"]))


class GpuConsumer(LiveConsumer):
    """``ws/gpus/<name>/``: one GPU's events for any signed-in user (others' jobs redacted)."""

    refused_code = CLOSE_UNKNOWN_GPU

    def viewer_read(self, user: Any) -> Viewer:
        return gpu_viewer(user, str(self.scope["url_route"]["kwargs"]["gpu"]))
