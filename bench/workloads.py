"""What the scheduling benchmark runs: a seeded studio workload, on a simulated GPU.

Pure and deterministic: the same seed and profile give the same submissions, so two runs
of ``make bench-scheduling`` print the same figures. Every request is admitted by the
app's own ``admit_generation`` first, and its run time is the worker's arithmetic
(``eta.generation_seconds``), so the benchmark cannot drift from what the app would run.
The release variants and ``SimCoordinator`` (what each runtime switch costs, by the
``Coordinator``'s rules) are the GPU side; ``bench/scheduling.py`` explains both.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from artcritic.gpu.admission import RequestSettings, admit_generation
from artcritic.gpu.profiles import Profile, profile_read
from artcritic.jobs.eta import generation_seconds
from artcritic.jobs.scheduler import RUNTIMES

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
MODEL_MODES = ("flux-dev-fp8", "sdxl")
SIDE = 1024  # 1024² output, the size designers ask for most

RuntimeState = Literal["stopped", "parked", "ready"]


@dataclass(frozen=True)
class Strategy:
    """A way to give VRAM back: ComfyUI's and the Critic's release setting."""

    name: str
    comfyui: str
    critic: str


STRATEGIES = (
    Strategy("free+sleep", comfyui="free", critic="sleep1"),
    Strategy("stop/start", comfyui="stop", critic="stop"),
)


@dataclass(frozen=True)
class Submission:
    """A generation a designer submits at ``at`` seconds (reviews follow when it finishes)."""

    id: int
    project_id: int
    at: float
    settings: RequestSettings
    # The app's rule (jobs.services.job_submit_generation): a single image is interactive.
    interactive: bool
    # Its own run from the profile (no swap): what the worker's ETA arithmetic says.
    seconds: float


@dataclass(frozen=True)
class WorkloadShape:
    """How much the studio submits, and over how long."""

    projects: int = 3
    batches_per_project: int = 6
    interactive_jobs: int = 6
    span_s: float = 1200.0
    max_count: int = 4


def profile_load(name: str) -> Profile:
    """A shipped profile by name (``profiles/<name>.toml``)."""
    return profile_read(PROFILES / f"{name}.toml")[0]


def profile_with_release(profile: Profile, strategy: Strategy) -> Profile:
    """The same profile with the strategy's release settings, validated like a file."""
    data = profile.model_dump()
    data["runtimes"]["comfyui"]["release"] = strategy.comfyui
    data["runtimes"]["critic"]["release"] = strategy.critic
    return Profile.model_validate(data)


def request_settings(profile: Profile, model_mode: str, count: int) -> RequestSettings:
    """A 1024² request at the model's default steps, cfg, sampler and scheduler."""
    model = profile.models[model_mode]
    return RequestSettings(
        model_mode=model_mode,
        width=SIDE,
        height=SIDE,
        steps=model.default_steps,
        cfg=model.default_cfg,
        sampler=model.default_sampler,
        scheduler=model.default_scheduler,
        lora=None,
        lora_strength=1.0,
        seed_policy="fixed",
        count=count,
    )


def workload_build(
    profile: Profile, *, seed: int, shape: WorkloadShape | None = None
) -> tuple[Submission, ...]:
    """Seeded submissions, in arrival order: project batches plus interactive single images."""
    shape = shape or WorkloadShape()
    rng = random.Random(seed)
    drafts: list[tuple[float, int, str, int]] = []  # (at, project, model mode, count)
    for project in range(1, shape.projects + 1):
        for _ in range(shape.batches_per_project):
            count = rng.randint(1, shape.max_count)
            drafts.append((rng.uniform(0, shape.span_s), project, rng.choice(MODEL_MODES), count))
    for _ in range(shape.interactive_jobs):
        project = rng.randint(1, shape.projects)
        drafts.append((rng.uniform(0, shape.span_s), project, rng.choice(MODEL_MODES), 1))
    return submissions_from(profile, drafts)


Draft = tuple[float, int, str, int]  # (at seconds, project, model mode, image count)


def submissions_from(profile: Profile, drafts: list[Draft]) -> tuple[Submission, ...]:
    """Admitted submissions in arrival order; a single image is interactive, as in the app."""
    drafts = sorted(drafts)
    submissions = []
    for number, (at, project, mode, count) in enumerate(drafts, start=1):
        settings = request_settings(profile, mode, count)
        admission = admit_generation(profile, settings)
        if not admission.ok:
            raise ValueError(
                f"profile {profile.name} refuses a benchmark request: {admission.reason}"
            )
        submissions.append(
            Submission(
                id=number,
                project_id=project,
                at=round(at, 3),
                settings=settings,
                interactive=count == 1,
                seconds=generation_seconds(profile, settings),
            )
        )
    return tuple(submissions)


