"""Taste notes the Critic proposes, and a member's accept, edit or discard of each.

Asking is a synchronous text-only request to the Critic, made only while the Critic is the
runtime resident on the GPU (ready or busy reviewing): a proposal never makes the GPU
swap away from a generation, and vLLM serves it beside running reviews. When the Critic
is not resident the request is refused with what holds the GPU and when to ask again.
Nothing the Critic says changes the brief: only a member's accept (or edit) appends a
proposal to the taste notes, and every outcome is audited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.critic.models import ProposalStatus, TasteProposal
from artcritic.failures import RuntimeFailure
from artcritic.gpu.models import RuntimeName, RuntimeState, RuntimeStatus
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.runtimes.critic import CriticClient
from artcritic.runtimes.critic_chat import critic_chat_json
from artcritic.studio.models import MAX_BRIEF_CHARS, MAX_NOTE_CHARS, HumanDecision, Project

SCHEMA_NAME = "taste_proposals"
MAX_PROPOSALS = 5
MAX_PROPOSAL_CHARS = 300
DECISIONS_READ = 40
ANSWER_TOKENS = 800
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "proposals": {
            "type": "array",
            "maxItems": MAX_PROPOSALS,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "maxLength": MAX_PROPOSAL_CHARS},
                    "why": {"type": "string", "maxLength": MAX_PROPOSAL_CHARS},
                },
                "required": ["text", "why"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["proposals"],
    "additionalProperties": False,
}


class TasteRefused(Exception):
    """Nothing was proposed or changed: ``reason`` with the numbers and ``next_action``."""

    def __init__(self, reason: str, next_action: str) -> None:
        self.reason = reason
        self.next_action = next_action
        super().__init__(f"{reason} Next: {next_action}")


@dataclass(frozen=True)
class Proposed:
    text: str
    why: str


def taste_messages(project: Project, decisions: list[HumanDecision]) -> list[dict[str, Any]]:
    """The question: the brief, the current taste notes and the recent decisions' notes."""
    lines = [
        f"- {d.get_verdict_display().lower()}d: “{d.image.prompt.text[:200]}”"
        + (f" — note: {d.note}" if d.note else "")
        for d in decisions
    ]
    system = (
        "You review product concept images for a design team. From the team's recent "
        "decisions and notes, propose short additions to the project's taste notes: rules "
        "the team applies that the notes do not say yet. Do not repeat what the notes say. "
        f"At most {MAX_PROPOSALS} proposals, each one sentence with a short reason."
    )
    user = (
        f"Brief:\n{project.brief or '(none)'}\n\nTaste notes now:\n"
        f"{project.taste_notes or '(none)'}\n\nRecent decisions, newest first:\n" + "\n".join(lines)
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def proposals_parse(content: str, existing_notes: str) -> list[Proposed]:
    """The Critic's answer as proposals; an answer outside the schema is refused whole
    (never half-used), blank or repeated proposals are dropped."""
    try:
        data = json.loads(content)
    except ValueError:
        raise TasteRefused(
            f"The Critic's answer is not JSON: {content[:120]!r}.",
            "ask again; nothing was proposed.",
        ) from None
    items = data.get("proposals") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) > MAX_PROPOSALS:
        raise TasteRefused(
            f"The Critic's answer has no list of at most {MAX_PROPOSALS} proposals.",
            "ask again; nothing was proposed.",
        )
    # The notes are written as "- rule" lines; compare the rules, not the bullets.
    seen = {line.strip().lstrip("-*• ").casefold() for line in existing_notes.splitlines()}
    result = []
    for item in items:
        text, why = (item.get("text"), item.get("why")) if isinstance(item, dict) else (None, None)
        if not isinstance(text, str) or not isinstance(why, str):
            raise TasteRefused(
                "A proposal in the Critic's answer lacks its text or reason.",
                "ask again; nothing was proposed.",
            )
        text, why = " ".join(text.split()), " ".join(why.split())
        if len(text) > MAX_PROPOSAL_CHARS or len(why) > MAX_PROPOSAL_CHARS:
            raise TasteRefused(
                f"A proposal is {max(len(text), len(why))} characters; at most "
                f"{MAX_PROPOSAL_CHARS} are allowed.",
                "ask again; nothing was proposed.",
            )
        key = text.casefold()
        if text and key not in seen:
            seen.add(key)
            result.append(Proposed(text, why))
    return result


