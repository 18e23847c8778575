"""An operator's check of a live vLLM Critic, step by step, using only vLLM's own routes.

Called by ``manage.py runtime_doctor``. It reaches /health, reads /v1/models,
asks /is_sleeping where sleep mode is enabled, then runs one real review of a
small generated image with the verdict schema and prints what came back.
"""

from __future__ import annotations

import io
from typing import TextIO

from PIL import Image, ImageDraw

from artcritic.runtimes.critic import (
    CriticClient,
    CriticSleepModeDisabled,
    CriticVerdict,
    ModelCard,
    ReviewContext,
)
from artcritic.runtimes.critic_prompt import prompt_build
from artcritic.runtimes.errors import RuntimeFailure

OK, FAILED = 0, 1
_LABEL_WIDTH = 12

DOCTOR_CONTEXT = ReviewContext(
    prompt="a matte teal electric kettle on a white table, studio product shot",
    negative="text, watermark, people",
    brief="runtime_doctor check: small kitchen appliances for compact flats",
    taste_notes="calm, matte surfaces, rounded forms, one accent colour",
    manufacturability="injection-moulded polypropylene shell, no undercuts, 2 mm walls",
    prior_decisions=[],
)


def doctor_image() -> bytes:
    """A small, deterministic product sketch as PNG: a teal kettle on white."""
    img = Image.new("RGB", (384, 384), (245, 245, 242))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((110, 120, 270, 320), radius=40, fill=(30, 140, 140))
    draw.rounded_rectangle((270, 170, 310, 270), radius=18, outline=(30, 140, 140), width=14)
    draw.polygon([(110, 160), (60, 130), (70, 120), (115, 140)], fill=(30, 140, 140))
    draw.rectangle((150, 100, 230, 122), fill=(40, 40, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _line(out: TextIO, label: str, text: str) -> None:
    out.write(f"  {label:<{_LABEL_WIDTH}} {text}\n")


def _fail(out: TextIO, label: str, error: RuntimeFailure) -> int:
    _line(out, label, f"FAILED: {error.reason}")
    _line(out, "", f"next: {error.next_action}")
    out.write("Critic NOT OK\n")
    return FAILED


def _pick_model(cards: list[ModelCard], wanted: str | None) -> ModelCard:
    if not cards:
        raise RuntimeFailure(
            "vLLM lists no served model.", "Check the Critic's start command and its log."
        )
    for card in cards:
        if wanted is None or card.id == wanted:
            return card
    served = ", ".join(c.id for c in cards)
    raise RuntimeFailure(
        f"The model {wanted!r} is not served here; vLLM serves: {served}.",
        "Set the profile's served_model_name to the served name, or start vLLM with "
        f"--served-model-name {wanted}.",
    )


def _sleep_state(out: TextIO, client: CriticClient) -> None:
    try:
        asleep = client.is_sleeping()
    except CriticSleepModeDisabled:
        _line(
            out,
            "sleep mode",
            "not enabled (needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1); "
            "the Critic can only be released by stopping it",
        )
        return
    if asleep:
        raise RuntimeFailure(
            "The Critic is asleep; no review was sent (a request to a sleeping vLLM crashes its "
            "engine, issue #15483).",
            "Wake it (POST /wake_up, plus reload_weights after a level-2 sleep) or let the GPU "
            "worker do it, then run the doctor again.",
        )
    _line(out, "sleep mode", "enabled; awake")


def _report_review(out: TextIO, verdict: CriticVerdict) -> None:
    _line(
        out,
        "review",
        f"ok in {verdict.latency_ms} ms: {verdict.prompt_tokens} prompt + "
        f"{verdict.completion_tokens} completion tokens "
        f"(estimated prompt {verdict.estimated_prompt_tokens})",
    )
    scores = ", ".join(f"{k} {v}" for k, v in verdict.scores.items())
    _line(out, "verdict", f"{verdict.verdict} — {scores}")
    for key, text in verdict.rationale.items():
        _line(out, "", f"{key}: {text[:160]}")


def doctor_critic(url: str, *, model: str | None, out: TextIO, timeout: float) -> int:
    """Check the Critic at ``url``; print each step to ``out``; 0 when a real review passed."""
    out.write(f"Critic at {url}\n")
    step = "health"
    try:
        probe = CriticClient(url, model=model or "", timeout=timeout)
        probe.health_check()
        _line(out, step, "ok (GET /health answered 200)")
        step = "models"
        card = _pick_model(probe.models(), model)
        _line(out, step, f"{card.id} (max_model_len {card.max_model_len})")
        client = CriticClient(url, model=card.id, timeout=timeout)
        step = "sleep mode"
        _sleep_state(out, client)
        step = "prompt"
        image = doctor_image()
        estimate = prompt_build(image, DOCTOR_CONTEXT).estimated_tokens
        _line(out, step, f"≈{estimate} tokens with a 384×384 test image")
        step = "review"
        verdict = client.review(image, DOCTOR_CONTEXT, seed=0)
    except RuntimeFailure as error:
        return _fail(out, step, error)
    _report_review(out, verdict)
    out.write("Critic OK\n")
    return OK
