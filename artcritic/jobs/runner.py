"""Runs one claimed job on this GPU: admission again, coordinator, runtime, storage, records.

Generation failures are never retried smaller; a review whose answer is not valid JSON
is a visible failure, never a default score.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from artcritic.audit.services import audit_record
from artcritic.critic.batching import gpu_share
from artcritic.critic.context import Composed, review_context_compose, shown_context_record
from artcritic.critic.tasks import calibration_refit_soon
from artcritic.events import event_publish
from artcritic.gpu.admission import admit_generation, admit_review, batch_for, request_settings
from artcritic.gpu.budget import critic_need
from artcritic.gpu.models import Gpu, RuntimeStatus
from artcritic.gpu.profiles import DiffusionModel, Lora, Profile
from artcritic.gpu.runtime_state import runtime_state_set
from artcritic.gpu.selectors import NoActiveProfile
from artcritic.jobs import lifecycle
from artcritic.jobs.coordinator import Coordinator, PhaseSink
from artcritic.jobs.durations import DurationModel
from artcritic.jobs.kick import gpu_kick
from artcritic.jobs.meter import JobMeter
from artcritic.jobs.models import Job, JobKind, JobStatus, Phase
from artcritic.jobs.placing import NewJob, gpu_choose, role_refusal
from artcritic.jobs.predict import jobs_predict
from artcritic.jobs.review_wake import review_waking_once, sleep_settle
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
)
from artcritic.runtimes.errors import (
    CriticContextTooLong,
    RuntimeFailure,
    RuntimeHung,
    RuntimeInterrupted,
)
from artcritic.runtimes.workflows import graph_build
from artcritic.studio import storage
from artcritic.studio.models import (
    CriticReview,
    GenerationRequest,
    Image,
    ReviewStatus,
    SeedPolicy,
)

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5
# Step progress is written and published at most this often (and always for a prompt's
# first and last step): a page needs no more, and a fast sampler must not wait on us.
PROGRESS_EVERY_S = 0.1


@dataclass
class CriticSeats:
    """This worker's reviews on the Critic now: reviews run several at once, and only one
    may start or wake the Critic; the last one to end, not the first, marks it idle."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: list[int] = field(default_factory=list)
    version: str | None = None  # as the Critic reported it when last made ready
    # (monotonic time, reviews running from then on): how the GPU was shared, for costs.
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def enter(self, job_id: int) -> int:
        """Count a review in (hold ``lock``); how many run now."""
        self.running.append(job_id)
        self.timeline.append((time.monotonic(), len(self.running)))
        return len(self.running)

    def leave(self, job_id: int) -> bool:
        """Count a review out; whether others still run."""
        with self.lock:
            if job_id in self.running:
                self.running.remove(job_id)
                self.timeline.append((time.monotonic(), len(self.running)))
            return bool(self.running)

    def shared(self) -> bool:
        """Whether two or more reviews ran at once in this batch."""
        with self.lock:
            return any(n > 1 for _, n in self.timeline)

    def share(self, since: float, until: float) -> float:
        """This job's share of the GPU over [since, until]: see gpu_share."""
        with self.lock:
            return gpu_share(list(self.timeline), since, until)


@dataclass
class WorkerContext:
    """What a GPU worker holds while it runs jobs: its GPU row, profile and coordinator."""

    gpu: Gpu
    profile: Profile
    coordinator: Coordinator
    worker: str
    # The GPU's learned durations (for the predictions of the reviews a job queues).
    model: DurationModel | None = None
    meter: JobMeter | None = None
    # Shared by the threads of a batch of reviews (jobs.review_batch copies the context).
    seats: CriticSeats = field(default_factory=CriticSeats)
    # Monotonic time the current review got its seat on the Critic (None: not a review yet).
    entered: float | None = None

    def measured(self) -> lifecycle.Measured:
        """What the meter saw so far, with the profile's economics to price it."""
        usage = self.meter.stop() if self.meter is not None else None
        return lifecycle.Measured(
            energy_joules=usage.energy_joules if usage else None,
            vram_peak_bytes=usage.vram_peak_bytes if usage else None,
            economics=self.profile.economics,
            gpu_seconds=self._shared_seconds(),
        )

    def _shared_seconds(self) -> float | None:
        """A batched review's part of the GPU since it got a seat on the Critic; None for a
        job that never shared it (its GPU-seconds stay claim → finish less the swap)."""
        if self.entered is None or not self.seats.shared():
            return None
        now = time.monotonic()
        return self.seats.share(self.entered, now) * (now - self.entered)


