"""Image bytes and thumbnails in S3 (MinIO in compose, SeaweedFS in development and CI).

Only PNG is accepted as generated output: ComfyUI's SaveImage writes PNG, so
anything else means the runtime answered with something we did not ask for.
Settings are read at every call, so a test (or an admin) can point the module at
another bucket or endpoint without restarting the process.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from PIL import Image, UnidentifiedImageError

from artcritic.failures import RuntimeFailure

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk with its CRC
# The largest request the database allows is 8192×8192; a PNG claiming more is refused
# from its header, before Pillow allocates anything (decompression bombs). This stays
# below Pillow's own MAX_IMAGE_PIXELS, so its bomb warning never fires on what we accept.
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
THUMBNAIL_SIDE = 512
THUMBNAIL_QUALITY = 85
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the S3 signature v4 ceiling
# A refused connection is retried briefly; a dead server must fail the job, not stall it.
RETRYABLE_S3_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted"}
)
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
)


class StorageError(RuntimeFailure):
    """S3 is unreachable or refused the request: reason, next action, and whether a later
    try may succeed (``retryable``: the server was unreachable or answered 5xx)."""

    default_next_action = "Check the S3 server's log, then retry."

    def __init__(
        self, reason: str, next_action: str | None = None, *, retryable: bool = False
    ) -> None:
        super().__init__(reason, next_action)
        self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.reason} Next: {self.next_action}"


class ImageRejected(StorageError):
    """The bytes are not an acceptable PNG: not an image, corrupt, truncated or too large."""

    default_next_action = (
        "Nothing was stored and nothing was retried; check the workflow's output node "
        "(it must save PNG images), then run the job again."
    )

    def __str__(self) -> str:
        # What is wrong with the image, as a phrase that reads inside other sentences.
        return self.reason


@dataclass(frozen=True)
class StoredImage:
    object_key: str
    thumbnail_key: str
    width: int
    height: int
    byte_size: int
    sha256: str
    content_type: str


@functools.lru_cache(maxsize=8)
def _client_build(
    endpoint: str, access_key: str, secret_key: str, secure: bool, region: str
) -> Minio:
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    # An explicit region means no GetBucketLocation round-trip, and offline presigning.
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region,
        http_client=http,
    )


def storage_client() -> Minio:
    """The client workers and web processes use to talk to S3 (settings read now)."""
    return _client_build(
        settings.S3_ENDPOINT,
        settings.S3_ACCESS_KEY,
        settings.S3_SECRET_KEY,
        settings.S3_SECURE,
        settings.S3_REGION,
    )


def _public_client() -> Minio:
    """A client that signs for the host browsers use; it never opens a connection.

    Built once per setting values: a page signs a hundred URLs, and a client (with its
    connection pool and CA bundle) is far dearer than a signature.
    """
    return _public_client_for(
        settings.S3_PUBLIC_ENDPOINT,
        settings.S3_ACCESS_KEY,
        settings.S3_SECRET_KEY,
        settings.S3_SECURE,
        settings.S3_REGION,
    )


@functools.lru_cache(maxsize=4)
def _public_client_for(
    public_endpoint: str, access_key: str, secret_key: str, secure_default: bool, region: str
) -> Minio:
    endpoint, secure = public_endpoint, secure_default
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise StorageError(
                f"S3_PUBLIC_ENDPOINT={endpoint!r} is not host:port or http(s)://host:port.",
                "fix the setting.",
            )
        endpoint, secure = parts.netloc, parts.scheme == "https"
    return _client_build(endpoint, access_key, secret_key, secure, region)


def _s3_failure(exc: S3Error, doing: str) -> StorageError:
    """An error the S3 server answered, in words, with what to do."""
    endpoint, bucket = settings.S3_ENDPOINT, settings.S3_BUCKET
    if exc.code == "NoSuchBucket":
        return StorageError(
            f"S3 bucket {bucket!r} does not exist at {endpoint} while {doing}.",
            "create it (`make run` does, or storage.bucket_ensure()).",
        )
    if exc.code == "NoSuchKey":
        return StorageError(
            f"S3 object {exc.object_name!r} does not exist in bucket {bucket!r} while {doing}.",
            "the record points at a deleted object; re-run the job.",
        )
    if exc.code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
        return StorageError(
            f"S3 at {endpoint} refused the request while {doing}: {exc.code} ({exc.message}).",
            "check S3_ACCESS_KEY and S3_SECRET_KEY.",
        )
    return StorageError(
        f"S3 at {endpoint} refused the request while {doing}: {exc.code} ({exc.message}).",
        "check the S3 server's log, then retry.",
        retryable=exc.code in RETRYABLE_S3_CODES,
    )


def _failure(exc: Exception, doing: str) -> StorageError:
    """Turn an SDK or network error into a StorageError saying what happened and what to do."""
    if isinstance(exc, S3Error):
        return _s3_failure(exc, doing)
    endpoint = settings.S3_ENDPOINT
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
        return StorageError(
            f"S3 at {endpoint} is unreachable while {doing}: {cause}.",
            "start the S3 server (`make run` does) or fix S3_ENDPOINT, then retry.",
            retryable=True,
        )
    return StorageError(
        f"S3 at {endpoint} answered unexpectedly while {doing}: {exc}.",
        "check the S3 server's log, then retry.",
    )


def _retried[T](operation: Callable[[], T], doing: str) -> T:
    """Run an S3 operation; a retryable failure (outage, 5xx) is tried again with backoff.

    After the last try the failure says how often and for how long it was tried, so an
    outage reads as an outage (retry later), never as an internal error.
    """
    started = time.monotonic()
    base: float = settings.S3_RETRY_BACKOFF_S
    delays = [*(base * 2**n for n in range(settings.S3_RETRIES)), None]
    for attempt, delay in enumerate(delays, start=1):
        try:
            return operation()
        except StorageError:
            raise
        except _TRANSPORT_ERRORS as exc:
            failure = _failure(exc, doing)
            if not failure.retryable or delay is None:
                if failure.retryable and attempt > 1:
                    waited = time.monotonic() - started
                    failure.reason += (
                        f" It was tried {attempt} times over {waited:.0f} s; nothing was kept."
                    )
                raise failure from exc
            log.warning("S3 %s failed (try %d of %d), again in %.1f s: %s",
                        doing, attempt, len(delays), delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


_TRANSPORT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError)


def bucket_ensure() -> None:
    """Create the configured bucket if it does not exist yet."""
    client, bucket = storage_client(), settings.S3_BUCKET
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, location=settings.S3_REGION)
    except S3Error as exc:
        # Another process may have created it between the two calls.
        if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise _failure(exc, f"creating bucket {bucket!r}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise _failure(exc, f"creating bucket {bucket!r}") from exc


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f}".removesuffix(".0") + " MB"


def _format_guess(data: bytes) -> str:
    """Name the format the bytes look like, for the rejection message."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    head = data[:64].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "SVG/XML"
    if head.startswith((b"<!doctype", b"<html")):
        return "HTML"
    if head.startswith((b"{", b"[")):
        return "JSON"
    return "unknown data"


