"""export_decisions and the members-only download: contents, formats, permissions."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from artcritic.studio.models import Image, Project
from artcritic.studio.services import decision_record, decision_undo
from tests.factories import project_make, prompt_make, request_make, sign_in, user_make
from tests.factories_media import decision_make, image_make, review_make

pytestmark = pytest.mark.django_db

HOSTILE_NOTE = '=HYPERLINK("http://evil.test","click") <script>x</script>\nsecond line, "quoted"'


@pytest.fixture
def olive() -> AbstractUser:
    return user_make("olive")


@pytest.fixture
def bo() -> AbstractUser:
    return user_make("bo")


@pytest.fixture
def project(olive: AbstractUser, bo: AbstractUser) -> Project:
    return project_make(bo, owner=olive, name="Kettles")


@pytest.fixture
def decided(project: Project, olive: AbstractUser, bo: AbstractUser) -> list[Image]:
    """Two images of one request: the first reviewed twice and decided by both (olive
    changed her mind, bo's note is hostile), the second neither reviewed nor decided."""
    prompt = prompt_make(project, olive, text="a copper kettle", negative_text="text")
    request = request_make(prompt, count=2, seed=9, steps=28, cfg=3.5)
    first, second = image_make(request, 0), image_make(request, 1)
    review_make(first, verdict="reject", score_taste=3)
    shown = decision_make(image_make(request_make(prompt, seed=1)), olive)
    latest = review_make(first, verdict="approve", score_taste=8, score_consistency=9)
    latest.shown_decisions.add(shown)
    decision_record(image=first, user=olive, verdict="reject", note="too shiny")
    decision_record(image=first, user=olive, verdict="approve", note="fine after all")
    decision_make(first, bo, verdict="reject", note=HOSTILE_NOTE)
    return [first, second]


def export(project: Project | str, fmt: str) -> str:
    out = io.StringIO()
    call_command("export_decisions", str(getattr(project, "pk", project)), format=fmt, stdout=out)
    return out.getvalue()


def test_jsonl_holds_keys_prompt_settings_every_decision_and_every_review(
    project: Project, decided: list[Image]
) -> None:
    records = [json.loads(line) for line in export(project, "jsonl").splitlines()]
    assert [r["image"] for r in records] == sorted(r["image"] for r in records)
    first = next(r for r in records if r["image"] == decided[0].pk)
    assert first["object_key"] == decided[0].object_key
    assert first["thumbnail_key"] == decided[0].thumbnail_key
    assert (first["prompt"], first["negative_prompt"], first["seed"]) == (
        "a copper kettle",
        "text",
        9,
    )
    assert first["settings"]["steps"] == 28
    assert first["settings"]["cfg"] == 3.5
    assert first["team"] == {"approvals": 1, "rejections": 1}
    assert [(d["user"], d["verdict"], d["note"], d["current"]) for d in first["decisions"]] == [
        ("olive", "reject", "too shiny", False),
        ("olive", "approve", "fine after all", True),
        ("bo", "reject", HOSTILE_NOTE, True),
    ]
    assert [(r["verdict"], r["scores"]["taste"]) for r in first["reviews"]] == [
        ("reject", 3),
        ("approve", 8),
    ]
    assert len(first["reviews"][1]["shown_decisions"]) == 1
    # Two decided images are too few to calibrate: said as null, never a made-up verdict.
    assert first["reviews"][1]["calibrated"] is None
    second = next(r for r in records if r["image"] == decided[1].pk)
    assert (second["decisions"], second["reviews"]) == ([], [])


def test_jsonl_carries_calibrated_verdicts_once_the_team_has_decided_enough(
    project: Project, olive: AbstractUser
) -> None:
    for taste in (1, 2, 3, 7, 8, 9) * 2:
        image = image_make(request_make(prompt_make(project)))
        review_make(image, verdict="approve", score_taste=taste)
        decision_make(image, olive, verdict="approve" if taste >= 7 else "reject")
    records = [json.loads(line) for line in export(project, "jsonl").splitlines()]
    calibrated = {
        r["reviews"][0]["scores"]["taste"]: r["reviews"][0]["calibrated"]["verdict"]
        for r in records
    }
    assert calibrated == {
        1: "reject",
        2: "reject",
        3: "reject",
        7: "approve",
        8: "approve",
        9: "approve",
    }


def test_csv_has_one_line_per_decision_and_defuses_formulas(
    project: Project, decided: list[Image]
) -> None:
    rows = list(csv.DictReader(io.StringIO(export(project, "csv"))))
    first = [r for r in rows if r["image"] == str(decided[0].pk)]
    assert [(r["user"], r["verdict"], r["current"]) for r in first] == [
        ("olive", "reject", "no"),
        ("olive", "approve", "yes"),
        ("bo", "reject", "yes"),
    ]
    assert first[2]["note"] == "'" + HOSTILE_NOTE  # a spreadsheet shows it, never runs it
    assert {r["critic_verdict"] for r in first} == {"approve"}  # the latest review
    assert first[0]["score_taste"] == "8"
    assert first[0]["reviews"] == "2"
    assert json.loads(first[0]["settings"])["steps"] == 28
    undecided = [r for r in rows if r["image"] == str(decided[1].pk)]
    assert len(undecided) == 1
    assert undecided[0]["user"] == ""
    assert undecided[0]["critic_verdict"] == ""


def test_the_command_takes_a_name_writes_a_file_and_refuses_what_it_cannot_find(
    project: Project, decided: list[Image], tmp_path: Path
) -> None:
    assert export("Kettles", "jsonl") == export(project, "jsonl")
    target = tmp_path / "kettles.jsonl"
    call_command("export_decisions", "Kettles", format="jsonl", output=str(target))
    assert target.read_text() == export(project, "jsonl")
    with pytest.raises(CommandError, match="No project 'Teapots'"):
        export("Teapots", "jsonl")
    with pytest.raises(CommandError, match="No project '999999'"):
        export("999999", "jsonl")
    project_make(name="Kettles")
    with pytest.raises(CommandError, match="2 or more projects are named 'Kettles'"):
        export("Kettles", "jsonl")
    with pytest.raises(CommandError, match="format 'xml' is not one of jsonl, csv"):
        call_command("export_decisions", str(project.pk), format="xml")


def test_an_undo_shows_in_the_export(
    project: Project, decided: list[Image], olive: AbstractUser
) -> None:
    decision_undo(user=olive, project=project, expected_id=None)
    record = next(
        json.loads(line)
        for line in export(project, "jsonl").splitlines()
        if json.loads(line)["image"] == decided[0].pk
    )
    undone = [d for d in record["decisions"] if d["undone_at"] is not None]
    assert [(d["note"], d["current"]) for d in undone] == [("fine after all", False)]


# ---- The download ----


def download(client: Client, project: Project, **query: Any) -> Any:
    return client.get(reverse("studio:decisions_export", args=[project.pk]), query)


def test_members_download_the_same_data_set_as_the_command(
    project: Project, decided: list[Image]
) -> None:
    client = Client()
    sign_in(client, "bo")
    for fmt in ("jsonl", "csv"):
        response = download(client, project, format=fmt)
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith(
            f'attachment; filename="kettles-{project.pk}-decisions-'
        )
        assert response["Content-Disposition"].endswith(f'.{fmt}"')
        assert response["Cache-Control"] == "private, no-store"
        assert b"".join(response.streaming_content).decode() == export(project, fmt)


def test_the_download_is_for_members_only(project: Project, decided: list[Image]) -> None:
    outsider = Client()
    outsider.force_login(user_make("mallory"))
    assert download(outsider, project, format="csv").status_code == 404
    staff = Client()
    staff.force_login(user_make("root", is_staff=True, is_superuser=True))
    assert download(staff, project, format="csv").status_code == 404
    anonymous = download(Client(), project, format="csv")
    assert anonymous.status_code == 302
    assert "/login/" in anonymous["Location"]


@pytest.mark.parametrize("fmt", ["xml", "", "csv\x00", "<script>", "j" * 500])
def test_an_unknown_format_is_refused_with_the_choices(
    project: Project, olive: AbstractUser, fmt: str
) -> None:
    client = Client()
    client.force_login(olive)
    response = download(client, project, format=fmt)
    assert response.status_code == 400
    assert "ask for format=jsonl or format=csv" in response.content.decode()
    assert client.post(reverse("studio:decisions_export", args=[project.pk])).status_code in (
        403,
        405,
    )
