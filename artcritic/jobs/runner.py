"""Runs one claimed job on this GPU: admission again, coordinator, runtime, storage, records.

Generation failures are never retried smaller; a review whose answer is not valid JSON
is a visible failure, never a default score.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from artcritic.audit.services import audit_record
from artcritic.events import event_publish
from artcritic.gpu.admission import admit_generation, admit_review, batch_for, request_settings
from artcritic.gpu.budget import critic_need
from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.profiles import Profile
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.jobs import lifecycle
from artcritic.jobs.coordinator import Coordinator, PhaseSink
from artcritic.jobs.models import Job, JobKind, JobStatus, Phase
from artcritic.jobs.review_wake import review_waking_once
from artcritic.runtimes.comfyui_types import (
    LOADER_NODES,
    ComfyProgress,
    ExpectedImages,
    OutputImage,
)
from artcritic.runtimes.critic import (
    CriticEngineDead,
    CriticReviewAborted,
    CriticVerdict,
    PriorDecision,
    ReviewContext,
)
from artcritic.runtimes.errors import (
    RuntimeFailure,
    RuntimeHung,
    RuntimeInterrupted,
)
from artcritic.runtimes.workflows import graph_build
from artcritic.studio import storage
from artcritic.studio.models import (
    CriticReview,
    GenerationRequest,
    HumanDecision,
    Image,
    ReviewStatus,
    SeedPolicy,
)

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5


@dataclass
class WorkerContext:
    """What a GPU worker holds while it runs jobs: its GPU row, profile and coordinator."""

    gpu: Gpu
    profile: Profile
    coordinator: Coordinator
    worker: str


def run_job(job_id: int, ctx: WorkerContext) -> None:
    """Run a claimed job to done, failed, blocked or cancelled — always one of them."""
    job = Job.objects.select_related("request__prompt", "image__prompt", "project").get(pk=job_id)
    try:
        if job.profile_name != ctx.profile.name:
            # The active profile changed since submission: admission below decides again.
            log.info(
                "job %s submitted on %s now runs under %s",
                job_id,
                job.profile_name,
                ctx.profile.name,
            )
        if job.kind == JobKind.GENERATE:
            _run_generate(job, ctx)
        else:
            _run_review(job, ctx)
    except RuntimeFailure as exc:
        _job_end_on_failure(job_id, ctx, exc)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        lifecycle.job_fail(
            job_id,
            reason=f"Internal error while running the job: {type(exc).__name__}: {exc}"[:1000],
            next_action="Report this to an admin with the job number; nothing was retried.",
        )
    finally:
        for runtime in ("comfyui", "critic"):
            row = ctx.gpu.runtimes.filter(runtime=runtime, status=RuntimeStatus.BUSY).first()
            if row is not None:
                runtime_state_set(ctx.gpu, runtime, RuntimeStatus.READY, detail="idle")


def _job_end_on_failure(job_id: int, ctx: WorkerContext, exc: RuntimeFailure) -> None:
    """Fail the job with the runtime's reason, or record the cancellation a person asked for."""
    if isinstance(exc, RuntimeHung):
        # Evidence that the runtime is stuck: mark it so the coordinator recreates it,
        # visibly, before the next job instead of queueing that job behind the hung work.
        runtime_state_set(ctx.gpu, exc.runtime, RuntimeStatus.UNHEALTHY, detail=exc.reason)
        if exc.cancelled:
            lifecycle.job_cancelled(job_id, detail=f"Cancelled while running. {exc.reason}")
            return
    elif isinstance(exc, RuntimeInterrupted) and lifecycle.job_cancel_requested(job_id):
        lifecycle.job_cancelled(job_id, detail="Cancelled while running; ComfyUI was interrupted.")
        return
    lifecycle.job_fail(job_id, reason=exc.reason, next_action=exc.next_action)


# --- generation -----------------------------------------------------------------------------