# --- the overload shapes (issue 15): where aging used to decide the order -------------------
#
# Each takes the profile and a seed and returns submissions like ``workload_build``. They
# keep the GPU busy for longer than the aging bound, so jobs age and the aging rule, not
# the resident-runtime rule, decides the order.


def shape_studio(profile: Profile, seed: int) -> tuple[Submission, ...]:
    """The default studio day: 3 projects' 6 batches and 6 singles over 20 minutes."""
    return workload_build(profile, seed=seed, shape=WorkloadShape())


def shape_burst(profile: Profile, seed: int) -> tuple[Submission, ...]:
    """The same requests as the studio day, all within 2 minutes (after a review meeting)."""
    return workload_build(profile, seed=seed, shape=WorkloadShape(span_s=120.0))


def shape_many_projects(profile: Profile, seed: int) -> tuple[Submission, ...]:
    """3 projects each queue 8 batches at once; someone submits a single every 45 s."""
    rng = random.Random(seed)
    drafts: list[Draft] = []
    for project in (1, 2, 3):
        start = rng.uniform(0, 30)
        for _ in range(8):
            drafts.append(
                (start + rng.uniform(0, 5), project, rng.choice(MODEL_MODES), rng.randint(2, 4))
            )
    for number in range(30):
        drafts.append((45.0 * number + rng.uniform(0, 10), rng.randint(1, 3), MODEL_MODES[1], 1))
    return submissions_from(profile, drafts)


def shape_interactive_heavy(profile: Profile, seed: int) -> tuple[Submission, ...]:
    """Mostly designers iterating on singles (40 over 15 minutes) beside 2 projects' batches."""
    rng = random.Random(seed)
    drafts: list[Draft] = []
    for project in (1, 2):
        for _ in range(4):
            drafts.append(
                (rng.uniform(0, 900), project, rng.choice(MODEL_MODES), rng.randint(2, 4))
            )
    for _ in range(40):
        drafts.append((rng.uniform(0, 900), rng.randint(1, 4), rng.choice(MODEL_MODES), 1))
    return submissions_from(profile, drafts)


def shape_big_batch(profile: Profile, seed: int) -> tuple[Submission, ...]:
    """A 200-image batch (50 requests of 4) queued at once, and 20 singles while it runs."""
    rng = random.Random(seed)
    mode = rng.choice(MODEL_MODES)
    drafts: list[Draft] = [(rng.uniform(0, 20), 1, mode, 4) for _ in range(50)]
    for _ in range(20):
        drafts.append((rng.uniform(0, 2400), rng.randint(2, 4), rng.choice(MODEL_MODES), 1))
    return submissions_from(profile, drafts)


SHAPES: dict[str, Callable[[Profile, int], tuple[Submission, ...]]] = {
    "studio": shape_studio,
    "burst": shape_burst,
    "many-projects": shape_many_projects,
    "interactive-heavy": shape_interactive_heavy,
    "big-batch+singles": shape_big_batch,
}


class SimCoordinator:
    """``Coordinator.ensure``/``release`` by the profile's strategies; each call returns seconds."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.states: dict[str, RuntimeState] = dict.fromkeys(RUNTIMES, "stopped")

    def ensure(self, runtime: str) -> float:
        """Release what is exclusive with ``runtime``, then keep, wake or start it."""
        seconds = 0.0
        for other in RUNTIMES:
            exclusive = other != runtime and self.profile.are_exclusive(runtime, other)
            if exclusive and self.states[other] == "ready":
                seconds += self.release(other)
        state = self.states[runtime]
        if state == "parked":
            seconds += self._wake(runtime)
        elif state == "stopped":
            seconds += self._start(runtime)
        self.states[runtime] = "ready"
        return seconds

    def release(self, runtime: str) -> float:
        """Give ``runtime``'s VRAM back by its strategy (NVML sees it at once here)."""
        d = self.profile.durations
        strategy = getattr(self.profile.runtimes, runtime).release
        if strategy == "free":
            self.states[runtime] = "parked"
            return d.comfyui_free
        if strategy in ("sleep1", "sleep2"):
            self.states[runtime] = "parked"
            return d.critic_sleep
        self.states[runtime] = "stopped"
        # The schema has no ComfyUI stop figure; like the scheduler, count /free's time.
        return d.comfyui_free if runtime == "comfyui" else d.critic_stop

    def _wake(self, runtime: str) -> float:
        d = self.profile.durations
        if runtime == "comfyui":
            return d.comfyui_load + d.comfyui_warm  # alive after /free; loads on first use
        level_two = self.profile.runtimes.critic.release == "sleep2"
        return d.critic_wake + (d.critic_load if level_two else 0.0)

    def _start(self, runtime: str) -> float:
        d = self.profile.durations
        if runtime == "comfyui":
            return d.comfyui_start + d.comfyui_load + d.comfyui_warm
        return d.critic_start + d.critic_load + d.critic_warm
