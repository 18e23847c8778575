"""The decisions data set: what a team would train a LoRA or tune the Critic on.

One record per image, oldest first: its keys in the bucket, prompt, exact settings and
seed, every member's decisions (history included, with notes), every Critic review with
its scores, verdict and the calibrated verdict of the project's current fit. JSON Lines
holds it as is; CSV flattens it to one line per decision (an image nobody decided gets one
line with empty decision columns) with the image's latest review.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Prefetch

from artcritic.critic.calibration import Model
from artcritic.critic.feedback import review_scores
from artcritic.critic.services import calibration_current
from artcritic.studio.models import CriticReview, HumanDecision, Image, Project

FORMATS = ("jsonl", "csv")
CHUNK = 500
# A spreadsheet runs a cell starting with one of these as a formula: a note such as
# "=HYPERLINK(…)" must arrive as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormatInvalid(ValueError):
    """A format other than jsonl or csv."""


def _calibrated(model: Model | None, review: CriticReview) -> dict[str, Any] | None:
    if model is None:
        return None
    p = model.probability(review_scores(review))
    return {"verdict": "approve" if p >= 0.5 else "reject", "p_approve": round(p, 4)}


def export_records(project: Project) -> Iterator[dict[str, Any]]:
    """Each image of the project as one record, oldest first, read in chunks."""
    model = calibration_current(project).model
    images = (
        Image.objects.filter(project=project)
        .select_related("prompt", "request")
        .prefetch_related(
            Prefetch(
                "reviews",
                queryset=CriticReview.objects.order_by("created_at", "id").prefetch_related(
                    Prefetch("shown_decisions", queryset=HumanDecision.objects.only("id"))
                ),
            ),
            Prefetch(
                "decisions",
                queryset=HumanDecision.objects.select_related("user").order_by("created_at", "id"),
            ),
        )
        .order_by("created_at", "id")
    )
    for image in images.iterator(chunk_size=CHUNK):
        yield {
            "image": image.pk,
            "object_key": image.object_key,
            "thumbnail_key": image.thumbnail_key,
            "sha256": image.sha256,
            "width": image.width,
            "height": image.height,
            "seed": image.seed,
            "prompt": image.prompt.text,
            "negative_prompt": image.prompt.negative_text,
            "settings": image.settings,
            "request": image.request_id,
            "created_at": image.created_at.isoformat(),
            "simulated": image.simulated,
            "team": {"approvals": image.approvals, "rejections": image.rejections},
            "decisions": [
                {
                    "decision": d.pk,
                    "user": d.user.get_username(),
                    "verdict": d.verdict,
                    "note": d.note,
                    "current": d.is_current,
                    "decided_at": d.created_at.isoformat(),
                    "undone_at": d.undone_at.isoformat() if d.undone_at else None,
                }
                for d in image.decisions.all()
            ],
            "reviews": [
                {
                    "review": r.pk,
                    "model": r.model_id,
                    "runtime_version": r.runtime_version,
                    "verdict": r.verdict,
                    "scores": {
                        "taste": r.score_taste,
                        "manufacturability": r.score_manufacturability,
                        "prompt_intent": r.score_intent,
                        "consistency": r.score_consistency,
                    },
                    "rationale": r.rationale,
                    "shown_decisions": sorted(d.pk for d in r.shown_decisions.all()),
                    "calibrated": _calibrated(model, r),
                    "reviewed_at": r.created_at.isoformat(),
                }
                for r in image.reviews.all()
            ],
        }


def jsonl_lines(project: Project) -> Iterator[str]:
    for record in export_records(project):
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


CSV_COLUMNS = (
    "image",
    "object_key",
    "thumbnail_key",
    "sha256",
    "prompt",
    "negative_prompt",
    "seed",
    "width",
    "height",
    "settings",
    "user",
    "verdict",
    "note",
    "current",
    "decided_at",
    "undone_at",
    "critic_verdict",
    "score_taste",
    "score_manufacturability",
    "score_prompt_intent",
    "score_consistency",
    "calibrated_verdict",
    "calibrated_p_approve",
    "reviews",
)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_lines(project: Project) -> Iterator[str]:
    """One line per decision, each with its image and the image's latest review."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for record in export_records(project):
        latest = record["reviews"][-1] if record["reviews"] else None
        scores = latest["scores"] if latest else {}
        calibrated = latest["calibrated"] if latest else None
        image_cells = [
            record["image"],
            record["object_key"],
            record["thumbnail_key"],
            record["sha256"],
            _cell(record["prompt"]),
            _cell(record["negative_prompt"]),
            record["seed"],
            record["width"],
            record["height"],
            json.dumps(record["settings"], sort_keys=True),
        ]
        review_cells = [
            latest["verdict"] if latest else "",
            scores.get("taste", ""),
            scores.get("manufacturability", ""),
            scores.get("prompt_intent", ""),
            scores.get("consistency", ""),
            calibrated["verdict"] if calibrated else "",
            calibrated["p_approve"] if calibrated else "",
            len(record["reviews"]),
        ]
        decisions = record["decisions"] or [None]
        for d in decisions:
            decision_cells = (
                ["", "", "", "", "", ""]
                if d is None
                else [
                    _cell(d["user"]),
                    d["verdict"],
                    _cell(d["note"]),
                    "yes" if d["current"] else "no",
                    d["decided_at"],
                    d["undone_at"] or "",
                ]
            )
            writer.writerow(image_cells + decision_cells + review_cells)
            yield flush()


def export_lines(project: Project, fmt: str) -> Iterator[str]:
    """The project's data set in ``fmt`` (jsonl or csv), line by line."""
    if fmt == "jsonl":
        return jsonl_lines(project)
    if fmt == "csv":
        return csv_lines(project)
    raise ExportFormatInvalid(f"format {fmt[:20]!r} is not one of {', '.join(FORMATS)}")
