"""A text-only chat completion with a JSON schema, on the Critic's client (no image).

Used for the Critic's taste-note proposals: the same transport, sleep check and error
mapping as a review, with its own schema and token budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from artcritic.runtimes.critic import CriticClient
from artcritic.runtimes.errors import RuntimeOutputInvalid


@dataclass(frozen=True)
class ChatAnswer:
    content: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


def critic_chat_json(
    client: CriticClient,
    messages: list[dict[str, Any]],
    *,
    name: str,
    schema: dict[str, Any],
    max_tokens: int,
) -> ChatAnswer:
    """Ask the Critic one question it must answer in ``schema``; the raw content comes back
    for the caller to validate. A sleeping Critic is refused before anything is sent."""
    client._refuse_if_asleep()
    body = {
        "model": client.model,
        "messages": messages,
        "temperature": 0.0,
        "seed": 0,
        "max_completion_tokens": max_tokens,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        },
    }
    started = time.monotonic()
    response = client._call("POST", "/v1/chat/completions", timeout=client.timeout, body=body)
    latency_ms = round((time.monotonic() - started) * 1000)
    what = f"the {name} request (POST /v1/chat/completions)"
    if not response.ok:
        raise client._failure(response, what)
    data = client._json(response, what)
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
        usage = data.get("usage") or {}
    except (KeyError, IndexError, TypeError):
        raise RuntimeOutputInvalid(
            f"The Critic answered {what} without a message: {str(data)[:200]!r}"
        ) from None
    if not isinstance(content, str):
        raise RuntimeOutputInvalid(f"The Critic answered {what} with no text content.")
    if choice.get("finish_reason") == "length":
        raise RuntimeOutputInvalid(
            f"The Critic's answer to {what} was cut at {max_tokens} tokens before it ended.",
            "Ask again; if it keeps happening, fewer decisions are sent next time.",
        )
    return ChatAnswer(
        content=content,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_ms=latency_ms,
    )
