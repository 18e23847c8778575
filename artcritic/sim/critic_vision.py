"""What the simulated Critic measures in the image it is sent, so its words fit the picture.

Pure Pillow arithmetic on a 64×64 copy: the palette by hue (the share of each named colour,
greys and whites counted apart from the hues), brightness, contrast, saturation, and where
the subject sits (pixels that differ from the border's colour: their centre, spread and the
share of the frame they fill). Scores follow from these numbers and from the colours the
prompt asks for, so an orange-and-green lamp is described as orange and green, and a
well-lit, clearly framed, coherent image is more likely to be approved.
"""

from __future__ import annotations

import colorsys
import re
from collections import Counter
from dataclasses import dataclass

from PIL import Image

SIDE = 64
# Hue bands (degrees) of the named colours; greys, black and white are decided by value and
# saturation before hue is read.
_HUES = (
    (15, "red"),
    (40, "orange"),
    (65, "yellow"),
    (165, "green"),
    (200, "teal"),
    (255, "blue"),
    (290, "purple"),
    (335, "pink"),
    (360, "red"),
)
COLOUR_WORDS = frozenset(
    {"red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "black",
     "white", "grey", "gray", "beige", "cream", "gold", "silver"}
)
# Words a prompt uses for a colour, as the palette names it.
_SYNONYMS = {"gray": "grey", "cream": "white", "beige": "brown", "gold": "yellow", "silver": "grey"}


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The everyday name of one pixel's colour."""
    r, g, b = (c / 255 for c in rgb)
    hue, sat, val = colorsys.rgb_to_hsv(r, g, b)
    if val < 0.18:
        return "black"
    if sat < 0.16:
        return "white" if val > 0.82 else "grey"
    degrees = hue * 360
    name = next(label for limit, label in _HUES if degrees < limit)
    if name in ("orange", "red") and val < 0.55 and sat > 0.35:
        return "brown"
    return name


@dataclass(frozen=True)
class Look:
    """The measured facts of one image."""

    palette: tuple[tuple[str, float], ...]  # (colour, share of pixels), largest first
    luma: float  # mean brightness 0..1
    contrast: float  # standard deviation of brightness 0..1
    saturation: float  # mean saturation 0..1
    subject_x: float  # centre of the subject, 0 (left) .. 1 (right)
    subject_y: float  # 0 (top) .. 1 (bottom)
    subject_fill: float  # share of the frame the subject covers

    @property
    def brightness(self) -> str:
        return "dark" if self.luma < 0.33 else "bright" if self.luma > 0.66 else "mid-toned"

    @property
    def dominant(self) -> str:
        return self.palette[0][0] if self.palette else "grey"

    @property
    def hues(self) -> list[str]:
        """The chromatic colours that matter (≥ 4 % of the frame), largest first."""
        neutral = {"black", "white", "grey"}
        return [name for name, share in self.palette if name not in neutral and share >= 0.04]

    def palette_words(self, limit: int = 3) -> str:
        """'mostly orange (46 %) with green (22 %) and white (18 %)'."""
        parts = [f"{name} ({round(share * 100)} %)" for name, share in self.palette[:limit]]
        if not parts:
            return "no readable colour"
        if len(parts) == 1:
            return f"almost all {parts[0]}"
        rest = " and ".join(parts[1:]) if len(parts) == 2 else f"{parts[1]} and {parts[2]}"
        return f"mostly {parts[0]} with {rest}"

    @property
    def placement(self) -> str:
        """Where the subject sits, as a designer would say it."""
        horizontal = (
            "left of centre" if self.subject_x < 0.42 else
            "right of centre" if self.subject_x > 0.58 else "centred"
        )
        vertical = "high" if self.subject_y < 0.4 else "low" if self.subject_y > 0.62 else ""
        return f"{horizontal}{', sitting ' + vertical if vertical else ''}"

    @property
    def scale(self) -> str:
        if self.subject_fill < 0.12:
            return "small in the frame"
        if self.subject_fill > 0.6:
            return "filling the frame"
        return "well sized in the frame"


