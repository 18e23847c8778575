"""The Critic's verdict: its JSON schema and a strict parser that never invents a score."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from artcritic.runtimes.errors import CriticAnswerInvalid

CRITERIA: tuple[str, ...] = ("taste", "manufacturability", "prompt_intent", "consistency")
VERDICTS: tuple[str, ...] = ("approve", "reject")
SCORE_MIN, SCORE_MAX = 0, 10
RATIONALE_MAX_CHARS = 1000
# A schema-valid answer is under 6 KB; anything far larger is a runaway generation.
ANSWER_MAX_CHARS = 64_000
_EXCERPT_CHARS = 80

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {
            "type": "object",
            "properties": {
                name: {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX}
                for name in CRITERIA
            },
            "required": list(CRITERIA),
            "additionalProperties": False,
        },
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "rationale": {
            "type": "object",
            "properties": {
                name: {"type": "string", "maxLength": RATIONALE_MAX_CHARS} for name in CRITERIA
            },
            "required": list(CRITERIA),
            "additionalProperties": False,
        },
    },
    "required": ["scores", "verdict", "rationale"],
    "additionalProperties": False,
}
VERDICT_SCHEMA_NAME = "critic_verdict"

_VALIDATOR = Draft202012Validator(VERDICT_SCHEMA)


@dataclass(frozen=True)
class CriticVerdictData:
    """A schema-valid verdict: four scores 0–10, approve|reject, one rationale per criterion."""

    scores: dict[str, int]
    verdict: str
    rationale: dict[str, str]


def _excerpt(content: str) -> str:
    text = content[:_EXCERPT_CHARS]
    return repr(text + ("…" if len(content) > _EXCERPT_CHARS else ""))


def _invalid(problem: str, content: str, next_action: str | None = None) -> CriticAnswerInvalid:
    return CriticAnswerInvalid(
        f"The Critic's answer was rejected: {problem}. No score was recorded. "
        f"The answer began: {_excerpt(content)}.",
        next_action,
    )


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told not to.
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key ("verdict" twice) would silently keep the last one; refuse instead.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"field {key!r} appears twice")
        seen[key] = value
    return seen


def _path(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "the answer"


def _describe(error: ValidationError) -> list[str]:
    """Turn one jsonschema error into sentences naming the field and the numbers."""
    where = _path(error)
    kind = error.validator
    # jsonschema types these as "maybe unset"; for the keywords below they are always set.
    instance: Any = error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    if kind == "required":
        prefix = "" if where == "the answer" else f"{where}."
        lines = [f"missing field {prefix}{key}" for key in expected if key not in instance]
    elif kind == "additionalProperties":
        known = set(schema.get("properties", {}))
        lines = [f"unexpected field {k!r} in {where}" for k in sorted(instance) if k not in known]
    elif kind in ("minimum", "maximum"):
        lines = [f"{where} is {instance!r}, out of range {SCORE_MIN}–{SCORE_MAX}"]
    elif kind == "enum":
        allowed = " or ".join(repr(v) for v in expected)
        lines = [f"{where} is {instance!r}, expected {allowed}"]
    elif kind == "maxLength":
        lines = [f"{where} is {len(instance)} characters long, more than the limit of {expected}"]
    elif kind == "type":
        shown = repr(instance)
        shown = shown[:40] + "…" if len(shown) > 40 else shown
        lines = [f"{where} is {shown}, expected {expected}"]
    else:
        lines = [f"{where}: {error.message}"]
    return lines


def _schema_problems(data: Any) -> list[str]:
    errors: Iterable[ValidationError] = sorted(
        _VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
    )
    problems: list[str] = []
    for error in errors:
        problems.extend(_describe(error))
    return problems


def _storable(text: str) -> str | None:
    """Say why a string cannot be stored as PostgreSQL text (NUL, lone surrogates)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate"
    return None


def verdict_parse(content: str | None, *, finish_reason: str) -> CriticVerdictData:
    """Validate the Critic's answer against VERDICT_SCHEMA or raise CriticAnswerInvalid."""
    text = content or ""
    if finish_reason == "length":
        raise _invalid(
            f"it was cut off by the token limit (finish_reason length) after "
            f"{len(text)} characters",
            text,
            "Retry the review; if answers keep hitting the limit, raise the review's "
            "max_completion_tokens (four rationales need a few hundred tokens).",
        )
    if finish_reason != "stop":
        raise _invalid(f"generation ended with finish_reason {finish_reason!r}, not 'stop'", text)
    if not text.strip():
        raise _invalid("the answer is empty", text)
    if len(text) > ANSWER_MAX_CHARS:
        raise _invalid(
            f"the answer is {len(text)} characters long, more than {ANSWER_MAX_CHARS}", text
        )
    try:
        data = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"it is not JSON at char {exc.pos} (line {exc.lineno} column {exc.colno}: {exc.msg})",
            text,
        ) from None
    except ValueError as exc:
        raise _invalid(f"it is not acceptable JSON: {exc}", text) from None
    except RecursionError:
        raise _invalid("it is JSON nested too deeply to read", text) from None
    problems = _schema_problems(data)
    if problems:
        raise _invalid("; ".join(problems), text)
    for name in CRITERIA:
        why = _storable(data["rationale"][name])
        if why:
            raise _invalid(f"rationale.{name} {why}", text)
    return CriticVerdictData(
        # jsonschema counts 7.0 as an integer; int() keeps the stored type honest.
        scores={name: int(data["scores"][name]) for name in CRITERIA},
        verdict=data["verdict"],
        rationale={name: data["rationale"][name] for name in CRITERIA},
    )


def _verdict_skeleton_chars() -> int:
    """Characters of the longest answer's JSON around its four rationales (scores of 10)."""
    skeleton = {
        "scores": dict.fromkeys(CRITERIA, SCORE_MAX),
        "verdict": max(VERDICTS, key=len),
        "rationale": dict.fromkeys(CRITERIA, ""),
    }
    # Pretty-printed JSON is the widest layout a model writes; twice that leaves room for
    # the odd escaped quote or newline inside a rationale.
    return 2 * len(json.dumps(skeleton, indent=2))


# The answer tokens a review reserves so that a schema-valid verdict is never cut: the JSON
# around the rationales plus one token per rationale character (critic_tokens.answer_budget).
VERDICT_SKELETON_CHARS = _verdict_skeleton_chars()
VERDICT_FREE_TEXT_CHARS = len(CRITERIA) * RATIONALE_MAX_CHARS
