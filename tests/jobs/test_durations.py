"""The duration model: estimates from hand-made histories, the profile until enough runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artcritic.gpu.profiles import profile_read
from artcritic.jobs.durations import (
    HANDOFF,
    LEAD_IN,
    LOAD,
    RELEASE,
    REVIEW,
    SAMPLE,
    START,
    STORE,
    VERIFY,
    WAKE,
    DurationKey,
    DurationModel,
    Estimate,
    GenerationPlan,
    RunningJob,
    Sample,
    size_bucket,
)
from artcritic.jobs.history import JobFacts, PhaseRow, samples_from_attempt
from artcritic.jobs.scheduler import policy_from_profile

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
SIM = profile_read(PROFILES / "sim-32gb.toml")[0]
FLUX_LOADED = frozenset({"flux-dev-fp8"})
FLUX = GenerationPlan("flux-dev-fp8", 1024, 1024, steps=20, count=4, batch=1)


def samples(
    key: DurationKey, *seconds: float, gpu: str = "g0", profile: str = "sim-32gb"
) -> list[Sample]:
    return [Sample(gpu, profile, key, value, at=float(n)) for n, value in enumerate(seconds)]


def key(runtime: str, step: str, **rest: object) -> DurationKey:
    return DurationKey(runtime, step, **rest)  # type: ignore[arg-type]


# --- one step -------------------------------------------------------------------------------


def test_without_history_every_step_is_the_profiles_number() -> None:
    model = DurationModel(SIM)
    assert model.estimate("comfyui", START) == Estimate(8.0, 0)
    assert model.estimate("comfyui", LOAD) == Estimate(20.0, 0)
    assert model.estimate("critic", WAKE) == Estimate(3.0, 0)
    assert model.estimate("critic", RELEASE) == Estimate(1.0, 0)  # sleep level 1
    assert model.estimate("comfyui", RELEASE) == Estimate(2.0, 0)  # /free
    assert model.estimate("comfyui", SAMPLE, model_mode="sdxl") == Estimate(0.25, 0)
    assert model.estimate("critic", REVIEW) == Estimate(4.0, 0)
    assert model.estimate("comfyui", LEAD_IN) == Estimate(0.0, 0)  # the profile has none
    assert model.estimate("critic", REVIEW).words == "from the profile"


def test_fewer_than_three_runs_lean_on_the_profile_three_stand_alone() -> None:
    review = key("critic", REVIEW)
    # Two runs (0.2, 0.3) and the profile's 4 s as the third: (0.2 + 0.3 + 4) / 3.
    two = DurationModel(SIM, samples(review, 0.2, 0.3)).estimate("critic", REVIEW)
    assert two == Estimate(1.5, 2)
    assert two.words == "from the last 2 runs and the profile"
    estimate = DurationModel(SIM, samples(review, 0.2, 0.3, 0.25)).estimate("critic", REVIEW)
    assert estimate == Estimate(0.25, 3)
    assert estimate.words == "from the last 3 runs"


def test_the_median_of_the_last_twelve_runs_shrugs_off_an_outlier() -> None:
    # 14 runs: the two oldest (9 s) fall out of the window; one stall (30 s) stays in it.
    history = samples(key("critic", REVIEW), 9, 9, *[0.2] * 6, 30.0, *[0.3] * 5)
    estimate = DurationModel(SIM, history).estimate("critic", REVIEW)
    # Window: six 0.2, 30.0, five 0.3 → sorted middle pair 0.2 and 0.3 → 0.25.
    assert estimate == Estimate(0.25, 12)
    assert estimate.words == "from the last 12 runs"


def test_cold_first_loads_are_kept_apart_from_warm_reloads() -> None:
    cold = samples(key("comfyui", LOAD, model_mode="flux-dev-fp8", cold=True), 40, 42, 41)
    warm = samples(key("comfyui", LOAD, model_mode="flux-dev-fp8"), 5, 6, 5.5)
    model = DurationModel(SIM, [*cold, *warm])
    assert model.estimate("comfyui", LOAD, model_mode="flux-dev-fp8", cold=True).seconds == 41
    assert model.estimate("comfyui", LOAD, model_mode="flux-dev-fp8").seconds == 5.5
    # A mode never loaded falls back to the profile, not to another mode's loads — scaled
    # by how fast this GPU ran its measured steps: 41/20 and 5.5/20, median 1.1625.
    assert model.speed == pytest.approx((41 / 20 + 5.5 / 20) / 2)
    assert model.estimate("comfyui", LOAD, model_mode="sdxl") == Estimate(
        20.0 * model.speed, 0, scaled=True
    )


def test_a_rarely_measured_step_uses_the_profile_scaled_to_this_gpus_speed() -> None:
    # Reviews and releases ran at a twentieth of the profile's time (a fast simulator, or a
    # faster card); a cold start, measured once, is then the profile's times a twentieth.
    history = [
        *samples(key("critic", REVIEW), 0.2, 0.2, 0.2),  # profile 4 s
        *samples(key("comfyui", RELEASE), 0.1, 0.1, 0.1),  # profile 2 s
        *samples(key("critic", START), 0.7),  # once: not enough for its own estimate
        *samples(key("comfyui", LEAD_IN), 0.05, 0.05, 0.05),  # orchestration: no say
    ]
    model = DurationModel(SIM, history)
    assert model.speed == pytest.approx(0.05)
    # Never loaded: the profile's 20 s times a twentieth.
    load = model.estimate("critic", LOAD, cold=True)
    assert load == Estimate(1.0, 0, scaled=True)
    assert load.words == "from the profile, scaled to this GPU"
    # Started once (0.7 s): that run and twice the scaled profile (15 s × 0.05 = 0.75 s).
    start = model.estimate("critic", START)
    assert start.seconds == pytest.approx((0.7 + 2 * 0.75) / 3)
    assert (start.samples, start.scaled) == (1, True)
    assert start.words == "from the last run and the profile"
    # Orchestration steps have no profile number to scale.
    assert model.estimate("critic", VERIFY) == Estimate(0.0, 0)


def test_only_this_gpu_and_profiles_runs_count() -> None:
    review = key("critic", REVIEW)
    others = [
        *samples(review, 9, 9, 9, gpu="other"),
        *samples(review, 7, 7, 7, profile="rtx5090-32gb"),
    ]
    assert DurationModel(SIM, others, gpu="g0").estimate("critic", REVIEW) == Estimate(4.0)


def test_sampling_of_an_unseen_size_uses_the_same_models_other_sizes_per_step_megapixel() -> None:
    small = samples(
        key("comfyui", SAMPLE, model_mode="sdxl", size=size_bucket(512, 512)), 0.1, 0.1, 0.1
    )
    model = DurationModel(SIM, small)
    assert model.estimate("comfyui", SAMPLE, model_mode="sdxl", size=size_bucket(1024, 1024)) == (
        Estimate(0.1, 3)
    )


@pytest.mark.parametrize(
    ("width", "height", "bucket"),
    [(512, 512, "up to 0.3 MP"), (768, 768, "up to 0.6 MP"), (1024, 1024, "up to 1.1 MP"),
     (1536, 1536, "up to 2.4 MP"), (1536, 2048, "over 2.4 MP")],
)  # fmt: skip
def test_sizes_fall_in_buckets_by_megapixels(width: int, height: int, bucket: str) -> None:
    assert size_bucket(width, height) == bucket


# --- a job's own run ------------------------------------------------------------------------


def test_a_generation_from_the_profile_is_sampling_plus_upload_as_before() -> None:
    # 4 prompts × 20 steps × 1.048576 MP × 0.55 s + 4 images × 0.2 s upload.
    estimate = DurationModel(SIM).generation(FLUX)
    assert estimate.seconds == pytest.approx(4 * 20 * 1.048576 * 0.55 + 0.8)
    assert not estimate.from_history


def test_a_generation_from_history_adds_lead_in_handoffs_and_the_last_store() -> None:
    size = size_bucket(1024, 1024)
    history = [
        *samples(key("comfyui", SAMPLE, model_mode="flux-dev-fp8", size=size), 0.03, 0.03, 0.03),
        *samples(key("comfyui", HANDOFF, size=size), 0.01, 0.01, 0.01),
        *samples(key("comfyui", STORE, size=size), 0.1, 0.1, 0.1),
        *samples(key("comfyui", LEAD_IN), 0.05, 0.05, 0.05),
    ]
    estimate = DurationModel(SIM, history).generation(FLUX)
    # 0.05 + 4 × (0.03 × 20 × 1.048576) + 3 × 0.01 + 1 × 0.1
    assert estimate.seconds == pytest.approx(0.05 + 4 * 0.03 * 20 * 1.048576 + 0.03 + 0.1)
    assert estimate.samples == 3


def test_a_fixed_seed_batch_is_one_prompt_of_four_images() -> None:
    batch = GenerationPlan("flux-dev-fp8", 1024, 1024, steps=20, count=4, batch=4)
    assert batch.prompts == 1
    assert batch.units_per_prompt == pytest.approx(20 * 1.048576 * 4)
    # Same sampling as four prompts, no handoff, the store covers four images.
    assert DurationModel(SIM).generation(batch).seconds == pytest.approx(
        DurationModel(SIM).generation(FLUX).seconds
    )


# --- switching ------------------------------------------------------------------------------


def test_switch_costs_from_the_profile_match_the_schedulers_table() -> None:
    assert DurationModel(SIM).scheduler_policy() == policy_from_profile(SIM)


def test_switch_costs_follow_what_holds_the_gpu_and_what_ever_started() -> None:
    model = DurationModel(SIM)
    both = frozenset({"comfyui", "critic"})
    # Cold: start + load + warm of the Critic (15 + 20 + 25), after releasing ComfyUI (2).
    assert model.switch_seconds("comfyui", FLUX_LOADED, "critic", "", frozenset({"comfyui"})) == 62
    # Parked by sleep level 1: release ComfyUI (2) + wake (3).
    assert model.switch_seconds("comfyui", FLUX_LOADED, "critic", "", both) == 5
    # Back to ComfyUI after /free: release the Critic (1) + load (20) + warm (3).
    assert model.switch_seconds("critic", frozenset(), "comfyui", "sdxl", both) == 24
    # Same runtime, a model already loaded since the last release: nothing; another model
    # mode: its load and warm-up (ComfyUI keeps both while they fit).
    sdxl = frozenset({"sdxl"})
    assert model.switch_seconds("comfyui", sdxl, "comfyui", "sdxl", both) == 0
    assert model.switch_seconds("comfyui", sdxl, "comfyui", "flux-dev-fp8", both) == 23
    assert model.switch_seconds("comfyui", sdxl | FLUX_LOADED, "comfyui", "flux-dev-fp8", both) == 0
    # Nothing resident, never started: a cold start of ComfyUI (8 + 20 + 3).
    assert model.switch_seconds(None, frozenset(), "comfyui", "sdxl", frozenset()) == 31


def test_learned_swaps_replace_the_profiles() -> None:
    history = [
        *samples(key("comfyui", RELEASE), 0.1, 0.1, 0.1),
        *samples(key("critic", VERIFY), 0.02, 0.02, 0.02),
        *samples(key("critic", WAKE), 0.15, 0.15, 0.15),
    ]
    model = DurationModel(SIM, history)
    both = frozenset({"comfyui", "critic"})
    assert model.switch_seconds("comfyui", frozenset(), "critic", "", both) == pytest.approx(0.27)


# --- a job under way --------------------------------------------------------------------------


def test_what_is_left_of_a_batch_follows_its_steps_handoffs_and_store() -> None:
    model = DurationModel(SIM)
    per_step = 0.55 * 1.048576
    halfway = RunningJob("generate", "comfyui", "generating", "comfyui", 3.0, 30, FLUX)
    # Image 2 of 4 is 10 steps in: 50 steps left, two handoffs (2 → 3, 3 → 4) of 0.2 s,
    # then the last store of 0.2 s.
    assert model.remaining_seconds(halfway) == pytest.approx(50 * per_step + 0.4 + 0.2)
    storing_last = RunningJob("generate", "comfyui", "uploading", "comfyui", 0.05, 80, FLUX)
    assert model.remaining_seconds(storing_last) == pytest.approx(0.15)
    loading = RunningJob("generate", "comfyui", "loading", "comfyui", 5.0, 0, FLUX)
    # The rest of the load (20 − 5), the warm-up (3), then the whole run without lead-in.
    assert model.remaining_seconds(loading) == pytest.approx(15 + 3 + 80 * per_step + 3 * 0.2 + 0.2)


def test_a_critic_waking_from_sleep_is_a_wake_not_a_start() -> None:
    model = DurationModel(SIM)
    waking = RunningJob("review", "critic", "starting", "critic", 1.0, detail="waking the Critic")
    assert model.remaining_seconds(waking) == pytest.approx(2.0 + 4.0)
    starting = RunningJob("review", "critic", "starting", "critic", 1.0, detail="starting critic")
    assert model.remaining_seconds(starting) == pytest.approx(14 + 20 + 25 + 4.0)


@given(
    elapsed=st.floats(min_value=0, max_value=1e5),
    done=st.integers(min_value=0, max_value=200),
    phase=st.sampled_from(
        [
            "waiting_for_gpu",
            "releasing",
            "verifying_vram",
            "starting",
            "loading",
            "warming",
            "generating",
            "uploading",
            "recording",
            "reviewing",
        ]
    ),
    kind=st.sampled_from(["generate", "review"]),
)
def test_what_is_left_is_never_negative_nor_more_than_a_fresh_start(
    elapsed: float, done: int, phase: str, kind: str
) -> None:
    model = DurationModel(SIM)
    plan = FLUX if kind == "generate" else None
    runtime = "comfyui" if kind == "generate" else "critic"
    job = RunningJob(kind, runtime, phase, runtime, elapsed, done, plan)
    fresh = RunningJob(kind, runtime, "waiting_for_gpu", runtime, 0.0, 0, plan)
    left = model.remaining_seconds(job)
    assert 0 <= left <= model.remaining_seconds(fresh, pending_switch_s=1e6)


# --- samples from a phase history -----------------------------------------------------------

T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def history(*rows: tuple[str, str, str, str, float]) -> list[PhaseRow]:
    """Rows (status, phase, runtime, detail, start second); each ends when the next starts."""
    made = []
    for n, (status, phase, runtime, detail, at) in enumerate(rows):
        end = rows[n + 1][4] if n + 1 < len(rows) else None
        made.append(
            PhaseRow(
                status, phase, runtime, detail, T0 + timedelta(seconds=at),
                None if end is None else T0 + timedelta(seconds=end),
            )
        )  # fmt: skip
    return made


def by_step(found: list[Sample]) -> dict[tuple[str, str, bool], list[float]]:
    out: dict[tuple[str, str, bool], list[float]] = {}
    for sample in found:
        out.setdefault((sample.key.runtime, sample.key.step, sample.key.cold), []).append(
            round(sample.seconds, 6)
        )
    return out


def test_a_cold_batch_gives_start_cold_load_sampling_handoffs_and_store() -> None:
    plan = GenerationPlan("flux-dev-fp8", 1000, 1000, steps=10, count=2, batch=1)
    rows = history(
        ("admitted", "waiting_for_gpu", "", "admitted", -30),  # queue time: not a sample
        ("running", "waiting_for_gpu", "", "claimed by w", 0),
        ("running", "verifying_vram", "comfyui", "waiting for", 0.1),
        ("running", "starting", "comfyui", "starting comfyui", 0.2),
        ("running", "loading", "comfyui", "loading UNETLoader", 8.2),
        ("running", "warming", "comfyui", "first pass", 28.2),
        ("running", "generating", "comfyui", "generating image 1/2", 31.2),
        ("running", "uploading", "comfyui", "storing image 1", 36.2),
        ("running", "generating", "comfyui", "generating image 2/2", 36.25),
        ("running", "uploading", "comfyui", "storing image 2", 41.25),
        ("done", "", "", "2 image(s) stored", 41.45),
    )
    found = samples_from_attempt(JobFacts("g0", "sim-32gb", "generate", "comfyui", plan), rows)
    steps = by_step(found)
    assert steps[("comfyui", "lead_in", False)] == [0.1]
    assert steps[("comfyui", "verify", False)] == [0.1]
    assert steps[("comfyui", "start", False)] == [8.0]
    assert steps[("comfyui", "load", True)] == [20.0]  # started in this attempt: cold
    assert steps[("comfyui", "warm", True)] == [3.0]
    assert steps[("comfyui", "sample", False)] == [0.5, 0.5]  # 5 s / (10 steps × 1 MP)
    assert steps[("comfyui", "handoff", False)] == [0.05]
    assert steps[("comfyui", "store", False)] == [0.2]
    sample = next(s for s in found if s.key.step == SAMPLE)
    assert (sample.key.model_mode, sample.key.size) == ("flux-dev-fp8", "up to 1.1 MP")


def test_a_review_after_a_swap_gives_release_wake_and_review() -> None:
    rows = history(
        ("running", "waiting_for_gpu", "", "claimed", 0),
        ("running", "releasing", "comfyui", "releasing comfyui", 0.05),
        ("running", "verifying_vram", "critic", "waiting", 2.05),
        ("running", "starting", "critic", "waking the Critic from sleep", 2.1),
        ("running", "reviewing", "critic", "reviewing image 3", 5.1),
        ("done", "", "", "verdict: approve", 9.1),
    )
    steps = by_step(samples_from_attempt(JobFacts("g0", "sim-32gb", "review", "critic"), rows))
    assert steps == {
        ("critic", "lead_in", False): [0.05],
        ("comfyui", "release", False): [2.0],
        ("critic", "verify", False): [0.05],
        ("critic", "wake", False): [3.0],
        ("critic", "review", False): [4.0],
    }


def test_only_the_last_attempt_of_a_job_that_ended_done_is_measured() -> None:
    rows = history(
        ("running", "waiting_for_gpu", "", "claimed", 0),
        ("running", "reviewing", "critic", "reviewing", 1),
        ("interrupted", "", "", "worker stopped", 50),
        ("admitted", "waiting_for_gpu", "", "re-queued", 50),
        ("running", "waiting_for_gpu", "", "claimed", 60),
        ("running", "reviewing", "critic", "reviewing", 60.5),
        ("done", "", "", "verdict", 64.5),
    )
    facts = JobFacts("g0", "sim-32gb", "review", "critic")
    assert by_step(samples_from_attempt(facts, rows))[("critic", "review", False)] == [4.0]
    failed = [*rows[:-1], PhaseRow("failed", "", "", "x", rows[-1].started_at, None)]
    assert samples_from_attempt(facts, failed) == []


def test_a_batched_prompt_learns_apart_from_single_images_of_the_same_size() -> None:
    batch = GenerationPlan("sdxl", 1024, 1024, steps=20, count=4, batch=4)
    single = GenerationPlan("sdxl", 1024, 1024, steps=20, count=1, batch=1)
    assert (batch.shape, single.shape) == ("up to 1.1 MP × 4", "up to 1.1 MP")
    # Singles pay one prompt's fixed costs per image; a batch of four shares them.
    singles = samples(key("comfyui", SAMPLE, model_mode="sdxl", size=single.shape), *[0.02] * 3)
    batches = samples(key("comfyui", SAMPLE, model_mode="sdxl", size=batch.shape), *[0.014] * 3)
    model = DurationModel(SIM, [*singles, *batches])
    assert model.estimate("comfyui", SAMPLE, model_mode="sdxl", size=batch.shape).seconds == 0.014
    assert model.estimate("comfyui", SAMPLE, model_mode="sdxl", size=single.shape).seconds == 0.02
    # A batch of three was never run: the mode's other shapes stand in.
    three = GenerationPlan("sdxl", 1024, 1024, steps=20, count=3, batch=3)
    fallback = model.estimate("comfyui", SAMPLE, model_mode="sdxl", size=three.shape)
    assert fallback.seconds == pytest.approx(0.017)
