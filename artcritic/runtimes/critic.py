"""Client for the Critic: vLLM's OpenAI-compatible server (protocols.md Part 2).

Every failure is a domain error from ``artcritic.runtimes.errors`` with vLLM's own
message and numbers in the reason. A review is refused while the server sleeps
(a request to a sleeping vLLM kills its engine, issue #15483), uses
``response_format: json_schema`` (``guided_json`` was removed in v0.12.0 and is
silently ignored), and is validated by ``verdict_parse`` — no default scores.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from artcritic.runtimes.critic_prompt import (
    CriticPrompt,
    PriorDecision,
    ReviewContext,
    prompt_build,
)
from artcritic.runtimes.critic_schema import VERDICT_SCHEMA, VERDICT_SCHEMA_NAME, verdict_parse
from artcritic.runtimes.errors import (
    CriticAnswerInvalid,
    CriticContextTooLong,
    RuntimeFailure,
    RuntimeOutOfMemory,
    RuntimeOutputInvalid,
    RuntimeRejected,
    RuntimeUnavailable,
)

__all__ = [
    "ContextOverflow",
    "CriticAnswerRejected",
    "CriticClient",
    "CriticSleepModeDisabled",
    "CriticVerdict",
    "ModelCard",
    "PriorDecision",
    "ReviewContext",
    "context_overflow_parse",
]

PROBE_TIMEOUT = 10.0  # health, models and sleep-state probes answer in milliseconds when alive
_MESSAGE_CHARS = 500
SLEEP_MODE_HINT = "needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1"


class CriticSleepModeDisabled(RuntimeRejected):
    """The server has no sleep/dev routes (404): it was started without sleep mode."""

    default_next_action = (
        "Start vLLM with --enable-sleep-mode and the environment VLLM_SERVER_DEV_MODE=1, or "
        "set the profile's critic release to 'stop'."
    )


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


@dataclass(frozen=True)
class ModelCard:
    """One served model as /v1/models lists it."""

    id: str
    max_model_len: int | None


@dataclass(frozen=True)
class CriticVerdict:
    """A validated review with the numbers of the call that produced it."""

    scores: dict[str, int]
    verdict: str
    rationale: dict[str, str]
    model_id: str
    raw_response: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    shown_decision_ids: list[int]
    estimated_prompt_tokens: int = 0
    truncated_fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ContextOverflow:
    """The numbers in vLLM's context-length error."""

    max_context: int
    prompt_tokens: int
    completion_tokens: int | None


_OVERFLOW_PATTERNS = (
    # Older wording (issue #20409).
    re.compile(
        r"maximum context length is (?P<max>\d+) tokens\. However, you requested \d+ tokens "
        r"\((?P<prompt>\d+) in the messages, (?P<completion>\d+) in the completion\)"
    ),
    re.compile(
        r"maximum context length is (?P<max>\d+) tokens\. However, your request has "
        r"(?P<prompt>\d+) input tokens"
    ),
    # vLLM 0.16+ wording.
    re.compile(
        r"You passed (?P<prompt>\d+) input tokens and requested (?P<completion>\d+) output "
        r"tokens\. However, the model's context length is only (?P<max>\d+) tokens"
    ),
)


def context_overflow_parse(message: str) -> ContextOverflow | None:
    """Read the token numbers out of either wording of vLLM's context-length error."""
    for pattern in _OVERFLOW_PATTERNS:
        match = pattern.search(message)
        if match:
            parts = match.groupdict()
            completion = parts.get("completion")
            return ContextOverflow(
                max_context=int(parts["max"]),
                prompt_tokens=int(parts["prompt"]),
                completion_tokens=int(completion) if completion is not None else None,
            )
    return None


