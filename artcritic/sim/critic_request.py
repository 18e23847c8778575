"""Validation of ``POST /v1/chat/completions`` bodies, with vLLM's error shapes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator, SchemaError

from artcritic.runtimes.critic_tokens import VISION_WRAPPER_TOKENS, VisionGrid
from artcritic.runtimes.critic_tokens import image_tokens as grid_image_tokens
from artcritic.sim.critic_answer import BadImage, ImageFacts, image_read, text_tokens

log = logging.getLogger("artcritic.sim.critic")

ROLES = {"system", "developer", "user", "assistant", "tool"}
TOKENS_PER_MESSAGE = 4  # chat-template role markers around each message
# Fields vLLM removed in v0.12.0 (PR #29326): accepted, logged and ignored.
REMOVED_FIELDS = {
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "guided_decoding_backend",
    "guided_whitespace_pattern",
}
KNOWN_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stream",
    "n",
    "stop",
    "response_format",
    "structured_outputs",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "user",
    "logprobs",
    "top_logprobs",
    "mm_processor_kwargs",
    "chat_template_kwargs",
}


class ApiError(Exception):
    """An OpenAI-style error response: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def response(self) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        }
        return web.json_response(body, status=self.status)


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request, reduced to what the simulated model uses."""

    text: str
    images: list[ImageFacts]
    prompt_tokens: int
    text_tokens: int
    max_tokens: int
    temperature: float
    seed: int | None
    schema: dict[str, Any] | None
    json_object: bool
    choices: list[str] | None

    @property
    def constrained(self) -> bool:
        return self.schema is not None or self.json_object or self.choices is not None


def _int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiError(400, f"{name} must be an integer >= {minimum}, got {value!r}", param=name)
    return value


def _parts(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise ApiError(
            400, f"messages[{index}].content must be a string or a list of parts", param="messages"
        )
    return content


@dataclass(frozen=True)
class Messages:
    """The text and images of a chat, with their token counts as the model sees them."""

    text: str
    images: list[ImageFacts]
    text_tokens: int
    image_tokens: int

    @property
    def tokens(self) -> int:
        return self.text_tokens + self.image_tokens


def messages_read(body: dict[str, Any], grid: VisionGrid) -> Messages:
    """Validate ``body["messages"]`` and count its tokens (images by Qwen-VL's smart_resize)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "Field required: messages (a non-empty list)", param="messages")
    texts: list[str] = []
    images: list[ImageFacts] = []
    tokens = vision = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(
                400, f"messages[{index}] needs a role in {sorted(ROLES)}", param="messages"
            )
        tokens += TOKENS_PER_MESSAGE
        for part in _parts(message, index):
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
                tokens += text_tokens(part["text"])
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                url = part["image_url"].get("url")
                if not isinstance(url, str):
                    raise ApiError(400, "image_url.url must be a string", param="messages")
                try:
                    facts = image_read(url, look=not images)  # the first is described
                except BadImage as exc:
                    raise ApiError(400, str(exc), param="messages") from None
                images.append(facts)
                try:
                    vision += grid_image_tokens(facts.width, facts.height, grid)
                except ValueError as exc:
                    raise ApiError(400, str(exc), param="messages") from None
                vision += VISION_WRAPPER_TOKENS
            else:
                raise ApiError(
                    400,
                    f"Unsupported content part in messages[{index}]: {kind!r}",
                    param="messages",
                )
    return Messages("\n".join(texts), images, tokens, vision)


def _checked_schema(schema: Any, where: str) -> dict[str, Any]:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"{where} is not valid JSON: {exc}", param=where) from None
    if not isinstance(schema, dict):
        raise ApiError(400, f"{where} must be a JSON schema object", param=where)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ApiError(
            400, f"{where} is not a valid JSON schema: {exc.message}", param=where
        ) from None
    return schema


def _constraint(body: dict[str, Any]) -> tuple[dict[str, Any] | None, bool, list[str] | None]:
    """The structured-output constraint: (schema, json_object, choices)."""
    fmt = body.get("response_format")
    outputs = body.get("structured_outputs")
    if fmt is not None and outputs is not None:
        raise ApiError(
            400,
            "Use either response_format or structured_outputs, not both",
            param="response_format",
        )
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "text":
            return None, False, None
        if kind == "json_object":
            return None, True, None
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or "schema" not in spec:
                raise ApiError(
                    400,
                    "response_format.json_schema.schema is required for type json_schema",
                    param="response_format",
                )
            return (
                _checked_schema(spec["schema"], "response_format.json_schema.schema"),
                False,
                None,
            )
        raise ApiError(
            400,
            f"response_format.type {kind!r} is not supported by the simulator",
            param="response_format",
        )
    if fmt is not None:
        raise ApiError(400, "response_format must be an object", param="response_format")
    if isinstance(outputs, dict):
        if "json" in outputs:
            return _checked_schema(outputs["json"], "structured_outputs.json"), False, None
        choice = outputs.get("choice")
        if isinstance(choice, list) and choice and all(isinstance(c, str) for c in choice):
            return None, False, choice
        raise ApiError(
            400,
            "structured_outputs: the simulator supports 'json' and 'choice' only",
            param="structured_outputs",
        )
    if outputs is not None:
        raise ApiError(400, "structured_outputs must be an object", param="structured_outputs")
    return None, False, None


