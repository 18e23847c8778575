"""Live-update benchmark: a job's progress and phases in the worker → 200 dashboards.

What runs. Its own database (``artcritic_bench`` on the configured PostgreSQL, created and
migrated if missing, dropped afterwards if this run created it unless --keep-db; the
configured database itself is refused) and its own channel-layer prefix (its Redis keys
are deleted afterwards), so it never mixes with `make run` or the tests. One user, one
project, GPU ``benchgpu`` on the sim-32gb profile, one running generate job. The real
web server (``artcritic.webserver``, a subprocess; ``--web-workers`` processes) serves the
real dashboard. Connected to it: N dashboard sockets (aiohttp, signed in with a real
session, a few handshakes at a time, each must get its hello first) and one Chromium tab
on ``/projects/<id>/`` (dashboard.js + live.js), signed in the same way.

What is measured. A worker process of its own (``bench/livebench/worker.py``) calls the
real ``job_progress(job, n, N)`` for n = 1..N at a fixed rate, and every few seconds the
real ``job_phase_enter``, stamping t0 just before each call. Staleness of call n = when a
receiver first had value n or a newer one (socket: frame read; page: live.js applied it)
− t0; phase latency = when it had the phase's ``job.status`` − t0. Both clocks are this
machine's wall clock; the page's offset is measured and printed. Lost: a phase event, or
the last progress value, that never reached a receiver. Duplicated: a (stream, number)
a receiver got twice. Resyncs: sockets the server sent a fresh hello because they fell
behind, number gaps the sockets saw, and the page's resyncs after its first hello. The
web server's CPU per frame delivered, and each process's CPU share, show where time goes.
Run on a busy machine, the figures include the contention: the CPU line shows it.

The last line is one JSON object: {"events", "sockets", "p50_ms", "p99_ms" (staleness,
every receiver pooled), "phase_p99_ms", "lost", "duplicated", "resyncs",
"cpu_us_per_frame"}, nearest-rank percentiles, ms to 1 decimal.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: `python bench/live.py`
    sys.path.insert(0, str(ROOT))

from bench.livebench import stack  # noqa: E402
from bench.livebench.receivers import PageWatcher, SocketWatcher  # noqa: E402
from bench.livebench.report import (  # noqa: E402
    Received,
    RunFacts,
    json_line,
    report_lines,
    summarise,
)

if TYPE_CHECKING:
    from bench.livebench.world import World

HANDSHAKES_AT_ONCE = 8  # daphne drops a socket its app has not accepted within 5 s
HANDSHAKES_AT_ONCE = 16  # each handshake authorizes in the database: let them queue here
SETTLE_SECONDS = 1.0  # after connecting: the page's first repaint (events wait for it)
DRAIN_SECONDS = 10.0  # after the last call: how long late events may take
LATE_SECONDS = 1.5  # after the last event arrived: room for a duplicate, counters written


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=600, help="job_progress calls (≥ 1)")
    parser.add_argument("--sockets", type=int, default=200, help="sockets besides the page")
    parser.add_argument("--rate", type=float, default=50.0, help="job_progress calls a second")
    parser.add_argument(
        "--phase-every", type=float, default=2.0, help="seconds between phase changes (0: none)"
    )
    parser.add_argument("--no-browser", action="store_true", help="sockets only, no Chromium")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--database", default="artcritic_bench", help="database name to use")
    parser.add_argument("--gpu", default="benchgpu", help="GPU row the job runs on")
    parser.add_argument(
        "--web-workers",
        type=int,
        default=int(os.environ.get("ARTCRITIC_WEB_WORKERS", "1")),
        help="web server processes (default: ARTCRITIC_WEB_WORKERS, else 1)",
    )
    parser.add_argument(
        "--server",
        choices=("webserver", "daphne"),
        default="webserver",
        help="artcritic.webserver (uvicorn), or daphne to compare with the server shipped before",
    )
    parser.add_argument(
        "--app",
        default="artcritic.asgi:application",
        help="what the web server serves: another module:app to time a candidate change",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.sockets < 0 or args.rate <= 0 or args.phase_every < 0:
        parser.error("--events ≥ 1, --sockets ≥ 0, --rate > 0 and --phase-every ≥ 0, please")
    if args.web_workers < 1:
        parser.error("--web-workers ≥ 1, please")
    if args.server == "daphne" and args.web_workers != 1:
        parser.error("--server daphne runs one process; leave --web-workers at 1")
    if args.no_browser and args.sockets == 0:
        parser.error("--no-browser with --sockets 0 leaves nothing to measure")
    configured = urlparse(os.environ.get("DATABASE_URL", stack.DEFAULT_DATABASE_URL)).path
    if args.database == configured.lstrip("/"):
        parser.error(f"--database {args.database} is the configured database; use its own")
    return args


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """What this process, the web server and the worker share: the database and prefix."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "artcritic.settings"),
        "DATABASE_URL": stack.database_url(args.database),
        "ARTCRITIC_CHANNEL_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        "ARTCRITIC_DEBUG": "1",
        "ARTCRITIC_GPU": args.gpu,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _cpu(web_pid: int) -> dict[str, float]:
    """CPU seconds so far: the machine, the web server's processes, this process alone."""
    busy, total = stack.machine_cpu()
    return {
        "machine": busy,
        "wall": total / (os.cpu_count() or 1),
        "web server": stack.tree_cpu_seconds(web_pid),
        "bench clients": stack.cpu_seconds(os.getpid()),
    }


