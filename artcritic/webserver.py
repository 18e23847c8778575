"""The web server: uvicorn serving the ASGI application, pages and live sockets alike.

    python -m artcritic.webserver [--host 127.0.0.1] [--port 8000] [--workers N]
                                  [--app module:application]

`make run`, `docker compose`, the browser tests and ``bench/live.py`` all start it here,
with the options the live path depends on:

- uvicorn on uvloop and httptools, WebSockets by the ``websockets`` library's sans-I/O
  protocol. Writing one ~400-byte frame to 200 sockets costs about 14 µs of CPU per frame
  there, against about 63 µs under daphne (Twisted and autobahn) on the same 2-core
  machine; and its ``send`` waits while a socket's buffer is full, which is what lets a
  socket that cannot keep up fall behind alone (``artcritic/live/fanout.py``).
- No per-message deflate: each socket would compress each frame separately, the
  opposite of serialising an event once for every viewer.
- Frames from browsers are capped at 64 KiB (the protocol's own limit is 4 KiB and is
  answered with an error; anything far larger is cut off by the server).
- No lifespan protocol: Django's ASGI handler does not speak it.
- ``--workers N`` runs N processes on one port; each has its own fan-out, all share the
  channel layer, so every event still reaches every socket once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_APP = "artcritic.asgi:application"
MAX_CLIENT_FRAME_BYTES = 64 * 1024
LISTEN_BACKLOG = 2048  # a dashboard full of browsers reconnecting after a restart at once
GRACEFUL_SHUTDOWN_S = 5


def web_argv(
    port: int,
    *,
    host: str = "127.0.0.1",
    app: str = DEFAULT_APP,
    workers: int = 1,
    python: str = sys.executable,
) -> list[str]:
    """The command line that runs this server (devrun, the tests and the benchmark use it)."""
    argv = [python, "-m", "artcritic.webserver", "--host", host, "--port", str(port)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    if app != DEFAULT_APP:
        argv += ["--app", app]
    return argv


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m artcritic.webserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes sharing the port (default: ARTCRITIC_WEB_WORKERS, else 1)",
    )
    parser.add_argument("--app", default=DEFAULT_APP, help="the ASGI application, module:name")
    args = parser.parse_args(argv)
    if args.workers is None:
        raw = os.environ.get("ARTCRITIC_WEB_WORKERS", "1")
        try:
            args.workers = int(raw)
        except ValueError:
            parser.error(f"ARTCRITIC_WEB_WORKERS={raw!r} is not an integer.")
        if args.workers < 1:
            parser.error(f"ARTCRITIC_WEB_WORKERS={args.workers} is below the minimum of 1.")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: at least 1 process is needed")
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artcritic.settings")
    import uvicorn

    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=MAX_CLIENT_FRAME_BYTES,
        lifespan="off",
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )


if __name__ == "__main__":
    main()
