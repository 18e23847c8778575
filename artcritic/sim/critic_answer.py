"""What the simulated Critic "sees" and "says": image facts, token counts, answers.

Scores and rationales follow what ``critic_vision`` measures in the image it was sent (its
colours, brightness, contrast, where the subject sits) and the colours the prompt asks for;
a hash of the image bytes and the prompt text (plus the seed when sampling) adds a ±1
"model variance", so the same request gives the same verdict. With a JSON
schema the answer is an instance of that schema; without one (or with the
removed ``guided_json``) it is prose around a JSON-ish block, as an unconstrained
chat model would write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from artcritic.sim.critic_vision import Look, look_at, rationale_for, scores_for

CHARS_PER_TOKEN = 4
MAX_IMAGE_PIXELS = 40_000_000
_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "red": (200, 40, 40),
    "orange": (235, 140, 30),
    "yellow": (235, 215, 50),
    "green": (50, 160, 70),
    "teal": (30, 150, 150),
    "blue": (40, 80, 200),
    "purple": (130, 60, 170),
    "pink": (235, 130, 180),
    "brown": (120, 80, 40),
}
# What the model writes when nothing constrains it: the shape the system prompt describes.
PROSE_SHAPE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {
            "type": "object",
            "properties": {
                k: {"type": "integer", "minimum": 0, "maximum": 10}
                for k in ("taste", "manufacturability", "prompt_intent", "consistency")
            },
        },
        "verdict": {"type": "string", "enum": ["approve", "reject"]},
    },
}


class BadImage(ValueError):
    """An image part the server cannot load; the message is the 400 error text."""


@dataclass(frozen=True)
class ImageFacts:
    """What the simulated vision encoder reads from one image."""

    width: int
    height: int
    colour: str
    brightness: str
    digest: bytes
    look: Look | None = None

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


def _nearest_colour(rgb: tuple[int, int, int]) -> str:
    return min(
        _COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(_COLOURS[n], rgb, strict=True))
    )


def _pixels(img: Image.Image) -> list[tuple[int, int, int]]:
    data = img.tobytes()
    return [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]


def image_read(url: str, *, look: bool = True) -> ImageFacts:
    """Decode a ``data:image/...;base64,`` URL; BadImage with the reason otherwise.

    ``look=False`` decodes the pixels (a broken image is still refused) but skips the
    measurements, for images the answer does not describe (all but the first): they cost
    only their tokens, and the simulator's one event loop is not held up measuring them.
    """
    if url.startswith(("http://", "https://")):
        raise BadImage("The simulator cannot fetch image URLs; send a base64 data: URL.")
    match = re.fullmatch(r"data:(image/[a-zA-Z0-9.+-]+);base64,(.*)", url, flags=re.DOTALL)
    if not match:
        raise BadImage("Invalid image URL: expected 'data:image/<type>;base64,<data>'.")
    try:
        raw = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("Failed to load image: the data URL is not valid base64.") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise BadImage(f"Image of {img.width}×{img.height} px is too large to load.")
            img.load()
            seen = look_at(img) if look else None
            width, height = img.width, img.height
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BadImage(f"Failed to load image: {exc}") from None
    digest = hashlib.sha256(raw).digest()
    if seen is None:
        return ImageFacts(width, height, "unseen", "unseen", digest)
    return ImageFacts(width, height, seen.dominant, seen.brightness, digest, seen)


def text_tokens(text: str) -> int:
    """Approximate tokenizer: about four characters per token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def image_tokens(facts: ImageFacts, per_megapixel: int) -> int:
    """Vision tokens for one image at the model's tokens per megapixel."""
    return max(1, round(facts.megapixels * per_megapixel))


def prompt_text(text: str) -> str:
    """The image prompt quoted in the request (``"prompt": "…"``), else the whole text."""
    quoted = re.search(r'(?<!\\)"prompt"\s*:\s*', text)
    if quoted:
        try:
            value, _ = json.JSONDecoder().raw_decode(text, quoted.end())
        except json.JSONDecodeError:
            return text
        return value if isinstance(value, str) else text
    return text


def prompt_words(text: str) -> list[str]:
    """Up to three distinctive words of the image prompt quoted in the request."""
    source = prompt_text(text)
    words: list[str] = []
    for word in re.findall(r"[A-Za-z][A-Za-z-]{3,}", source):
        if word.lower() not in {w.lower() for w in words}:
            words.append(word)
        if len(words) == 3:
            break
    return words or ["the", "brief"]