def look_at(img: Image.Image) -> Look:
    """Measure an image (any mode, any size)."""
    small = img.convert("RGB").resize((SIDE, SIDE))
    data = small.tobytes()
    pixels = [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]
    total = len(pixels)
    names = Counter(colour_name(p) for p in pixels)
    palette = tuple((name, count / total) for name, count in names.most_common())
    luma_values = [(0.299 * r + 0.587 * g + 0.114 * b) / 255 for r, g, b in pixels]
    luma = sum(luma_values) / total
    contrast = (sum((v - luma) ** 2 for v in luma_values) / total) ** 0.5
    saturation = sum(colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[1] for r, g, b in pixels)
    saturation /= total
    # The background is what the border shows most; the subject is what differs from it.
    border = [pixels[i] for i in range(SIDE)] + [pixels[i * SIDE] for i in range(SIDE)]
    border += [pixels[i * SIDE + SIDE - 1] for i in range(SIDE)]
    bg = tuple(sorted(channel)[len(channel) // 2] for channel in zip(*border, strict=True))
    xs: list[int] = []
    ys: list[int] = []
    for index, (r, g, b) in enumerate(pixels):
        if abs(r - bg[0]) + abs(g - bg[1]) + abs(b - bg[2]) > 90:
            xs.append(index % SIDE)
            ys.append(index // SIDE)
    if xs:
        subject_x = (sum(xs) / len(xs) + 0.5) / SIDE
        subject_y = (sum(ys) / len(ys) + 0.5) / SIDE
        fill = len(xs) / total
    else:
        subject_x = subject_y = 0.5
        fill = 0.0
    return Look(palette, luma, contrast, saturation, subject_x, subject_y, fill)


def asked_colours(prompt: str) -> list[str]:
    """The colours a prompt names, as the palette names them."""
    words = re.findall(r"[a-z]+", prompt.lower())
    return list(dict.fromkeys(_SYNONYMS.get(w, w) for w in words if w in COLOUR_WORDS))


def _clamp(value: float) -> int:
    return max(0, min(10, round(value)))


def scores_for(look: Look, prompt: str, jitter: dict[str, int]) -> dict[str, int]:
    """Scores 0–10 from the measurements; ``jitter`` (−1, 0 or +1 per criterion) stands for
    the model's own variance, fixed per image and prompt."""
    hues = look.hues
    taste = 6.0
    taste += 1.0 if 0.18 <= look.contrast <= 0.35 else -1.0 if look.contrast < 0.08 else 0.0
    taste += 1.0 if 0.15 <= look.saturation <= 0.6 else -1.0 if look.saturation > 0.75 else 0.0
    taste += -1.0 if len(hues) > 4 else 0.5 if 1 <= len(hues) <= 3 else 0.0
    taste += -1.0 if look.luma < 0.15 or look.luma > 0.92 else 0.0
    making = 6.5
    making += 1.0 if 0.12 <= look.subject_fill <= 0.55 else -1.5
    making += -1.0 if len(hues) > 4 else 0.5
    asked = asked_colours(prompt)
    seen = {name for name, share in look.palette if share >= 0.03}
    intent = 6.5
    if asked:
        found = sum(1 for colour in asked if colour in seen)
        intent += 2.5 * found / len(asked) - 1.5 * (len(asked) - found) / len(asked)
    consistency = 6.0 + (0.5 if 0.3 <= look.subject_x <= 0.7 else -0.5)
    return {
        "taste": _clamp(taste + jitter.get("taste", 0)),
        "manufacturability": _clamp(making + jitter.get("manufacturability", 0)),
        "prompt_intent": _clamp(intent + jitter.get("prompt_intent", 0)),
        "consistency": _clamp(consistency + jitter.get("consistency", 0)),
    }


def rationale_for(key: str, score: int, look: Look, prompt: str, words: list[str]) -> str:
    """One criterion's rationale, in the Critic's words, about this image."""
    subject = " ".join(words)
    grade = ("poor", "weak", "fair", "good", "strong")[min(4, score * 5 // 11)]
    if key == "taste":
        return (
            f"Taste fit is {grade}: a {look.brightness} image, {look.palette_words()}; "
            f"contrast is {'lively' if look.contrast >= 0.18 else 'flat'} and the colour "
            f"{'restrained' if look.saturation < 0.45 else 'saturated'} for “{subject}”."
        )
    if key == "manufacturability":
        return (
            f"Manufacturability is {grade}: the {look.dominant} form is {look.scale} and reads "
            f"as {'a few simple shells' if len(look.hues) <= 3 else 'many separate parts'}; "
            f"{'few' if look.subject_fill <= 0.55 else 'some'} undercuts are implied."
        )
    if key == "prompt_intent":
        asked = asked_colours(prompt)
        if asked:
            seen = {name for name, share in look.palette if share >= 0.03}
            found = [c for c in asked if c in seen]
            missing = [c for c in asked if c not in seen]
            detail = (
                f"the asked-for {', '.join(found)} {'is' if len(found) == 1 else 'are'} there"
                if found
                else "none of the asked-for colours show"
            ) + (f"; {', '.join(missing)} is missing" if found and missing else "")
        else:
            detail = f"the image shows a {look.dominant} subject {look.placement}"
        return f"Prompt match is {grade} for “{subject}”: {detail}."
    if key == "consistency":
        return (
            f"Consistency with earlier decisions is {grade}: the subject sits {look.placement}, "
            f"{look.scale}, close to what the team approved before."
        )
    return f"{key} is {grade} for “{subject}” in a {look.dominant} image."
