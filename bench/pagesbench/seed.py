"""A project at scale, made fast with bulk_create: images, decisions, reviews, jobs, history.

At the default size (10,000 images) it matches what the page timings were first measured
on: 10,000 images in 2,500 requests, 3,000 decisions, 8,000 reviews, ~20,000 jobs with
~100,000 phase rows, ~38,000 audit events. Rows only: no image bytes exist in S3 (pages
sign URLs without fetching them). The image counters are kept by the database triggers as
the rows go in, exactly as in production.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from artcritic.audit.models import AuditEvent
from artcritic.jobs.models import Job, JobKind, JobPhase, JobStatus, Phase
from artcritic.studio.models import (
    CriticReview,
    GenerationRequest,
    HumanDecision,
    Image,
    Membership,
    Project,
    Prompt,
    ReviewStatus,
    Role,
)

IMAGES_PER_REQUEST = 4
BATCH = 2000
WORDS = (
    "brushed aluminium desk lamp",
    "walnut side table with brass legs",
    "matte ceramic kettle, teal glaze",
    "folding bicycle helmet, recycled foam",
    "modular shelf in powder-coated steel",
    "stackable oak stool for cafés",
    "cordless vacuum with a translucent body",
    "pendant light of pleated paper",
)


@dataclass(frozen=True)
class Seeded:
    """What was made: the project, its designer (a member) and a staff user."""

    project: Project
    designer: User
    staff: User
    images: int


def _digest(n: int) -> str:
    return hashlib.sha256(f"bench image {n}".encode()).hexdigest()


def project_seed(
    images: int = 10_000,
    *,
    decisions: int | None = None,
    reviews: int | None = None,
    designer: User | None = None,
    rng_seed: int = 12,
    history: bool = True,
) -> Seeded:
    """One project with ``images`` images and, in proportion, everything around them."""
    rng = random.Random(rng_seed)
    decisions = int(images * 0.3) if decisions is None else decisions
    reviews = int(images * 0.8) if reviews is None else reviews
    requests = max(1, images // IMAGES_PER_REQUEST)
    with transaction.atomic():
        tag = rng.randrange(10**9)
        # No passwords: the bench and the tests sign in with real sessions (force_login).
        designer = designer or User.objects.create_user(f"designer{tag}")
        colleague = User.objects.create_user(f"colleague{tag}")
        staff = User.objects.create_user(f"staff{tag}", is_staff=True, is_superuser=True)
        project = Project.objects.create(
            name=f"Scale {images}", brief="Furniture and small appliances for compact homes."
        )
        Membership.objects.bulk_create(
            [
                Membership(project=project, user=designer, role=Role.OWNER),
                Membership(project=project, user=colleague, role=Role.MEMBER),
            ]
        )
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(project=project, author=designer, text=f"{WORDS[i % len(WORDS)]}, take {i}")
                for i in range(requests)
            ],
            batch_size=BATCH,
        )
        made = GenerationRequest.objects.bulk_create(
            [
                GenerationRequest(
                    project=project,
                    prompt=prompt,
                    author=designer,
                    profile_name="sim-32gb",
                    model_mode=("flux-dev-fp8", "sdxl")[i % 5 == 0],
                    width=1024,
                    height=1024,
                    steps=20,
                    cfg=1.0,
                    sampler="euler",
                    scheduler="simple",
                    seed_policy="increment",
                    seed=1000 * i,
                    seeds=[1000 * i + k for k in range(IMAGES_PER_REQUEST)],
                    count=IMAGES_PER_REQUEST,
                )
                for i, prompt in enumerate(prompts)
            ],
            batch_size=BATCH,
        )
        generate_jobs = Job.objects.bulk_create(
            [
                Job(
                    kind=JobKind.GENERATE,
                    project=project,
                    request=request,
                    submitted_by=designer,
                    status=JobStatus.DONE,
                    runtime="comfyui",
                    gpu="sim0",
                    profile_name="sim-32gb",
                    progress_current=IMAGES_PER_REQUEST,
                    progress_total=IMAGES_PER_REQUEST,
                    output_count=IMAGES_PER_REQUEST,
                )
                for request in made
            ],
            batch_size=BATCH,
        )
        rows = []
        for n in range(images):
            request = made[n // IMAGES_PER_REQUEST % len(made)]
            index = n % IMAGES_PER_REQUEST
            rows.append(
                Image(
                    project=project,
                    prompt_id=request.prompt_id,
                    request=request,
                    job=generate_jobs[n // IMAGES_PER_REQUEST % len(made)],
                    index=index if n < len(made) * IMAGES_PER_REQUEST else n,
                    seed=request.seeds[index],
                    settings={**request.settings_snapshot(), "seed": request.seeds[index]},
                    object_key=f"projects/{project.pk}/images/bench-{tag}-{n}.png",
                    thumbnail_key=f"projects/{project.pk}/thumbs/bench-{tag}-{n}.webp",
                    width=1024,
                    height=1024,
                    byte_size=1_400_000,
                    sha256=_digest(n),
                    review_status=ReviewStatus.REVIEWED if n < reviews else ReviewStatus.PENDING,
                    simulated=True,
                )
            )
        made_images = Image.objects.bulk_create(rows, batch_size=BATCH)
        _spread_in_time(project)
        _reviews(made_images[:reviews], rng)
        _decisions(made_images, decisions, (designer, colleague), rng)
        review_jobs = Job.objects.bulk_create(
            [
                Job(
                    kind=JobKind.REVIEW,
                    project=project,
                    image=image,
                    submitted_by=designer,
                    status=JobStatus.DONE if i < reviews else JobStatus.CANCELLED,
                    runtime="critic",
                    gpu="sim0",
                    profile_name="sim-32gb",
                    progress_current=1,
                    progress_total=1,
                )
                for i, image in enumerate(made_images)
            ],
            batch_size=BATCH,
        )
        if history:
            _history([*generate_jobs, *review_jobs], project, designer)
    return Seeded(project=project, designer=designer, staff=staff, images=images)


def _spread_in_time(project: Project) -> None:
    """Images over the last weeks, one every two minutes, newest last (as they were made)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE studio_image SET created_at = now() - "
            "((SELECT max(id) FROM studio_image WHERE project_id = %s) - id) * interval '2 minutes'"
            " WHERE project_id = %s",
            [project.pk, project.pk],
        )