def _cpu_percent(
    before: dict[str, float], after: dict[str, float], worker_s: float
) -> dict[str, float]:
    """% of one core for each process while the worker sent, and the rest of the machine."""
    wall = after["wall"] - before["wall"] or 1.0
    used = {name: 100 * (after[name] - before[name]) / wall for name in before if name != "wall"}
    used["worker"] = 100 * worker_s / wall
    used["rest (chromium, redis, postgres, others)"] = used["machine"] - sum(
        value for name, value in used.items() if name != "machine"
    )
    return used


async def _drained(watchers: list[SocketWatcher], page: PageWatcher | None, last: int) -> None:
    """Wait until every receiver has the last value (or DRAIN_SECONDS), then a little more."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        sockets_done = all(w.top_current >= last for w in watchers)
        if sockets_done and (page is None or await page.top_current() >= last):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(LATE_SECONDS)


async def _send(
    args: argparse.Namespace,
    facts: RunFacts,
    *,
    worker: stack.Child,
    web: stack.Child,
    stamps: Path,
    prefix: str,
    watchers: list[SocketWatcher],
    page: PageWatcher | None,
) -> None:
    """Let the worker send, wait until every receiver has it all, and note the CPU spent."""
    resyncs_before = stack.resyncs_read(prefix)
    before = _cpu(web.pid)
    # The receivers keep every arrival (10^5 at 200 sockets): with the collector on, this
    # process's own full collections paused its 200 readers for up to ~100 ms and showed up
    # as server latency. A browser is its own process.
    gc.freeze()
    gc.disable()
    try:
        stack.worker_go(worker)
        try:
            async with asyncio.timeout(args.events / args.rate + 120):
                await stack.worker_finished(worker)
        except TimeoutError:
            raise worker.fail("did not finish sending in time") from None
        after = _cpu(web.pid)
        sent = json.loads(await asyncio.to_thread(stamps.read_text))
        facts.t0, facts.t1, facts.phase_t0 = sent["t0"], sent["t1"], sent["phase_t0"]
        facts.cpu_percent = _cpu_percent(before, after, sent["cpu_s"])
        await _drained(watchers, page, args.events)
    finally:
        gc.enable()
        gc.unfreeze()
    facts.server_cpu_s = stack.tree_cpu_seconds(web.pid) - before["web server"]
    facts.server_resyncs = stack.resyncs_read(prefix) - resyncs_before


async def measure(
    args: argparse.Namespace,
    world: World,
    base_url: str,
    *,
    worker: stack.Child,
    web: stack.Child,
    stamps: Path,
    prefix: str,
) -> RunFacts:
    from django.conf import settings

    cookie_name = settings.SESSION_COOKIE_NAME
    ws_url = f"ws{base_url.removeprefix('http')}/ws/projects/{world.project_id}/"
    headers = {"Origin": base_url, "Cookie": f"{cookie_name}={world.socket_session}"}
    watchers = [SocketWatcher(i) for i in range(args.sockets)]
    facts = RunFacts(
        events=args.events, sockets=args.sockets, rate=args.rate,
        phase_every_s=args.phase_every, cores=os.cpu_count() or 1,
        web_workers=args.web_workers, t0=[], t1=[], phase_t0=[], received=[],
    )  # fmt: skip
    page: PageWatcher | None = None
    this = asyncio.current_task()
    assert this is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)  # as Ctrl-C
    # No limit on connections: the default of 100 made socket 101 on wait for ever.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
        tasks = [asyncio.create_task(w.run(session, ws_url, headers, gate)) for w in watchers]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.hello.wait() for w in watchers)), 120)
            if not args.no_browser:
                cookie = (cookie_name, world.page_session)
                page = await PageWatcher.open(base_url, f"/projects/{world.project_id}/", cookie)
            await asyncio.sleep(SETTLE_SECONDS)
            if page is not None:
                facts.clock_offset_ms = await page.clock_offset()
            await _send(args, facts, worker=worker, web=web, stamps=stamps, prefix=prefix,
                        watchers=watchers, page=page)  # fmt: skip
            if page is not None:
                arrivals, numbers, frames, facts.page_counters = await page.results()
                facts.page = Received("page", arrivals, frames, numbers.duplicated, 0)
                facts.problems += [f"page: {error}" for error in page.errors]
        finally:
            for watcher in watchers:
                await watcher.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            if page is not None:
                await page.close()
    facts.received = [
        Received(f"socket {w.index}", w.arrivals, w.frames, w.numbers.duplicated, w.numbers.gaps)
        for w in watchers
    ] + ([facts.page] if facts.page else [])
    facts.problems += [problem for w in watchers for problem in w.problems]
    facts.published_to_read = [ms for w in watchers for ms in w.published_to_read]
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    # `kill` runs the clean-up below as Ctrl-C does: the server and the worker stop by PID.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    env = _environment(args)
    os.environ.update(env)
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    url, prefix = env["DATABASE_URL"], env["ARTCRITIC_CHANNEL_PREFIX"]
    folder = stack.RUNS / prefix
    created = stack.database_ensure(url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from bench.livebench.world import world_make

    children: list[stack.Child] = []
    try:
        call_command("migrate", interactive=False, verbosity=0)
        world = world_make(args.gpu, args.events)
        connections.close_all()  # nothing in this process touches the database from here
        port = stack.free_port()
        children.append(
            web := stack.web_start(
                port, env, folder, app=args.app, workers=args.web_workers, server=args.server
            )
        )
        stamps = folder / "stamps.json"
        worker_args = ["--job", str(world.job_id), "--events", str(args.events)]
        worker_args += ["--rate", str(args.rate), "--phase-every", str(args.phase_every)]
        worker_args += ["--out", str(stamps)]
        children.append(worker := stack.worker_start(env, folder, *worker_args))
        base_url = f"http://127.0.0.1:{port}"
        facts = asyncio.run(
            measure(
                args, world, base_url, worker=worker, web=web, stamps=stamps, prefix=prefix
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("live benchmark interrupted; stopping what it started", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        return 130
    except BaseException:
        print(f"live benchmark failed; logs in {folder}", file=sys.stderr)
        raise
    finally:
        for child in reversed(children):
            child.stop()
        stack.channel_keys_delete(prefix)
        connections.close_all()
        if created and not args.keep_db:
            stack.database_drop(url)
    facts.problems += stack.log_problems(folder)
    shutil.rmtree(folder, ignore_errors=True)
    summary = summarise(facts)
    print("\n".join(report_lines(facts, summary)))
    if created and args.keep_db:
        print(f"(kept database {args.database})")
    print(json_line(facts, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
