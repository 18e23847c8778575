"""What-if replay on hand-made histories whose answers are worked out by hand below.

Profile sim-32gb's figures (no measured history, so the model uses them): ComfyUI cold
start 8 + 20 + 3 = 31 s; the Critic's first start after ComfyUI: free 2 + 15 + 20 + 25 =
62 s; Critic → ComfyUI (sleep 1, reload 20, warm 3) 24 s; ComfyUI → Critic once started
(free 2, wake 3) 5 s; an SDXL 1024² 20-step image 0.25 s/step/MP × 1.048576 MP × 20 +
0.2 s upload = 5.44288 s; a review 4 s; the worker's gap 0 s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from artcritic.gpu.profiles import Profile, profile_from_data, profile_read
from artcritic.jobs.durations import DurationModel, GenerationPlan
from artcritic.jobs.models import Job, JobPhase, JobStatus
from artcritic.jobs.whatif import (
    RecordedJob,
    ScenarioGpu,
    actual_figures,
    comparison_rows,
    percentile,
    replay,
    scenario_names,
)
from artcritic.studio.models import Project
from tests.factories import profile_load, project_make, prompt_make, request_make
from tests.factories_media import image_make, job_make

ROOT = Path(__file__).resolve().parents[2]
SIM, _ = profile_read(ROOT / "profiles" / "sim-32gb.toml")
PLAN = GenerationPlan(model_mode="sdxl", width=1024, height=1024, steps=20, count=1, batch=1)
GEN = 5.44288
REVIEW = 4.0


def variant(**changes: object) -> Profile:
    return profile_from_data({**SIM.model_dump(mode="json"), **changes})


def gpu(name: str, profile: Profile = SIM) -> ScenarioGpu:
    return ScenarioGpu(name, profile, DurationModel(profile, []))


def history(*arrivals: float) -> list[RecordedJob]:
    """One single-image generation at each time, and the review the worker queued after it."""
    jobs: list[RecordedJob] = []
    for n, at in enumerate(arrivals):
        gen_id, review_id = 100 + n, 200 + n
        jobs.append(RecordedJob(gen_id, "generate", 1, at, plan=PLAN, images=1))
        jobs.append(RecordedJob(review_id, "review", 1, at + 50.0, parent_id=gen_id))
    return jobs


def hand_history(project: Project, t0: datetime) -> None:
    """One SDXL image and its review, as they ran: rows the what-if reads back.

    The generation is queued at t0, picked 10 s later and done at +50; its review is queued
    then, picked at +60 after a swap (a "releasing" phase) and done at +70.
    """
    request = request_make(prompt_make(project), model_mode="sdxl", steps=20, count=1)
    generation = job_make(request, status=JobStatus.DONE, output_count=1, cost=0.03)
    review = job_make(image=image_make(request, job=generation), status=JobStatus.DONE, cost=0.01)
    Job.objects.filter(pk=generation.pk).update(
        created_at=t0, started_at=t0 + timedelta(seconds=10), finished_at=t0 + timedelta(seconds=50)
    )
    Job.objects.filter(pk=review.pk).update(
        created_at=t0 + timedelta(seconds=50),
        started_at=t0 + timedelta(seconds=60),
        finished_at=t0 + timedelta(seconds=70),
    )
    JobPhase.objects.create(
        job=review, status=JobStatus.RUNNING, phase="releasing", runtime="comfyui",
        started_at=t0 + timedelta(seconds=60),
    )  # fmt: skip


def test_one_exclusive_gpu_swaps_at_each_change_of_runtime() -> None:
    figures = replay(history(0.0, 1000.0), [gpu("gpu0")])
    # G1 0 → 31 + GEN; R1 then 62 + 4; G2 at 1000: 24 + GEN; R2: 5 + 4.
    assert figures.swaps == 3
    assert figures.makespan_s == pytest.approx(1000 + 24 + GEN + 5 + REVIEW)
    assert (figures.p50_wait_s, figures.p95_wait_s) == (0.0, 0.0)
    assert (figures.jobs, figures.images) == (4, 2)
    assert figures.per_gpu == {"gpu0": 4}


def test_a_profile_where_both_fit_never_swaps() -> None:
    roomy = variant(name="sim-roomy", exclusive=[])
    figures = replay(history(0.0, 1000.0), [gpu("gpu0", roomy)])
    assert figures.swaps == 0
    # Both stay resident: G2 and R2 start at once.
    assert figures.makespan_s == pytest.approx(1000 + GEN + REVIEW)


def test_dedicated_roles_on_two_gpus_never_swap_and_split_the_work() -> None:
    artist = variant(name="sim-artist", role="artist")
    critic = variant(name="sim-critic", role="critic")
    figures = replay(history(0.0, 1000.0), [gpu("gpu0", artist), gpu("gpu1", critic)])
    assert figures.swaps == 0
    assert figures.per_gpu == {"gpu0": 2, "gpu1": 2}
    # R2 on the Critic GPU, already started: at once after G2 (ComfyUI loaded: no switch).
    assert figures.makespan_s == pytest.approx(1000 + GEN + REVIEW)


def test_contention_on_one_gpu_gives_the_waits_worked_out_by_hand() -> None:
    figures = replay(history(0.0, 0.0), [gpu("gpu0")])
    # G1 at 0 (31 + GEN → 36.44288); G2 waits 36.44288 (ComfyUI resident) → 41.88576;
    # R1 (arrived 36.44288) waits GEN, swaps 62 + 4 → 107.88576; R2 waits 66 → 111.88576.
    first_end = 31 + GEN
    assert figures.swaps == 1
    assert figures.makespan_s == pytest.approx(first_end + GEN + 62 + REVIEW + REVIEW)
    assert figures.p50_wait_s == pytest.approx(GEN)  # waits 0, GEN, 36.44, 66: 2nd of 4
    assert figures.p95_wait_s == pytest.approx(62 + REVIEW)  # the 4th of 4


def test_costs_follow_the_time_the_gpu_was_held() -> None:
    roomy = variant(name="sim-roomy", exclusive=[])
    swapping = replay(history(0.0, 1000.0), [gpu("gpu0")])
    resident = replay(history(0.0, 1000.0), [gpu("gpu0", roomy)])
    assert swapping.cost is not None
    assert resident.cost is not None
    assert swapping.cost > resident.cost > 0
    unpriced = variant(name="sim-free", economics=None)
    figures = replay(history(0.0), [gpu("gpu0", unpriced)])
    assert figures.cost is None
    assert figures.cost_per_image is None
    rows = {label: (a, p) for label, a, p in comparison_rows(figures, figures)}
    assert rows["cost per image"] == ("not priced", "not priced")


def test_what_happened_is_read_from_the_recorded_times() -> None:
    jobs = [
        RecordedJob(1, "generate", 1, 0.0, images=2, picked_at=10.0, finished_at=40.0, cost=0.02),
        RecordedJob(2, "review", 1, 40.0, picked_at=100.0, finished_at=110.0, swapped=True,
                    cost=0.01),
        RecordedJob(3, "review", 1, 40.0, picked_at=110.0, finished_at=115.0, cost=0.01),
    ]  # fmt: skip
    figures = actual_figures(jobs, "EUR")
    assert (figures.jobs, figures.images, figures.swaps) == (3, 2, 1)
    assert figures.makespan_s == 115.0
    assert figures.p50_wait_s == 60.0  # waits 10, 60, 70
    assert figures.p95_wait_s == 70.0
    assert figures.cost_per_image == pytest.approx(0.02)


def test_bad_scenarios_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at least one GPU"):
        replay(history(0.0), [])
    with pytest.raises(ValueError, match="distinct"):
        replay(history(0.0), [gpu("a"), gpu("a")])
    artist = variant(name="sim-artist", role="artist")
    with pytest.raises(ValueError, match="no GPU of the scenario runs critic"):
        replay(history(0.0), [gpu("a", artist)])
    odd = RecordedJob(1, "generate", 1, 0.0, plan=PLAN.__class__(
        model_mode="nope", width=1024, height=1024, steps=20, count=1, batch=1), images=1)
    with pytest.raises(ValueError, match="model mode 'nope'"):
        replay([odd], [gpu("a")])
    with pytest.raises(ValueError, match="dedicated roles need at least 2"):
        scenario_names(1, "dedicated")
    with pytest.raises(ValueError, match="1 to 16"):
        scenario_names(0, "shared")
    with pytest.raises(ValueError, match="roles are"):
        scenario_names(2, "<b>both</b>")
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0.0)
    assert replay([], [gpu("a")]).jobs == 0


@pytest.mark.django_db
def test_the_command_refuses_bad_input_with_the_reason() -> None:
    with pytest.raises(CommandError, match="No hardware profile named 'nope'"):
        call_command("whatif", "--profile", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="Days must be a whole number from 1 to 90"):
        call_command("whatif", "--profile", "sim-32gb", "--days", "0", stdout=StringIO())


@pytest.mark.django_db
def test_the_command_replays_a_hand_made_history_from_the_database() -> None:
    profile_load()
    hand_history(project_make(), timezone.now() - timedelta(hours=2))
    out = StringIO()
    call_command("whatif", "--profile", "sim-32gb", "--days", "1", stdout=out)
    text = out.getvalue()
    # The table: a 16-character label, then what happened and the prediction, 16 each.
    rows = {
        line[:16].strip(): (line[16:32].strip(), line[32:48].strip())
        for line in text.splitlines()[2:9]
    }
    assert "What if the last 1 day(s) had run on 1 × sim-32gb (shared roles)?" in text
    # Happened: 2 jobs, 1 swap, waits 10 and 10, 70 s from first queue to last finish.
    # Replayed: G at once (31 + GEN), its review at once after it (62 + 4): 1 swap.
    assert rows["jobs"] == ("2", "2")
    assert rows["images"] == ("1", "1")
    assert rows["runtime swaps"] == ("1", "1")
    assert rows["wait p50"] == ("10 s", "0 s")
    assert rows["makespan"] == ("70 s", f"{31 + GEN + 62 + REVIEW:.0f} s")
    assert rows["cost per image"][0] == "0.0400 EUR"
    assert rows["cost per image"][1].endswith(" EUR")
    assert "jobs per GPU: gpu0 2" in text
    assert "has no measured history yet" in text
