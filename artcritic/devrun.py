"""`make run`: prepare the database, start web and workers on a simulated GPU, print the URL.

    python -m artcritic.devrun           # start (or say "already running") and supervise
    python -m artcritic.devrun --stop    # stop what a run started, from its PID files

Before it, `make services` has made sure PostgreSQL, Redis and S3 answer
(artcritic/devstack.py). This module then migrates, loads the hardware profiles
(activating ``sim-32gb`` on ``sim0``), creates the demo login and project, and
starts three children, each in its own process group with its PID in
``.run/pids/devrun-<name>.pid`` and its output in ``.run/logs/devrun-<name>.log``:

- ``web``: ``artcritic.webserver`` (uvicorn) serving ``artcritic.asgi:application`` on
  127.0.0.1, HTTP and WebSockets, in ``ARTCRITIC_WEB_WORKERS`` processes (default 1);
- ``gpu-worker``: the one Celery worker of queue ``gpu.sim0``; it starts the simulated
  ComfyUI and Critic itself, through the profile's process driver, when a job needs them;
- ``default-worker``: Celery worker of queue ``default`` (thumbnails, statistics, housekeeping).

Ctrl-C (or `make stop`) stops the children by process group and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from artcritic.webserver import web_argv

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from artcritic.studio.models import Project

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8000
DEFAULT_GPU = "sim0"
DEFAULT_PROFILE = "sim-32gb"
# A quarter of the real card's durations: loads and swaps stay visible but a demo stays lively.
DEFAULT_SIM_TIME_SCALE = "0.25"
WEB_READY_TIMEOUT_S = 90.0
# Celery's warm shutdown finishes the running task; past this the job lease takes over.
STOP_GRACE_S = 10.0
# A child that dies this often within a minute is not restarted again: the run stops.
RESTARTS_PER_MINUTE = 5
SUPERVISOR = "devrun"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

DEMO_USERNAME = "demo"
DEMO_PROJECT_NAME = "Demo: compact desk lamp"
DEMO_BRIEF = (
    "A compact desk lamp for small flats and shared desks. It must light an A3 sheet "
    "evenly from 40 cm, fold flat for storage and look at home next to a laptop."
)
DEMO_TASTE_NOTES = (
    "Calm, precise, a little warm. Brushed aluminium or powder-coated steel in muted "
    "colours; one visible hinge, no chrome, no fake wood, no glowing accent strips. "
    "Studio product shots on a plain light-grey background."
)
DEMO_MANUFACTURABILITY = (
    "Sheet metal (bent, max 2 mm) and die-cast aluminium only; no undercuts in cast "
    "parts; at most 12 distinct parts; USB-C powered, 10 W LED module; hinge from a "
    "catalogue part, not custom; fits a 30 × 30 × 6 cm shipping box when folded."
)


class DevrunError(RuntimeError):
    """`make run` cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """Where one run keeps its PID files, logs, demo password and simulated GPU."""

    root: Path

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def sim(self) -> Path:
        return self.root / "sim"

    @property
    def password_file(self) -> Path:
        return self.root / "demo-password"

    @property
    def state_file(self) -> Path:
        return self.root / "devrun.json"

    @property
    def ports_file(self) -> Path:
        """The ports this checkout chose (web, simulators), kept from run to run."""
        return self.root / "ports.json"

    @property
    def profiles(self) -> Path:
        """Copies of local-process profiles with this checkout's simulator ports."""
        return self.root / "profiles"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{SUPERVISOR}-{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{SUPERVISOR}-{name}.log"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.pids / f"{SUPERVISOR}.pid"


@dataclass(frozen=True)
class Child:
    """One long-running process of the local stack."""

    name: str
    argv: list[str]
    # A word the process's command line must contain before we signal its PID: a PID file
    # outlives its process, and the number may since belong to someone else's program.
    marker: str


@dataclass(frozen=True)
class RunConfig:
    layout: Layout
    port: int
    gpu: str
    profile: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _say(message: str) -> None:
    print(f"devrun: {message}", flush=True)


# --- what runs ------------------------------------------------------------------------


def children_for(port: int, gpu: str) -> list[Child]:
    """The processes `make run` starts, in start order (stopped in reverse)."""
    python = sys.executable
    worker = [python, "-m", "celery", "-A", "artcritic", "worker", "--loglevel", "INFO"]
    # Nothing here needs worker-to-worker chatter; skipping it makes start-up faster.
    quiet = ["--without-gossip", "--without-mingle"]
    gpu_worker = [
        *worker,
        *["-Q", f"gpu.{gpu}", "-n", f"gpu.{gpu}@%h"],
        # The worker owns the GPU: one task at a time, and it reserves no second message
        # that a crash would strand (acks_late is set in settings).
        *["--concurrency", "1", "--prefetch-multiplier", "1"],
        # solo runs the task in the worker process itself. prefork would run it in a forked
        # pool child: NVML and CUDA state do not survive fork, the runtime processes the
        # driver starts would belong to a child the pool may recycle, and with concurrency 1
        # a pool buys no parallelism anyway. threads would work too, but solo makes "one
        # process owns the GPU" literally true. Its price, remote-control commands waiting
        # for the running task, is moot: cancellation goes through PostgreSQL, not the broker.
        *["--pool", "solo"],
        *quiet,
    ]
    # Thumbnails and statistics are short CPU work; two pool processes fit a 2-core box.
    default_worker = [*worker, "-Q", "default", "-n", "default@%h", "--concurrency", "2", *quiet]
    return [
        Child("gpu-worker", gpu_worker, marker="celery"),
        Child("default-worker", default_worker, marker="celery"),
        Child("web", web_argv(port, python=python), marker="artcritic.webserver"),
    ]


def child_env(config: RunConfig) -> dict[str, str]:
    """Environment of every child: this one plus the simulated GPU's settings."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "artcritic.settings")
    env.setdefault("ARTCRITIC_SIM_TIME_SCALE", DEFAULT_SIM_TIME_SCALE)
    env["ARTCRITIC_GPU"] = config.gpu
    env["ARTCRITIC_SIM_DIR"] = str(config.layout.sim)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- one-off preparation (needs Django) -----------------------------------------------


def demo_password(layout: Layout) -> str:
    """The demo login's password: generated on the first run, then read back every run."""
    path = layout.password_file
    if path.exists():
        stored = path.read_text().strip()
        if stored:
            return stored
    layout.root.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    # Created private from the start: the file is a credential, however local.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def demo_setup(password: str) -> tuple[User, Project]:
    """Make sure the demo login exists with ``password`` and owns a demo project (idempotent)."""
    from django.contrib.auth.models import User
    from django.db import transaction

    from artcritic.studio.models import Project, Role
    from artcritic.studio.services import project_create, project_update

    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.invalid"}
        )
        # The file is the truth: a reset database or a new file both end in a working login.
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        # Any project the demo user owns counts, so a renamed demo project is not duplicated.
        project = (
            Project.objects.filter(memberships__user=user, memberships__role=Role.OWNER)
            .order_by("id")
            .first()
        )
        if project is None:
            project = project_create(user=user, name=DEMO_PROJECT_NAME, brief=DEMO_BRIEF)
            project = project_update(
                project=project,
                user=user,
                name=DEMO_PROJECT_NAME,
                brief=DEMO_BRIEF,
                taste_notes=DEMO_TASTE_NOTES,
                manufacturability=DEMO_MANUFACTURABILITY,
            )
    return user, project