def _png_header_check(data: bytes) -> tuple[int, int]:
    """Refuse what is not a PNG or claims too many pixels, reading only the header."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageRejected(
            f"not a PNG image (looks like {_format_guess(data)}); only PNG output is accepted"
        )
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageRejected(
            f"image is truncated: a PNG needs its 33-byte header, got {len(data)} bytes"
            if len(data) < 33
            else "image is corrupt: the PNG does not start with an IHDR chunk"
        )
    if not data.endswith(PNG_END):
        # Stored bytes are served as-is, so nothing may hide after the end marker either.
        raise ImageRejected(
            f"image is truncated or has trailing data: the PNG's {len(data):,} bytes do not "
            "end with its IEND marker"
        )
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise ImageRejected(f"image is corrupt: the PNG header says {width}×{height} pixels")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ImageRejected(
            f"image is {width}×{height} ({width * height:,} pixels); each side may be at most "
            f"{MAX_IMAGE_SIDE} pixels ({MAX_IMAGE_PIXELS:,} in all)"
        )
    return width, height


def _png_decode(data: bytes) -> Image.Image:
    """Verify the PNG's structure and decode every pixel; refuse anything broken."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        frames = getattr(image, "n_frames", 1)
        if frames != 1:
            raise ImageRejected(f"image is animated ({frames} frames); only still PNGs are stored")
        image.load()
    except ImageRejected:
        raise
    except UnidentifiedImageError as exc:
        raise ImageRejected("image is corrupt: Pillow cannot decode it as a PNG") from exc
    except (SyntaxError, OSError, ValueError, struct.error) as exc:
        detail = str(exc) or type(exc).__name__
        if "truncated" in detail.lower():
            raise ImageRejected(f"image is truncated (Pillow: {detail})") from exc
        raise ImageRejected(f"image is corrupt (Pillow: {detail})") from exc
    return image


def _thumbnail_webp(image: Image.Image) -> bytes:
    """A WebP no larger than THUMBNAIL_SIDE on its long side, aspect ratio kept."""
    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    thumb = image.convert("RGBA" if has_alpha else "RGB")
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=THUMBNAIL_QUALITY, method=4)
    return out.getvalue()


