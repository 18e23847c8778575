"""An operator's check of a live vLLM Critic, step by step, using only vLLM's own routes.

Called by ``manage.py runtime_doctor``. It reaches /health, reads /version (warning when
outside the range artcritic was checked against) and /v1/models, checks sleep mode, counts
the test prompt with the server's tokenizer, then runs one real review of a small
generated image with the verdict schema and prints what came back.

Sleep mode: /is_sleeping answering proves only VLLM_SERVER_DEV_MODE=1 — without
--enable-sleep-mode vLLM still attaches the routes, but a sleep frees nothing. So the
doctor says "unverified" unless the operator consents (``--verify-sleep``) to one real
sleep and wake, which it times and, given the GPU's NVML reading, measures.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TextIO

from PIL import Image, ImageDraw

from artcritic.runtimes.critic import (
    VERDICT_MAX_TOKENS,
    CriticAsleep,
    CriticClient,
    CriticSleepModeDisabled,
    CriticVerdict,
    ModelCard,
    ReviewContext,
)
from artcritic.runtimes.critic_prompt import prompt_build
from artcritic.runtimes.critic_tokens import vision_grid_for_model
from artcritic.runtimes.errors import RuntimeFailure
from artcritic.runtimes.versions import version_check

OK, FAILED = 0, 1
_LABEL_WIDTH = 12
GIB = 1024**3
# A level-1 sleep of a 7B Critic frees its weights (≈15 GiB) and KV cache; less than 1 GiB
# freed means the weights were never in the sleepable pool (no --enable-sleep-mode).
MIN_FREED_BYTES = GIB
FreeBytes = Callable[[], int]

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


def _version(out: TextIO, client: CriticClient) -> None:
    reported = client.version()
    check = version_check("critic", reported)
    if check.ok:
        _line(out, "version", check.sentence)
    else:
        _line(out, "version", f"WARNING: {check.sentence}")
        _line(
            out,
            "",
            "next: its answers may differ from what artcritic understands; run the conformance "
            "suite against it (README: Runtime conformance) before trusting reviews.",
        )


def _sleep_state(
    out: TextIO, client: CriticClient, *, verify: bool, free_bytes: FreeBytes | None
) -> None:
    try:
        asleep = client.is_sleeping()
    except CriticSleepModeDisabled:
        _line(
            out,
            "sleep mode",
            "not available: no dev-mode routes (needs VLLM_SERVER_DEV_MODE=1 and "
            "--enable-sleep-mode); the Critic can only be released by stopping it",
        )
        return
    if asleep:
        raise CriticAsleep(
            "The Critic is asleep or paused (GET /is_sleeping says true); no review was sent.",
            "Wake it (POST /wake_up, plus reload_weights after a level-2 sleep) or let the GPU "
            "worker do it, then run the doctor again.",
        )
    if not verify:
        _line(
            out,
            "sleep mode",
            "UNVERIFIED: the dev-mode routes answer (VLLM_SERVER_DEV_MODE=1), which does not "
            "prove --enable-sleep-mode",
        )
        _line(
            out,
            "",
            "next: run again with --verify-sleep to sleep and wake it once (it frees and "
            "re-takes its GPU memory; requests running on it are aborted)",
        )
        return
    _line(out, "sleep mode", _sleep_and_wake(client, free_bytes))


def _sleep_and_wake(client: CriticClient, free_bytes: FreeBytes | None) -> str:
    """Sleep (level 1) and wake once; the sentence that says what was seen."""
    before = free_bytes() if free_bytes else None
    started = time.monotonic()
    client.sleep(1)
    slept_s = time.monotonic() - started
    if not client.is_sleeping():
        raise RuntimeFailure(
            "POST /sleep answered, but GET /is_sleeping still says false.",
            "Read the Critic's log; set the profile's critic release to 'stop' until sleep works.",
        )
    after = free_bytes() if free_bytes else None
    started = time.monotonic()
    client.wake_up()
    woke_s = time.monotonic() - started
    timing = f"slept (level 1) in {slept_s:.1f} s and woke in {woke_s:.1f} s"
    if before is None or after is None:
        return (
            f"verified: {timing}; the memory it freed was not measured (pass --gpu NAME to "
            "read it with NVML on this host)"
        )
    freed = after - before
    if freed < MIN_FREED_BYTES:
        raise RuntimeFailure(
            f"The Critic slept and woke ({timing}) but freed only {freed / GIB:.2f} GiB of GPU "
            "memory: it was started without --enable-sleep-mode (the routes exist in dev mode "
            "alone).",
            "Start vLLM with --enable-sleep-mode, or set the profile's critic release to 'stop'.",
        )
    return f"verified: {timing}, freeing {freed / GIB:.2f} GiB (NVML)"


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


def doctor_critic(
    url: str,
    *,
    model: str | None,
    out: TextIO,
    timeout: float,
    verify_sleep: bool = False,
    free_bytes: FreeBytes | None = None,
) -> int:
    """Check the Critic at ``url``; print each step to ``out``; 0 when a real review passed."""
    out.write(f"Critic at {url}\n")
    step = "health"
    try:
        probe = CriticClient(url, model=model or "", timeout=timeout)
        probe.health_check()
        _line(out, step, "ok (GET /health answered 200)")
        step = "version"
        _version(out, probe)
        step = "models"
        card = _pick_model(probe.models(), model)
        _line(out, step, f"{card.id} (max_model_len {card.max_model_len})")
        client = CriticClient(url, model=card.id, timeout=timeout)
        step = "sleep mode"
        _sleep_state(out, client, verify=verify_sleep, free_bytes=free_bytes)
        step = "prompt"
        image = doctor_image()
        prompt = prompt_build(image, DOCTOR_CONTEXT, grid=vision_grid_for_model(card.id))
        count = client.count_prompt(prompt)
        how = (
            "text counted by the Critic's tokenizer (POST /tokenize)"
            if count.method == "tokenizer"
            else "text estimated high (one token per byte): POST /tokenize did not answer"
        )
        _line(
            out,
            step,
            f"{count.tokens} tokens ({count.text_tokens} text + {count.image_tokens} for the "
            f"384×384 test image; {how}); {VERDICT_MAX_TOKENS} reserved for the verdict",
        )
        step = "review"
        verdict = client.review(image, DOCTOR_CONTEXT, seed=0)
    except RuntimeFailure as error:
        return _fail(out, step, error)
    _report_review(out, verdict)
    out.write("Critic OK\n")
    return OK
