"""`make run` (artcritic.devrun): idempotent setup, and a real start and stop of the stack."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.test import RequestFactory

from artcritic import devrun
from artcritic.gpu.profiles import profile_read
from artcritic.studio.models import Membership, Project, Role
from tests.ops.conftest import ROOT

# django-axes watches every authentication, so each needs the request it came with.
LOGIN_REQUEST = RequestFactory().post("/login/")


def test_help_describes_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "artcritic.devrun", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "--stop" in result.stdout
    assert "simulated GPU" in result.stdout


def test_the_demo_password_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    layout = devrun.Layout(tmp_path / "run")
    first = devrun.demo_password(layout)
    assert len(first) >= 16
    assert devrun.demo_password(layout) == first
    assert (layout.password_file.stat().st_mode & 0o777) == 0o600


@pytest.mark.django_db
def test_demo_setup_twice_makes_one_login_and_one_project() -> None:
    devrun.demo_setup("first-demo-password-1")
    user, project = devrun.demo_setup("first-demo-password-1")

    assert User.objects.filter(username="demo").count() == 1
    assert Project.objects.count() == 1
    assert Membership.objects.get(project=project).user == user
    assert Membership.objects.get(project=project).role == Role.OWNER
    assert project.brief
    assert project.taste_notes
    assert project.manufacturability
    assert authenticate(LOGIN_REQUEST, username="demo", password="first-demo-password-1") == user


@pytest.mark.django_db
def test_demo_setup_follows_a_new_password_file_without_a_second_project() -> None:
    devrun.demo_setup("first-demo-password-1")
    user, _ = devrun.demo_setup("second-demo-password-2")
    assert authenticate(LOGIN_REQUEST, username="demo", password="second-demo-password-2") == user
    assert authenticate(LOGIN_REQUEST, username="demo", password="first-demo-password-1") is None
    assert Project.objects.count() == 1


def test_stop_with_nothing_running_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "artcritic.devrun", "--stop", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "nothing of a previous run was running" in result.stdout


def test_a_stale_pid_file_of_another_program_is_not_signalled(tmp_path: Path) -> None:
    # A PID file whose number now belongs to an unrelated process (here: a sleep).
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        layout = devrun.Layout(tmp_path)
        layout.pids.mkdir(parents=True)
        layout.pid_file("web").write_text(f"{stranger.pid}\n")
        config = devrun.RunConfig(layout, 1, "opsstale", "sim-32gb")
        assert devrun.stop(config) == 0
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


# --- end to end ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Output:
    """Collects a process's output lines on a thread, so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def wait_for(self, text: str, timeout: float, process: subprocess.Popen[str]) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in devrun's output:\n{''.join(self.lines)}")


def _wait_for_log(path: Path, *words: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if any(all(word in line for word in words) for line in text.splitlines()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path.name} never logged {words}:\n{text[-3000:]}")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.fixture
def devrun_env() -> dict[str, str]:
    """Environment for a devrun that shares nothing with a developer's `make run`."""
    database = settings.DATABASES["default"]
    assert database["NAME"].startswith("test_"), "needs pytest-django's test database"
    host, port = database["HOST"] or "127.0.0.1", database["PORT"] or 5432
    env = dict(os.environ)
    env.update(
        # The test database pytest-django already migrated: migrate is then a quick no-op.
        DATABASE_URL=f"postgres://{database['USER']}@{host}:{port}/{database['NAME']}",
        # Own Redis database and channel prefix: its workers never take another run's tasks.
        REDIS_URL="redis://127.0.0.1:6379/11",
        ARTCRITIC_CHANNEL_PREFIX=f"ops{uuid.uuid4().hex[:8]}",
        ARTCRITIC_SIM_TIME_SCALE="0.01",
    )
    return env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_devrun_serves_the_login_page_and_ctrl_c_stops_every_child(
    tmp_path: Path, devrun_env: dict[str, str]
) -> None:
    port, gpu, run_dir = _free_port(), f"ops{uuid.uuid4().hex[:6]}", tmp_path / "run"
    argv = [sys.executable, "-m", "artcritic.devrun", "--port", str(port), "--gpu", gpu]
    argv += ["--run-dir", str(run_dir)]
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=devrun_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _Output(process)
    pids: dict[str, int] = {}
    try:
        url_line = output.wait_for("http://", 60, process)
        assert f"http://127.0.0.1:{port}/" in url_line
        password = (run_dir / "demo-password").read_text().strip()
        assert password in output.wait_for("login: demo", 5, process)
        for name in ("web", "gpu-worker", "default-worker"):
            pids[name] = int((run_dir / "pids" / f"devrun-{name}.pid").read_text())
            assert not _gone(pids[name]), name

        # Both workers got as far as consuming their queues (Celery logs "<name>@host ready.").
        for name, queue_name in (("gpu-worker", f"gpu.{gpu}@"), ("default-worker", "default@")):
            _wait_for_log(
                run_dir / "logs" / f"devrun-{name}.log", queue_name, " ready.", timeout=45
            )

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=10) as response:
            assert response.status == 200
            assert b"csrfmiddlewaretoken" in response.read()

        # A crashed web server is restarted alone: the workers (and a GPU job) keep running.
        os.kill(pids["web"], signal.SIGKILL)
        output.wait_for("restarted web", 30, process)
        new_web = int((run_dir / "pids" / "devrun-web.pid").read_text())
        assert new_web != pids["web"]
        deadline = time.monotonic() + 30
        while not devrun.web_answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert devrun.web_answers(port)
        for name in ("gpu-worker", "default-worker"):
            assert not _gone(pids[name]), f"{name} stopped when the web server crashed"
        pids["web"] = new_web

        again = subprocess.run(
            argv, cwd=ROOT, env=devrun_env, capture_output=True, text=True, timeout=60, check=False
        )
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert password in again.stdout

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        for name, pid in pids.items():
            assert _gone(pid), f"{name} (pid {pid}) still runs after Ctrl-C"
        assert not list((run_dir / "pids").glob("devrun-*.pid"))
        assert time.monotonic() - started < 90
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in pids.values():
            if not _gone(pid):
                os.killpg(pid, signal.SIGKILL)
        process.wait(timeout=10)
        _forget_queue(devrun_env["REDIS_URL"], f"gpu.{gpu}")


