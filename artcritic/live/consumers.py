"""Live sockets: a project's dashboard and a GPU's panel.

Each socket is a viewer of some streams. It authorizes on connect (and again on every
ping and resync, so a removed member stops seeing content), answers with a hello that
names each stream's current sequence number, then sends the frames the process's
fan-out hands it (``fanout.py``: each event once, other projects' events redacted on GPU
streams) through its own bounded outbox. A socket that falls behind gets a fresh hello
instead of the frames it could not take. The protocol itself lives in ``protocol.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.sessions import InstanceSessionWrapper
from django.conf import settings
from django.http import Http404

from artcritic.events import group_for_gpu, group_for_project, sequences_read
from artcritic.gpu.models import Gpu
from artcritic.live.fanout import Fanout, Outbox, fanout_for_loop
from artcritic.live.protocol import (
    CLOSE_BAD_CLIENT,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_SIGNED_IN,
    CLOSE_SERVER_ERROR,
    CLOSE_STREAMS_RESET,
    CLOSE_UNKNOWN_GPU,
    MAX_BAD_MESSAGES_IN_A_ROW,
    PONG,
    Ping,
    ProtocolError,
    ServerMessage,
    client_message_parse,
    error_message,
    hello_message,
    wire_encode,
)
from artcritic.studio.access import (
    project_for_user,
    project_ids_for_user,
    session_still_signs_in,
)

# Redis calls are short and thread-safe; they need not queue behind the database thread.
_sequences_read = sync_to_async(sequences_read, thread_sensitive=False)


def _frame_send(send: Any) -> Any:
    """The server's own send for frames. Channels' session middleware wraps ``send`` to save
    sessions on HTTP responses; no socket frame ever saves one, and the wrapper's checks
    cost a tenth of the fan-out's CPU per frame (bench/live.py, py-spy)."""
    wrapper = getattr(send, "__self__", None)
    return wrapper.real_send if isinstance(wrapper, InstanceSessionWrapper) else send


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
    # No channel of its own: the process's fan-out receives each stream once and hands
    # this socket its frames (fanout.py). get_channel_layer(None) is "no layer".
    channel_layer_alias = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.viewer: Viewer | None = None
        self.last_seen: dict[str, int] = {}
        self.bad_in_a_row = 0
        self.closing = False
        self.fanout: Fanout | None = None
        self.outbox: Outbox | None = None
        self.held: list[str] | None = None  # frames that came while a hello is on its way
        self.hello_again = False
        self.behind = False  # fell behind; its fresh hello has not reached the server yet
        self.overflow_hello: asyncio.Future[None] | None = None
        self.access_checks: set[asyncio.Future[None]] = set()

    @property
    def member_projects(self) -> frozenset[int]:
        return self.viewer.member_projects if self.viewer else frozenset()

    def viewer_read(self, user: Any) -> Viewer:
        """Authorize and list the streams (runs in the database thread); Http404 refuses."""
        raise NotImplementedError

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
        self.fanout = fanout_for_loop()
        self.outbox = Outbox(_frame_send(self.base_send), settings.ARTCRITIC_LIVE_SOCKET_QUEUE,
                             self._caught_up)  # fmt: skip
        await self.fanout.join_user(self, int(user.pk))
        await self._hello_send(viewer)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if self.overflow_hello is not None:
            self.overflow_hello.cancel()
        if self.fanout is not None:
            await self.fanout.leave(self)
        if self.outbox is not None:
            await self.outbox.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        message = client_message_parse(text_data)
        if isinstance(message, ProtocolError):
            self.bad_in_a_row += 1
            self._send(error_message(message))
            if self.bad_in_a_row >= MAX_BAD_MESSAGES_IN_A_ROW:
                await self._close(CLOSE_BAD_CLIENT)
            return
        self.bad_in_a_row = 0
        if isinstance(message, Ping):
            await self._ping_answer()
        else:
            viewer = await self._viewer_reread()
            if viewer is not None:
                await self._hello_send(viewer)

    def frame_take(self, text: str, seqs: Mapping[str, int], watched: tuple[str, ...]) -> None:
        """A frame from the fan-out: queued, held behind a coming hello, or the socket is behind."""
        if self.closing or self.outbox is None:
            return
        last_seen = self.last_seen
        for stream in watched:
            if seqs[stream] > last_seen.get(stream, 0):
                last_seen[stream] = seqs[stream]
        if self.held is not None:
            if len(self.held) < self.outbox.limit:
                self.held.append(text)
            else:  # the hello on its way will not cover these: send another after it
                self.held.clear()
                self.hello_again = True
            return
        if not self.outbox.put(text):
            self._fell_behind()

    def access_changed(self, signed_out_session: str) -> None:
        """A sign-out, password change, deactivation or membership change of this user:
        close now if this socket's session or project access ended (not at its next ping)."""
        if self.closing:
            return
        if signed_out_session and signed_out_session == self._session_key():
            check = asyncio.ensure_future(self._close(CLOSE_NOT_SIGNED_IN))
        else:
            check = asyncio.ensure_future(self._access_recheck())
        self.access_checks.add(check)
        check.add_done_callback(self.access_checks.discard)

    def _session_key(self) -> str:
        session = self.scope.get("session")
        return str(getattr(session, "session_key", "") or "")

    async def _access_recheck(self) -> None:
        signed_in = await database_sync_to_async(session_still_signs_in)(
            self._session_key(), self.scope["user"]
        )
        if not signed_in:
            await self._close(CLOSE_NOT_SIGNED_IN)
            return
        viewer = await self._viewer_reread()
        if viewer is not None and self.viewer is not None:
            # The socket keeps its streams; which projects it may see whole may change.
            self.viewer = Viewer(self.viewer.streams, viewer.member_projects)

    def _fell_behind(self) -> None:
        """More frames wait than allowed: drop them and send a fresh hello (one resync)."""
        assert self.viewer is not None
        self._drop_waiting()
        self.overflow_hello = asyncio.ensure_future(self._hello_after_overflow(self.viewer))

    def _drop_waiting(self) -> None:
        """Drop every waiting frame (and the one that did not fit); count the resync once
        until a hello reaches the socket again."""
        assert self.outbox is not None
        assert self.fanout is not None
        counters = self.fanout.counters
        counters.dropped += self.outbox.clear() + 1
        if not self.behind:
            self.behind = True
            counters.resyncs += 1
            counters.resyncs_unsent += 1
        counters.changed = True

    async def _hello_after_overflow(self, viewer: Viewer) -> None:
        try:
            await self._hello_send(viewer, overflow=True)
        except redis.RedisError:
            # No honest hello without the numbers: a fresh connection will get one.
            await self._close(CLOSE_SERVER_ERROR)

    def _caught_up(self) -> None:
        self.behind = False

    async def _ping_answer(self) -> None:
        """Pong, after re-checking access and that Redis still holds our counters."""
        viewer = await self._viewer_reread()
        if viewer is None or self.viewer is None or self.fanout is None:
            return
        # Membership may have changed; the stream list changes only on resync (with a hello).
        self.viewer = Viewer(streams=self.viewer.streams, member_projects=viewer.member_projects)
        # Re-joining resubscribes the process if Redis lost its subscriptions.
        await self.fanout.join(self, self.viewer.streams)
        now = await _sequences_read(self.viewer.streams)
        if any(now[stream] < self.last_seen.get(stream, 0) for stream in now):
            # Counters restarted: numbers will be reused, so only a fresh socket is honest.
            await self._close(CLOSE_STREAMS_RESET)
            return
        self._send(PONG)

    async def _viewer_reread(self) -> Viewer | None:
        """The viewer as of now; None (and the socket closing) if access was lost."""
        try:
            return await database_sync_to_async(self.viewer_read)(self.scope["user"])
        except Http404:
            await self._close(self.refused_code)
            return None

    async def _hello_send(self, viewer: Viewer, *, overflow: bool = False) -> None:
        """Join the viewer's streams, then read their numbers and send the hello; frames that
        come meanwhile follow it (the client skips those the hello already covers)."""
        assert self.fanout is not None
        assert self.outbox is not None
        if self.held is not None:  # a hello is on its way: it will send one more after it
            self.hello_again = True
            return
        while True:
            self.held, self.hello_again = [], False
            try:
                self.viewer = viewer
                await self.fanout.join(self, viewer.streams)
                streams = await _sequences_read(viewer.streams)
            except BaseException:
                self.held = None
                raise
            self.last_seen = dict(streams)
            held, self.held = self.held, None
            if self.closing:  # it left while we read: take it out again
                await self.fanout.leave(self)
                return
            self.outbox.put(wire_encode(hello_message(streams, overflow=overflow)), hello=True)
            for text in held:
                if not self.outbox.put(text):  # behind already: one more hello after these
                    self._drop_waiting()
                    self.hello_again, overflow = True, True
                    break
            if not self.hello_again:
                return

    async def _refuse(self, code: int) -> None:
        """Accept, then close with a code: a browser sees the code, not a bare failed handshake."""
        await self.accept()
        await self._close(code)

    async def _close(self, code: int) -> None:
        """Close after what is already queued for the client (an error says why)."""
        self.closing = True
        if self.outbox is None:
            await self.close(code=code)
        else:
            self.outbox.close_after(code)

    def _send(self, message: ServerMessage) -> None:
        """Queue a message of our own (pong, error) behind the frames already waiting."""
        if self.outbox is not None and not self.closing:
            self.outbox.put(wire_encode(message), force=True)


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
