"""Check what ComfyUI delivered against what was asked: count, decodable PNG, exact size."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, UnidentifiedImageError

from artcritic.runtimes.comfyui_types import ExpectedImages, OutputImage
from artcritic.runtimes.errors import RuntimeOutputInvalid

NEXT_ACTION = (
    "Nothing was stored. Re-run the job; if it happens again, check ComfyUI's workflow and "
    "custom nodes with `manage.py runtime_doctor comfyui`."
)


def image_refs(entry: dict[str, Any], order: list[str]) -> list[dict[str, str]]:
    """Every image a finished history entry lists, output nodes in graph order."""
    outputs = entry.get("outputs")
    if not isinstance(outputs, dict):
        raise RuntimeOutputInvalid("ComfyUI's history entry has no outputs object.", NEXT_ACTION)
    node_ids = [n for n in order if n in outputs] + [n for n in outputs if n not in order]
    refs: list[dict[str, str]] = []
    for node_id in node_ids:
        images = outputs[node_id].get("images", []) if isinstance(outputs[node_id], dict) else []
        for ref in images:
            if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
                raise RuntimeOutputInvalid(
                    f"ComfyUI's history lists an image of node {node_id} without a filename: "
                    f"{str(ref)[:200]}.",
                    NEXT_ACTION,
                )
            refs.append(
                {
                    "filename": ref["filename"],
                    "subfolder": str(ref.get("subfolder", "")),
                    "type": str(ref.get("type", "output")),
                }
            )
    return refs


def _decode(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "PNG":
            raise ValueError(f"it is {image.format or 'not an image'}, not PNG")
        image.verify()
    # verify() leaves the image unusable; decoding every pixel catches truncated files too.
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def outputs_check(
    downloads: list[tuple[dict[str, str], bytes]], expected: ExpectedImages
) -> list[OutputImage]:
    """Return the images if they are exactly what was asked for; else RuntimeOutputInvalid."""
    problems: list[str] = []
    if len(downloads) != expected.count:
        problems.append(
            f"ComfyUI delivered {len(downloads)} images; {expected.count} were asked for"
        )
    checked: list[OutputImage] = []
    for ref, data in downloads:
        name = f"{ref['subfolder']}/{ref['filename']}" if ref["subfolder"] else ref["filename"]
        try:
            width, height = _decode(data)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            problems.append(f"{name} ({len(data)} bytes) is not a decodable PNG: {exc}")
            continue
        if (width, height) != (expected.width, expected.height):
            problems.append(
                f"{name} is {width}×{height}; {expected.width}×{expected.height} was asked for"
            )
            continue
        checked.append(
            OutputImage(data, ref["filename"], width, height, ref["subfolder"], ref["type"])
        )
    if problems:
        raise RuntimeOutputInvalid("; ".join(problems) + ".", NEXT_ACTION)
    return checked
