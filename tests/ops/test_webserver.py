"""The web server's command line: one place says how uvicorn runs artcritic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from artcritic.webserver import DEFAULT_APP, web_argv
from tests.ops.conftest import ROOT


def test_the_command_names_this_module_the_address_and_only_what_differs() -> None:
    assert web_argv(8123, python="py") == [
        "py", "-m", "artcritic.webserver", "--host", "127.0.0.1", "--port", "8123",
    ]  # fmt: skip
    argv = web_argv(9000, host="10.0.0.5", app="tests.live.live_asgi:application", workers=3)
    assert argv[3:] == [
        "--host", "10.0.0.5", "--port", "9000", "--workers", "3",
        "--app", "tests.live.live_asgi:application",
    ]  # fmt: skip
    assert DEFAULT_APP == "artcritic.asgi:application"


@pytest.mark.parametrize(
    ("arguments", "env", "words"),
    [
        (["--workers", "0"], {}, "--workers 0: at least 1 process is needed"),
        (["--port", "70000"], {}, "--port 70000 is not a TCP port"),
        ([], {"ARTCRITIC_WEB_WORKERS": "two"}, "ARTCRITIC_WEB_WORKERS='two' is not an integer"),
        ([], {"ARTCRITIC_WEB_WORKERS": "0"}, "ARTCRITIC_WEB_WORKERS=0 is below the minimum of 1"),
    ],
)
def test_a_bad_setting_stops_it_with_the_reason(
    arguments: list[str], env: dict[str, str], words: str
) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "artcritic.webserver", *arguments],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert words in finished.stderr