def _at_least(version: str, wanted: tuple[int, int]) -> bool:
    return tuple(int(part) for part in version.split(".")[:2]) >= wanted


def _context_check(
    counted: Messages, requested: int | None, param: str, max_model_len: int, version: str
) -> int:
    """Return the completion budget, or raise the context-length error of ``version``."""
    prompt_tokens = counted.tokens
    if _at_least(version, (0, 34)):
        return _context_check_034(counted, requested, param, max_model_len)
    if requested is None:
        if prompt_tokens >= max_model_len:
            raise ApiError(
                400,
                f"This model's maximum context length is {max_model_len} tokens. However, your "
                f"request has {prompt_tokens} input tokens. Please reduce the length of the "
                "input messages.",
            )
        return max_model_len - prompt_tokens
    if prompt_tokens + requested <= max_model_len:
        return requested
    if _at_least(version, (0, 16)):
        # vLLM 0.16 to 0.33 (harbor-framework/harbor PR #996 quotes it).
        raise ApiError(
            400,
            f"You passed {prompt_tokens} input tokens and requested {requested} output tokens. "
            f"However, the model's context length is only {max_model_len} tokens, resulting in "
            f"a maximum input length of {max_model_len - requested} tokens. Please reduce the "
            f"length of the input prompt. (parameter=input_tokens, value={prompt_tokens})",
            param="input_tokens",
        )
    raise ApiError(
        400,
        f"This model's maximum context length is {max_model_len} tokens. However, you "
        f"requested {prompt_tokens + requested} tokens ({prompt_tokens} in the messages, "
        f"{requested} in the completion). Please reduce the length of the messages or "
        "completion.",
    )


def _context_check_034(
    counted: Messages, requested: int | None, param: str, max_model_len: int
) -> int:
    """vLLM 0.34.0: only a prompt too long by itself is refused; the output budget shrinks."""
    if requested is not None and requested > max_model_len:
        # renderers/params.py TokenizeParams.__post_init__
        raise ApiError(
            400,
            f"{param}={requested} cannot be greater than max_model_len={max_model_len}. Please "
            f"request fewer output tokens. (parameter={param}, value={requested})",
            param=param,
        )
    if counted.text_tokens > max_model_len:
        # renderers/params.py _token_len_check (the text, before images are expanded)
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains {counted.text_tokens} input tokens, which exceeds this limit even "
            "without any output tokens. Please reduce the length of the input prompt. "
            f"(parameter=input_tokens, value={counted.text_tokens})",
            param="input_tokens",
        )
    if counted.tokens > max_model_len:
        # serve/utils/api_utils.py get_max_tokens (a ValueError: 400 BadRequestError)
        raise ApiError(
            400,
            f"Input length ({counted.tokens}) exceeds model's maximum context length "
            f"({max_model_len}).",
        )
    if counted.tokens == max_model_len:
        # v1/engine/input_processor.py: no room for even one output token
        raise ApiError(
            400,
            f"The decoder prompt (length {counted.tokens}) plus the number of requested output "
            f"tokens (at least 1) is longer than the maximum model length of {max_model_len}. "
            "Make sure that `max_model_len` is no smaller than the number of text tokens "
            "(prompt + requested output tokens).",
        )
    room = max_model_len - counted.tokens
    # serve/utils/api_utils.py get_max_tokens: min(model_max_tokens, max_tokens) — silently.
    return room if requested is None else min(room, requested)


def chat_request_parse(
    body: Any, *, served: list[str], max_model_len: int, grid: VisionGrid, version: str
) -> ChatRequest:
    """Validate a chat body the way vLLM's OpenAI server does; raise ApiError otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    model = body.get("model")
    if model is not None and model not in served:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    ignored = sorted(set(body) - KNOWN_FIELDS)
    if ignored:
        # Like vLLM: unknown (and removed guided_*) fields are logged and otherwise ignored.
        log.warning("The following fields were present in the request but ignored: %s", ignored)
    if body.get("stream") or body.get("n", 1) != 1:
        raise ApiError(
            400, "The simulator answers non-streaming requests with n=1 only", param="stream"
        )
    counted = messages_read(body, grid)
    param = "max_completion_tokens"
    requested = _int(body, param, 1)
    if requested is None:
        param = "max_tokens"
        requested = _int(body, param, 1)
    temperature = body.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature < 0:
        raise ApiError(
            400,
            f"temperature must be a non-negative number, got {temperature!r}",
            param="temperature",
        )
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"seed must be an integer, got {seed!r}", param="seed")
    schema, json_object, choices = _constraint(body)
    max_tokens = _context_check(counted, requested, param, max_model_len, version)
    return ChatRequest(
        text=counted.text,
        images=counted.images,
        prompt_tokens=counted.tokens,
        text_tokens=counted.text_tokens,
        max_tokens=max_tokens,
        temperature=float(temperature),
        seed=seed,
        schema=schema,
        json_object=json_object,
        choices=choices,
    )