@dataclass(frozen=True)
class Seeds:
    """Hash material for one request: image digest, prompt text and sampling key."""

    facts: ImageFacts | None
    text: str
    sampling: bytes

    @property
    def sampled(self) -> bool:
        """Sampling (temperature > 0) rather than greedy decoding."""
        return self.sampling not in (b"", b"greedy")

    def number(self, path: tuple[str, ...]) -> int:
        key = (self.facts.digest if self.facts else b"") + self.text.encode("utf-8", "replace")
        digest = hashlib.sha256(key + self.sampling + "/".join(path).encode()).digest()
        return int.from_bytes(digest[:8], "big")


_RATIONALE = {
    "taste": "Taste fit is {grade}: the {colour}, {brightness} palette of this {size} image "
    'against the taste notes for "{words}".',
    "manufacturability": 'Manufacturability is {grade}: the "{words}" forms read as simple '
    "{colour} shells with few undercuts.",
    "prompt_intent": 'Prompt match is {grade}: the image shows "{words}" in a mostly '
    "{colour} scene.",
    "consistency": "Consistency with earlier decisions is {grade} for this {colour} take on "
    '"{words}".',
}
_GRADES = ["poor", "weak", "fair", "good", "strong"]


def _sentence(key: str, score: int | None, seeds: Seeds, words: list[str]) -> str:
    facts = seeds.facts
    if facts is not None and facts.look is not None:
        if score is None:
            score = _measured(seeds).get(key, 5)
        text = rationale_for(key, score, facts.look, prompt_text(seeds.text), words)
        if seeds.sampled:
            # Sampled answers word themselves differently from seed to seed, as a model does.
            opener = ("", "On balance, ", "Looking closely, ", "Overall, ")[
                seeds.number(("opener", key)) % 4
            ]
            text = opener + (text[:1].lower() + text[1:] if opener else text)
        return text
    if score is None:
        score = seeds.number(("grade", key)) % 11
    grade = _GRADES[score * len(_GRADES) // 11]
    template = _RATIONALE.get(key, '{key} is {grade} for "{words}" in a {colour} image.')
    return template.format(
        key=key,
        colour=facts.colour if facts else "unseen",
        brightness=facts.brightness if facts else "unseen",
        size=f"{facts.width}×{facts.height}" if facts else "text-only",
        grade=grade,
        words=" ".join(words),
    )


@dataclass
class _Fill:
    """Generation state: the hash material and the numbers chosen so far, by field name."""

    seeds: Seeds
    words: list[str]
    numbers: dict[str, int]


def _pick(schema: dict[str, Any], path: tuple[str, ...], fill: _Fill) -> Any:
    options = schema.get("enum") or []
    if {"approve", "reject"} <= set(options) and fill.numbers:
        mean = sum(fill.numbers.values()) / len(fill.numbers)
        return "approve" if mean >= 6 else "reject"
    return options[fill.seeds.number(path) % len(options)] if options else None


def _string(schema: dict[str, Any], path: tuple[str, ...], fill: _Fill) -> str:
    key = path[-1] if path else "answer"
    text = _sentence(key, fill.numbers.get(key), fill.seeds, fill.words)
    text = text[: int(schema.get("maxLength", len(text)))]
    return text.ljust(int(schema.get("minLength", 0)), ".")


_WORD = re.compile(r"[a-z0-9]+")
NEAR_DUPLICATE = 0.6  # word overlap (Jaccard) above which a prior prompt counts as the same
REJECTED_PENALTY = {"consistency": 3, "taste": 2}  # per rejected near-duplicate, up to two


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def rejected_near_duplicates(text: str) -> int:
    """How many prior decisions quoted in the request are rejections of a near-identical prompt.

    Reads the ``prior_decisions`` list of the quoted data document (critic_prompt's shape);
    a request without one has none.
    """
    found = re.search(r'"prior_decisions"\s*:\s*', text)
    if not found:
        return 0
    try:
        decisions, _ = json.JSONDecoder().raw_decode(text, found.end())
    except json.JSONDecodeError:
        return 0
    asked = _words(prompt_text(text))
    count = 0
    for entry in decisions if isinstance(decisions, list) else []:
        if not isinstance(entry, dict) or entry.get("verdict") != "reject":
            continue
        seen = _words(str(entry.get("image_prompt", "")))
        if asked and seen and len(asked & seen) / len(asked | seen) >= NEAR_DUPLICATE:
            count += 1
    return count


def _measured(seeds: Seeds) -> dict[str, int]:
    """Scores from what the image shows and the prompt asks; the hash adds ±1 per criterion.

    Like a model that learns from the examples it is shown, the simulator scores lower
    when the team rejected near-identical prompts before: deterministically, by
    REJECTED_PENALTY for each such rejection (at most two counted).
    """
    if seeds.facts is None or seeds.facts.look is None:
        return {}
    spread = 2 if seeds.sampled else 1  # sampling varies more than greedy decoding
    jitter = {
        key: seeds.number(("jitter", key)) % (2 * spread + 1) - spread
        for key in ("taste", "manufacturability", "prompt_intent", "consistency")
    }
    scores = scores_for(seeds.facts.look, prompt_text(seeds.text), jitter)
    rejected = min(2, rejected_near_duplicates(seeds.text))
    for key, penalty in REJECTED_PENALTY.items():
        scores[key] = max(0, scores[key] - penalty * rejected)
    return scores


def _number(schema: dict[str, Any], path: tuple[str, ...], fill: _Fill) -> int:
    low = int(schema.get("minimum", 0))
    high = int(schema.get("maximum", low + 10))
    key = path[-1] if path else "value"
    facts = fill.seeds.facts
    if facts is not None and facts.look is not None and key in _RATIONALE:
        value = max(low, min(high, _measured(fill.seeds)[key]))
        fill.numbers[key] = value
        return value
    value = low + fill.seeds.number(path) % (high - low + 1)
    fill.numbers[path[-1] if path else "value"] = value
    return value


def _object(schema: dict[str, Any], path: tuple[str, ...], fill: _Fill) -> dict[str, Any]:
    return {k: instance(sub, fill, (*path, k)) for k, sub in schema.get("properties", {}).items()}


def _array(schema: dict[str, Any], path: tuple[str, ...], fill: _Fill) -> list[Any]:
    count = int(schema.get("minItems", 1))
    return [instance(schema.get("items", {}), fill, (*path, str(i))) for i in range(count)]


def _boolean(schema: dict[str, Any], path: tuple[str, ...], fill: _Fill) -> bool:
    return fill.seeds.number(path) % 2 == 0


_BY_TYPE = {
    "object": _object,
    "integer": _number,
    "number": _number,
    "string": _string,
    "boolean": _boolean,
    "array": _array,
}


def instance(schema: dict[str, Any], fill: _Fill, path: tuple[str, ...] = ()) -> Any:
    """A deterministic instance of a (simple) JSON schema, meaningful for verdict shapes."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _pick(schema, path, fill)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return instance(schema[combinator][0], fill, path)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    make = _BY_TYPE.get(kind)
    return make(schema, path, fill) if make else None


def schema_answer(schema: dict[str, Any], seeds: Seeds, words: list[str]) -> str:
    """The constrained answer: compact JSON conforming to ``schema``."""
    return json.dumps(instance(schema, _Fill(seeds, words, {})), ensure_ascii=False)


def prose_answer(seeds: Seeds, words: list[str]) -> str:
    """The unconstrained answer: chatty prose with a fenced JSON-ish block."""
    block = json.dumps(instance(PROSE_SHAPE, _Fill(seeds, words, {})), indent=2)
    return (
        f"Here is my review of the concept image for {', '.join(words)}:\n\n"
        f"```json\n{block}\n```\n\n"
        "Overall the design direction is promising, though the proportions could be refined."
    )


def broken_schema_answer(schema: dict[str, Any], seeds: Seeds, words: list[str]) -> str:
    """Fault ``invalid_json_schema``: valid JSON, but a score of 11 and a field missing."""
    data = instance(schema, _Fill(seeds, words, {}))
    if isinstance(data, dict):
        _break(data)
    return json.dumps(data, ensure_ascii=False)


def _break(data: dict[str, Any]) -> None:
    for value in data.values():
        if isinstance(value, dict) and value:
            first = next(iter(value))
            if isinstance(value[first], int):
                value[first] = 11
                break
    objects = [v for v in data.values() if isinstance(v, dict) and v]
    if objects:
        last = objects[-1]
        del last[list(last)[-1]]
    elif data:
        del data[list(data)[-1]]


def garbage_answer(seeds: Seeds) -> str:
    """Fault ``garbage_output``: what a broken decoder emits — not JSON at all."""
    return "I'm sorry, but as an AI I can see the image shows a product!!! <|im_end|> " + (
        seeds.number(("garbage",)).to_bytes(8, "big").hex()
    )


def scrambled_answer(constrained: bool, max_tokens: int) -> str:
    """Uninitialised weights after a level-2 wake: repeated tokens until the limit."""
    if constrained:
        return ('{"scores": {"taste": ' + "0" * (max_tokens * CHARS_PER_TOKEN))[
            : max_tokens * CHARS_PER_TOKEN
        ]
    return "!" * (max_tokens * CHARS_PER_TOKEN)
