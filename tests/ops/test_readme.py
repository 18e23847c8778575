"""The README documents every environment variable the settings and compose.yaml read."""

from __future__ import annotations

import re

from tests.ops.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _documented(name: str) -> bool:
    # A row of one of the README's variable tables starts with the name in backticks.
    return f"| `{name}` |" in README


def test_every_settings_variable_is_in_the_readme_table() -> None:
    settings_py = (ROOT / "artcritic" / "settings.py").read_text()
    names = set(re.findall(r'env_[a-z]+\(\s*"([A-Z][A-Z0-9_]*)"', settings_py))
    assert {"ARTCRITIC_DEBUG", "S3_PRESIGN_SECONDS"} <= names  # the scan finds them
    assert sorted(n for n in names if not _documented(n)) == []


def test_every_compose_variable_is_in_the_readme() -> None:
    compose = (ROOT / "compose.yaml").read_text()
    names = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", compose))
    assert "ARTCRITIC_SECRET_KEY" in names
    assert sorted(n for n in names if not _documented(n)) == []


def test_the_readme_names_both_commands_and_the_python_floor() -> None:
    for text in ("make run", "make test", "make stop", "make lint", "Python ≥ 3.12"):
        assert text in README
