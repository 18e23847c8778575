"""Factories for images, reviews, decisions and jobs: each makes one valid row."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus
from artcritic.sim.draw import image_draw, png_encode
from artcritic.studio.models import CriticReview, GenerationRequest, HumanDecision, Image, Verdict
from artcritic.studio.storage import image_store

_counter = itertools.count(1)


def image_make(request: GenerationRequest, index: int = 0, **fields: Any) -> Image:
    """An image row of ``request`` (no bytes in S3: constraints are about the row)."""
    n = next(_counter)
    values: dict[str, Any] = {
        "project": request.project,
        "prompt": request.prompt,
        "request": request,
        "index": index,
        "seed": request.seeds[index] if index < len(request.seeds) else request.seed,
        "settings": request.settings_snapshot(),
        "object_key": f"projects/{request.project_id}/images/factory-{n}.png",
        "thumbnail_key": f"projects/{request.project_id}/thumbs/factory-{n}.webp",
        "width": request.width,
        "height": request.height,
        "byte_size": 1234,
        "sha256": hashlib.sha256(f"image {n}".encode()).hexdigest(),
    }
    values.update(fields)
    return Image.objects.create(**values)


def image_stored(request: GenerationRequest, index: int) -> Image:
    """What the Artist would have stored: a real PNG and thumbnail in S3, and its row."""
    seed = request.seeds[index]
    stored = image_store(
        request.project_id,
        png_encode(image_draw(request.prompt.text, seed, index, 512, 512), prompt=None),
    )
    return Image.objects.create(
        project=request.project,
        prompt=request.prompt,
        request=request,
        index=index,
        seed=seed,
        settings=request.settings_snapshot(),
        object_key=stored.object_key,
        thumbnail_key=stored.thumbnail_key,
        width=stored.width,
        height=stored.height,
        byte_size=stored.byte_size,
        sha256=stored.sha256,
        simulated=True,
    )


def images_stored(request: GenerationRequest) -> list[Image]:
    """Every image of ``request`` as ``image_stored`` makes it, in index order."""
    return [image_stored(request, index) for index in range(len(request.seeds))]


def review_make(image: Image, **fields: Any) -> CriticReview:
    values: dict[str, Any] = {
        "model_id": "Qwen/Qwen2.5-VL-7B-Instruct",
        "score_taste": 7,
        "score_manufacturability": 6,
        "score_intent": 8,
        "score_consistency": 5,
        "verdict": Verdict.APPROVE,
        "rationale": {"taste": "clean", "manufacturability": "ok", "intent": "yes"},
        "raw_response": "{}",
    }
    values.update(fields)
    return CriticReview.objects.create(image=image, **values)


def decision_make(image: Image, user: AbstractUser, **fields: Any) -> HumanDecision:
    fields.setdefault("verdict", Verdict.APPROVE)
    return HumanDecision.objects.create(image=image, user=user, **fields)


def job_make(
    request: GenerationRequest | None = None, image: Image | None = None, **fields: Any
) -> Job:
    """A generate job for ``request``, or a review job for ``image``."""
    subject = request if request is not None else image
    assert subject is not None, "a job needs a request (generate) or an image (review)"
    values: dict[str, Any] = {
        "kind": JobKind.GENERATE if request is not None else JobKind.REVIEW,
        "project": subject.project,
        "request": request,
        "image": image,
        "runtime": "comfyui" if request is not None else "critic",
        "gpu": "sim0",
        "profile_name": "sim-32gb",
        "status": JobStatus.QUEUED,
    }
    values.update(fields)
    return Job.objects.create(**values)


def phase_make(job: Job, **fields: Any) -> JobPhase:
    values: dict[str, Any] = {"status": job.status, "started_at": timezone.now()}
    values.update(fields)
    return JobPhase.objects.create(job=job, **values)