def prepare(config: RunConfig) -> str:
    """Check, migrate, load profiles, collect static files if needed, create the demo login."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artcritic.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command, get_commands
    from django.db import connections

    _say("checking settings and migrating the database")
    call_command("check")
    call_command("migrate", interactive=False, verbosity=0, skip_checks=True)
    if "loadprofiles" not in get_commands():
        raise DevrunError(
            "manage.py loadprofiles does not exist in this checkout; without it no GPU "
            "gets an active hardware profile, so nothing could run."
        )
    paths = profile_paths(config.layout, Path(settings.ARTCRITIC_PROFILES_DIR))
    _say(f"loading hardware profiles; {config.profile} is active on {config.gpu}")
    call_command("loadprofiles", *paths, activate=config.profile, gpu=config.gpu)
    if not settings.DEBUG:
        # With DEBUG on, whitenoise serves straight from the finders; off, it needs the copy.
        _say(f"collecting static files into {settings.STATIC_ROOT}")
        call_command("collectstatic", interactive=False, verbosity=0)
    password = demo_password(config.layout)
    demo_setup(password)
    connections.close_all()
    return password


# --- processes --------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def pid_is_ours(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and its command line still looks like the process we started."""
    return pid > 0 and not _zombie(pid) and marker in _cmdline(pid)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop_groups(pgids: Iterable[int], *, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after ``grace`` seconds."""
    pending = [pgid for pgid in pgids if pgid > 0]
    for pgid in pending:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        # Reap our own children so that they do not linger as zombies in the group.
        for pgid in pending:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)
        pending = [pgid for pgid in pending if _group_alive(pgid)]
        time.sleep(0.1)
    for pgid in pending:
        _say(f"process group {pgid} ignored SIGTERM for {grace:.0f} s; killing it")
        _signal_group(pgid, signal.SIGKILL)


def _spawn(child: Child, config: RunConfig, env: dict[str, str]) -> subprocess.Popen[bytes]:
    config.layout.logs.mkdir(parents=True, exist_ok=True)
    config.layout.pids.mkdir(parents=True, exist_ok=True)
    log: IO[bytes]
    with config.layout.log_file(child.name).open("ab") as log:
        # Own session and process group: Ctrl-C reaches devrun only, which then stops the
        # children in order, and a group signal also reaches a worker's pool processes.
        process = subprocess.Popen(
            child.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    config.layout.pid_file(child.name).write_text(f"{process.pid}\n")
    return process


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_bytes()[-16384:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def web_answers(port: int, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers on 127.0.0.1:``port`` (any status counts)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- this checkout's ports ----------------------------------------------------------------


def _ports_read(layout: Layout) -> dict[str, int]:
    try:
        data = json.loads(layout.ports_file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and 0 < v < 65536}


def _ports_write(layout: Layout, ports: dict[str, int]) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.ports_file.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_choose(layout: Layout, name: str, preferred: int, *, keep: bool = False) -> int:
    """This checkout's port for ``name``: the one it used before, else ``preferred``, else any.

    A port taken by another program (another checkout's `make run`, say) is never reused;
    the choice is recorded so that the next run keeps its URL. ``keep`` accepts the
    recorded port even while it is taken (it is our own running process).
    """
    ports = _ports_read(layout)
    recorded = ports.get(name)
    if recorded is not None and (keep or not port_taken(recorded)):
        return recorded
    used = set(ports.values())
    chosen = next(
        (
            port
            for port in (preferred, *range(preferred + 1, preferred + 100))
            if port < 65536 and port not in used and not port_taken(port)
        ),
        None,
    )
    if chosen is None:
        chosen = _free_port()
    if chosen != preferred:
        _say(f"port {preferred} is taken by another program; {name} uses {chosen}")
    _ports_write(layout, {**ports, name: chosen})
    return chosen


def profile_paths(layout: Layout, directory: Path) -> list[Path]:
    """The profile files to load: the shipped ones, each whose runtimes are local processes
    on loopback rewritten as a copy under ``.run/profiles`` with this checkout's ports.

    Two checkouts' simulators then never answer on each other's ports; the copy says where
    it came from, and the shipped file is untouched.
    """
    from artcritic.gpu.profiles import ProfileError, profile_read

    paths: list[Path] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            profile, _sha = profile_read(path)
        except ProfileError:
            paths.append(path)  # loadprofiles reports it, with every other problem
            continue
        text = path.read_text()
        rewritten = text
        for runtime in ("comfyui", "critic"):
            cfg = getattr(profile.runtimes, runtime)
            url = urlsplit(cfg.url)
            if cfg.driver != "process" or url.hostname not in LOOPBACK or url.port is None:
                continue
            port = port_choose(layout, f"{profile.name}.{runtime}", url.port)
            if port != url.port:
                new_url = urlunsplit(url._replace(netloc=f"{url.hostname}:{port}"))
                rewritten = rewritten.replace(f'"{cfg.url}"', f'"{new_url}"')
        if rewritten == text:
            paths.append(path)
            continue
        layout.profiles.mkdir(parents=True, exist_ok=True)
        copy = layout.profiles / path.name
        copy.write_text(
            f"# Written by `make run` from {path.name}: the same profile with this checkout's\n"
            f"# simulator ports ({layout.ports_file.name}). Edit {path.name}, not this copy.\n"
            + rewritten
        )
        paths.append(copy)
    return paths


# --- state of a previous run -------------------------------------------------------------


def recorded_children(config: RunConfig) -> dict[str, int]:
    """PIDs from the PID files of children that still run and are still ours."""
    alive: dict[str, int] = {}
    for child in children_for(config.port, config.gpu):
        pid = _read_pid(config.layout.pid_file(child.name))
        if pid_is_ours(pid, child.marker):
            alive[child.name] = pid
    return alive


def _read_state(layout: Layout) -> dict[str, object]:
    try:
        data = json.loads(layout.state_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(config: RunConfig) -> None:
    state = {"port": config.port, "gpu": config.gpu, "url": config.url}
    config.layout.state_file.write_text(json.dumps(state) + "\n")


def _print_banner(config: RunConfig, password: str) -> None:
    _say(f"artcritic is up on a simulated GPU ({config.gpu}, profile {config.profile})")
    print(f"\n    {config.url}\n    login: {DEMO_USERNAME}   password: {password}\n", flush=True)
    _say(f"logs in {config.layout.logs}; Ctrl-C here or `make stop` stops it")


def stop(config: RunConfig) -> int:
    """Stop the supervisor, every child and the simulated runtimes a run started."""
    layout = config.layout
    state = _read_state(layout)
    gpu = str(state.get("gpu") or config.gpu)
    supervisor = _read_pid(layout.supervisor_pid_file)
    supervised = supervisor != os.getpid() and pid_is_ours(supervisor, "artcritic.devrun")
    if supervised:
        _say(f"asking the running devrun (pid {supervisor}) to stop its children")
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S + 10
        while pid_is_ours(supervisor, "artcritic.devrun") and time.monotonic() < deadline:
            time.sleep(0.1)
    groups = []
    for child in children_for(config.port, gpu):
        path = layout.pid_file(child.name)
        pid = _read_pid(path)
        if pid_is_ours(pid, child.marker):
            _say(f"stopping {child.name} (pid {pid})")
            groups.append(pid)
        path.unlink(missing_ok=True)
    groups.extend(_simulated_runtimes(gpu))
    stop_groups(groups)
    layout.supervisor_pid_file.unlink(missing_ok=True)
    layout.state_file.unlink(missing_ok=True)
    if not groups and not supervised:
        _say("nothing of a previous run was running")
    return 0


def _simulated_runtimes(gpu: str) -> list[int]:
    """Simulated ComfyUI/Critic processes the GPU worker started for ``gpu`` (process driver)."""
    from artcritic.runtimes.drivers.process import DEFAULT_RUN_DIR

    found = []
    for path in sorted(DEFAULT_RUN_DIR.glob(f"{gpu}-*.pid")):
        pid = _read_pid(path)
        # Only simulators: a real runtime started by a process driver is not ours to end.
        if pid_is_ours(pid, "artcritic.sim"):
            _say(f"stopping simulated runtime {path.stem} (pid {pid})")
            found.append(pid)
    return found


# --- the run -------------------------------------------------------------------------------


class _StopRequested(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def _already_running(config: RunConfig) -> RunConfig | None:
    """The running stack's config if every recorded child is alive and its web answers."""
    previous_port = _read_state(config.layout).get("port")
    if isinstance(previous_port, int):
        # The running stack keeps its port even if ARTCRITIC_PORT changed since.
        config = RunConfig(config.layout, previous_port, config.gpu, config.profile)
    expected = {child.name for child in children_for(config.port, config.gpu)}
    if recorded_children(config).keys() == expected and web_answers(config.port):
        return config
    return None


def run(config: RunConfig) -> int:
    """Start everything (unless it already runs), print the URL and login, supervise."""
    layout = config.layout
    running = _already_running(config)
    if running is not None:
        _say("already running")
        _print_banner(running, demo_password(layout))
        return 0
    leftovers = recorded_children(config)
    if leftovers:
        _say(f"a previous run is partly alive ({', '.join(sorted(leftovers))}); stopping it")
        stop(config)
    if config.port == 0:
        config = replace(config, port=port_choose(layout, "web", DEFAULT_PORT))
    if port_taken(config.port):
        raise DevrunError(
            f"port {config.port} on 127.0.0.1 is taken by another program; "
            "stop it or choose another port with ARTCRITIC_PORT=…"
        )
    password = prepare(config)
    layout.pids.mkdir(parents=True, exist_ok=True)
    layout.supervisor_pid_file.write_text(f"{os.getpid()}\n")
    _write_state(config)
    env = child_env(config)
    started: dict[str, subprocess.Popen[bytes]] = {}
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    # SIGINT too: started from a shell that ignores it (a background job), Python would
    # otherwise never raise KeyboardInterrupt, and the children would inherit the ignore.
    for sig in handled:
        signal.signal(sig, _raise_stop)
    try:
        for child in children_for(config.port, config.gpu):
            started[child.name] = _spawn(child, config, env)
            _say(f"started {child.name} (pid {started[child.name].pid})")
        _wait_for_web(config, started)
        _print_banner(config, password)
        return _supervise(config, started, env)
    except _StopRequested:
        _say("stopping")
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave orphans behind.
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)
        # Reverse start order: the web stops taking requests before the workers go; then the
        # simulators the GPU worker started, which live in sessions of their own.
        stop_groups(process.pid for process in reversed(started.values()))
        stop_groups(_simulated_runtimes(config.gpu))
        for name in started:
            layout.pid_file(name).unlink(missing_ok=True)
        layout.supervisor_pid_file.unlink(missing_ok=True)
        layout.state_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _say("stopped")


def _first_exit(config: RunConfig, started: dict[str, subprocess.Popen[bytes]]) -> str | None:
    for name, process in started.items():
        code = process.poll()
        if code is not None:
            tail = _log_tail(config.layout.log_file(name))
            return f"{name} exited with code {code}. Last lines of its log:\n{tail}"
    return None


def _wait_for_web(config: RunConfig, started: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + WEB_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        failure = _first_exit(config, started)
        if failure:
            raise DevrunError(failure)
        if web_answers(config.port, timeout=1.0):
            return
        time.sleep(0.2)
    raise DevrunError(
        f"the web server did not answer on port {config.port} within "
        f"{WEB_READY_TIMEOUT_S:.0f} s; see {config.layout.log_file('web')}"
    )


def _supervise(
    config: RunConfig, started: dict[str, subprocess.Popen[bytes]], env: dict[str, str]
) -> int:
    """Restart a child that died, leaving the others (a GPU job in flight) running.

    A crash of the web server must not take the GPU worker, and its job, with it. A child
    that keeps dying (RESTARTS_PER_MINUTE times in a minute) stops the run with its log,
    rather than leave jobs waiting on a worker that cannot stay up.
    """
    children = {child.name: child for child in children_for(config.port, config.gpu)}
    restarts: dict[str, list[float]] = {name: [] for name in started}
    while True:
        now = time.monotonic()
        for name, process in list(started.items()):
            code = process.poll()
            if code is None:
                continue
            tail = _log_tail(config.layout.log_file(name))
            recent = [at for at in restarts[name] if now - at < 60]
            if len(recent) >= RESTARTS_PER_MINUTE:
                _say(
                    f"{name} exited with code {code}, its {len(recent) + 1}th exit within a "
                    f"minute; stopping everything. Last lines of its log:\n{tail}"
                )
                return 1
            _say(
                f"{name} exited with code {code}; restarting it, the other processes keep "
                f"running. Last lines of its log:\n{tail}"
            )
            started[name] = _spawn(children[name], config, env)
            restarts[name] = [*recent, now]
            _say(f"restarted {name} (pid {started[name].pid})")
        time.sleep(0.5)


def _port_from_env() -> int:
    """ARTCRITIC_PORT if set; 0 (this checkout's own port, see ``port_choose``) otherwise."""
    raw = os.environ.get("ARTCRITIC_PORT", "")
    if not raw:
        return 0
    try:
        port = int(raw)
    except ValueError:
        raise DevrunError(f"ARTCRITIC_PORT={raw!r} is not a port number.") from None
    if not 1 <= port <= 65535:
        raise DevrunError(f"ARTCRITIC_PORT={port} is outside 1–65535.")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m artcritic.devrun",
        description="Run artcritic locally on a simulated GPU: web, GPU worker, default worker.",
    )
    parser.add_argument("--stop", action="store_true", help="stop what a previous run started")
    parser.add_argument(
        "--port",
        type=int,
        help=f"web port on 127.0.0.1 (default: $ARTCRITIC_PORT, else {DEFAULT_PORT} or, when "
        "another program holds it, the next free one, kept for this checkout in .run/ports.json)",
    )
    parser.add_argument("--gpu", default=DEFAULT_GPU, help="simulated GPU name (queue gpu.<name>)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="hardware profile to activate")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=ROOT / ".run",
        help="where PID files, logs, the demo password and the simulated GPU live",
    )
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else _port_from_env()
        config = RunConfig(Layout(args.run_dir.resolve()), port, args.gpu, args.profile)
        return stop(config) if args.stop else run(config)
    except (DevrunError, ImproperlyConfigured, CommandError) as exc:
        # Settings errors, failed system checks and a failed migration end here, readably.
        print(f"devrun: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