@dataclass
class _StepTracker:
    """Turns ComfyUI's websocket stream into phases and step progress for one job."""

    job_id: int
    prompts: int
    steps: int
    index: int = 0
    phase: str = ""
    last_cancel_check: float = 0.0
    done_steps: int = 0
    seen_loading: bool = field(default=False)

    @property
    def total(self) -> int:
        return self.prompts * self.steps

    def on_event(self, event: ComfyProgress) -> None:
        if event.kind == "node" and self.phase == Phase.GENERATING:
            # ComfyUI runs nodes by dependency, so a VAE loader may run after sampling;
            # that is still this generation, not a new loading phase.
            return
        if event.kind == "node" and event.node_type in LOADER_NODES:
            if self.phase != Phase.LOADING:
                self._enter(Phase.LOADING, f"loading {event.node_type} (node {event.node})")
        elif event.kind == "node" and event.node_type not in ("KSampler", "KSamplerAdvanced"):
            if self.phase == Phase.LOADING:
                self._enter(Phase.WARMING, f"first pass: {event.node_type} (node {event.node})")
        elif event.kind == "step":
            value, maximum = int(event.value or 0), int(event.max or self.steps)
            current = self.done_steps + min(value, maximum)
            if self.phase != Phase.GENERATING:
                self._enter(
                    Phase.GENERATING, self._label(value, maximum), progress=(current, self.total)
                )
            lifecycle.job_progress(
                self.job_id, current, self.total, detail=self._label(value, maximum)
            )

    def _label(self, value: int, maximum: int) -> str:
        image = f"image {self.index + 1}/{self.prompts}, " if self.prompts > 1 else ""
        return f"generating {image}step {value}/{maximum}"

    def _enter(self, phase: Phase, detail: str, progress: tuple[int, int] | None = None) -> None:
        self.phase = phase
        lifecycle.job_phase_enter(
            self.job_id, phase, runtime="comfyui", detail=detail, progress=progress
        )

    def cancel_check(self) -> bool:
        now = time.monotonic()
        if now - self.last_cancel_check < CANCEL_POLL_S:
            return False
        self.last_cancel_check = now
        return lifecycle.job_cancel_requested(self.job_id)


def _prompt_plan(request: GenerationRequest) -> list[tuple[int, int, int]]:
    """(first image index, seed, batch) per ComfyUI prompt; see admission.batch_for."""
    batch = batch_for(request_settings(request))
    if request.seed_policy == SeedPolicy.FIXED or batch == request.count:
        return [(0, request.seeds[0], request.count)]
    return [(i, seed, 1) for i, seed in enumerate(request.seeds)]


def _run_generate(job: Job, ctx: WorkerContext) -> None:
    request = job.request
    assert request is not None  # the job_subject_matches_kind constraint
    admission = admit_generation(ctx.profile, request_settings(request))
    if not admission.ok:
        lifecycle.job_block(job.pk, reason=admission.reason, next_action=admission.next_action)
        return
    phase = _phase_sink(job.pk)
    version = ctx.coordinator.ensure("comfyui", need_bytes=admission.need_bytes, phase=phase)
    lifecycle.job_runtime_version_set(job.pk, version)
    runtime_state_set(ctx.gpu, "comfyui", RuntimeStatus.BUSY, detail=f"job {job.pk}")
    model = ctx.profile.models[request.model_mode]
    lora = ctx.profile.loras.get(request.lora_name) if request.lora_name else None
    plan = _prompt_plan(request)
    tracker = _StepTracker(job.pk, prompts=len(plan), steps=request.steps)
    timeout = _comfy_timeout(ctx.profile, request)
    existing = set(Image.objects.filter(request=request).values_list("index", flat=True))
    for position, (first_index, seed, batch) in enumerate(plan):
        if all(first_index + i in existing for i in range(batch)):
            continue  # stored by an earlier attempt: never generate an image twice
        tracker.index = position
        tracker.done_steps = position * request.steps
        graph = graph_build(
            model,
            prompt=request.prompt.text,
            negative=request.prompt.negative_text,
            width=request.width,
            height=request.height,
            batch=batch,
            seed=seed,
            steps=request.steps,
            cfg=request.cfg,
            sampler=request.sampler,
            scheduler=request.scheduler,
            lora=lora,
            lora_strength=request.lora_strength,
            filename_prefix=f"artcritic/job{job.pk}",
        )
        outputs = ctx.coordinator.runtimes.comfy.run(
            graph,
            on_event=tracker.on_event,
            expected=ExpectedImages(count=batch, width=request.width, height=request.height),
            timeout=timeout,
            cancel_check=tracker.cancel_check,
        )
        _store_outputs(
            job,
            request,
            outputs,
            first_index=first_index,
            seed=seed,
            fixed=request.seed_policy == SeedPolicy.FIXED,
            ctx=ctx,
        )
    lifecycle.job_done(
        job.pk,
        detail=f"{request.count} image(s) stored",
        progress_current=tracker.total,
        progress_total=tracker.total,
    )


