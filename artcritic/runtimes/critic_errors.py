"""What vLLM's answers mean: the Critic's domain errors and the wordings that map to them.

Two generations of vLLM are in the field and both are understood here. The 0.34.0
wordings are quoted from its wheel (paths inside the ``vllm`` package); the older ones
from the issues and releases that printed them (``shared/protocols.md`` 2.3):

- paused engine: 503 "Generation is paused. Please retry after it resumes."
  (``v1/engine/core.py`` ``_reject_add_while_paused``) → wake it and retry once;
- dead engine: 500 "The server had an error while processing your request."
  (``v1/engine/exceptions.py`` ``EngineDeadError.CLIENT_MESSAGE``) with GET /health 503;
  before 0.34 the message itself said "EngineDeadError" / "EngineCore encountered an
  issue" → recreate the Critic;
- context: the prompt alone too long (``renderers/params.py``, ``serve/utils/api_utils.py``,
  ``v1/engine/input_processor.py``), or a completion limit over max_model_len.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from artcritic.runtimes.errors import (
    CriticAnswerInvalid,
    CriticContextTooLong,
    RuntimeInterrupted,
    RuntimeRejected,
    RuntimeUnavailable,
)

__all__ = [
    "PAUSED_MESSAGE",
    "ContextOverflow",
    "CriticAnswerCut",
    "CriticAnswerRejected",
    "CriticAsleep",
    "CriticEngineDead",
    "CriticReviewAborted",
    "CriticSleepModeDisabled",
    "context_overflow_parse",
    "is_context_error",
    "is_dead_engine_message",
    "is_paused_message",
]

PAUSED_MESSAGE = "Generation is paused"
DEAD_CLIENT_MESSAGE = "The server had an error while processing your request."
_DEAD_OLD_WORDINGS = ("EngineDeadError", "EngineCore encountered an issue")


class CriticSleepModeDisabled(RuntimeRejected):
    """The server has no sleep/dev routes (404): it was started without sleep mode."""

    default_next_action = (
        "Start vLLM with --enable-sleep-mode and the environment VLLM_SERVER_DEV_MODE=1, or "
        "set the profile's critic release to 'stop'."
    )


class CriticAsleep(RuntimeUnavailable):
    """The Critic is asleep or paused: wake it, then ask again (never restart it for this)."""

    default_next_action = (
        "Wake the Critic (POST /wake_up, plus reload_weights after a level-2 sleep) — the GPU "
        "worker does this once by itself — then re-run the review."
    )


class CriticEngineDead(RuntimeUnavailable):
    """vLLM's engine core died; the server process may still answer. Only a restart helps."""

    default_next_action = (
        "The GPU worker recreates the Critic (stop, then start) before its next review; the "
        "review goes back in the queue once. If it dies again, read the Critic's log."
    )


class CriticReviewAborted(RuntimeInterrupted):
    """vLLM aborted the running review (finish_reason abort), e.g. /sleep in mode=abort."""

    default_next_action = "The review was put back in the queue; nothing was recorded."


class CriticAnswerRejected(CriticAnswerInvalid):
    """An invalid answer, carrying what came back so the attempt can be recorded."""

    def __init__(
        self,
        reason: str,
        next_action: str | None,
        *,
        raw_response: str,
        model_id: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: int,
    ) -> None:
        super().__init__(reason, next_action)
        self.raw_response = raw_response
        self.model_id = model_id
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.latency_ms = latency_ms


class CriticAnswerCut(CriticAnswerRejected):
    """finish_reason length: the answer stopped at a token limit before the JSON closed."""


@dataclass(frozen=True)
class ContextOverflow:
    """The numbers in vLLM's context-length error (None where a wording does not give one)."""

    max_context: int
    prompt_tokens: int | None
    completion_tokens: int | None


