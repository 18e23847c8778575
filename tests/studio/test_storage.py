"""Image storage against the real S3 server: round trips, refusals, presigning, failures."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import itertools
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from minio.error import S3Error
from PIL import Image

from artcritic.studio.storage import (
    ImageRejected,
    StorageError,
    StoredImage,
    bucket_ensure,
    image_read,
    image_store,
    objects_delete,
    storage_client,
    url_presigned,
)

pytestmark = pytest.mark.usefixtures("s3_bucket")


@pytest.fixture(autouse=True)
def _quick_retries(settings: Any) -> None:
    """Outage retries with short pauses: the tests wait for them to run out."""
    settings.S3_RETRY_BACKOFF_S = 0.05

_project_ids = itertools.count(9_000_001)


def png_bytes(size: tuple[int, int] = (96, 64), mode: str = "RGB", **save: Any) -> bytes:
    """A real PNG with a gradient, so the thumbnail has something to shrink."""
    gradient = Image.linear_gradient("L").resize(size)
    image = gradient.convert(mode)
    if mode in {"RGBA", "LA"}:
        image.putalpha(gradient)  # real transparency, which WebP would drop if all opaque
    out = io.BytesIO()
    image.save(out, format="PNG", **save)
    return out.getvalue()


def other_format(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(out, format=fmt)
    return out.getvalue()


def ihdr_rewritten(data: bytes, width: int, height: int) -> bytes:
    """The same PNG with a header claiming other dimensions (and a correct CRC)."""
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def animated_png() -> bytes:
    frames = [Image.new("RGB", (32, 32), (i * 60, 0, 0)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    return out.getvalue()


def keys_under(project_id: int) -> list[str]:
    objects = storage_client().list_objects(
        django_settings.S3_BUCKET, prefix=f"projects/{project_id}/", recursive=True
    )
    return sorted(obj.object_name or "" for obj in objects)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thumbnail_of(stored: StoredImage) -> Image.Image:
    return Image.open(io.BytesIO(image_read(stored.thumbnail_key)))


# --- storing and reading -------------------------------------------------------------


def test_a_stored_png_comes_back_byte_for_byte_with_its_sha256() -> None:
    data = png_bytes((320, 200))
    project_id = next(_project_ids)

    stored = image_store(project_id, data)

    assert image_read(stored.object_key) == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (stored.width, stored.height, stored.byte_size) == (320, 200, len(data))
    assert stored.content_type == "image/png"
    stat = storage_client().stat_object(django_settings.S3_BUCKET, stored.object_key)
    assert stat.content_type == "image/png"
    assert stat.size == len(data)


def test_keys_are_per_project_and_share_one_uuid() -> None:
    project_id = next(_project_ids)

    stored = image_store(project_id, png_bytes())

    match = re.fullmatch(rf"projects/{project_id}/images/([0-9a-f]{{32}})\.png", stored.object_key)
    assert match is not None
    assert stored.thumbnail_key == f"projects/{project_id}/thumbs/{match.group(1)}.webp"
    assert keys_under(project_id) == sorted([stored.object_key, stored.thumbnail_key])


def test_the_same_bytes_stored_twice_get_separate_keys_and_the_same_sha256() -> None:
    data = png_bytes()
    project_id = next(_project_ids)

    first, second = image_store(project_id, data), image_store(project_id, data)

    assert first.object_key != second.object_key
    assert first.sha256 == second.sha256


@pytest.mark.parametrize(
    ("size", "thumb_size"),
    [
        ((1024, 768), (512, 384)),
        ((300, 1200), (128, 512)),
        ((2048, 2048), (512, 512)),
        ((200, 100), (200, 100)),  # never enlarged
    ],
)
def test_the_thumbnail_is_a_webp_at_most_512_on_the_long_side_with_aspect_kept(
    size: tuple[int, int], thumb_size: tuple[int, int]
) -> None:
    stored = image_store(next(_project_ids), png_bytes(size))

    thumb = thumbnail_of(stored)

    assert thumb.format == "WEBP"
    assert thumb.size == thumb_size
    stat = storage_client().stat_object(django_settings.S3_BUCKET, stored.thumbnail_key)
    assert stat.content_type == "image/webp"


@pytest.mark.parametrize(
    ("mode", "save", "thumb_mode"),
    [
        ("RGBA", {}, "RGBA"),
        ("LA", {}, "RGBA"),
        ("P", {"transparency": 0}, "RGBA"),
        ("L", {}, "RGB"),
        ("I;16", {}, "RGB"),
        ("1", {}, "RGB"),
    ],
)
def test_every_png_colour_mode_gets_a_thumbnail_that_keeps_transparency(
    mode: str, save: dict[str, Any], thumb_mode: str
) -> None:
    stored = image_store(next(_project_ids), png_bytes((700, 300), mode, **save))

    assert thumbnail_of(stored).mode == thumb_mode
    assert stored.width == 700


def test_bytearray_and_memoryview_are_stored_like_bytes() -> None:
    data = png_bytes()
    project_id = next(_project_ids)

    from_array = image_store(project_id, bytearray(data))  # type: ignore[arg-type]
    from_view = image_store(project_id, memoryview(data))  # type: ignore[arg-type]

    assert image_read(from_array.object_key) == data
    assert image_read(from_view.object_key) == data


# --- refusals ------------------------------------------------------------------------

_VALID = png_bytes((64, 64))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", r"^image is empty \(0 bytes\)$", id="empty"),
        pytest.param(other_format("JPEG"), r"not a PNG image \(looks like JPEG\)", id="jpeg"),
        pytest.param(other_format("GIF"), r"not a PNG image \(looks like GIF\)", id="gif"),
        pytest.param(other_format("WEBP"), r"not a PNG image \(looks like WebP\)", id="webp"),
        pytest.param(other_format("BMP"), r"not a PNG image \(looks like BMP\)", id="bmp"),
        pytest.param(b"hello, world", r"looks like unknown data", id="text"),
        pytest.param(b"<html><script>alert(1)</script>", r"looks like HTML", id="html"),
        pytest.param(b'{"images": []}', r"looks like JSON", id="json"),
        pytest.param(b"\x89PNG\r\n\x1a\n", r"truncated: a PNG needs its 33-byte header", id="sig"),
        pytest.param(_VALID[:30], r"truncated: a PNG needs its 33-byte header", id="header"),
        pytest.param(_VALID[: len(_VALID) // 2], r"truncated .*IEND", id="half"),
        pytest.param(_VALID[:-1], r"truncated .*IEND", id="last-byte-missing"),
        pytest.param(_VALID + b"<?php evil() ?>", r"trailing data", id="trailing-data"),
        pytest.param(_VALID[:12] + b"tEXt" + _VALID[16:], r"corrupt: .*IHDR", id="ihdr-missing"),
        pytest.param(
            _VALID[:29] + b"\x00\x00\x00\x00" + _VALID[33:], r"corrupt", id="bad-header-crc"
        ),
        pytest.param(
            _VALID[:45] + bytes([_VALID[45] ^ 0xFF]) + _VALID[46:],
            r"corrupt|truncated",
            id="flipped-pixel-byte",
        ),
        pytest.param(ihdr_rewritten(_VALID, 128, 128), r"truncated", id="header-lies"),
        pytest.param(ihdr_rewritten(_VALID, 0, 64), r"says 0×64 pixels", id="zero-width"),
        pytest.param(
            ihdr_rewritten(_VALID, 100_000, 100_000),
            r"100000×100000 \(10,000,000,000 pixels\); each side may be at most 8192",
            id="decompression-bomb",
        ),
        pytest.param(ihdr_rewritten(_VALID, 8200, 8), r"8200×8 .*at most 8192", id="too-wide"),
        pytest.param(animated_png(), r"animated \(3 frames\)", id="animated"),
    ],
)
def test_anything_but_a_whole_still_png_is_rejected_and_nothing_is_stored(
    data: bytes, message: str
) -> None:
    project_id = next(_project_ids)

    with pytest.raises(ImageRejected, match=message):
        image_store(project_id, data)

    assert keys_under(project_id) == []


def test_an_oversized_image_is_rejected_with_both_sizes_before_it_is_decoded() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(70 * 2**20 - 8)

    with pytest.raises(
        ImageRejected,
        match=r"^image is 70 MB \(73,400,320 bytes\); the limit is 64 MB \(67,108,864 bytes\)$",
    ):
        image_store(next(_project_ids), data)


def test_the_size_limit_is_read_from_settings_at_call_time(settings: Any) -> None:
    data = png_bytes((256, 256))
    settings.MAX_IMAGE_BYTES = len(data) - 1

    with pytest.raises(ImageRejected, match=rf"\({len(data):,} bytes\); the limit is"):
        image_store(next(_project_ids), data)


def test_an_image_exactly_at_the_size_limit_is_accepted(settings: Any) -> None:
    data = png_bytes((256, 256))
    settings.MAX_IMAGE_BYTES = len(data)

    assert image_store(next(_project_ids), data).byte_size == len(data)


def test_an_image_is_rejected_as_the_storage_error_callers_already_catch() -> None:
    assert issubclass(ImageRejected, StorageError)


@pytest.mark.parametrize("data", ["a PNG as text", None, 12, [137, 80]])
def test_image_data_of_the_wrong_type_is_a_type_error(data: object) -> None:
    with pytest.raises(TypeError, match="image data must be bytes"):
        image_store(1, data)  # type: ignore[arg-type]


@pytest.mark.parametrize("project_id", [0, -3, True, "7", 7.0, None])
def test_project_id_must_be_a_positive_integer(project_id: object) -> None:
    with pytest.raises(ValueError, match="project_id must be a positive integer"):
        image_store(project_id, _VALID)  # type: ignore[arg-type]


# --- presigned URLs ------------------------------------------------------------------


def expires_of(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_a_presigned_url_serves_the_image_to_a_plain_http_client() -> None:
    data = png_bytes()
    stored = image_store(next(_project_ids), data)

    response = requests.get(url_presigned(stored.object_key, seconds=60), timeout=10)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["Content-Type"] == "image/png"


def test_presigned_urls_last_the_configured_seconds_by_default(settings: Any) -> None:
    settings.S3_PRESIGN_SECONDS = 42

    assert expires_of(url_presigned("projects/1/images/x.png")) == 42
    assert expires_of(url_presigned("projects/1/images/x.png", seconds=7)) == 7


def test_a_presigned_url_stops_working_once_it_expires() -> None:
    stored = image_store(next(_project_ids), png_bytes())
    url = url_presigned(stored.object_key, seconds=1)
    assert expires_of(url) == 1

    time.sleep(2.5)  # X-Amz-Date has one-second resolution
    response = requests.get(url, timeout=10)

    assert response.status_code == 403
    assert "expired" in response.text.lower()


def test_a_presigned_url_with_a_tampered_signature_is_refused() -> None:
    stored = image_store(next(_project_ids), png_bytes())
    url = url_presigned(stored.object_key, seconds=60)
    forged = re.sub(
        r"X-Amz-Signature=([0-9a-f])", lambda m: "X-Amz-Signature=" + "0f"[m.group(1) == "0"], url
    )

    assert requests.get(forged, timeout=10).status_code == 403


def test_a_presigned_url_cannot_be_moved_to_another_object() -> None:
    first = image_store(next(_project_ids), png_bytes())
    second = image_store(next(_project_ids), png_bytes((80, 80)))
    url = url_presigned(first.object_key, seconds=60)

    moved = url.replace(first.object_key, second.object_key)

    assert requests.get(moved, timeout=10).status_code == 403


@pytest.mark.parametrize("form", ["localhost:{port}", "http://localhost:{port}"])
def test_presigned_urls_are_signed_for_the_public_endpoint(settings: Any, form: str) -> None:
    data = png_bytes()
    stored = image_store(next(_project_ids), data)
    port = settings.S3_ENDPOINT.rsplit(":", 1)[1]
    settings.S3_PUBLIC_ENDPOINT = form.format(port=port)

    url = url_presigned(stored.object_key, seconds=60)

    assert url.startswith(f"http://localhost:{port}/{settings.S3_BUCKET}/")
    assert requests.get(url, timeout=10).content == data


def test_presigning_needs_no_connection_to_the_public_endpoint(settings: Any) -> None:
    settings.S3_PUBLIC_ENDPOINT = f"127.0.0.1:{closed_port()}"

    url = url_presigned("projects/1/images/a.png", seconds=30)

    assert url.startswith(f"http://{settings.S3_PUBLIC_ENDPOINT}/")


def test_an_https_public_endpoint_gives_https_urls(settings: Any) -> None:
    settings.S3_PUBLIC_ENDPOINT = "https://images.example.test"

    assert url_presigned("projects/1/images/a.png").startswith("https://images.example.test/")


@pytest.mark.parametrize("endpoint", ["ftp://images.example.test", "https://"])
def test_a_malformed_public_endpoint_is_a_storage_error(settings: Any, endpoint: str) -> None:
    settings.S3_PUBLIC_ENDPOINT = endpoint

    with pytest.raises(StorageError, match="S3_PUBLIC_ENDPOINT"):
        url_presigned("projects/1/images/a.png")


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (0, ValueError),
        (-5, ValueError),
        (604_801, ValueError),
        (True, TypeError),
        (1.5, TypeError),
        ("60", TypeError),
    ],
)
def test_presigned_lifetimes_outside_1s_to_7_days_are_refused(
    seconds: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="seconds must be"):
        url_presigned("projects/1/images/a.png", seconds=seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", ValueError),
        ("/etc/passwd", ValueError),
        ("a\x00b", ValueError),
        ("k" * 1025, ValueError),
        ("projects/1/images/../../other/x.png", ValueError),
        ("projects/1/./x.png", ValueError),
        ("projects//1/x.png", ValueError),
        ("projects/1/images/", ValueError),
        (None, TypeError),
        (5, TypeError),
    ],
)
def test_malformed_object_keys_are_refused_everywhere(key: object, error: type[Exception]) -> None:
    for call in (image_read, url_presigned, objects_delete):
        with pytest.raises(error, match="object key"):
            call(key)  # type: ignore[operator]


# --- deleting ------------------------------------------------------------------------


def test_deleting_removes_both_objects_and_ignores_keys_already_gone() -> None:
    project_id = next(_project_ids)
    stored = image_store(project_id, png_bytes())

    objects_delete(
        stored.object_key, stored.thumbnail_key, f"projects/{project_id}/images/gone.png"
    )

    assert keys_under(project_id) == []
    with pytest.raises(StorageError, match=r"does not exist in bucket .*Next:"):
        image_read(stored.object_key)


def test_deleting_nothing_is_a_no_op() -> None:
    objects_delete()


def test_deleting_a_wildcard_or_folder_like_key_deletes_nothing_else() -> None:
    project_id = next(_project_ids)
    stored = image_store(project_id, png_bytes())

    objects_delete(f"projects/{project_id}/*", f"projects/{project_id}/images")

    assert keys_under(project_id) == sorted([stored.object_key, stored.thumbnail_key])


# --- S3 failures ---------------------------------------------------------------------


def test_an_unreachable_s3_is_a_storage_error_saying_where_and_what_to_do(settings: Any) -> None:
    settings.S3_ENDPOINT = f"127.0.0.1:{closed_port()}"
    pattern = rf"S3 at {settings.S3_ENDPOINT} is unreachable .*Connection refused.*Next: start"

    with pytest.raises(StorageError, match=pattern):
        image_store(next(_project_ids), _VALID)
    with pytest.raises(StorageError, match=pattern):
        image_read("projects/1/images/a.png")
    with pytest.raises(StorageError, match=pattern):
        objects_delete("projects/1/images/a.png")
    with pytest.raises(StorageError, match=pattern):
        bucket_ensure()


def test_an_outage_is_retried_with_backoff_then_fails_as_retryable(settings: Any) -> None:
    settings.S3_ENDPOINT = f"127.0.0.1:{closed_port()}"
    settings.S3_RETRIES, settings.S3_RETRY_BACKOFF_S = 3, 0.2
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        image_store(next(_project_ids), _VALID)
    waited = time.monotonic() - started
    assert waited >= 0.2 + 0.4 + 0.8  # the pauses between four tries
    assert caught.value.retryable
    assert "It was tried 4 times over" in caught.value.reason
    assert "nothing was kept" in caught.value.reason
    assert caught.value.next_action.startswith("start the S3 server")


class _LateS3:
    """A TCP relay to the real S3 that starts listening only after ``delay`` seconds: an
    S3 server that comes back while an upload is being retried."""

    def __init__(self, target: str, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = closed_port()
        self.delay = delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> _LateS3:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        time.sleep(self.delay)
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_an_upload_during_a_short_outage_is_stored_once_s3_is_back(settings: Any) -> None:
    settings.S3_RETRIES, settings.S3_RETRY_BACKOFF_S = 4, 0.3
    with _LateS3(settings.S3_ENDPOINT, delay=0.5) as late:
        settings.S3_ENDPOINT = f"127.0.0.1:{late.port}"
        project_id = next(_project_ids)
        started = time.monotonic()
        stored = image_store(project_id, _VALID)
        assert time.monotonic() - started >= 0.5  # it waited for S3 to come back
        assert image_read(stored.object_key) == _VALID
        assert keys_under(project_id) == sorted([stored.object_key, stored.thumbnail_key])


def test_wrong_credentials_are_a_storage_error_naming_the_settings(settings: Any) -> None:
    settings.S3_SECRET_KEY = "not-the-secret"

    with pytest.raises(
        StorageError, match=r"refused the request .*S3_ACCESS_KEY and S3_SECRET_KEY"
    ):
        image_store(next(_project_ids), _VALID)


def test_a_missing_bucket_is_a_storage_error_naming_it(settings: Any) -> None:
    # Reads and deletes only: SeaweedFS creates a bucket on first upload, MinIO refuses it.
    settings.S3_BUCKET = f"missing-{uuid.uuid4().hex[:12]}"
    pattern = rf"bucket '{settings.S3_BUCKET}' does not exist .*Next: create it"

    with pytest.raises(StorageError, match=pattern):
        image_read("projects/1/images/a.png")
    with pytest.raises(StorageError, match=pattern):
        objects_delete("projects/1/images/a.png")


def test_bucket_ensure_creates_the_bucket_once(settings: Any) -> None:
    settings.S3_BUCKET = f"test-ensure-{uuid.uuid4().hex[:12]}"
    client = storage_client()
    try:
        bucket_ensure()
        bucket_ensure()

        assert client.bucket_exists(settings.S3_BUCKET)
        assert image_store(next(_project_ids), _VALID).byte_size == len(_VALID)
    finally:
        for obj in client.list_objects(settings.S3_BUCKET, recursive=True):
            client.remove_object(settings.S3_BUCKET, obj.object_name or "")
        client.remove_bucket(settings.S3_BUCKET)


class _RefusingProxy(BaseHTTPRequestHandler):
    """Forwards S3 requests unchanged, but refuses every upload of a thumbnail."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    seen: list[tuple[str, str]]

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path))
        if self.command == "PUT" and "/thumbs/" in self.path:
            refusal = (
                b"<Error><Code>AccessDenied</Code><Message>thumbs are read-only</Message></Error>"
            )
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(refusal)))
            self.end_headers()
            self.wfile.write(refusal)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            # The Host header is kept: the client signed the request for the proxy's address.
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                upstream.putheader(name, value)
            upstream.endheaders(body or None)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = _relay  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def refusing_proxy(settings: Any) -> Iterator[list[tuple[str, str]]]:
    """Point storage at a local proxy that refuses thumbnail uploads; yield what it saw."""
    host, port = settings.S3_ENDPOINT.rsplit(":", 1)
    seen: list[tuple[str, str]] = []
    handler = type("Handler", (_RefusingProxy,), {"upstream": (host, int(port)), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.S3_ENDPOINT = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_failed_thumbnail_upload_removes_the_original(
    refusing_proxy: list[tuple[str, str]],
) -> None:
    project_id = next(_project_ids)

    with pytest.raises(StorageError, match=r"refused the request while storing thumbnail"):
        image_store(project_id, _VALID)

    methods = [method for method, _ in refusing_proxy]
    assert methods == ["PUT", "PUT", "DELETE"]
    assert refusing_proxy[0][1] == refusing_proxy[2][1]
    with pytest.raises(S3Error):
        storage_client().stat_object(
            django_settings.S3_BUCKET, refusing_proxy[0][1].split("/", 2)[2]
        )
    assert keys_under(project_id) == []