def _comfy_timeout(profile: Profile, request: GenerationRequest) -> float:
    durations = profile.durations
    model = profile.models[request.model_mode]
    compute = model.seconds_per_step_megapixel * request.width * request.height / 1e6
    # Generous: a stuck runtime is caught, a slow first load is not.
    return profile.runtimes.comfyui.run_grace_s + 3 * (
        durations.comfyui_load + durations.comfyui_warm + compute * request.steps * request.count
    )


def _store_outputs(
    job: Job,
    request: GenerationRequest,
    outputs: list[OutputImage],
    *,
    first_index: int,
    seed: int,
    fixed: bool,
    ctx: WorkerContext,
) -> None:
    lifecycle.job_phase_enter(
        job.pk, Phase.UPLOADING, runtime="comfyui", detail=f"storing {len(outputs)} image(s)"
    )
    stored = [storage.image_store(job.project_id, output.data) for output in outputs]
    lifecycle.job_phase_enter(job.pk, Phase.RECORDING, detail="recording images")
    with transaction.atomic():
        for offset, item in enumerate(stored):
            index = first_index + offset
            image = Image.objects.create(
                project_id=job.project_id,
                prompt=request.prompt,
                request=request,
                job=job,
                index=index,
                seed=request.seeds[index] if not fixed else seed,
                settings={
                    **request.settings_snapshot(),
                    "seed": seed,
                    "batch_index": offset if fixed else 0,
                },
                object_key=item.object_key,
                thumbnail_key=item.thumbnail_key,
                width=item.width,
                height=item.height,
                byte_size=item.byte_size,
                sha256=item.sha256,
                simulated=ctx.profile.simulated,
            )
            Job.objects.filter(pk=job.pk).update(output_count=F("output_count") + 1)
            event_publish(
                "image.created",
                project=job.project_id,
                gpu=job.gpu,
                job=job.pk,
                detail={"image": image.pk, "index": index, "seed": image.seed},
            )
            review_job_submit(image, submitted_by=job.submitted_by_id)


def review_job_submit(image: Image, *, submitted_by: int | None) -> Job:
    """Queue the Critic's review of a stored image on the same GPU."""
    origin = image.job
    job = Job.objects.create(
        kind=JobKind.REVIEW,
        project_id=image.project_id,
        image=image,
        submitted_by_id=submitted_by,
        status=JobStatus.ADMITTED,
        runtime="critic",
        gpu=origin.gpu if origin else "",
        profile_name=origin.profile_name if origin else "",
        phase=Phase.WAITING_FOR_GPU,
        progress_total=1,
    )
    lifecycle.job_phase_enter(job.pk, Phase.WAITING_FOR_GPU, detail="review queued")
    return job


# --- review ---------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def _similarity(a: str, b: str) -> float:
    left, right = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def prior_decisions_for(image: Image, limit: int) -> list[HumanDecision]:
    """Current human decisions in this project, most similar prompt first, both verdicts."""
    if limit <= 0:
        return []
    candidates = list(
        HumanDecision.objects.filter(image__project_id=image.project_id, is_current=True)
        .exclude(image_id=image.pk)
        .select_related("image__prompt")
        .order_by("-created_at")[:200]
    )
    text = image.prompt.text
    candidates.sort(
        key=lambda d: (-_similarity(text, d.image.prompt.text), -d.created_at.timestamp())
    )
    approved = [d for d in candidates if d.verdict == "approve"]
    rejected = [d for d in candidates if d.verdict == "reject"]
    chosen: list[HumanDecision] = []
    # Alternate so the Critic sees both what was liked and what was not.
    while len(chosen) < limit and (approved or rejected):
        for pool in (approved, rejected):
            if pool and len(chosen) < limit:
                chosen.append(pool.pop(0))
    return chosen


