"""Client for the Critic: vLLM's OpenAI-compatible server (protocols.md Part 2).

Every failure is a domain error (``critic_errors``) with vLLM's own message and numbers.
Before a review is sent its prompt is counted (the server's tokenizer, else a bound that
is never low, plus the image's exact Qwen-VL tokens) and ``max_completion_tokens`` is set
to what the longest schema-valid verdict needs, so the context can never cut a verdict;
a prompt that leaves no such room is refused before sending. A sleeping or paused server
is reported as ``CriticAsleep`` (the caller wakes it; before vLLM 0.34 a request to a
sleeping engine crashed it, issue #15483, so none is sent); the answer uses
``response_format: json_schema`` and is validated by ``verdict_parse`` — no default scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from artcritic.runtimes.critic_errors import (
    ContextOverflow,
    CriticAnswerCut,
    CriticAnswerRejected,
    CriticAsleep,
    CriticEngineDead,
    CriticReviewAborted,
    CriticSleepModeDisabled,
    context_overflow_parse,
    context_reason,
    is_context_error,
    is_dead_engine_message,
    is_paused_message,
)
from artcritic.runtimes.critic_prompt import (
    CriticPrompt,
    PriorDecision,
    ReviewContext,
    prompt_build,
)
from artcritic.runtimes.critic_schema import (
    VERDICT_FREE_TEXT_CHARS,
    VERDICT_SCHEMA,
    VERDICT_SCHEMA_NAME,
    VERDICT_SKELETON_CHARS,
    verdict_parse,
)
from artcritic.runtimes.critic_tokens import answer_budget, vision_grid_for_model
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
    "VERDICT_MAX_TOKENS",
    "ContextOverflow",
    "CriticAnswerCut",
    "CriticAnswerRejected",
    "CriticAsleep",
    "CriticClient",
    "CriticEngineDead",
    "CriticReviewAborted",
    "CriticSleepModeDisabled",
    "CriticVerdict",
    "ModelCard",
    "PriorDecision",
    "PromptCount",
    "ReviewContext",
    "context_overflow_parse",
]

PROBE_TIMEOUT = 10.0  # health, models and sleep-state probes answer in milliseconds when alive
_MESSAGE_CHARS = 500
SLEEP_MODE_HINT = "needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1"
PREFIX_RESET_TRIES = 3
PREFIX_RESET_PAUSE_S = 0.5
# What the longest schema-valid verdict needs (critic_schema, critic_tokens.answer_budget).
VERDICT_MAX_TOKENS = answer_budget(
    fixed_chars=VERDICT_SKELETON_CHARS, free_text_chars=VERDICT_FREE_TEXT_CHARS
)


@dataclass(frozen=True)
class ModelCard:
    """One served model as /v1/models lists it."""

    id: str
    max_model_len: int | None


@dataclass(frozen=True)
class PromptCount:
    """A review prompt's tokens: ``method`` says how the text was counted."""

    tokens: int
    text_tokens: int
    image_tokens: int
    method: str  # "tokenizer" (the server's /tokenize) or "bound" (one token per UTF-8 byte)


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
    runtime_version: str = ""
    # How the prompt was counted before sending, against which context.
    image_tokens: int = 0
    count_method: str = "bound"
    max_model_len: int = 0


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
    """Talks to one vLLM server serving the Critic model under ``model`` (its served name).

    ``max_model_len`` is the profile's context; the server's own figure from /v1/models
    wins when it reports one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        timeout: float = 120.0,
        max_model_len: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.configured_max_model_len = max_model_len
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

    def _health_status(self) -> int | None:
        """GET /health's status code, or None when it does not answer at all."""
        try:
            return self._http.get(self.base_url + "/health", timeout=PROBE_TIMEOUT).status_code
        except requests.RequestException:
            return None

    def _failure(  # noqa: PLR0911 - one return per kind of vLLM answer
        self, response: requests.Response, what: str
    ) -> RuntimeFailure:
        """Map an HTTP error from vLLM to the domain error that says what to do."""
        status, message = response.status_code, _vllm_message(response)
        if is_context_error(status, message):
            return CriticContextTooLong(f"The Critic refused {what}: {message}")
        if status == 503 and is_paused_message(message):
            return CriticAsleep(
                f"The Critic at {self.base_url} is paused (HTTP 503 on {what}): {message}"
            )
        if is_dead_engine_message(message):
            return CriticEngineDead(
                f"The Critic's engine is dead (HTTP {status} on {what}): {message}"
            )
        if "OutOfMemoryError" in message or "out of memory" in message.lower():
            return RuntimeOutOfMemory(
                f"The Critic ran out of GPU memory during {what}: {message}",
                "Another runtime holds the GPU: release it (ComfyUI /free), then restart the "
                "Critic. Nothing was retried at lower settings.",
            )
        if status >= 500 and self._health_status() == 503:
            # vLLM 0.34 hides EngineDeadError behind a generic 500; /health tells the truth.
            return CriticEngineDead(
                f"The Critic's engine is dead: HTTP {status} on {what} ({message}), and GET "
                "/health answers 503."
            )
        if status == 503:
            return RuntimeUnavailable(
                f"The Critic at {self.base_url} cannot take requests now (HTTP 503 on {what}): "
                f"{message}",
                "Wait a minute and re-run the review; `manage.py runtime_doctor critic` shows "
                "its state.",
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

    def _maybe_json(self, response: requests.Response) -> dict[str, Any] | None:
        """The body as a JSON object, or None for the empty 200s of older vLLM."""
        if not response.content.strip():
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

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
        """Raise unless GET /health answers 200 (503 there means vLLM's engine is dead)."""
        response = self._call("GET", "/health", timeout=min(self.timeout, PROBE_TIMEOUT))
        if response.status_code == 503:
            raise CriticEngineDead(
                f"The Critic at {self.base_url} answers GET /health with 503: its engine is dead."
            )
        if response.status_code != 200:
            raise self._failure(response, "the health check")

    def health(self) -> bool:
        """True when GET /health answers 200 (refused, 503 or silent: False)."""
        try:
            self.health_check()
        except RuntimeFailure:
            return False
        return True

    def version(self) -> str:
        """vLLM's version from GET /version ("" when the server has no such route)."""
        what = "the version (GET /version)"
        response = self._call("GET", "/version", timeout=min(self.timeout, PROBE_TIMEOUT))
        if response.status_code == 404:
            return ""
        if not response.ok:
            raise self._failure(response, what)
        data = self._json(response, what)
        found = data.get("version") if isinstance(data, dict) else None
        if not isinstance(found, str) or not found.strip():
            raise RuntimeOutputInvalid(
                f"The Critic's {what} is not {{'version': str}}: {data!r:.200}"
            )
        return found.strip()[:64]

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
                and not isinstance(c.get("max_model_len"), bool)
                else None,
            )
            for c in cards
        ]

    def max_model_len(self) -> int:
        """The context the server reports for this model, else the profile's."""
        cards = self.models()
        for card in cards:
            if card.id == self.model and card.max_model_len:
                return card.max_model_len
        if cards and all(card.id != self.model for card in cards):
            served = ", ".join(card.id for card in cards)
            raise RuntimeRejected(
                f"The Critic at {self.base_url} does not serve {self.model!r}; it serves "
                f"{served}. No review was sent.",
                "Set the profile's runtimes.critic.served_model_name to the served name, or "
                f"start vLLM with --served-model-name {self.model}.",
            )
        if self.configured_max_model_len:
            return self.configured_max_model_len
        raise RuntimeOutputInvalid(
            f"The Critic's /v1/models reports no max_model_len for {self.model!r}, and none "
            "was configured; the review's tokens cannot be checked against its context.",
            "Set the profile's runtimes.critic.max_model_len (it must equal vLLM's "
            "--max-model-len).",
        )

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

    def count_prompt(self, prompt: CriticPrompt) -> PromptCount:
        """The prompt's tokens: the server's tokenizer for the text when it answers /tokenize."""
        try:
            response = self._call(
                "POST",
                "/tokenize",
                timeout=min(self.timeout, PROBE_TIMEOUT),
                body={"model": self.model, "messages": prompt.text_messages},
            )
        except RuntimeUnavailable:
            response = None
        data = self._maybe_json(response) if response is not None and response.ok else None
        count = data.get("count") if data else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            return PromptCount(
                count + prompt.image_tokens, count, prompt.image_tokens, "tokenizer"
            )
        return PromptCount(
            prompt.estimated_tokens, prompt.text_tokens, prompt.image_tokens, "bound"
        )

    # -- memory control (dev mode) --------------------------------------------------------

    def sleep(self, level: int) -> None:
        """POST /sleep?level=1|2: free the weights (level 1 keeps them in CPU RAM) and KV cache."""
        if level not in (1, 2):
            raise ValueError(f"sleep level must be 1 or 2, not {level}")
        response = self._dev_call(
            "POST", "/sleep", f"sleep level {level}", timeout=self.timeout, params={"level": level}
        )
        data = self._maybe_json(response)  # 0.34: {"status": "sleeping", "level": n}; older: empty
        if data is not None and data.get("status") not in (None, "sleeping"):
            raise RuntimeOutputInvalid(
                f"The Critic answered POST /sleep with {data!r:.200}, not status 'sleeping'."
            )

    def wake_up(self, tags: list[str] | None = None) -> bool:
        """POST /wake_up (all memory, or only ``tags``); True when fully awake.

        vLLM 0.34 answers 200 even when only partly awake (``{"status": "sleeping"}``) and
        older versions answer an empty 200, so a full wake is confirmed, never assumed.
        """
        params = {"tags": tags} if tags else None
        response = self._dev_call(
            "POST", "/wake_up", "wake-up", timeout=self.timeout, params=params
        )
        data = self._maybe_json(response)
        status = data.get("status") if data else None
        awake = status == "awake" if status is not None else not self.is_sleeping()
        if tags is None and not awake:
            raise RuntimeUnavailable(
                f"The Critic at {self.base_url} answered POST /wake_up but is still asleep "
                f"({data or 'GET /is_sleeping says true'}): its memory did not all come back.",
                "Check the Critic's log and free VRAM (`manage.py gpu_status`); the GPU worker "
                "recreates it if it stays asleep.",
            )
        return awake

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
        """POST /reset_prefix_cache; vLLM 0.34 says ``{"success": false}`` while blocks are held."""
        answer: dict[str, Any] | None = None
        for attempt in range(PREFIX_RESET_TRIES):
            response = self._dev_call(
                "POST", "/reset_prefix_cache", "reset_prefix_cache", timeout=self.timeout
            )
            answer = self._maybe_json(response)
            if answer is None or answer.get("success") is not False:
                return  # older vLLM: an empty 200 is its success
            if attempt < PREFIX_RESET_TRIES - 1:
                time.sleep(PREFIX_RESET_PAUSE_S)
        raise RuntimeUnavailable(
            f"The Critic could not reset its prefix cache: POST /reset_prefix_cache answered "
            f"{answer} {PREFIX_RESET_TRIES} times, {PREFIX_RESET_PAUSE_S:g} s apart (blocks are "
            "still held). Answers could be built on stale cached prefixes.",
            "The GPU worker recreates the Critic; re-run the review.",
        )

    # -- review -------------------------------------------------------------------------------

    def _refuse_if_asleep(self) -> None:
        try:
            asleep = self.is_sleeping()
        except CriticSleepModeDisabled:
            return  # a server without sleep mode can never be asleep
        if asleep:
            raise CriticAsleep(
                f"The Critic at {self.base_url} is asleep or paused (GET /is_sleeping says "
                "true); no request was sent to it."
            )

    def review(
        self,
        image_png: bytes,
        ctx: ReviewContext,
        *,
        max_completion_tokens: int | None = None,
        seed: int = 0,
    ) -> CriticVerdict:
        """Ask the Critic to review ``image_png`` against ``ctx``; return the validated verdict."""
        prompt = prompt_build(image_png, ctx, grid=vision_grid_for_model(self.model))
        self._refuse_if_asleep()
        limit = self.max_model_len()
        count = self.count_prompt(prompt)
        answer = max_completion_tokens or VERDICT_MAX_TOKENS
        if count.tokens + answer > limit:
            raise _too_long_before_sending(prompt, count, answer, limit)
        body = {
            "model": self.model,
            "messages": prompt.messages,
            "temperature": 0.0,
            "seed": seed,
            "max_completion_tokens": answer,
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
                said = failure.reason.split(": ", 1)[-1]
                raise context_reason(
                    context_overflow_parse(said),
                    said,
                    image_tokens=prompt.image_tokens,
                    decisions=len(prompt.shown_decision_ids),
                )
            raise failure
        return _verdict(
            self._json(response, "the review"),
            prompt,
            latency_ms,
            _Budget(count=count, answer=answer, max_model_len=limit),
        )


@dataclass(frozen=True)
class _Budget:
    count: PromptCount
    answer: int
    max_model_len: int


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


def _counted(count: PromptCount) -> str:
    how = (
        "counted by the Critic's tokenizer"
        if count.method == "tokenizer"
        else "estimated high: one token per byte of text, as /tokenize did not answer"
    )
    return f"{count.text_tokens} text ({how}) + {count.image_tokens} image"


def _too_long_before_sending(
    prompt: CriticPrompt, count: PromptCount, answer: int, limit: int
) -> CriticContextTooLong:
    thumbs = (
        f" (of which {prompt.thumbnail_tokens} for {len(prompt.thumbnail_decision_ids)} "
        "thumbnails of prior decisions)"
        if prompt.thumbnail_decision_ids
        else ""
    )
    return CriticContextTooLong(
        f"The review needs {count.tokens} prompt tokens ({_counted(count)}{thumbs}; "
        f"{len(prompt.shown_decision_ids)} prior decisions) plus {answer} reserved for the "
        f"verdict = {count.tokens + answer} tokens, but the Critic's context is {limit} "
        "tokens. Nothing was sent: vLLM would have cut the answer short to fit."
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


def _cut(content: str, prompt_tokens: int, completion_tokens: int, budget: _Budget) -> str:
    room = budget.max_model_len - prompt_tokens
    if completion_tokens < budget.answer and room < budget.answer:
        why = (
            f"vLLM shortened the answer to the {room} tokens left in the {budget.max_model_len}-"
            f"token context after a {prompt_tokens}-token prompt (counted {budget.count.tokens} "
            "before sending)"
        )
    else:
        why = f"it reached the review's limit of {budget.answer} answer tokens"
    return (
        f"The Critic's answer was cut off after {completion_tokens} tokens "
        f"({len(content)} characters; finish_reason length): {why}. No score was recorded."
    )


def _verdict(data: Any, prompt: CriticPrompt, latency_ms: int, budget: _Budget) -> CriticVerdict:
    content, finish, model_id, prompt_tokens, completion_tokens = _completion_parts(data)
    if finish == "abort":
        raise CriticReviewAborted(
            f"vLLM aborted the review after {completion_tokens} answer tokens (finish_reason "
            "abort): the Critic was put to sleep or paused while it ran. No score was recorded."
        )
    details: dict[str, Any] = {
        "raw_response": content or "",
        "model_id": model_id,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_ms": latency_ms,
    }
    if finish == "length":
        raise CriticAnswerCut(
            _cut(content or "", prompt_tokens, completion_tokens, budget),
            "Re-run the review; if it is cut again, ask an admin to raise the Critic's "
            "max_model_len (it costs KV-cache VRAM) or show fewer prior decisions.",
            **details,
        )
    try:
        parsed = verdict_parse(content, finish_reason=finish)
    except CriticAnswerInvalid as exc:
        raise CriticAnswerRejected(exc.reason, exc.next_action, **details) from None
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
        estimated_prompt_tokens=budget.count.tokens,
        truncated_fields=list(prompt.truncated),
        image_tokens=budget.count.image_tokens,
        count_method=budget.count.method,
        max_model_len=budget.max_model_len,
    )