def _image_check(data: object) -> bytes:
    """Bytes of an acceptable size, or ImageRejected with the numbers."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"image data must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if not raw:
        raise ImageRejected("image is empty (0 bytes)")
    limit = settings.MAX_IMAGE_BYTES
    if len(raw) > limit:
        raise ImageRejected(
            f"image is {_megabytes(len(raw))} ({len(raw):,} bytes); the limit is "
            f"{_megabytes(limit)} ({limit:,} bytes)"
        )
    return raw


def _put(client: Minio, key: str, data: bytes, content_type: str) -> None:
    client.put_object(
        settings.S3_BUCKET, key, io.BytesIO(data), len(data), content_type=content_type
    )


def image_store(project_id: int, data: bytes) -> StoredImage:
    """Validate a generated PNG, store it unchanged with a WebP thumbnail, return the record."""
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
        raise ValueError(f"project_id must be a positive integer, not {project_id!r}")
    raw = _image_check(data)
    width, height = _png_header_check(raw)
    with _png_decode(raw) as image:
        thumbnail = _thumbnail_webp(image)
    name = uuid.uuid4().hex
    stored = StoredImage(
        object_key=f"projects/{project_id}/images/{name}.png",
        thumbnail_key=f"projects/{project_id}/thumbs/{name}.webp",
        width=width,
        height=height,
        byte_size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        content_type="image/png",
    )
    client = storage_client()
    _retried(
        lambda: _put(client, stored.object_key, raw, stored.content_type),
        f"storing {stored.object_key}",
    )
    try:
        _retried(
            lambda: _put(client, stored.thumbnail_key, thumbnail, "image/webp"),
            f"storing thumbnail {stored.thumbnail_key}",
        )
    except StorageError:
        # Nothing half-stored: an original without its thumbnail would never be shown.
        _remove_quietly(client, stored.object_key)
        raise
    return stored


def _remove_quietly(client: Minio, key: str) -> None:
    """Best-effort cleanup while another error is already on its way to the caller."""
    try:
        client.remove_object(settings.S3_BUCKET, key)
    except _TRANSPORT_ERRORS:
        # The original failure is what the user must see; a leftover object is only garbage.
        return


def image_read(key: str) -> bytes:
    """The stored bytes of one object."""
    _key_check(key)

    def read() -> bytes:
        response = storage_client().get_object(settings.S3_BUCKET, key)
        try:
            data: bytes = response.read()
            return data
        finally:
            response.close()
            response.release_conn()

    return _retried(read, f"reading {key}")


def url_presigned(key: str, *, seconds: int | None = None) -> str:
    """A short-lived GET URL that a browser can fetch from S3_PUBLIC_ENDPOINT."""
    _key_check(key)
    lifetime = settings.S3_PRESIGN_SECONDS if seconds is None else seconds
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise TypeError(f"seconds must be an integer, not {type(lifetime).__name__}")
    if not 1 <= lifetime <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"seconds must be between 1 and {MAX_PRESIGN_SECONDS}, not {lifetime}")
    try:
        return _public_client().presigned_get_object(
            settings.S3_BUCKET, key, expires=timedelta(seconds=lifetime)
        )
    except _TRANSPORT_ERRORS as exc:
        raise _failure(exc, f"signing a URL for {key}") from exc


def objects_delete(*keys: str) -> None:
    """Delete objects; keys that are already gone count as deleted."""
    for key in keys:
        _key_check(key)
    if not keys:
        return
    try:
        # remove_objects is lazy: the requests happen while the errors are iterated.
        errors = list(
            storage_client().remove_objects(settings.S3_BUCKET, [DeleteObject(k) for k in keys])
        )
    except _TRANSPORT_ERRORS as exc:
        raise _failure(exc, f"deleting {len(keys)} object(s)") from exc
    if errors:
        listed = "; ".join(f"{e.name}: {e.code} ({e.message})" for e in errors)
        raise StorageError(
            f"S3 at {settings.S3_ENDPOINT} refused to delete {len(errors)} of {len(keys)} "
            f"object(s): {listed}.",
            "check the S3 server's log, then retry.",
        )


def _key_check(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"object key must be a string, not {type(key).__name__}")
    # Our keys are plain relative paths; anything else is a bug or an attack, never a lookup.
    segments = key.split("/")
    if (
        not key
        or len(key) > 1024
        or "\x00" in key
        or any(segment in {"", ".", ".."} for segment in segments)
    ):
        raise ValueError(
            f"object key {key[:80]!r} must be a relative path of at most 1024 characters "
            "without empty, '.' or '..' segments or NUL"
        )