def _critic_resident() -> CriticClient:
    """A client for the Critic if it is the runtime on the GPU now; TasteRefused otherwise."""
    try:
        gpu, profile = profile_active()
    except NoActiveProfile as exc:
        raise TasteRefused(
            f"No proposal was asked: {exc}",
            f"ask an admin to activate a hardware profile for GPU {settings.ARTCRITIC_GPU}.",
        ) from None
    states = {row.runtime: row for row in RuntimeState.objects.filter(gpu=gpu)}
    critic = states.get(RuntimeName.CRITIC)
    if critic is None or critic.status not in (RuntimeStatus.READY, RuntimeStatus.BUSY):
        holder = next(
            (
                name
                for name, row in states.items()
                if row.status in (RuntimeStatus.READY, RuntimeStatus.BUSY)
            ),
            None,
        )
        now = "nothing holds it" if holder is None else f"{RuntimeName(holder).label} holds it"
        state = "stopped" if critic is None else critic.get_status_display().lower()
        raise TasteRefused(
            f"The Critic is not loaded on GPU {gpu.name} (it is {state}; {now}). Proposals are "
            "asked only while the Critic is resident, so that asking never swaps the GPU away "
            "from generating.",
            "ask again while reviews run or just after (the GPU panel shows the Critic ready).",
        )
    cfg = profile.runtimes.critic
    return CriticClient(
        cfg.url,
        model=cfg.served_model_name or profile.critic.model,
        timeout=cfg.request_timeout_s,
        max_model_len=cfg.max_model_len,
    )


def taste_propose(project: Project, user: User) -> list[TasteProposal]:
    """Ask the resident Critic for taste-note proposals from the project's recent decisions."""
    decisions = list(
        HumanDecision.objects.filter(image__project=project, is_current=True)
        .select_related("image__prompt")
        .order_by("-created_at", "-id")[:DECISIONS_READ]
    )
    if not decisions:
        raise TasteRefused(
            "The team has not decided any image of this project yet: there is nothing to "
            "learn taste from.",
            "approve or reject some images (with notes), then ask again.",
        )
    client = _critic_resident()
    try:
        answer = critic_chat_json(
            client,
            taste_messages(project, decisions),
            name=SCHEMA_NAME,
            schema=SCHEMA,
            max_tokens=ANSWER_TOKENS,
        )
    except RuntimeFailure as exc:
        raise TasteRefused(f"The Critic did not answer: {exc.reason}", exc.next_action) from None
    proposed = proposals_parse(answer.content, project.taste_notes)
    with transaction.atomic():
        rows = [
            TasteProposal.objects.create(project=project, text=p.text, why=p.why) for p in proposed
        ]
        audit_record(
            "taste.proposed",
            f"{user.get_username()} asked the Critic for taste notes; it proposed {len(rows)} "
            f"from {len(decisions)} decisions",
            actor=user,
            project_id=project.pk,
            runtime=RuntimeName.CRITIC,
            data={
                "proposals": [r.pk for r in rows],
                "decisions_read": len(decisions),
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "latency_ms": answer.latency_ms,
            },
        )
    return rows


def taste_decide(
    proposal_id: int, *, project: Project, user: User, action: str, text: str = ""
) -> TasteProposal:
    """Accept (appending it to the taste notes), accept with edits, or discard a proposal.
    A second click finds it decided and is refused; so is a note that would overflow."""
    if action not in ("accept", "edit", "discard"):
        raise TasteRefused(f"Unknown action {action[:20]!r}.", "accept, edit or discard.")
    with transaction.atomic():
        proposal = (
            TasteProposal.objects.select_for_update()
            .filter(pk=proposal_id, project=project)
            .first()
        )
        if proposal is None:
            raise TasteRefused("No such proposal in this project.", "reload the page.")
        if proposal.status != ProposalStatus.PROPOSED:
            who = proposal.decided_by.get_username() if proposal.decided_by else "someone"
            raise TasteRefused(
                f"This proposal was already {proposal.get_status_display().lower()} by {who}; "
                "nothing changed.",
                "reload the page to see the taste notes now.",
            )
        final = proposal.text if action == "accept" else " ".join(text.split())
        status = {
            "accept": ProposalStatus.ACCEPTED,
            "edit": ProposalStatus.EDITED,
            "discard": ProposalStatus.DISCARDED,
        }[action]
        if action == "edit" and not final:
            raise TasteRefused("The edited note is empty.", "write the note, or discard it.")
        if len(final) > MAX_NOTE_CHARS:
            raise TasteRefused(
                f"The edited note is {len(final)} characters; at most {MAX_NOTE_CHARS}.",
                "shorten it and accept again.",
            )
        locked = Project.objects.select_for_update().get(pk=project.pk)
        if status != ProposalStatus.DISCARDED:
            notes = locked.taste_notes.rstrip() + "\n" if locked.taste_notes.strip() else ""
            notes += f"- {final}"
            if len(notes) > MAX_BRIEF_CHARS:
                raise TasteRefused(
                    f"The taste notes would be {len(notes)} characters; at most {MAX_BRIEF_CHARS}.",
                    "shorten the taste notes on the Brief tab, then accept again.",
                )
            locked.taste_notes = notes
            locked.save(update_fields=["taste_notes", "updated_at"])
        proposal.status = status
        proposal.final_text = "" if status == ProposalStatus.DISCARDED else final
        proposal.decided_by = user
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["status", "final_text", "decided_by", "decided_at"])
        audit_record(
            f"taste.{'edited' if action == 'edit' else action + 'ed'}",
            f"{user.get_username()} {proposal.get_status_display().lower()} the Critic's "
            f"proposal {proposal.pk}: {final[:80]!r}",
            actor=user,
            project_id=project.pk,
            data={"proposal": proposal.pk, "proposed": proposal.text, "final": proposal.final_text},
        )
    return proposal
