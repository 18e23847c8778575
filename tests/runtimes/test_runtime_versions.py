"""The checked version ranges and the pure check the doctors use."""

from __future__ import annotations

import pytest

from artcritic.runtimes.versions import version_check, version_parse


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("0.34.0", (0, 34, 0)),
        ("v0.3.64", (0, 3, 64)),
        ("0.11.1+cu128", (0, 11, 1)),
        ("0.34.0rc1", (0, 34, 0)),
        ("0.3.64-sim", (0, 3, 64)),
        ("1.2", (1, 2, 0)),
        ("unknown", None),
        ("", None),
    ],
)
def test_versions_are_read_from_the_forms_runtimes_print(
    text: str, parsed: tuple[int, int, int] | None
) -> None:
    assert version_parse(text) == parsed


@pytest.mark.parametrize(
    ("runtime", "version", "inside"),
    [
        ("critic", "0.34.0", True),
        ("critic", "0.34.2", True),  # every patch release of 0.34
        ("critic", "0.11.0", True),
        ("critic", "0.16.0", True),
        ("critic", "0.10.2", False),
        ("critic", "0.35.0", False),
        ("comfyui", "0.3.64", True),
        ("comfyui", "0.3.68", True),
        ("comfyui", "0.3.63", False),
        ("comfyui", "0.3.69", False),
        ("comfyui", "0.4.0", False),
    ],
)
def test_the_checked_ranges_are_inclusive(runtime: str, version: str, inside: bool) -> None:
    check = version_check(runtime, version)
    assert check.ok is inside
    assert check.known
    assert ("within" if inside else "OUTSIDE") in check.sentence


def test_the_sentence_names_both_ends_of_the_range() -> None:
    assert version_check("critic", "0.35.1").sentence == (
        "vLLM 0.35.1 is OUTSIDE the range artcritic was checked against (vLLM 0.11.0 to 0.34.x)."
    )
    assert version_check("comfyui", "0.3.64").sentence == (
        "ComfyUI 0.3.64 is within the range artcritic was checked against "
        "(ComfyUI 0.3.64 to 0.3.68)."
    )


def test_an_unreadable_version_is_not_ok_and_says_so() -> None:
    check = version_check("critic", "")
    assert (check.ok, check.known) == (False, False)
    assert check.sentence == (
        "vLLM did not report a version artcritic can read (none); it was checked against vLLM "
        "0.11.0 to 0.34.x."
    )