def error_code(exc: BaseException) -> str:
    """A failure's kind for counting by reason: its class name in snake_case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def run_job(job_id: int, ctx: WorkerContext) -> None:
    """Run a claimed job to done, failed, blocked or cancelled — always one of them."""
    job = Job.objects.select_related("request__prompt", "image__prompt", "project").get(pk=job_id)
    ctx.entered = None
    ctx.meter = JobMeter(ctx.coordinator.probe).start()
    try:
        if job.profile_name != ctx.profile.name:
            # The active profile changed since submission: admission below decides again.
            log.info(
                "job %s submitted on %s now runs under %s",
                job_id,
                job.profile_name,
                ctx.profile.name,
            )
        refusal = role_refusal(ctx.profile, job.runtime)
        if refusal:
            # Placed before the profile changed to a dedicated role: never start the partner.
            lifecycle.job_block(
                job.pk,
                reason=f"GPU {ctx.gpu.name} cannot run this job: {refusal}.",
                next_action="retry it: placement puts it on a GPU whose role runs it.",
                measured=ctx.measured(),
            )
        elif job.kind == JobKind.GENERATE:
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
            code="internal_error",
            measured=ctx.measured(),
        )
    finally:
        if ctx.meter is not None:
            ctx.meter.stop()
            ctx.meter = None
        others = ctx.seats.leave(job_id)
        for runtime in ("comfyui", "critic"):
            if runtime == "critic" and others:
                continue  # batched reviews still run on it
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
            lifecycle.job_cancelled(
                job_id, detail=f"Cancelled while running. {exc.reason}", measured=ctx.measured()
            )
            return
    elif isinstance(exc, RuntimeInterrupted) and lifecycle.job_cancel_requested(job_id):
        lifecycle.job_cancelled(
            job_id,
            detail="Cancelled while running; ComfyUI was interrupted.",
            measured=ctx.measured(),
        )
        return
    lifecycle.job_fail(
        job_id,
        reason=exc.reason,
        next_action=exc.next_action,
        code=error_code(exc),
        measured=ctx.measured(),
    )


# --- generation -----------------------------------------------------------------------------


SAMPLER_NODES = frozenset(
    {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
)


@dataclass
class _StepTracker:
    """Turns ComfyUI's websocket stream into phases and step progress for one job.

    The job's phase follows the runtime: loading and warming before the first sampler
    (ComfyUI moves weights to VRAM inside it: warming lasts until its first step), then
    "generating image k/n" from the moment prompt k's sampler starts, "uploading image k"
    once its images are out (the runner enters it), and so on. A progress line never sits
    beside a stale phase.
    """

    job_id: int
    prompts: int
    steps: int
    batch: int = 1
    index: int = 0
    phase: str = ""
    last_cancel_check: float = 0.0
    last_progress: float = 0.0
    done_steps: int = 0
    seen_loading: bool = field(default=False)

    @property
    def total(self) -> int:
        return self.prompts * self.steps

    def prompt_begin(self, position: int) -> None:
        """Prompt ``position`` (0-based) is about to be queued."""
        self.index = position
        self.done_steps = position * self.steps

    def on_event(self, event: ComfyProgress) -> None:
        if event.kind == "node" and self.phase == Phase.GENERATING:
            # ComfyUI runs nodes by dependency, so a VAE loader may run after sampling;
            # that is still this generation, not a new loading phase.
            return
        if event.kind == "node" and event.node_type in LOADER_NODES:
            if self.phase != Phase.LOADING:
                self._enter(Phase.LOADING, f"loading {event.node_type} (node {event.node})")
        elif event.kind == "node" and event.node_type in SAMPLER_NODES:
            if self.phase == Phase.LOADING:
                # ComfyUI moves the weights to VRAM inside the sampler, then runs a first
                # pass: warming until the first step, not yet generating.
                self._enter(Phase.WARMING, f"weights to VRAM, first pass: {event.node_type}")
            elif self.phase != Phase.WARMING:
                self._enter(Phase.GENERATING, self.label(), progress=(self.done_steps, self.total))
        elif event.kind == "node":
            if self.phase == Phase.LOADING:
                self._enter(Phase.WARMING, f"first pass: {event.node_type} (node {event.node})")
        elif event.kind == "step":
            value, maximum = int(event.value or 0), int(event.max or self.steps)
            current = self.done_steps + min(value, maximum)
            if self.phase != Phase.GENERATING:
                # A server that announced no sampler node: the first step starts the phase.
                self._enter(Phase.GENERATING, self.label(), progress=(current, self.total))
            now = time.monotonic()
            if value in (1, maximum) or now - self.last_progress >= PROGRESS_EVERY_S:
                self.last_progress = now
                lifecycle.job_progress(
                    self.job_id, current, self.total, detail=self.label(value, maximum)
                )

    def label(self, value: int | None = None, maximum: int | None = None) -> str:
        """'generating image 2/4, step 13/20' (or '4 images' for one batched prompt)."""
        if self.prompts > 1:
            what = f"generating image {self.index + 1}/{self.prompts}"
        elif self.batch > 1:
            what = f"generating {self.batch} images at once"
        else:
            what = "generating the image"
        return what if value is None else f"{what}, step {value}/{maximum}"

    def stored(self, position: int, images: int, *, next_queued: bool) -> None:
        """Prompt ``position``'s images are out: the job now stores them."""
        first = position * self.batch + 1
        which = f"image {first}" if images == 1 else f"images {first}–{first + images - 1}"
        detail = f"storing {which} of {self.prompts * self.batch}"
        if next_queued:
            detail += f"; image {position + 2}/{self.prompts} is queued in ComfyUI"
        done = (position + 1) * self.steps
        self._enter(Phase.UPLOADING, detail, progress=(done, self.total))

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