def _forget_queue(redis_url: str, queue: str) -> None:
    """Drop the run's own queue and its bindings, so test runs leave Redis as they found it."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)


# --- two checkouts side by side -----------------------------------------------------------


def _listener() -> socket.socket:
    """A socket listening on a free loopback port: another program holding that port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_port_another_program_holds_is_not_taken_and_the_choice_is_kept(
    tmp_path: Path,
) -> None:
    layout = devrun.Layout(tmp_path)
    with _listener() as squatter:
        held = squatter.getsockname()[1]
        chosen = devrun.port_choose(layout, "web", held)
        assert chosen != held
        assert not devrun.port_taken(chosen)
    assert json.loads(layout.ports_file.read_text()) == {"web": chosen}
    # The next run keeps its URL, even after the preferred port came free again.
    assert devrun.port_choose(layout, "web", held) == chosen


def test_a_free_preferred_port_is_used_and_recorded(tmp_path: Path) -> None:
    layout = devrun.Layout(tmp_path)
    preferred = _free_port()
    assert devrun.port_choose(layout, "sim-32gb.comfyui", preferred) == preferred
    assert json.loads(layout.ports_file.read_text()) == {"sim-32gb.comfyui": preferred}


def test_simulators_get_this_checkouts_ports_in_a_copy_of_their_profile(tmp_path: Path) -> None:
    shipped = ROOT / "profiles" / "sim-32gb.toml"
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    # A profile whose simulator ports another checkout's `make run` already holds.
    with _listener() as comfy, _listener() as critic:
        held = (comfy.getsockname()[1], critic.getsockname()[1])
        text = shipped.read_text()
        text = text.replace('"http://127.0.0.1:18188"', f'"http://127.0.0.1:{held[0]}"')
        text = text.replace('"http://127.0.0.1:18000"', f'"http://127.0.0.1:{held[1]}"')
        (profiles / "sim-32gb.toml").write_text(text)
        shutil.copy(ROOT / "profiles" / "rtx5090-32gb.toml", profiles)
        layout = devrun.Layout(tmp_path / "run")

        paths = devrun.profile_paths(layout, profiles)

    by_name = {path.name: path for path in paths}
    # A real-hardware profile (docker driver) is loaded as shipped.
    assert by_name["rtx5090-32gb.toml"] == profiles / "rtx5090-32gb.toml"
    copy = by_name["sim-32gb.toml"]
    assert copy.parent == layout.profiles
    profile, _ = profile_read(copy)
    ports = json.loads(layout.ports_file.read_text())
    assert profile.name == "sim-32gb"
    assert profile.runtimes.comfyui.url == f"http://127.0.0.1:{ports['sim-32gb.comfyui']}"
    assert profile.runtimes.critic.url == f"http://127.0.0.1:{ports['sim-32gb.critic']}"
    assert set(held).isdisjoint(ports.values())
    # Only the ports changed: the rest of the profile is the shipped one.
    original, _ = profile_read(profiles / "sim-32gb.toml")
    assert profile.model_dump(exclude={"runtimes"}) == original.model_dump(exclude={"runtimes"})
    assert "Written by `make run` from sim-32gb.toml" in copy.read_text()


def test_profiles_whose_ports_are_free_load_from_the_shipped_files(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (ROOT / "profiles" / "sim-32gb.toml").read_text()
    text = text.replace('"http://127.0.0.1:18188"', f'"http://127.0.0.1:{_free_port()}"')
    text = text.replace('"http://127.0.0.1:18000"', f'"http://127.0.0.1:{_free_port()}"')
    (profiles / "sim-32gb.toml").write_text(text)
    assert devrun.profile_paths(devrun.Layout(tmp_path / "run"), profiles) == [
        profiles / "sim-32gb.toml"
    ]
