"""Taste notes the Critic proposes: asked of the simulated Critic over its real protocol,
only while it is resident; accepted, edited or discarded by a member, audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from artcritic.audit.models import AuditEvent
from artcritic.critic.models import ProposalStatus, TasteProposal
from artcritic.critic.taste import (
    Proposed,
    TasteRefused,
    proposals_parse,
    taste_decide,
    taste_propose,
)
from artcritic.gpu.models import Gpu, HardwareProfile, RuntimeState, RuntimeStatus
from artcritic.studio.models import Project
from tests.factories import profile_load, project_make, prompt_make, request_make, user_make
from tests.factories_media import decision_make, image_make
from tests.simproc import start_sim

pytestmark = pytest.mark.django_db
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
HOSTILE = '<script>alert("x")</script> keep handles matte'


@pytest.fixture
def olive() -> AbstractUser:
    profile_load()
    return user_make("olive")


@pytest.fixture
def project(olive: AbstractUser) -> Project:
    return project_make(owner=olive, name="Kettles", taste_notes="- no chrome")


@pytest.fixture
def client(olive: AbstractUser) -> Client:
    client = Client()
    client.force_login(olive)
    return client


def decided(project: Project, olive: AbstractUser) -> None:
    for i, (verdict, note) in enumerate(
        [("reject", "spout too thin"), ("approve", "matte handle is right"), ("reject", "")]
    ):
        image = image_make(request_make(prompt_make(project, text=f"kettle {i}")))
        decision_make(image, olive, verdict=verdict, note=note)


def resident(runtime: str, status: str = RuntimeStatus.READY) -> None:
    RuntimeState.objects.update_or_create(
        gpu=Gpu.objects.get(name="sim0"),
        runtime=runtime,
        defaults={"status": status, "status_since": timezone.now()},
    )


@pytest.fixture
def critic_sim(tmp_path: Path) -> Iterator[str]:
    """The simulated vLLM on a free port, named as the active profile's Critic."""
    env = {
        "ARTCRITIC_SIM_DIR": str(tmp_path),
        "ARTCRITIC_SIM_TIME_SCALE": "0.01",
        "VLLM_SERVER_DEV_MODE": "1",
    }
    flags = (
        "--model", MODEL, "--gpu-memory-utilization", "0.7", "--max-model-len", "8192",
        "--max-num-seqs", "4", "--enable-sleep-mode",
    )  # fmt: skip
    sim = start_sim("critic", "--gpu", f"taste-{uuid.uuid4().hex[:8]}", *flags, env=env, timeout=60)
    try:
        row = HardwareProfile.objects.get(name="sim-32gb")
        row.data["runtimes"]["critic"]["url"] = sim.url
        row.save(update_fields=["data"])
        yield sim.url
    finally:
        sim.stop()


def ask(client: Client, project: Project) -> str:
    response = client.post(reverse("studio:taste_ask", args=[project.pk]), follow=True)
    return response.content.decode()


def test_the_resident_critic_proposes_and_nothing_changes_the_notes_by_itself(
    project: Project, olive: AbstractUser, client: Client, critic_sim: str
) -> None:
    decided(project, olive)
    resident("critic")
    html = ask(client, project)
    proposals = list(TasteProposal.objects.filter(project=project))
    assert proposals, html
    assert all(p.status == ProposalStatus.PROPOSED for p in proposals)
    assert "nothing changes until you do" in html
    project.refresh_from_db()
    assert project.taste_notes == "- no chrome"
    event = AuditEvent.objects.get(action="taste.proposed")
    assert event.data["decisions_read"] == 3
    assert sorted(event.data["proposals"]) == sorted(p.pk for p in proposals)
    assert event.data["prompt_tokens"] > 0


def test_asking_while_comfyui_holds_the_gpu_is_refused_and_sends_nothing(
    project: Project, olive: AbstractUser, client: Client
) -> None:
    decided(project, olive)
    resident("comfyui")
    resident("critic", RuntimeStatus.SLEEPING)
    html = ask(client, project)
    assert (
        "The Critic is not loaded on GPU sim0 (it is sleeping; ComfyUI (Artist) holds it)" in html
    )
    assert not TasteProposal.objects.exists()
    assert not AuditEvent.objects.filter(action="taste.proposed").exists()


def test_asking_without_any_decision_is_refused(project: Project, olive: AbstractUser) -> None:
    resident("critic")
    with pytest.raises(TasteRefused, match="has not decided any image"):
        taste_propose(project, olive)  # type: ignore[arg-type]


def proposal(project: Project, text: str = "prefer matte handles") -> TasteProposal:
    return TasteProposal.objects.create(project=project, text=text, why="two notes say so")


def decide(client: Client, project: Project, p: TasteProposal, **data: str) -> str:
    url = reverse("studio:taste_decide", args=[project.pk, p.pk])
    return client.post(url, data, follow=True).content.decode()


