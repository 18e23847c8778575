"""Page benchmark: every designer page and the admin changelists on a project at scale.

What runs. Its own database (``artcritic_bench_pages`` on the configured PostgreSQL, created
and migrated, dropped afterwards unless --keep-db; the configured database itself is
refused), seeded by ``bench/pagesbench/seed.py`` with one project of --images images (10,000
by default: 3,000 decisions, 8,000 Critic reviews, ~20,000 jobs, ~100,000 phase rows,
~38,000 audit events). The real web server (artcritic.webserver, a subprocess) with
ARTCRITIC_DEBUG off serves the pages to a designer (a member) and a staff user signed in
with real sessions.

What is measured. Query counts per page, in this process through Django's test client with
the queries captured (DEBUG is off in the server, so it cannot count them). Then --rounds rounds
in which every page is fetched once over HTTP keep-alive, pages interleaved, after three
warm-up fetches each: wall time per response as the client sees it (request sent → body
read). Every answer must be 200 and non-empty, else the run fails. Run on a busy machine,
the figures include the contention; quote them with `uptime`.

The last line is one JSON object: {"images", "rounds", "pages": {name: {"p50_ms", "p95_ms",
"queries"}}, "worst_p95_ms"}; percentiles nearest-rank, ms to 1 decimal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: `python bench/pages.py`
    sys.path.insert(0, str(ROOT))

from artcritic.checkout import CHECKOUT_ID  # noqa: E402
from artcritic.webserver import web_argv  # noqa: E402
from bench.livebench import stack  # noqa: E402

DATABASE = "artcritic_bench_pages"  # a checkout's own: artcritic_bench_pages_<checkout id>
WARMUP = 3


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


SECRET = secrets.token_urlsafe(48)  # shared with the server: sessions are signed with it


def _django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["ARTCRITIC_SECRET_KEY"] = SECRET
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artcritic.settings")
    import django

    django.setup()


def _pages(seeded: Any) -> dict[str, tuple[str, str]]:
    """name → (path, who): the designer's pages and the staff's changelists."""
    from artcritic.studio.models import Image
    from artcritic.studio.selectors import Cursor

    project = seeded.project
    images = Image.objects.filter(project=project).order_by("-created_at", "-id")
    deep = images[min(150 * 48, seeded.images - 1)]  # the cursor of "page 150"
    shown = images.first()
    ids = list(images.values_list("pk", flat=True)[:3])
    base = f"/projects/{project.pk}"
    return {
        "project_list": ("/", "designer"),
        "dashboard": (f"{base}/", "designer"),
        "queue_fragment": (f"/projects/{project.pk}/queue/", "designer"),
        "history_fragment": (f"{base}/jobs/", "designer"),
        "gallery_p1": (f"{base}/images/", "designer"),
        "gallery_deep": (f"{base}/images/?before={Cursor.of(deep)}", "designer"),
        "gallery_disagree": (f"{base}/images/?show=disagree", "designer"),
        "review": (f"{base}/review/", "designer"),
        "review_all_image": (f"{base}/review/?filter=all&image={shown.pk}", "designer"),
        "image_page": (f"/images/{shown.pk}/", "designer"),
        "compare": (f"{base}/compare/?" + "&".join(f"image={i}" for i in ids), "designer"),
        "composer": (f"{base}/compose/", "designer"),
        "admin_jobs": ("/admin/jobs/job/", "staff"),
        "admin_audit": ("/admin/audit/auditevent/", "staff"),
        "admin_images": ("/admin/studio/image/", "staff"),
    }


def _query_counts(
    pages: dict[str, tuple[str, str]], users: dict[str, Any]
) -> tuple[dict[str, int], dict[str, list[tuple[float, str]]]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts: dict[str, int] = {}
    slowest: dict[str, list[tuple[float, str]]] = {}
    clients = {}
    for who, user in users.items():
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        clients[who] = client
    for name, (path, who) in pages.items():
        with CaptureQueriesContext(connection) as captured:
            response = clients[who].get(path)
        if response.status_code != 200:
            raise stack.BenchError(f"{name} ({path}) answered {response.status_code}")
        counts[name] = len(captured.captured_queries)
        timed = sorted(
            ((float(q["time"]) * 1000, q["sql"]) for q in captured.captured_queries), reverse=True
        )
        slowest[name] = timed[:2]
    return counts, slowest


def _cookies(users: dict[str, Any]) -> dict[str, str]:
    from django.conf import settings
    from django.test import Client

    cookies = {}
    for who, user in users.items():
        client = Client()
        client.force_login(user)
        cookies[who] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return cookies


def _serve(url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = stack.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ARTCRITIC_DEBUG": "0",
        "ARTCRITIC_SECRET_KEY": SECRET,
        "ARTCRITIC_ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on loopback: no TLS proxy in front, so no HTTPS redirect either.
        "ARTCRITIC_HTTPS": "0",
        "ARTCRITIC_DB_CONN_MAX_AGE": "60",
        "PYTHONUNBUFFERED": "1",
    }
    sink = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        web_argv(port),
        cwd=ROOT,
        env=env,
        stdout=sink,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + stack.START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise stack.BenchError(f"the web server exited with {process.returncode}: see {log}")
        try:
            requests.get(f"{base}/login/", timeout=2)
            return process, base
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise stack.BenchError(f"the web server did not answer in {stack.START_SECONDS} s: see {log}")


def _timed(get: Callable[[], requests.Response], name: str) -> float:
    started = time.perf_counter()
    response = get()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or not response.content:
        raise stack.BenchError(f"{name} answered {response.status_code} during the rounds")
    return elapsed


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look")
    parser.add_argument(
        "--database", default=f"{DATABASE}_{CHECKOUT_ID}", help="its own database (dropped)"
    )
    args = parser.parse_args(argv)
    if not 4 <= args.images <= 200_000 or not 1 <= args.rounds <= 10_000:
        parser.error("--images must be 4..200000 and --rounds 1..10000")
    if not re.fullmatch(r"[a-z0-9_]{1,60}", args.database):
        parser.error("--database must be 1-60 lower-case letters, digits or _")
    return args


def _prepare(images: int) -> tuple[dict[str, tuple[str, str]], dict[str, Any]]:
    """Migrate, load the profiles, seed the project; the pages and their users."""
    from django.core.management import call_command

    from bench.pagesbench.seed import project_seed

    call_command("migrate", verbosity=0)
    call_command("loadprofiles", "--activate", "sim-32gb", "--gpu", "sim0", verbosity=0)
    started = time.monotonic()
    seeded = project_seed(images)
    print(f"seeded {images} images in {time.monotonic() - started:.1f} s", flush=True)
    with stack_connection_closed():
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return _pages(seeded), {"designer": seeded.designer, "staff": seeded.staff}


def _rounds(
    base: str, pages: dict[str, tuple[str, str]], cookies: dict[str, str], rounds: int
) -> dict[str, list[float]]:
    """Every page once per round, interleaved, after warm-up fetches; ms per response."""
    from django.conf import settings

    cookie_name = settings.SESSION_COOKIE_NAME
    sessions = {}
    for who, value in cookies.items():
        session = requests.Session()
        session.cookies.set(cookie_name, value, domain="127.0.0.1")
        sessions[who] = session
    fetch = {
        name: (lambda s=sessions[who], p=path: s.get(base + p, timeout=30, allow_redirects=False))
        for name, (path, who) in pages.items()
    }
    for name, get in fetch.items():
        for _ in range(WARMUP):
            _timed(get, name)
    times: dict[str, list[float]] = {name: [] for name in fetch}
    for _ in range(rounds):
        for name, get in fetch.items():
            times[name].append(_timed(get, name))
    return times


def _report(
    images: int, rounds: int, times: dict[str, list[float]], counts: dict[str, int]
) -> None:
    results = {
        name: {
            "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "queries": counts[name],
        }
        for name, values in times.items()
    }
    width = max(len(name) for name in results)
    print(f"{'page':<{width}}  p50 ms  p95 ms  queries")
    for name, row in results.items():
        print(f"{name:<{width}}  {row['p50_ms']:>6}  {row['p95_ms']:>6}  {row['queries']:>7}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    summary = {
        "images": images,
        "rounds": rounds,
        "pages": results,
        "worst_p95_ms": max(row["p95_ms"] for row in results.values()),
    }
    print(json.dumps(summary, separators=(",", ":")))


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    url = stack.database_url(args.database)
    configured = os.environ.get("DATABASE_URL", stack.DEFAULT_DATABASE_URL)
    if url == configured:
        raise stack.BenchError(f"refusing to use the configured database {configured}")
    stack.database_drop(url)
    stack.database_ensure(url)
    runs = ROOT / ".run" / "bench-pages"
    runs.mkdir(parents=True, exist_ok=True)
    process = None
    try:
        _django(url)
        pages, users = _prepare(args.images)
        counts, slowest = _query_counts(pages, users)
        print("slowest queries per page (one cold fetch in this process, ms):")
        for name, rows in slowest.items():
            for ms, sql in rows:
                print(f"  {name:<18} {ms:7.1f}  {sql[:150]}")
        process, base = _serve(url, runs / f"web-{args.database}.log")
        times = _rounds(base, pages, _cookies(users), args.rounds)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            stack.database_drop(url)
    _report(args.images, args.rounds, times, counts)
    return 0


class stack_connection_closed:  # noqa: N801
    """VACUUM cannot run in a transaction: use an autocommit connection for it."""

    def __enter__(self) -> None:
        from django.db import connection

        connection.close()
        connection.ensure_connection()
        connection.connection.autocommit = True

    def __exit__(self, *exc: object) -> None:
        from django.db import connection

        connection.close()


if __name__ == "__main__":
    sys.exit(main())