def _vllm_message(response: requests.Response) -> str:
    """vLLM's error message from ``{"error": {"message": …}}``, else the body's start."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:_MESSAGE_CHARS]
        if isinstance(data.get("message"), str):  # pre-2025 flat error shape
            return str(data["message"])[:_MESSAGE_CHARS]
    text = response.text.strip()
    return text[:_MESSAGE_CHARS] if text else f"HTTP {response.status_code} with an empty body"


class CriticClient:
    """Talks to one vLLM server serving the Critic model under ``model`` (its served name)."""

    def __init__(self, base_url: str, *, model: str, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self._http = requests.Session()

    # -- transport ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> requests.Response:
        url = self.base_url + path
        try:
            return self._http.request(
                method,
                url,
                params=params,
                json=body,
                timeout=(min(timeout, PROBE_TIMEOUT), timeout),
            )
        except requests.Timeout:
            raise RuntimeUnavailable(
                f"The Critic at {self.base_url} did not answer {method} {path} within "
                f"{timeout:g} s.",
                "Check that vLLM is running and not stuck (`manage.py runtime_doctor critic`); "
                "the job was not retried.",
            ) from None
        except requests.RequestException as exc:
            raise RuntimeUnavailable(
                f"Cannot reach the Critic at {self.base_url} ({method} {path}): {_cause(exc)}.",
                "Start the Critic (vLLM) or wait until it has loaded — its port opens only when "
                "it is ready — then try again.",
            ) from None

    def _failure(self, response: requests.Response, what: str) -> RuntimeFailure:
        """Map an HTTP error from vLLM to the domain error that says what to do."""
        status, message = response.status_code, _vllm_message(response)
        if status == 400 and "context length" in message:
            return CriticContextTooLong(f"The Critic refused {what}: {message}")
        if status == 503:
            return RuntimeUnavailable(
                f"The Critic at {self.base_url} is not healthy (HTTP 503 on {what}): {message}",
                "Restart the Critic; its engine stopped (see its log).",
            )
        if "EngineDeadError" in message or "EngineCore encountered an issue" in message:
            return RuntimeUnavailable(
                f"The Critic's engine is dead (HTTP {status} on {what}): {message}",
                "Restart the Critic; its engine stopped (see its log). The job was not retried.",
            )
        if "OutOfMemoryError" in message or "out of memory" in message.lower():
            return RuntimeOutOfMemory(
                f"The Critic ran out of GPU memory during {what}: {message}",
                "Another runtime holds the GPU: release it (ComfyUI /free), then restart the "
                "Critic. Nothing was retried at lower settings.",
            )
        if 400 <= status < 500:
            return RuntimeRejected(f"The Critic refused {what} (HTTP {status}): {message}")
        return RuntimeFailure(f"The Critic failed {what} (HTTP {status}): {message}")

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise RuntimeOutputInvalid(
                f"The Critic answered {what} with something that is not JSON: "
                f"{response.text[:200]!r}"
            ) from None

    def _dev_call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        response = self._call(method, path, **kwargs)
        if response.status_code == 404:
            raise CriticSleepModeDisabled(
                f"The Critic at {self.base_url} has no {path} route: sleep mode is not enabled "
                f"({SLEEP_MODE_HINT})."
            )
        if not response.ok:
            raise self._failure(response, what)
        return response

    # -- probes -------------------------------------------------------------------------------

    def health_check(self) -> None:
        """Raise RuntimeUnavailable unless GET /health answers 200."""
        response = self._call("GET", "/health", timeout=min(self.timeout, PROBE_TIMEOUT))
        if response.status_code != 200:
            raise self._failure(response, "the health check")

    def health(self) -> bool:
        """True when GET /health answers 200 (refused, 503 or silent: False)."""
        try:
            self.health_check()
        except RuntimeFailure:
            return False
        return True

    def models(self) -> list[ModelCard]:
        """The served models from GET /v1/models."""
        what = "the model list (GET /v1/models)"
        response = self._call("GET", "/v1/models", timeout=min(self.timeout, PROBE_TIMEOUT))
        if not response.ok:
            raise self._failure(response, what)
        data = self._json(response, what)
        cards = data.get("data") if isinstance(data, dict) else None
        if not isinstance(cards, list) or not all(
            isinstance(c, dict) and isinstance(c.get("id"), str) for c in cards
        ):
            raise RuntimeOutputInvalid(
                f"The Critic's {what} is not vLLM's model list: {data!r:.200}"
            )
        return [
            ModelCard(
                id=c["id"],
                max_model_len=c.get("max_model_len")
                if isinstance(c.get("max_model_len"), int)
                else None,
            )
            for c in cards
        ]

    def is_sleeping(self) -> bool:
        """GET /is_sleeping; CriticSleepModeDisabled when the server has no sleep routes."""
        what = "the sleep state (GET /is_sleeping)"
        response = self._dev_call(
            "GET", "/is_sleeping", what, timeout=min(self.timeout, PROBE_TIMEOUT)
        )
        data = self._json(response, what)
        if not isinstance(data, dict) or not isinstance(data.get("is_sleeping"), bool):
            raise RuntimeOutputInvalid(
                f"The Critic's {what} is not {{'is_sleeping': bool}}: {data!r:.200}"
            )
        return bool(data["is_sleeping"])

    # -- memory control (dev mode) --------------------------------------------------------

    def sleep(self, level: int) -> None:
        """POST /sleep?level=1|2: free the weights (level 1 keeps them in CPU RAM) and KV cache."""
        if level not in (1, 2):
            raise ValueError(f"sleep level must be 1 or 2, not {level}")
        self._dev_call(
            "POST", "/sleep", f"sleep level {level}", timeout=self.timeout, params={"level": level}
        )

    def wake_up(self, tags: list[str] | None = None) -> None:
        """POST /wake_up (all memory, or only ``tags``: weights / kv_cache)."""
        params = {"tags": tags} if tags else None
        self._dev_call("POST", "/wake_up", "wake-up", timeout=self.timeout, params=params)

    def reload_weights(self) -> None:
        """POST /collective_rpc reload_weights: required after waking from a level-2 sleep."""
        self._dev_call(
            "POST",
            "/collective_rpc",
            "reload_weights",
            timeout=self.timeout,
            body={"method": "reload_weights"},
        )

    def reset_prefix_cache(self) -> None:
        """POST /reset_prefix_cache: drop cached prefixes (after a level-2 wake)."""
        self._dev_call("POST", "/reset_prefix_cache", "reset_prefix_cache", timeout=self.timeout)

    # -- review -------------------------------------------------------------------------------

    def _refuse_if_asleep(self) -> None:
        try:
            asleep = self.is_sleeping()
        except CriticSleepModeDisabled:
            return  # a server without sleep mode can never be asleep
        if asleep:
            raise RuntimeUnavailable(
                f"The Critic at {self.base_url} is asleep; wake it first. No request was sent: "
                "vLLM's engine crashes on a request while sleeping (issue #15483).",
                "Let the GPU worker wake the Critic (POST /wake_up, and reload_weights after a "
                "level-2 sleep), then re-run the review.",
            )

    def review(
        self,
        image_png: bytes,
        ctx: ReviewContext,
        *,
        max_completion_tokens: int = 700,
        seed: int = 0,
    ) -> CriticVerdict:
        """Ask the Critic to review ``image_png`` against ``ctx``; return the validated verdict."""
        prompt = prompt_build(image_png, ctx)
        self._refuse_if_asleep()
        body = {
            "model": self.model,
            "messages": prompt.messages,
            "temperature": 0.0,
            "seed": seed,
            "max_completion_tokens": max_completion_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": VERDICT_SCHEMA_NAME,
                    "schema": VERDICT_SCHEMA,
                    "strict": True,
                },
            },
        }
        started = time.monotonic()
        response = self._call("POST", "/v1/chat/completions", timeout=self.timeout, body=body)
        latency_ms = round((time.monotonic() - started) * 1000)
        if not response.ok:
            failure = self._failure(response, "the review (POST /v1/chat/completions)")
            if isinstance(failure, CriticContextTooLong):
                raise _context_error(failure, prompt, max_completion_tokens)
            raise failure
        return _verdict(self._json(response, "the review"), prompt, latency_ms)


def _cause(exc: requests.RequestException) -> str:
    text = str(exc)
    for needle, said in (
        ("Connection refused", "connection refused"),
        ("RemoteDisconnected", "the server closed the connection without answering"),
        ("Connection aborted", "the connection was aborted mid-request"),
        ("Name or service not known", "unknown host name"),
    ):
        if needle in text:
            return said
    return type(exc).__name__


def _context_error(
    failure: CriticContextTooLong, prompt: CriticPrompt, max_completion_tokens: int
) -> CriticContextTooLong:
    overflow = context_overflow_parse(failure.reason)
    if overflow is None:
        return failure
    completion = (
        overflow.completion_tokens
        if overflow.completion_tokens is not None
        else max_completion_tokens
    )
    return CriticContextTooLong(
        f"The review needs {overflow.prompt_tokens} prompt tokens "
        f"(the image ≈{prompt.image_tokens}, {len(prompt.shown_decision_ids)} prior decisions) "
        f"plus {completion} for the answer = "
        f"{overflow.prompt_tokens + completion} tokens, but the Critic's context is "
        f"{overflow.max_context} tokens. vLLM said: {failure.reason}"
    )


def _completion_parts(data: Any) -> tuple[str | None, str, str, int, int]:
    """(content, finish_reason, model, prompt_tokens, completion_tokens) from a chat response."""
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
        finish = choice["finish_reason"]
        usage = data.get("usage") or {}
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        return (
            content,
            str(finish),
            str(data.get("model", "")),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise RuntimeOutputInvalid(
            f"The Critic's review response is not an OpenAI chat completion: {data!r:.300}"
        ) from None


def _verdict(data: Any, prompt: CriticPrompt, latency_ms: int) -> CriticVerdict:
    content, finish, model_id, prompt_tokens, completion_tokens = _completion_parts(data)
    try:
        parsed = verdict_parse(content, finish_reason=finish)
    except CriticAnswerInvalid as exc:
        raise CriticAnswerRejected(
            exc.reason,
            exc.next_action,
            raw_response=content or "",
            model_id=model_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
        ) from None
    return CriticVerdict(
        scores=parsed.scores,
        verdict=parsed.verdict,
        rationale=parsed.rationale,
        model_id=model_id,
        raw_response=content or "",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
        shown_decision_ids=list(prompt.shown_decision_ids),
        estimated_prompt_tokens=prompt.estimated_tokens,
        truncated_fields=list(prompt.truncated),
    )