class _Storer:
    """Stores one prompt's images in a thread while ComfyUI samples the next prompt.

    At most one batch is in flight: ``start`` waits for the one before. Errors surface in
    the runner's thread at the next ``start`` or ``wait``; what was stored stays stored.
    """

    def __init__(self, job: Job, request: GenerationRequest, ctx: WorkerContext) -> None:
        self.job, self.request, self.ctx = job, request, ctx
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, outputs: list[OutputImage], *, first_index: int, seed: int) -> None:
        self.wait()

        def store() -> None:
            try:
                _store_outputs(
                    self.job,
                    self.request,
                    outputs,
                    first_index=first_index,
                    seed=seed,
                    fixed=self.request.seed_policy == SeedPolicy.FIXED,
                    ctx=self.ctx,
                )
            except BaseException as exc:  # re-raised in the runner's thread
                self._error = exc
            finally:
                connection.close()

        self._thread = threading.Thread(target=store, name=f"store-{self.job.pk}", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait_quietly(self) -> None:
        """Wait for the batch in flight; log (not raise) its error, another one is on its way."""
        try:
            self.wait()
        except Exception:
            log.exception("storing images of job %s failed while the job was failing", self.job.pk)


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
        lifecycle.job_block(
            job.pk,
            reason=admission.reason,
            next_action=admission.next_action,
            measured=ctx.measured(),
        )
        return
    phase = _phase_sink(job.pk)
    version = ctx.coordinator.ensure("comfyui", need_bytes=admission.need_bytes, phase=phase)
    lifecycle.job_runtime_version_set(job.pk, version)
    runtime_state_set(ctx.gpu, "comfyui", RuntimeStatus.BUSY, detail=f"job {job.pk}")
    model = ctx.profile.models[request.model_mode]
    lora = ctx.profile.loras.get(request.lora_name) if request.lora_name else None
    plan = _prompt_plan(request)
    tracker = _StepTracker(job.pk, prompts=len(plan), steps=request.steps, batch=plan[0][2])
    timeout = _comfy_timeout(ctx.profile, request)
    existing = set(Image.objects.filter(request=request).values_list("index", flat=True))
    todo = [
        (position, first_index, seed, batch)
        for position, (first_index, seed, batch) in enumerate(plan)
        # Stored by an earlier attempt: never generate an image twice.
        if not all(first_index + i in existing for i in range(batch))
    ]
    storer = _Storer(job, request, ctx)
    try:
        for number, (position, first_index, seed, batch) in enumerate(todo):
            tracker.prompt_begin(position)
            outputs = _generate_one(
                job,
                request,
                ctx,
                tracker,
                seed=seed,
                batch=batch,
                model=model,
                lora=lora,
                timeout=timeout,
            )
            # Storing runs beside the next prompt: the loop queues it in ComfyUI at once.
            tracker.stored(position, len(outputs), next_queued=number + 1 < len(todo))
            storer.start(outputs, first_index=first_index, seed=seed)
    except BaseException:
        storer.wait_quietly()  # what was generated is stored; the first error is the one told
        raise
    storer.wait()
    lifecycle.job_done(
        job.pk,
        detail=f"{request.count} image(s) stored",
        measured=ctx.measured(),
        progress_current=tracker.total,
        progress_total=tracker.total,
    )


def _generate_one(
    job: Job,
    request: GenerationRequest,
    ctx: WorkerContext,
    tracker: _StepTracker,
    *,
    seed: int,
    batch: int,
    model: DiffusionModel,
    lora: Lora | None,
    timeout: float,
) -> list[OutputImage]:
    """Run one ComfyUI prompt of the request and return its checked images."""
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
    return ctx.coordinator.runtimes.comfy.run(
        graph,
        on_event=tracker.on_event,
        expected=ExpectedImages(count=batch, width=request.width, height=request.height),
        timeout=timeout,
        cancel_check=tracker.cancel_check,
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
    """Upload one prompt's images (PNG and thumbnail) and record them with their reviews."""
    stored = [storage.image_store(job.project_id, output.data) for output in outputs]
    reviews: list[Job] = []
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
            review = review_job_submit(image, submitted_by=job.submitted_by_id)
            reviews.append(review)
        for gpu_name in sorted({review.gpu for review in reviews}):
            ids = [review.pk for review in reviews if review.gpu == gpu_name]
            if gpu_name != ctx.gpu.name:
                jobs_predict(gpu_name, ids)
            elif ctx.model is not None:
                jobs_predict(gpu_name, ids, model=ctx.model)


def review_job_submit(image: Image, *, submitted_by: int | None) -> Job:
    """Queue the Critic's review of a stored image on the GPU placement chooses.

    That may be another GPU than the generation's (its Critic resident, or a Critic-only
    GPU), whose worker is woken after commit. When no GPU can take it the review stays on
    the generation's GPU, whose worker blocks it with admission's numbers.
    """
    origin = image.job
    gpu = origin.gpu if origin else settings.ARTCRITIC_GPU
    profile_name = origin.profile_name if origin else ""
    reason = ""
    try:
        choice = gpu_choose(
            NewJob(kind=JobKind.REVIEW, runtime="critic", project_id=image.project_id)
        )
    except NoActiveProfile:
        choice = None
    if choice is not None and choice.admission.ok:
        gpu, profile_name, reason = choice.gpu, choice.profile.name, choice.reason
    job = Job.objects.create(
        kind=JobKind.REVIEW,
        project_id=image.project_id,
        image=image,
        submitted_by_id=submitted_by,
        status=JobStatus.ADMITTED,
        admitted_at=timezone.now(),
        runtime="critic",
        gpu=gpu,
        placement_reason=reason[:500],
        profile_name=profile_name,
        phase=Phase.WAITING_FOR_GPU,
        progress_total=1,
    )
    detail = f"review queued on {reason}" if reason else "review queued"
    lifecycle.job_phase_enter(job.pk, Phase.WAITING_FOR_GPU, detail=detail)
    if origin is None or gpu != origin.gpu:
        gpu_kick(gpu)
    return job


# --- review ---------------------------------------------------------------------------------


def _run_review(job: Job, ctx: WorkerContext) -> None:
    image = job.image
    assert image is not None  # the job_subject_matches_kind constraint
    admission = admit_review(ctx.profile)
    if not admission.ok:
        lifecycle.job_block(
            job.pk,
            reason=admission.reason,
            next_action=admission.next_action,
            measured=ctx.measured(),
        )
        return
    phase = _phase_sink(job.pk)
    seats = ctx.seats
    if not seats.lock.acquire(blocking=False):
        # Another review of the batch is starting or waking the Critic: say so, and start
        # this job's lead-in again once it is ready, so the wait is not learned as one.
        lifecycle.job_phase_enter(
            job.pk, Phase.WAITING_FOR_GPU, detail="waiting while another review readies the Critic"
        )
        seats.lock.acquire()
        lifecycle.job_phase_enter(job.pk, Phase.WAITING_FOR_GPU, detail="the Critic is ready")
    with _held(seats.lock):
        if seats.running and seats.version is not None:
            # A batched review of this worker is running on the Critic right now: it is up.
            # Were it to die, that review and this one fail and are re-queued as ever.
            version = seats.version
        else:
            version = ctx.coordinator.ensure(
                "critic", need_bytes=critic_need(ctx.profile).claim_bytes, phase=phase
            )
            seats.version = version
        running = seats.enter(job.pk)
        ctx.entered = time.monotonic()
        detail = f"job {job.pk}" if running == 1 else f"job {job.pk} and {running - 1} more"
        runtime_state_set(ctx.gpu, "critic", RuntimeStatus.BUSY, detail=detail)
    lifecycle.job_runtime_version_set(job.pk, version)
    Image.objects.filter(pk=image.pk).update(review_status=ReviewStatus.REVIEWING)
    lifecycle.job_phase_enter(
        job.pk,
        Phase.REVIEWING,
        runtime="critic",
        detail=f"reviewing image {image.pk}",
        progress=(0, 1),
    )
    limits = ctx.profile.limits
    composed = review_context_compose(
        image,
        decisions_limit=limits.prior_decisions_shown,
        thumbnails_limit=limits.prior_thumbnails_shown,
    )
    context = composed.context
    data = storage.image_read(image.object_key)
    # Any failure from here on ends the job through lifecycle, which also moves the image
    # to "review failed" with the reason (jobs.review_state): never "being reviewed" forever.
    try:
        verdict = review_waking_once(
            job.pk, image.pk, ctx.coordinator, data, context, seed=image.seed % 2**31
        )
    except CriticContextTooLong as exc:
        # Counted before sending: nothing reached the Critic, and nothing is ever cut to fit.
        lifecycle.job_block(
            job.pk, reason=exc.reason, next_action=exc.next_action, measured=ctx.measured()
        )
        return
    except (CriticReviewAborted, CriticEngineDead) as exc:
        if isinstance(exc, CriticEngineDead):
            ctx.coordinator.runtime_lost("critic", exc.reason)
        else:
            sleep_settle(ctx.coordinator.runtimes.critic)
        lifecycle.job_requeue_interrupted(job.pk, reason=exc.reason, next_action=exc.next_action)
        return
    _record_review(job, image, verdict, composed, ctx, version=version)


def _record_review(
    job: Job,
    image: Image,
    verdict: CriticVerdict,
    composed: Composed,
    ctx: WorkerContext,
    *,
    version: str,
) -> None:
    """Record the review and finish the job in one transaction (one commit, one round trip)."""
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
        shown_context_record(review, composed, verdict)
        # A new review changes what the calibration is fitted on (its scores, once decided).
        calibration_refit_soon(job.project_id)
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
        lifecycle.job_done(
            job.pk,
            detail=f"verdict: {verdict.verdict}",
            measured=ctx.measured(),
            progress_current=1,
            progress_total=1,
        )


@contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    """Release ``lock``, already acquired, when the block ends."""
    try:
        yield
    finally:
        lock.release()


def _phase_sink(job_id: int) -> PhaseSink:
    def sink(phase: Phase, runtime: str, detail: str) -> None:
        lifecycle.job_phase_enter(job_id, phase, runtime=runtime, detail=detail)

    return sink
