"""Durations learned from what this GPU did, falling back to the profile's numbers.

Pure (STYLE item 6): plain samples in, estimates out; ``artcritic.jobs.history`` turns
the phase history into samples. A sample is one measured step of one finished job —
starting a runtime, loading weights, a second of sampling per step and megapixel, storing
an image, a review — keyed by GPU, profile, runtime, step, model mode, size bucket, and
whether the load was cold (the runtime's process had just started) or warm. An estimate is
the median of the last ``WINDOW`` samples of its key, which shrugs off a few outliers; a
cold first load never mixes with warm reloads because they are different keys. Until a
key has ``MIN_SAMPLES`` samples the profile's number is used, and the estimate says which.

What the GPU measured absorbs everything the profile cannot know — a slower disk, a
simulator's time scale, the orchestration around each step — so nothing special-cases
the simulators. ETAs, the scheduler's swap costs and the queue forecast all take a
``DurationModel``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from artcritic.gpu.profiles import Profile
from artcritic.jobs.scheduler import (
    AGING_ROUND_TRIPS,
    DEFAULT_MAX_WAIT_S,
    RUNTIMES,
    SchedulerPolicy,
)

WINDOW = 12  # the last N samples of a key make its estimate
MIN_SAMPLES = 3  # fewer than this: the profile's number

# Steps of work, each a key of its own. SAMPLE is seconds per step per megapixel of one
# image; HANDOFF (between two prompts of a batch) and STORE (the last prompt's images
# stored and recorded) are seconds per image; the rest are whole seconds.
LEAD_IN = "lead_in"  # claimed → its first phase (admission again, a warm runtime checked)
RELEASE = "release"  # giving the other runtime's VRAM back (/free, sleep, stop)
VERIFY = "verify"  # NVML confirms the memory is free
START = "start"  # a runtime's process or container until it answers
WAKE = "wake"  # vLLM back from sleep
LOAD = "load"  # weights into VRAM
WARM = "warm"  # compile, graphs, first pass
SAMPLE = "sample"
HANDOFF = "handoff"
STORE = "store"
REVIEW = "review"
RECORD = "record"  # a review written to the database
GAP = "gap"  # one job's end → the next one's claim, when the next was already waiting
STEPS = (
    LEAD_IN, RELEASE, VERIFY, START, WAKE, LOAD, WARM, SAMPLE, HANDOFF, STORE, REVIEW, RECORD,
    GAP,
)  # fmt: skip
# Steps whose time the card and its runtimes set (not our orchestration): how much faster
# or slower than the profile they run calibrates the profile's numbers for the others.
RUNTIME_STEPS = frozenset({RELEASE, START, WAKE, LOAD, WARM, SAMPLE, REVIEW})

# Output sizes, by megapixels: per-step cost is normalised by size, yet not perfectly linear.
SIZE_BUCKETS = ((0.3, "up to 0.3 MP"), (0.6, "up to 0.6 MP"), (1.1, "up to 1.1 MP"),
                (2.4, "up to 2.4 MP"))  # fmt: skip
LARGEST_BUCKET = "over 2.4 MP"


def megapixels(width: int, height: int) -> float:
    return width * height / 1e6


def size_bucket(width: int, height: int) -> str:
    """The size bucket of a width × height output ('up to 1.1 MP' holds 1024²)."""
    size = megapixels(width, height)
    for limit, name in SIZE_BUCKETS:
        if size <= limit:
            return name
    return LARGEST_BUCKET


@dataclass(frozen=True)
class DurationKey:
    """What a sample measured, within one GPU and profile."""

    runtime: str
    step: str
    model_mode: str = ""
    size: str = ""
    cold: bool = False

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}")


@dataclass(frozen=True)
class Sample:
    """One measured step of one finished job; ``at`` orders samples (epoch seconds)."""

    gpu: str
    profile: str
    key: DurationKey
    seconds: float
    at: float


@dataclass(frozen=True)
class Estimate:
    """Seconds, and how many measured runs they come from (0: the profile's number)."""

    seconds: float
    samples: int = 0

    @property
    def from_history(self) -> bool:
        return self.samples > 0

    # The profile's number scaled by this GPU's measured speed (see DurationModel).
    scaled: bool = False

    @property
    def words(self) -> str:
        """Where the estimate comes from, as the page says it."""
        if not self.from_history:
            return "from the profile, scaled to this GPU" if self.scaled else "from the profile"
        if self.samples < MIN_SAMPLES:
            runs = "the last run" if self.samples == 1 else f"the last {self.samples} runs"
            return f"from {runs} and the profile"
        return "from the last run" if self.samples == 1 else f"from the last {self.samples} runs"

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(
            self.seconds + other.seconds,
            max(self.samples, other.samples),
            self.scaled or other.scaled,
        )


@dataclass(frozen=True)
class GenerationPlan:
    """A generation's shape: ``count`` images as prompts of ``batch`` images each."""

    model_mode: str
    width: int
    height: int
    steps: int
    count: int
    batch: int

    def __post_init__(self) -> None:
        if min(self.width, self.height, self.steps, self.count, self.batch) < 1:
            raise ValueError(f"a generation plan needs positive numbers, not {self}")

    @property
    def prompts(self) -> int:
        return math.ceil(self.count / self.batch)

    @property
    def units_per_prompt(self) -> float:
        """Step·megapixels one prompt samples (every image of its batch)."""
        return self.steps * megapixels(self.width, self.height) * self.batch

    @property
    def size(self) -> str:
        return size_bucket(self.width, self.height)

    @property
    def shape(self) -> str:
        """The size bucket, and the batch when a prompt renders several images at once.

        A batch shares one prompt's fixed costs (queueing, decoding, fetching) over its
        images, so its time per step·megapixel is its own; other shapes of the same model
        mode are the fallback.
        """
        return self.size if self.batch == 1 else f"{self.size} × {self.batch}"


def centre(values: Iterable[float]) -> float:
    """The median: one outlier in a dozen moves it not at all."""
    return float(statistics.median(values))


@dataclass(frozen=True)
class RunningJob:
    """A running job as the remaining-time arithmetic needs it (plain values)."""

    kind: str  # "generate" | "review"
    runtime: str
    phase: str
    phase_runtime: str
    elapsed_s: float  # in the current phase
    progress_current: int = 0
    plan: GenerationPlan | None = None
    # The current phase's detail ("waking the Critic from sleep" is a wake, not a start).
    detail: str = ""


@dataclass
class DurationModel:
    """Estimates for one GPU and profile from its recent samples (``WINDOW`` per key)."""

    profile: Profile
    samples: Iterable[Sample] = ()
    gpu: str = ""
    window: int = WINDOW
    min_samples: int = MIN_SAMPLES
    _by_key: dict[DurationKey, list[float]] = field(init=False, repr=False)
    _any_size: dict[DurationKey, list[float]] = field(init=False, repr=False)
    # Measured ÷ profile for runtime steps (see _calibrate), and over how many keys.
    speed: float = field(init=False, default=1.0)
    speed_keys: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        ordered = sorted(
            (
                s
                for s in self.samples
                if s.profile == self.profile.name
                and (not self.gpu or s.gpu == self.gpu)
                and math.isfinite(s.seconds)
                and s.seconds >= 0
            ),
            key=lambda s: s.at,
        )
        by_key: dict[DurationKey, list[float]] = {}
        any_size: dict[DurationKey, list[float]] = {}
        for sample in ordered:
            by_key.setdefault(sample.key, []).append(sample.seconds)
            if sample.key.size:
                wide = DurationKey(
                    sample.key.runtime, sample.key.step, sample.key.model_mode, "", sample.key.cold
                )
                any_size.setdefault(wide, []).append(sample.seconds)
        self._by_key = {key: values[-self.window :] for key, values in by_key.items()}
        self._any_size = {key: values[-self.window :] for key, values in any_size.items()}
        self.samples = ()  # kept only as the per-key windows above
        self.speed, self.speed_keys = self._calibrate()

    def _calibrate(self) -> tuple[float, int]:
        """Measured ÷ profile over the runtime steps measured often enough (1.0: none yet).

        A step measured too rarely for its own estimate — a cold start happens once a day —
        then uses the profile's number times this GPU's speed: a faster card, a slower disk
        or a simulator's time scale shows in every step it ran, not only in the rare one.
        """
        ratios = []
        for key, values in self._by_key.items():
            if key.step not in RUNTIME_STEPS or len(values) < self.min_samples:
                continue
            base = self._fallback(key.runtime, key.step, key.model_mode)
            if base > 0:
                ratios.append(centre(values) / base)
        return (centre(ratios), len(ratios)) if ratios else (1.0, 0)

    # -- one step --------------------------------------------------------------------------

    def history(self) -> Mapping[DurationKey, list[float]]:
        """The samples each key's estimate comes from (newest last)."""
        return dict(self._by_key)

    def estimate(
        self, runtime: str, step: str, *, model_mode: str = "", size: str = "", cold: bool = False
    ) -> Estimate:
        """One step's seconds: its own key, then any size of the same mode, then the profile."""
        key = DurationKey(runtime, step, model_mode, size, cold)
        wide = DurationKey(runtime, step, model_mode, "", cold)
        own, other_sizes = self._by_key.get(key, []), self._any_size.get(wide, [])
        for values in (own, other_sizes):
            if len(values) >= self.min_samples:
                return Estimate(centre(values), len(values))
        base = self._fallback(runtime, step, model_mode)
        scaled = step in RUNTIME_STEPS and self.speed_keys > 0
        prior = base * self.speed if scaled else base
        if own:
            # Too few runs to stand alone (a cold start, measured once a day): each one
            # counts as much as the profile's share, so one odd run cannot run away with it.
            weight = self.min_samples - len(own)
            return Estimate((sum(own) + weight * prior) / self.min_samples, len(own), scaled)
        return Estimate(prior, 0, scaled=scaled)

    def _fallback(self, runtime: str, step: str, model_mode: str) -> float:
        """The profile's number for a step (what ETAs used before anything was measured)."""
        d = self.profile.durations
        comfy = runtime == "comfyui"
        if step == RELEASE:
            if comfy:
                return d.comfyui_free
            return (
                d.critic_stop
                if self.profile.runtimes.critic.release == "stop"
                else (d.critic_sleep)
            )
        if step == SAMPLE:
            model = self.profile.models.get(model_mode) or next(iter(self.profile.models.values()))
            return model.seconds_per_step_megapixel
        table = {
            START: d.comfyui_start if comfy else d.critic_start,
            WAKE: 0.0 if comfy else d.critic_wake,
            LOAD: d.comfyui_load if comfy else d.critic_load,
            WARM: d.comfyui_warm if comfy else d.critic_warm,
            HANDOFF: d.upload_per_image,
            STORE: d.upload_per_image,
            REVIEW: d.critic_review,
        }
        return float(table.get(step, 0.0))  # lead-in, verify, record: nothing in the profile

    def gap_seconds(self) -> float:
        """Between one job's end and the next one's claim (the worker picking it)."""
        return self.estimate("", GAP).seconds

    # -- a job's own run (no swap) ---------------------------------------------------------

    def generation(self, plan: GenerationPlan) -> Estimate:
        """Claim to done for a generation on a ready ComfyUI: prompts, handoffs, storing."""
        sample = self.estimate("comfyui", SAMPLE, model_mode=plan.model_mode, size=plan.shape)
        handoff = self.estimate("comfyui", HANDOFF, size=plan.shape)
        store = self.estimate("comfyui", STORE, size=plan.shape)
        lead_in = self.estimate("comfyui", LEAD_IN)
        seconds = (
            lead_in.seconds
            + sample.seconds * plan.units_per_prompt * plan.prompts
            + handoff.seconds * plan.batch * (plan.prompts - 1)
            + store.seconds * plan.batch
        )
        # The sampling dominates: the page names where that figure came from.
        return Estimate(seconds, sample.samples, sample.scaled)

    def review(self) -> Estimate:
        """Claim to done for a review on a ready Critic."""
        review = self.estimate("critic", REVIEW)
        lead = self.estimate("critic", LEAD_IN).seconds + self.estimate("critic", RECORD).seconds
        return Estimate(review.seconds + lead, review.samples, review.scaled)

    # -- switching runtimes ------------------------------------------------------------------

    def _cold(self, runtime: str, mode: str) -> float:
        mode = mode if runtime == "comfyui" else ""
        return (
            self.estimate(runtime, START).seconds
            + self.estimate(runtime, LOAD, model_mode=mode, cold=True).seconds
            + self.estimate(runtime, WARM, model_mode=mode, cold=True).seconds
        )

    def _return(self, runtime: str, mode: str) -> float:
        """Bringing a released runtime back, by how the profile releases it."""
        if runtime == "comfyui":
            if self.profile.runtimes.comfyui.release == "free":
                # The process survives /free: the weights are read again, the first pass warms.
                return (
                    self.estimate(runtime, LOAD, model_mode=mode).seconds
                    + self.estimate(runtime, WARM, model_mode=mode).seconds
                )
            return self._cold(runtime, mode)
        release = self.profile.runtimes.critic.release
        if release == "sleep1":
            return self.estimate(runtime, WAKE).seconds
        if release == "sleep2":
            return self.estimate(runtime, WAKE).seconds + self.estimate(runtime, LOAD).seconds
        return self._cold(runtime, mode)

    def switch_seconds(
        self,
        resident: str | None,
        loaded: frozenset[str],
        runtime: str,
        mode: str,
        started: frozenset[str],
    ) -> float:
        """Seconds before a job for ``runtime`` (model ``mode``) can start its own run.

        ``resident``: the runtime holding the GPU now, with the model modes ``loaded`` in it
        since it was last released (ComfyUI keeps each until memory runs short);
        ``started``: runtimes whose process runs (ready, or parked by their release), so
        bringing one back is not a cold start.
        """
        if resident == runtime:
            if runtime == "comfyui" and mode and mode not in loaded:
                # Another model mode: ComfyUI reads its weights, no runtime swap.
                return (
                    self.estimate(runtime, LOAD, model_mode=mode).seconds
                    + self.estimate(runtime, WARM, model_mode=mode).seconds
                )
            return 0.0
        seconds = 0.0
        exclusive = resident is not None and self.profile.are_exclusive(resident, runtime)
        if exclusive and resident is not None:
            seconds += self.estimate(resident, RELEASE).seconds
        elif runtime in started and not self.profile.are_exclusive(*RUNTIMES):
            return 0.0  # both stay resident on this profile
        seconds += self.estimate(runtime, VERIFY).seconds
        if runtime in started:
            return seconds + self._return(runtime, mode)
        return seconds + self._cold(runtime, mode)

    def scheduler_policy(self, *, max_wait_s: float | None = None) -> SchedulerPolicy:
        """The scheduler's swap costs from these estimates (the profile's default model mode)."""
        mode = self.profile.limits.model_modes[0]
        everything = frozenset(RUNTIMES)
        exclusive = self.profile.are_exclusive(*RUNTIMES)
        same = frozenset({mode})
        table: dict[tuple[str | None, str], float] = {
            (None, runtime): self.switch_seconds(None, same, runtime, mode, frozenset())
            for runtime in RUNTIMES
        }
        for before in RUNTIMES:
            for after in RUNTIMES:
                if before != after:
                    table[(before, after)] = self.switch_seconds(
                        before, same, after, mode, everything
                    )
        cold_switch = (
            max(
                self.switch_seconds(before, same, after, mode, frozenset({before}))
                for before in RUNTIMES
                for after in RUNTIMES
                if before != after
            )
            if exclusive
            else 0.0
        )
        if max_wait_s is None:
            round_trip = table[("comfyui", "critic")] + table[("critic", "comfyui")]
            max_wait_s = max(DEFAULT_MAX_WAIT_S, AGING_ROUND_TRIPS * round_trip)
        return SchedulerPolicy(
            max_wait_s=max_wait_s, swap_cost_s=table, exclusive=exclusive, cold_switch_s=cold_switch
        )

    # -- a job under way ---------------------------------------------------------------------

    def own_seconds(self, kind: str, plan: GenerationPlan | None) -> Estimate:
        """A job's own run (no swap) by its kind and plan."""
        if kind == "generate" and plan is not None:
            return self.generation(plan)
        return self.review()

    def remaining_seconds(
        self,
        job: RunningJob,
        *,
        pending_switch_s: float = 0.0,
        started: frozenset[str] = frozenset(RUNTIMES),
    ) -> float:
        """What is left of a running job, by its phase, elapsed time and step progress.

        ``pending_switch_s``: the swap still ahead of a job that was just claimed (its
        lead-in), which the caller knows from the runtimes' states; ``started``: runtimes
        whose process runs, so that bringing the job's runtime back is not a cold start.
        """
        in_run = self._left_in_run(job)
        if in_run is not None:
            return in_run
        run = self._run_after_swap(job)
        return self._left_in_swap(job, pending_switch_s, started) + run

    def _left_in_run(self, job: RunningJob) -> float | None:
        """What is left when the job is in its own run (None while it is still swapping)."""
        elapsed = max(0.0, job.elapsed_s)
        plan = job.plan if job.kind == "generate" else None
        if plan is None:
            record = self.estimate("critic", RECORD).seconds
            review = self.estimate("critic", REVIEW).seconds
            left = {
                "reviewing": max(0.0, review - elapsed) + record,
                "recording": max(0.0, record - elapsed),
            }
            return left.get(job.phase)
        sample = self.estimate("comfyui", SAMPLE, model_mode=plan.model_mode, size=plan.shape)
        handoff = self.estimate("comfyui", HANDOFF, size=plan.shape).seconds * plan.batch
        store = self.estimate("comfyui", STORE, size=plan.shape).seconds * plan.batch
        per_step = sample.seconds * plan.units_per_prompt / plan.steps
        total_steps = plan.prompts * plan.steps
        done = max(0, min(job.progress_current, total_steps))
        handoffs_left = plan.prompts - 1 - min(done // plan.steps, plan.prompts - 1)
        steps_left = (total_steps - done) * per_step
        if job.phase == "generating":
            return steps_left + handoffs_left * handoff + store
        if job.phase == "uploading" and done < total_steps:
            # Between two prompts: the next one is already queued in ComfyUI.
            return max(0.0, handoff - elapsed) + steps_left + (handoffs_left - 1) * handoff + store
        if job.phase in ("uploading", "recording"):
            return max(0.0, store - elapsed)
        return None

    def _run_after_swap(self, job: RunningJob) -> float:
        """The job's whole own run, less its lead-in (already under way or done)."""
        plan = job.plan if job.kind == "generate" else None
        if plan is None:
            return self.estimate("critic", REVIEW).seconds + self.estimate("critic", RECORD).seconds
        own = self.generation(plan).seconds
        return own - self.estimate("comfyui", LEAD_IN).seconds

    def _left_in_swap(
        self, job: RunningJob, pending_switch_s: float, started: frozenset[str]
    ) -> float:
        """What is left of the lead-in or of the swap the job is going through."""
        elapsed = max(0.0, job.elapsed_s)
        runtime = job.phase_runtime or job.runtime
        mode = job.plan.model_mode if job.plan is not None and job.kind == "generate" else ""

        def left(step: str, model_mode: str = "") -> float:
            estimate = self.estimate(runtime, step, model_mode=model_mode)
            return max(0.0, estimate.seconds - elapsed)

        def then(step: str, *, cold: bool = False) -> float:
            return self.estimate(job.runtime, step, model_mode=mode, cold=cold).seconds

        back = (
            self._return(job.runtime, mode)
            if job.runtime in started
            else self._cold(job.runtime, mode)
        )
        reload = job.runtime == "critic" and self.profile.runtimes.critic.release == "sleep2"
        if job.phase == "starting" and job.detail.startswith("waking"):
            return left(WAKE) + (then(LOAD) if reload else 0.0)
        table = {
            "waiting_for_gpu": lambda: left(LEAD_IN) + pending_switch_s,
            # The other runtime gives its memory back; this job's runtime comes next.
            "releasing": lambda: left(RELEASE) + then(VERIFY) + back,
            "verifying_vram": lambda: left(VERIFY) + back,
            "starting": lambda: left(START) + then(LOAD, cold=True) + then(WARM, cold=True),
            "loading": lambda: left(LOAD, model_mode=mode) + then(WARM),
            "warming": lambda: left(WARM, model_mode=mode),
        }
        step = table.get(job.phase)
        return step() if step is not None else 0.0