def _run_review(job: Job, ctx: WorkerContext) -> None:
    image = job.image
    assert image is not None  # the job_subject_matches_kind constraint
    admission = admit_review(ctx.profile)
    if not admission.ok:
        lifecycle.job_block(job.pk, reason=admission.reason, next_action=admission.next_action)
        return
    phase = _phase_sink(job.pk)
    version = ctx.coordinator.ensure(
        "critic", need_bytes=critic_need(ctx.profile).claim_bytes, phase=phase
    )
    lifecycle.job_runtime_version_set(job.pk, version)
    runtime_state_set(ctx.gpu, "critic", RuntimeStatus.BUSY, detail=f"job {job.pk}")
    Image.objects.filter(pk=image.pk).update(review_status=ReviewStatus.REVIEWING)
    lifecycle.job_phase_enter(
        job.pk,
        Phase.REVIEWING,
        runtime="critic",
        detail=f"reviewing image {image.pk}",
        progress=(0, 1),
    )
    shown = prior_decisions_for(image, ctx.profile.limits.prior_decisions_shown)
    project = job.project
    context = ReviewContext(
        prompt=image.prompt.text,
        negative=image.prompt.negative_text,
        brief=project.brief,
        taste_notes=project.taste_notes,
        manufacturability=project.manufacturability,
        prior_decisions=[
            PriorDecision(
                decision_id=d.pk, verdict=d.verdict, note=d.note, prompt_text=d.image.prompt.text
            )
            for d in shown
        ],
    )
    data = storage.image_read(image.object_key)
    # Any failure from here on ends the job through lifecycle, which also moves the image
    # to "review failed" with the reason (jobs.review_state): never "being reviewed" forever.
    try:
        verdict = review_waking_once(
            job.pk, image.pk, ctx.coordinator, data, context, seed=image.seed % 2**31
        )
    except (CriticReviewAborted, CriticEngineDead) as exc:
        if isinstance(exc, CriticEngineDead):
            ctx.coordinator.runtime_lost("critic", exc.reason)
        lifecycle.job_requeue_interrupted(job.pk, reason=exc.reason, next_action=exc.next_action)
        return
    _record_review(job, image, verdict, shown, ctx, version=version)


def _record_review(
    job: Job,
    image: Image,
    verdict: CriticVerdict,
    shown: list[HumanDecision],
    ctx: WorkerContext,
    *,
    version: str,
) -> None:
    lifecycle.job_phase_enter(
        job.pk, Phase.RECORDING, runtime="critic", detail="recording the review", progress=(1, 1)
    )
    with transaction.atomic():
        review = CriticReview.objects.create(
            image=image,
            job=job,
            model_id=verdict.model_id,
            score_taste=verdict.scores["taste"],
            score_manufacturability=verdict.scores["manufacturability"],
            score_intent=verdict.scores["prompt_intent"],
            score_consistency=verdict.scores["consistency"],
            verdict=verdict.verdict,
            rationale=verdict.rationale,
            raw_response=verdict.raw_response,
            prompt_tokens=verdict.prompt_tokens,
            completion_tokens=verdict.completion_tokens,
            latency_ms=verdict.latency_ms,
            simulated=ctx.profile.simulated,
            runtime_version=version,
        )
        review.shown_decisions.set(shown)
        Image.objects.filter(pk=image.pk).update(review_status=ReviewStatus.REVIEWED)
        audit_record(
            "critic.review",
            f"Critic reviewed image {image.pk}: {verdict.verdict}",
            project_id=job.project_id,
            job_id=job.pk,
            gpu=job.gpu,
            runtime="critic",
            data={
                "model": verdict.model_id,
                "tokens": verdict.prompt_tokens + verdict.completion_tokens,
                "latency_ms": verdict.latency_ms,
                "runtime_version": version,
            },
        )
        event_publish(
            "review.created",
            project=job.project_id,
            gpu=job.gpu,
            job=job.pk,
            status="reviewed",
            detail={"image": image.pk, "review": review.pk, "verdict": verdict.verdict},
        )
    lifecycle.job_done(job.pk, detail=f"verdict: {verdict.verdict}")


def _phase_sink(job_id: int) -> PhaseSink:
    def sink(phase: Phase, runtime: str, detail: str) -> None:
        lifecycle.job_phase_enter(job_id, phase, runtime=runtime, detail=detail)

    return sink
