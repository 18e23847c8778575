"""Live-update benchmark: a state change in the worker → the event applied in a real page.

What runs. Its own database (``artcritic_bench`` on the configured PostgreSQL, created and
migrated if missing, dropped afterwards if this run created it unless --keep-db; the
configured database itself is refused) and its own channel-layer prefix, so it never
mixes with `make run` or the tests. One user, one project, GPU
``benchgpu`` on the sim-32gb profile, one running generate job. The real ASGI server
(daphne, a subprocess) serves the real dashboard. Connected to it: N dashboard sockets
(aiohttp, signed in with a real session, each must get its hello first) and one Chromium
tab on ``/projects/<id>/`` (dashboard.js + live.js), signed in the same way.

What is measured. A worker process of its own (``bench/livebench/worker.py``) calls the
real ``job_progress(job, i, N)`` for i = 1..N at a fixed rate, stamping t0 just before
each call. Every job event reaches a project socket twice (``project.<id>`` and
``gpu.<name>``); the ``project.<id>`` copy counts. Latency = page applied (live.js's
``artcritic:applied``, performance.timeOrigin + now) − t0; sockets report their read time
− t0 separately. Both clocks are this machine's wall clock; the page's offset is measured
and printed. Lost: an event whose project copy never reached a receiver (page or socket);
duplicated: a (stream, seq) or a progress value on a stream that arrived twice; both are
totals over the page and every socket. Hops (worker call, row update, Redis, fan-out,
page apply), CPU shares and daphne's CPU per frame are printed to show where time goes.
Run on a busy machine, the figures include the contention: the CPU line shows it.

The last line is one JSON object: {"events", "sockets", "p50_ms", "p99_ms", "lost",
"duplicated"}, latencies of the page (of the sockets with --no-browser), nearest-rank
percentiles, ms to 1 decimal.
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench.livebench.report import RunFacts, json_line, report_lines, summarise  # noqa: E402

if TYPE_CHECKING:
    from bench.livebench.world import World

HANDSHAKES_AT_ONCE = 8  # daphne drops a socket its app has not accepted within 5 s
SETTLE_SECONDS = 1.0  # after connecting: the page's first repaint (events wait for it)
DRAIN_SECONDS = 10.0  # after the last call: how long late events may take
LATE_DUPLICATES_SECONDS = 0.5  # after the last event arrived: room for a duplicate to show


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=600, help="job_progress calls (≥ 1)")
    parser.add_argument("--sockets", type=int, default=50, help="sockets besides the page")
    parser.add_argument("--rate", type=float, default=50.0, help="job_progress calls a second")
    parser.add_argument("--no-browser", action="store_true", help="sockets only, no Chromium")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--database", default="artcritic_bench", help="database name to use")
    parser.add_argument("--gpu", default="benchgpu", help="GPU row the job runs on")
    parser.add_argument(
        "--asgi",
        default="artcritic.asgi:application",
        help="what daphne serves: another module:app to time a candidate change",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.sockets < 0 or args.rate <= 0:
        parser.error("--events ≥ 1, --sockets ≥ 0 and --rate > 0, please")
    if args.no_browser and args.sockets == 0:
        parser.error("--no-browser with --sockets 0 leaves nothing to measure")
    configured = urlparse(os.environ.get("DATABASE_URL", stack.DEFAULT_DATABASE_URL)).path
    if args.database == configured.lstrip("/"):
        parser.error(f"--database {args.database} is the configured database; use its own")
    return args


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """What this process, daphne and the worker share: the bench database and prefix."""
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


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    busy, total = stack.machine_cpu()
    return {"machine": busy, "wall": total / (os.cpu_count() or 1)} | {
        name: stack.cpu_seconds(pid) for name, pid in pids.items()
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


async def _drained(
    watchers: list[SocketWatcher], page: PageWatcher | None, stream: str, last: int
) -> None:
    """Wait until every receiver has the last event (or DRAIN_SECONDS), then a little more."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        sockets_done = all(w.top_current.get(stream, 0) >= last for w in watchers)
        if sockets_done and (page is None or await page.top_current(stream) >= last):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(LATE_DUPLICATES_SECONDS)


async def measure(
    args: argparse.Namespace,
    world: World,
    base_url: str,
    *,
    worker: stack.Child,
    daphne: stack.Child,
    stamps: Path,
) -> RunFacts:
    from django.conf import settings

    project_stream, gpu_stream = f"project.{world.project_id}", f"gpu.{world.gpu}"
    cookie_name = settings.SESSION_COOKIE_NAME
    ws_url = f"ws{base_url.removeprefix('http')}/ws/projects/{world.project_id}/"
    headers = {"Origin": base_url, "Cookie": f"{cookie_name}={world.socket_session}"}
    watchers = [SocketWatcher(i) for i in range(args.sockets)]
    facts = RunFacts(
        events=args.events, sockets=args.sockets, rate=args.rate, cores=os.cpu_count() or 1,
        project_stream=project_stream, gpu_stream=gpu_stream, t0=[], t1=[], sends=[],
        socket_arrivals=[],
    )  # fmt: skip
    page: PageWatcher | None = None
    this = asyncio.current_task()
    assert this is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)  # as Ctrl-C
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
        tasks = [asyncio.create_task(w.run(session, ws_url, headers, gate)) for w in watchers]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.hello.wait() for w in watchers)), 60)
            if not args.no_browser:
                cookie = (cookie_name, world.page_session)
                page = await PageWatcher.open(base_url, f"/projects/{world.project_id}/", cookie)
            await asyncio.sleep(SETTLE_SECONDS)
            if page is not None:
                facts.clock_offset_ms = await page.clock_offset()
            pids = {"daphne": daphne.pid, "bench clients": os.getpid()}
            before = _cpu(pids)
            stack.worker_go(worker)
            try:
                async with asyncio.timeout(args.events / args.rate + 120):
                    await stack.worker_finished(worker)
            except TimeoutError:
                raise worker.fail("did not finish sending in time") from None
            after = _cpu(pids)
            sent = json.loads(await asyncio.to_thread(stamps.read_text))
            facts.t0, facts.t1, facts.sends = sent["t0"], sent["t1"], sent["sends"]
            facts.cpu_percent = _cpu_percent(before, after, sent["cpu_s"])
            await _drained(watchers, page, project_stream, args.events)
            daphne_cpu_s = stack.cpu_seconds(daphne.pid) - before["daphne"]
            if page is not None:
                facts.page_applied, facts.page_received, facts.page_counters = await page.results()
                facts.problems += [f"page: {error}" for error in page.errors]
            frames = sum(len(w.arrivals) for w in watchers) + len(facts.page_received)
            facts.server_us_per_frame = 1e6 * daphne_cpu_s / max(1, frames)
        finally:
            for watcher in watchers:
                await watcher.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            if page is not None:
                await page.close()
    facts.socket_arrivals = [w.arrivals for w in watchers]
    facts.problems += [problem for w in watchers for problem in w.problems]
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    # `kill` runs the clean-up below as Ctrl-C does: daphne and the worker stop by PID.
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
        children.append(daphne := stack.daphne_start(port, env, folder, args.asgi))
        stamps = folder / "stamps.json"
        worker_args = ["--job", str(world.job_id), "--events", str(args.events)]
        worker_args += ["--rate", str(args.rate), "--out", str(stamps)]
        children.append(worker := stack.worker_start(env, folder, *worker_args))
        base_url = f"http://127.0.0.1:{port}"
        facts = asyncio.run(
            measure(args, world, base_url, worker=worker, daphne=daphne, stamps=stamps)
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