def test_accepting_appends_the_note_once_and_a_second_click_changes_nothing(
    project: Project, olive: AbstractUser, client: Client
) -> None:
    p = proposal(project)
    html = decide(client, project, p, action="accept", text="prefer matte handles")
    assert "Added to the taste notes" in html
    project.refresh_from_db()
    assert project.taste_notes == "- no chrome\n- prefer matte handles"
    html = decide(client, project, p, action="accept", text="prefer matte handles")
    assert "already accepted by olive; nothing changed" in html
    project.refresh_from_db()
    assert project.taste_notes == "- no chrome\n- prefer matte handles"
    event = AuditEvent.objects.get(action="taste.accepted")
    assert event.data == {
        "proposal": p.pk,
        "proposed": "prefer matte handles",
        "final": "prefer matte handles",
    }
    assert event.actor_id == olive.pk


def test_edited_words_are_what_is_added_and_audited_as_an_edit(
    project: Project, client: Client
) -> None:
    p = proposal(project)
    decide(client, project, p, action="accept", text=f"  {HOSTILE}\n ")
    project.refresh_from_db()
    assert project.taste_notes.endswith(f"- {HOSTILE}")
    p.refresh_from_db()
    assert (p.status, p.final_text) == (ProposalStatus.EDITED, HOSTILE)
    assert AuditEvent.objects.get(action="taste.edited").data["final"] == HOSTILE
    html = client.get(reverse("studio:project_feedback", args=[project.pk])).content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html


def test_discarding_leaves_the_notes_and_is_audited(project: Project, client: Client) -> None:
    p = proposal(project)
    assert "the taste notes are unchanged" in decide(client, project, p, action="discard")
    project.refresh_from_db()
    assert project.taste_notes == "- no chrome"
    p.refresh_from_db()
    assert p.status == ProposalStatus.DISCARDED
    assert p.decided_at is not None
    assert AuditEvent.objects.filter(action="taste.discarded").count() == 1


@pytest.mark.parametrize(
    ("action", "text", "said"),
    [
        ("edit", "   ", "The edited note is empty"),
        ("edit", "x" * 1001, "The edited note is 1001 characters; at most 1000"),
        ("bless", "", "Unknown action 'bless'"),
    ],
)
def test_bad_decisions_change_nothing(
    project: Project, olive: AbstractUser, action: str, text: str, said: str
) -> None:
    p = proposal(project)
    with pytest.raises(TasteRefused, match=said):
        taste_decide(p.pk, project=project, user=olive, action=action, text=text)  # type: ignore[arg-type]
    p.refresh_from_db()
    project.refresh_from_db()
    assert p.status == ProposalStatus.PROPOSED
    assert project.taste_notes == "- no chrome"


def test_notes_that_would_overflow_are_refused_with_the_numbers(
    project: Project, olive: AbstractUser
) -> None:
    Project.objects.filter(pk=project.pk).update(taste_notes="n" * 7990)
    project.refresh_from_db()
    p = proposal(project)
    with pytest.raises(TasteRefused, match="would be 8013 characters; at most 8000"):
        taste_decide(p.pk, project=project, user=olive, action="accept")  # type: ignore[arg-type]


def test_only_members_ask_or_decide_and_only_by_post(project: Project) -> None:
    p = proposal(project)
    outsider = Client()
    outsider.force_login(user_make("mallory"))
    assert outsider.post(reverse("studio:taste_ask", args=[project.pk])).status_code == 404
    url = reverse("studio:taste_decide", args=[project.pk, p.pk])
    assert outsider.post(url, {"action": "accept"}).status_code == 404
    member = Client()
    member.force_login(project.memberships.get().user)
    assert member.get(reverse("studio:taste_ask", args=[project.pk])).status_code == 405
    other = project_make(owner=project.memberships.get().user)
    wrong = reverse("studio:taste_decide", args=[other.pk, p.pk])
    assert (
        "No such proposal in this project"
        in member.post(wrong, {"action": "accept"}, follow=True).content.decode()
    )
    p.refresh_from_db()
    assert p.status == ProposalStatus.PROPOSED


def test_an_answer_outside_the_schema_is_refused_whole() -> None:
    answer = {
        "proposals": [
            {"text": "  prefer   matte ", "why": "notes"},
            {"text": "Prefer matte", "why": "dup"},
            {"text": "No chrome", "why": "already a note"},
            {"text": "", "why": "blank"},
        ]
    }
    assert proposals_parse(json.dumps(answer), "- no chrome\n") == [
        Proposed("prefer matte", "notes")
    ]
    bad_answers = [
        "not json",
        "[]",
        '{"proposals": 3}',
        '{"proposals": [{"text": 1, "why": ""}]}',
        json.dumps({"proposals": [{"text": "a", "why": "b"}] * 6}),
        json.dumps({"proposals": [{"text": "a" * 301, "why": "b"}]}),
    ]
    for bad in bad_answers:
        with pytest.raises(TasteRefused, match="nothing was proposed"):
            proposals_parse(bad, "")
