"""Download as zip: the original PNGs as stored, each with a JSON sidecar of what made it."""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from typing import IO, Any

from artcritic.studio import storage
from artcritic.studio.models import CriticReview, Image

MAX_ZIP_IMAGES = 100
MAX_ZIP_BYTES = 512 * 1024 * 1024
# Spill to disk past this: a zip of large PNGs should not sit in the web process's memory.
_IN_MEMORY_BYTES = 16 * 1024 * 1024


class ExportRefused(Exception):
    """A download that is not made: ``reason`` with the numbers and ``next_action``."""

    def __init__(self, reason: str, next_action: str) -> None:
        self.reason = reason
        self.next_action = next_action
        super().__init__(f"{reason} Next: {next_action}")


def export_check(images: list[Image]) -> None:
    """Refuse a selection that is empty or larger than one download may be."""
    if not images:
        raise ExportRefused("No images were selected.", "select one or more images, then download.")
    if len(images) > MAX_ZIP_IMAGES:
        raise ExportRefused(
            f"{len(images)} images were selected; one download holds at most {MAX_ZIP_IMAGES}.",
            f"select {MAX_ZIP_IMAGES} or fewer and download them in parts.",
        )
    total = sum(image.byte_size for image in images)
    if total > MAX_ZIP_BYTES:
        raise ExportRefused(
            f"The selected images are {total / 2**20:.0f} MB; one download holds at most "
            f"{MAX_ZIP_BYTES / 2**20:.0f} MB.",
            "select fewer images and download them in parts.",
        )


def sidecar(image: Image, review: CriticReview | None) -> dict[str, Any]:
    """What a designer (or a script) needs to know about one image, next to its PNG."""
    return {
        "image": image.pk,
        "project": image.project.name,
        "prompt": image.prompt.text,
        "negative_prompt": image.prompt.negative_text,
        "seed": image.seed,
        "width": image.width,
        "height": image.height,
        "settings": image.settings,
        "sha256": image.sha256,
        "created_at": image.created_at.isoformat(),
        "simulated": image.simulated,
        "team": {"approvals": image.approvals, "rejections": image.rejections},
        "critic": None
        if review is None
        else {
            "model": review.model_id,
            "verdict": review.verdict,
            "scores": {
                "taste": review.score_taste,
                "manufacturability": review.score_manufacturability,
                "prompt_intent": review.score_intent,
                "consistency": review.score_consistency,
            },
            "rationale": review.rationale,
            "reviewed_at": review.created_at.isoformat(),
        },
    }


def member_name(image: Image) -> str:
    """The file name of an image inside the zip (its sidecar adds .json)."""
    return f"image-{image.pk}-seed-{image.seed}"


def images_zip(images: list[Image], reviews: dict[int, CriticReview]) -> IO[bytes]:
    """A zip of the images' original PNGs and sidecars, rewound, ready to stream.

    Each PNG is checked against its recorded SHA-256: a changed object is an error, never a
    silently different file in the download.
    """
    export_check(images)
    spool = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115
    with zipfile.ZipFile(spool, "w") as archive:
        for image in images:
            data = storage.image_read(image.object_key)
            if hashlib.sha256(data).hexdigest() != image.sha256:
                raise storage.StorageError(
                    f"Image {image.pk}'s stored PNG does not match its recorded SHA-256; "
                    "it was not added to the download. Next: ask an admin to check the S3 bucket."
                )
            name = member_name(image)
            # PNGs are compressed already: storing them saves the CPU and loses nothing.
            archive.writestr(f"{name}.png", data, compress_type=zipfile.ZIP_STORED)
            text = json.dumps(sidecar(image, reviews.get(image.pk)), indent=2, ensure_ascii=False)
            archive.writestr(f"{name}.json", text, compress_type=zipfile.ZIP_DEFLATED)
    spool.seek(0)
    return spool
