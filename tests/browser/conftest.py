"""The real web server (artcritic.webserver) on the test database, and Debian's Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import AbstractUser
from django.db import connection
from django.test import Client
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from artcritic.devstack import CHROMIUM, CHROMIUM_ARGS
from artcritic.webserver import web_argv
from tests.factories import PASSWORD, user_make

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}
SERVER_START_SECONDS = 60


def element_shot(element: Locator, path: Path) -> None:
    """Screenshot one element of a live page. The page may swap a panel for a fresh copy
    (its refresh after connecting) between finding and shooting it; the locator finds the
    copy on the next try, a few times at most."""
    for attempt in range(3):
        try:
            element.screenshot(path=path)
            return
        except PlaywrightError as error:
            swapped = "not attached" in str(error) or "not visible" in str(error)
            if not swapped or attempt == 2:
                raise
            expect(element).to_be_visible()  # the fresh copy, once it is laid out


def server_user_make(username: str) -> AbstractUser:
    """A user the server can sign in: tests hash with MD5 for speed, the server does not accept it.

    Few iterations keep it fast; Django re-hashes at full strength on the first login.
    """
    user = user_make(username)
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "browser-salt", iterations=1000)
    user.save(update_fields=["password"])
    return user


def sign_in(page: Page, username: str) -> None:
    """Sign in through the login page, as a designer does; ends on the project list."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()


def session_cookie(context: BrowserContext, server_url: str, user: AbstractUser) -> None:
    """Sign ``user`` in for this browser context with a real session row (no login page)."""
    client = Client()
    client.force_login(user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": value, "url": server_url}])


def in_thread[T](work: Callable[[], T]) -> T:
    """Run ``work`` in a thread of its own, as a worker process would publish: Playwright's
    sync API keeps an event loop in the test thread, where publishing cannot run."""

    def work_then_close() -> T:
        try:
            return work()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work_then_close).result(timeout=60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url() -> str:
    """The pytest-django test database, as a URL the server subprocess can be given."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"web server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the web server did not listen on 127.0.0.1:{port}:\n{log.read_text()}")


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the server; a test module overrides it (e.g. ARTCRITIC_GPU)."""
    return {}


@pytest.fixture
def app_server(
    transactional_db: None, s3_bucket: str, output_dir: Path, server_env: dict[str, str]
) -> Iterator[str]:
    """The web server on this checkout, a free loopback port; rows committed by the test show."""
    port = _free_port()
    log = output_dir / f"browser-web-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artcritic.settings",
        "DATABASE_URL": _database_url(),
        "S3_BUCKET": s3_bucket,
        # Same channel-layer prefix as this test run, so events reach the server's sockets.
        "ARTCRITIC_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "ARTCRITIC_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
        **server_env,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            web_argv(port),
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(process, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium. Playwright's sync API keeps an event loop in this thread, so the
    ORM calls of these tests are allowed explicitly, for this module only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def page(browser: Browser, app_server: str) -> Iterator[Page]:
    """A fresh browser context (no cookies) pointed at the server."""
    context = browser.new_context(base_url=app_server, viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshots(page: Page, output_dir: Path, name: str) -> None:
    """Save the page at desktop and at 375 px wide, and fail if the phone layout overflows."""
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    page.screenshot(path=output_dir / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.screenshot(path=output_dir / f"{name}-375.png", full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    assert overflow <= PHONE["width"], f"{name} is {overflow}px wide at 375px"
