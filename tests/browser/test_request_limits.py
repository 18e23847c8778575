"""Oversized requests are refused by the real server before any of the body is kept."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings

from artcritic.studio.models import GenerationRequest, Prompt
from tests.factories import profile_load, project_make, user_make

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = settings.ARTCRITIC_MAX_REQUEST_BYTES


def test_a_30_mb_multipart_body_to_the_composer_is_refused_at_once(app_server: str) -> None:
    profile_load()
    project = project_make(owner=user_make("dana"))
    blob = b"\x89PNG" + b"\0" * (30 * 2**20)
    started = time.monotonic()
    response = requests.post(
        f"{app_server}/projects/{project.pk}/compose/",
        files={"text": ("lamp.png", blob, "image/png")},
        timeout=60,
    )
    assert response.status_code == 413
    assert "Request too large: 30 MB; the limit is 1 MB" in response.text
    assert "Nothing was saved" in response.text
    assert time.monotonic() - started < 30
    assert not Prompt.objects.exists()
    assert not GenerationRequest.objects.exists()


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(app_server: str) -> None:
    # requests sends a generator chunked (no Content-Length): the server must count.
    try:
        response = requests.post(
            f"{app_server}/login/", data=_chunks(8 * LIMIT), timeout=60,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    except requests.ConnectionError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert response.status_code == 413
    assert "more than 1 MB" in response.text


def test_a_body_within_the_limit_reaches_django(app_server: str) -> None:
    body = "username=dana&password=" + "p" * (LIMIT // 2)
    response = requests.post(
        f"{app_server}/login/",
        data=body,
        timeout=60,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 403  # Django's CSRF check: the request got through
    assert "CSRF" in response.text


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    app_server: str,
) -> None:
    url = urlsplit(app_server)
    assert url.hostname is not None
    assert url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(
            b"POST /login/ HTTP/1.1\r\nHost: " + url.netloc.encode() + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1073741824\r\n\r\n"
        )
        # Not one byte of the gigabyte was sent: the answer comes from the headers alone.
        received = b""
        while b"Nothing was saved" not in received:
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
        answer = received.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413")
    assert "Request too large: 1024 MB" in answer