def _reviews(images: list[Image], rng: random.Random) -> None:
    def score() -> int:
        return rng.randrange(3, 10)

    CriticReview.objects.bulk_create(
        [
            CriticReview(
                image=image,
                model_id="Qwen/Qwen2.5-VL-7B-Instruct",
                score_taste=score(),
                score_manufacturability=score(),
                score_intent=score(),
                score_consistency=score(),
                verdict=rng.choice(("approve", "reject")),
                rationale={"taste": "Warm palette.", "manufacturability": "Simple shells."},
                raw_response="{}",
                simulated=True,
            )
            for image in images
        ],
        batch_size=BATCH,
    )


def _decisions(
    images: list[Image], count: int, users: tuple[User, User], rng: random.Random
) -> None:
    chosen = rng.sample(images, min(count, len(images)))
    rows: list[HumanDecision] = []
    for n, image in enumerate(chosen):
        user = users[n % 2]
        verdict = rng.choice(("approve", "reject"))
        rows.append(HumanDecision(image=image, user=user, verdict=verdict))
    HumanDecision.objects.bulk_create(rows, batch_size=BATCH)


def _history(jobs: list[Job], project: Project, actor: User) -> None:
    """Five phase rows per job and two audit events per job, as a worker would leave them."""
    now = timezone.now()
    phases = [
        Phase.WAITING_FOR_GPU,
        Phase.STARTING,
        Phase.LOADING,
        Phase.GENERATING,
        Phase.RECORDING,
    ]
    JobPhase.objects.bulk_create(
        [
            JobPhase(
                job=job,
                status=JobStatus.RUNNING,
                phase=phase,
                runtime=job.runtime,
                started_at=now - timedelta(seconds=10 * i),
                detail=f"{phase} for job {job.pk}",
            )
            for job in jobs
            for i, phase in enumerate(phases)
        ],
        batch_size=5000,
    )
    events: list[dict[str, Any]] = [
        {"action": action, "summary": f"{action} {job.pk}", "job_id": job.pk}
        for job in jobs
        for action in ("job.submitted", f"job.{job.status}")
    ]
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(project_id=project.pk, actor=actor, gpu="sim0", data={}, **event)
            for event in events[: int(len(jobs) * 1.9)]
        ],
        batch_size=5000,
    )
