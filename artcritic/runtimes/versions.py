"""The runtime versions artcritic was checked against, and a pure check of a reported one.

ComfyUI: the client was run against a real ComfyUI 0.3.64 (on CPU) and its answers
recorded; 0.3.68's newer shapes (missing_node_type, UUID-only prompt ids) were read from
source. vLLM: 0.34.0 was read from its wheel; the wordings of 0.11 to 0.33 are understood
too (shared/protocols.md 2.3). Outside these ranges a runtime may answer differently, so
the doctor warns and names the next step: run the conformance suite against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHECKED", "VersionCheck", "version_check", "version_parse"]


@dataclass(frozen=True)
class CheckedRange:
    """Inclusive range; ``last`` may name only major.minor (every patch release of it)."""

    label: str
    first: tuple[int, ...]
    last: tuple[int, ...]

    def words(self) -> str:
        last = ".".join(map(str, self.last)) + (".x" if len(self.last) == 2 else "")
        return f"{self.label} {'.'.join(map(str, self.first))} to {last}"


CHECKED: dict[str, CheckedRange] = {
    "comfyui": CheckedRange("ComfyUI", (0, 3, 64), (0, 3, 68)),
    "critic": CheckedRange("vLLM", (0, 11, 0), (0, 34)),
}

_NUMBERS = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class VersionCheck:
    """Whether a reported version is inside the checked range, in words."""

    ok: bool
    known: bool
    sentence: str


def version_parse(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from "0.34.0", "v0.3.64", "0.11.1+cu128", "0.34.0rc1"; else None."""
    match = _NUMBERS.search(text)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def version_check(runtime: str, reported: str) -> VersionCheck:
    """Compare ``reported`` (e.g. "0.34.0") with the range checked for ``runtime``."""
    checked = CHECKED[runtime]
    parsed = version_parse(reported) if reported else None
    if parsed is None:
        return VersionCheck(
            ok=False,
            known=False,
            sentence=f"{checked.label} did not report a version artcritic can read "
            f"({reported or 'none'}); it was checked against {checked.words()}.",
        )
    upper = parsed[: len(checked.last)]
    inside = checked.first <= parsed and upper <= checked.last
    where = "within" if inside else "OUTSIDE"
    return VersionCheck(
        ok=inside,
        known=True,
        sentence=f"{checked.label} {reported} is {where} the range artcritic was checked "
        f"against ({checked.words()}).",
    )
