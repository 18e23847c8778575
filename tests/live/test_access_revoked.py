"""Sockets close the moment access ends: sign-out, password change, deactivation, removal.

None of these sockets ever pings: the old check ran only on pings, so a removed member
kept receiving events. Now the change itself reaches the user's sockets.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.test import Client

from artcritic.live.protocol import CLOSE_FORBIDDEN, CLOSE_NOT_SIGNED_IN
from artcritic.studio.models import Membership, Project
from tests.factories import PASSWORD, sign_in, user_make
from tests.live.conftest import HOST, ORIGIN, Headers, close_code, receive, run, socket_open

pytestmark = pytest.mark.django_db(transaction=True)


def browser(user: AbstractUser) -> tuple[Client, Headers]:
    """A signed-in browser: its client (for pages) and its socket's headers (same session)."""
    client = Client()
    sign_in(client, user.get_username())
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"origin", ORIGIN),
        (b"host", HOST),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    return client, headers


def url(project: Project) -> str:
    return f"/ws/projects/{project.pk}/"


def test_a_removed_member_is_closed_at_once_without_a_ping(
    member: AbstractUser, project: Project
) -> None:
    _client, headers = browser(member)

    async def scenario() -> None:
        socket = await socket_open(url(project), headers)
        assert (await receive(socket))["type"] == "hello"
        await database_sync_to_async(Membership.objects.filter(user=member).delete)()
        assert await close_code(socket) == CLOSE_FORBIDDEN

    run(scenario)


def test_signing_out_closes_that_browsers_sockets_and_keeps_the_others(
    member: AbstractUser, project: Project
) -> None:
    leaving, leaving_headers = browser(member)
    _staying, staying_headers = browser(member)

    async def scenario() -> None:
        gone = await socket_open(url(project), leaving_headers)
        kept = await socket_open(url(project), staying_headers)
        for socket in (gone, kept):
            assert (await receive(socket))["type"] == "hello"
        response = await database_sync_to_async(leaving.post)("/logout/")
        assert response.status_code == 302
        assert await close_code(gone) == CLOSE_NOT_SIGNED_IN
        # The other browser's session still signs in: its socket stays and answers pings.
        await kept.send_json_to({"type": "ping"})
        assert (await receive(kept))["type"] == "pong"

    run(scenario)


def test_deactivating_an_account_closes_its_sockets(
    member: AbstractUser, project: Project
) -> None:
    _client, headers = browser(member)

    async def scenario() -> None:
        socket = await socket_open(url(project), headers)
        assert (await receive(socket))["type"] == "hello"
        member.is_active = False
        await database_sync_to_async(member.save)(update_fields=["is_active"])
        assert await close_code(socket) == CLOSE_NOT_SIGNED_IN

    run(scenario)


def test_a_password_change_closes_the_sockets_of_the_users_other_sessions(
    member: AbstractUser, project: Project
) -> None:
    here, _here_headers = browser(member)
    _elsewhere, elsewhere_headers = browser(member)
    new = "a new lamp password 9"

    async def scenario() -> None:
        socket = await socket_open(url(project), elsewhere_headers)
        assert (await receive(socket))["type"] == "hello"
        response = await database_sync_to_async(here.post)(
            "/account/password/",
            {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
        )
        assert response.status_code == 302
        assert await close_code(socket) == CLOSE_NOT_SIGNED_IN

    run(scenario)


def test_an_unrelated_users_change_leaves_a_socket_alone(
    member: AbstractUser, project: Project
) -> None:
    _client, headers = browser(member)
    other = user_make()

    async def scenario() -> None:
        socket = await socket_open(url(project), headers)
        assert (await receive(socket))["type"] == "hello"
        other.is_active = False
        await database_sync_to_async(other.save)(update_fields=["is_active"])
        await socket.send_json_to({"type": "ping"})
        assert (await receive(socket))["type"] == "pong"

    run(scenario)