_OVERFLOW_PATTERNS = (
    # Before 0.16 (issue #20409).
    re.compile(
        r"maximum context length is (?P<max>\d+) tokens\. However, you requested \d+ tokens "
        r"\((?P<prompt>\d+) in the messages, (?P<completion>\d+) in the completion\)"
    ),
    re.compile(
        r"maximum context length is (?P<max>\d+) tokens\. However, your request has "
        r"(?P<prompt>\d+) input tokens"
    ),
    # 0.16 to 0.33.
    re.compile(
        r"You passed (?P<prompt>\d+) input tokens and requested (?P<completion>\d+) output "
        r"tokens\. However, the model's context length is only (?P<max>\d+) tokens"
    ),
    # 0.34.0 renderers/params.py _token_len_check.
    re.compile(
        r"maximum context length is (?P<max>\d+) tokens\. However, your prompt contains "
        r"(?:at least )?(?P<prompt>\d+) input tokens"
    ),
    # 0.34.0 serve/utils/api_utils.py get_max_tokens.
    re.compile(
        r"Input length \((?P<prompt>\d+)\) exceeds model's maximum context length "
        r"\((?P<max>\d+)\)"
    ),
    # 0.34.0 v1/engine/input_processor.py (both forms).
    re.compile(
        r"The decoder prompt \(length (?P<prompt>\d+)\) (?:plus the number of requested "
        r"output tokens \(at least 1\) )?is longer than the maximum model length of "
        r"(?P<max>\d+)"
    ),
    # 0.34.0 renderers/params.py: a completion limit over the whole context.
    re.compile(
        r"max_(?:completion_)?tokens=(?P<completion>\d+) cannot be greater than "
        r"max_model_len=(?P<max>\d+)"
    ),
)
# 0.34.0 renderers/params.py: the prompt's characters alone exceed what the context can hold.
_CHARS_PATTERN = re.compile(
    r"maximum context length is (?P<max>\d+) tokens\. However, your prompt contains "
    r"(?P<chars>\d+) characters"
)


def context_overflow_parse(message: str) -> ContextOverflow | None:
    """Read the token numbers out of any wording of vLLM's context-length error."""
    for pattern in _OVERFLOW_PATTERNS:
        match = pattern.search(message)
        if match:
            parts = match.groupdict()
            prompt, completion = parts.get("prompt"), parts.get("completion")
            return ContextOverflow(
                max_context=int(parts["max"]),
                prompt_tokens=int(prompt) if prompt is not None else None,
                completion_tokens=int(completion) if completion is not None else None,
            )
    match = _CHARS_PATTERN.search(message)
    if match:
        return ContextOverflow(int(match["max"]), None, None)
    return None


def is_context_error(status: int, message: str) -> bool:
    """A 400 about the context window, in any wording."""
    if status != 400:
        return False
    return context_overflow_parse(message) is not None or "context length" in message


def is_paused_message(message: str) -> bool:
    """vLLM 0.34's answer to a request while generation is paused."""
    return PAUSED_MESSAGE in message


def is_dead_engine_message(message: str) -> bool:
    """The pre-0.34 wordings of a dead engine (0.34 needs GET /health to tell)."""
    return any(word in message for word in _DEAD_OLD_WORDINGS)


def context_reason(
    overflow: ContextOverflow | None, said: str, *, image_tokens: int, decisions: int
) -> CriticContextTooLong:
    """CriticContextTooLong with vLLM's numbers spelled out, or its words when it gave none."""
    if overflow is None or overflow.prompt_tokens is None:
        if overflow is not None and overflow.completion_tokens is not None:
            return CriticContextTooLong(
                f"The review asked for up to {overflow.completion_tokens} answer tokens, but "
                f"the Critic's whole context is {overflow.max_context} tokens. vLLM said: {said}"
            )
        return CriticContextTooLong(f"The Critic refused the review: {said}")
    parts = f"the image {image_tokens}, {decisions} prior decisions"
    if overflow.completion_tokens is None:
        return CriticContextTooLong(
            f"The review's prompt alone is {overflow.prompt_tokens} tokens ({parts}), more than "
            f"the Critic's context of {overflow.max_context} tokens. vLLM said: {said}"
        )
    total = overflow.prompt_tokens + overflow.completion_tokens
    return CriticContextTooLong(
        f"The review needs {overflow.prompt_tokens} prompt tokens ({parts}) plus "
        f"{overflow.completion_tokens} for the answer = {total} tokens, but the Critic's "
        f"context is {overflow.max_context} tokens. vLLM said: {said}"
    )
