"""Critic benchmark: reviews per minute one at a time against batched up to max-num-seqs.

What runs. Its own database (``artcritic_bench_critic``, created and migrated if missing,
dropped afterwards if this run created it), S3 bucket, Redis namespace and simulated-GPU
folder. One GPU ``benchgpu`` (the worker command of bench/eta.py) on sim-32gb with the
Critic's ``max_num_seqs`` set per pass, served by the real Celery GPU worker (the
production command), whose process driver starts the simulated Critic with the same
``--max-num-seqs``. The simulator batches as vLLM does: a review takes ``critic_review``
seconds (× the time scale), 4 % longer for each other sequence running beside it, and no
more than max-num-seqs run at once.

What is measured. ``--images`` stored 512² images (PNG and thumbnail in S3, six of them
decided on, so every review is shown examples with thumbnails) are reviewed by the worker
twice: serially (max-num-seqs 1) and batched (the profile's max-num-seqs, 4). Each pass
starts with one review that brings the Critic up (not timed), then queues every image's
review in one transaction; the rate is images over the time from queueing to the last
review's end, in reviews per minute of wall clock at ``--time-scale``.

The last line is one JSON object: {"images", "serial_reviews_per_min",
"batched_reviews_per_min", "speedup", "failed"}. Goal: speedup ≥ 0.8 × max-num-seqs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: `python bench/critic.py`
    sys.path.insert(0, str(ROOT))

from bench.eta import GPU, Worker, _bucket, database_guard, worker_environment  # noqa: E402
from bench.livebench import stack  # noqa: E402

if TYPE_CHECKING:
    from artcritic.gpu.profiles import Profile

BATCHED_SEQS = 4
DECIDED = 6
PASS_TIMEOUT_S = 900.0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images reviewed per pass")
    parser.add_argument("--time-scale", type=float, default=0.25, help="simulators' time scale")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--database", default="artcritic_bench_critic", help="database to use")
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 2000 or not 0 < args.time_scale <= 1:
        parser.error("1 ≤ --images ≤ 2000 and 0 < --time-scale ≤ 1, please")
    database_guard(parser, args.database)
    return args


def _profile(max_num_seqs: int) -> Profile:
    """sim-32gb with free ports and this max-num-seqs, made the GPU's active profile."""
    from artcritic.gpu.models import Gpu, HardwareProfile
    from artcritic.gpu.profiles import Profile, profile_read

    profile, _ = profile_read(ROOT / "profiles" / "sim-32gb.toml")
    data = profile.model_dump(mode="json")
    for runtime in ("comfyui", "critic"):
        data["runtimes"][runtime]["url"] = f"http://127.0.0.1:{stack.free_port()}"
    data["runtimes"]["critic"]["max_num_seqs"] = max_num_seqs
    profile = Profile.model_validate(data)
    row, _ = HardwareProfile.objects.update_or_create(
        name=profile.name, defaults={"data": data, "simulated": True}
    )
    Gpu.objects.update_or_create(name=GPU, defaults={"active_profile": row})
    return profile


def _images(count: int) -> list[Any]:
    """``count`` images to review and DECIDED decided ones, stored as the Artist stores them."""
    from django.contrib.auth import get_user_model

    from artcritic.jobs.models import Job, JobKind, JobStatus
    from artcritic.sim.draw import image_draw, png_encode
    from artcritic.studio.models import (
        GenerationRequest,
        HumanDecision,
        Image,
        Membership,
        Project,
        Prompt,
        Role,
    )
    from artcritic.studio.storage import image_store

    user, _ = get_user_model().objects.get_or_create(username="bench-critic")
    Project.objects.filter(created_by=user).delete()  # a kept database starts over
    project = Project.objects.create(
        name="Critic bench", brief="Desk lamps.", taste_notes="Quiet.", created_by=user
    )
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    made: list[Any] = []
    for n in range(count + DECIDED):
        text = f"a brushed aluminium desk lamp, variant {n % 17}, studio light"
        prompt = Prompt.objects.create(project=project, author=user, text=text)
        request = GenerationRequest.objects.create(
            project=project, prompt=prompt, author=user, profile_name="sim-32gb",
            model_mode="flux-dev-fp8", width=512, height=512, steps=20, cfg=1.0,
            sampler="euler", scheduler="simple", seed_policy="increment", seed=n, count=1,
            seeds=[n],
        )  # fmt: skip
        job = Job.objects.create(
            kind=JobKind.GENERATE, project=project, request=request, runtime="comfyui",
            gpu=GPU, profile_name="sim-32gb", status=JobStatus.DONE, output_count=1,
        )  # fmt: skip
        stored = image_store(project.pk, png_encode(image_draw(text, n, 0, 512, 512), prompt=None))
        image = Image.objects.create(
            project=project, prompt=prompt, request=request, job=job, index=0, seed=n,
            settings=request.settings_snapshot(), object_key=stored.object_key,
            thumbnail_key=stored.thumbnail_key, width=stored.width, height=stored.height,
            byte_size=stored.byte_size, sha256=stored.sha256, simulated=True,
        )  # fmt: skip
        if n < DECIDED:
            verdict = "approve" if n % 2 else "reject"
            HumanDecision.objects.create(image=image, user=user, verdict=verdict)
        else:
            made.append(image)
    return made


def _wait(ids: list[int], worker: Worker) -> None:
    from django.db import close_old_connections

    from artcritic.jobs.models import FINISHED_STATUSES, Job

    deadline = time.monotonic() + PASS_TIMEOUT_S
    while True:
        close_old_connections()
        if Job.objects.filter(pk__in=ids, status__in=FINISHED_STATUSES).count() == len(ids):
            return
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise stack.BenchError(f"the reviews did not finish:\n{worker.text()[-3000:]}")
        time.sleep(0.1)


def _submit(images: list[Any]) -> tuple[list[int], float]:
    from django.db import transaction

    from artcritic.jobs.kick import gpu_kick
    from artcritic.jobs.runner import review_job_submit

    started = time.time()
    with transaction.atomic():
        ids = [review_job_submit(image, submitted_by=None).pk for image in images]
        gpu_kick(GPU)
    return ids, started


def _pass(
    name: str, seqs: int, images: list[Any], *, env: dict[str, str], folder: Path, sim_dir: Path
) -> tuple[float, int]:
    """Reviews per minute with the Critic at ``seqs`` sequences, and how many failed."""
    from django.db.models import Max

    from artcritic.jobs.models import Job, JobStatus
    from artcritic.runtimes.drivers.factory import driver_for

    profile = _profile(seqs)
    worker = Worker(env, folder)
    try:
        warm, _ = _submit(images[:1])  # brings the Critic up; not timed
        _wait(warm, worker)
        ids, started = _submit(images)
        _wait(ids, worker)
    finally:
        worker.stop()
        driver_for("critic", profile, gpu=GPU, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()
    ended = Job.objects.filter(pk__in=ids).aggregate(last=Max("finished_at"))["last"]
    failed = Job.objects.filter(pk__in=ids).exclude(status=JobStatus.DONE).count()
    minutes = (ended.timestamp() - started) / 60
    rate = len(ids) / minutes
    print(
        f"{name}: {len(ids)} reviews at max-num-seqs {seqs} in {minutes * 60:.1f} s → "
        f"{rate:.1f} reviews/min (≈ {rate * _scale(env):.1f}/min at real review durations); "
        f"failed {failed}; load average {_load()}",
        flush=True,
    )
    return rate, failed


def _scale(env: dict[str, str]) -> float:
    return float(env["ARTCRITIC_SIM_TIME_SCALE"])


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    run = f"benchcritic{uuid.uuid4().hex[:8]}"
    folder = Path(tempfile.mkdtemp(prefix="bench-critic-"))
    sim_dir = folder / "sim"
    env = worker_environment(args, run, sim_dir)
    os.environ.update(env)
    url = env["DATABASE_URL"]
    created = stack.database_ensure(url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    bucket = False
    try:
        call_command("migrate", interactive=False, verbosity=0)
        _bucket(run)
        bucket = True
        images = _images(args.images)
        print(f"time scale {args.time_scale}; load average {_load()}", flush=True)
        where = {"env": env, "folder": folder, "sim_dir": sim_dir}
        serial, serial_failed = _pass("serial", 1, images, **where)
        batched, batched_failed = _pass("batched", BATCHED_SEQS, images, **where)
    except KeyboardInterrupt:
        print("critic benchmark interrupted; stopping what it started", file=sys.stderr)
        return 130
    except BaseException:
        print(f"critic benchmark failed; logs in {folder}", file=sys.stderr)
        raise
    finally:
        if bucket:
            _bucket(run, remove=True)
        stack.channel_keys_delete(run)
        connections.close_all()
        if created and not args.keep_db:
            stack.database_drop(url)
    shutil.rmtree(folder, ignore_errors=True)
    speedup = batched / serial
    goal = 0.8 * BATCHED_SEQS
    print(f"speedup {speedup:.2f} (goal ≥ {goal:.1f} = 0.8 × max-num-seqs {BATCHED_SEQS})")
    print(
        json.dumps(
            {
                "images": args.images,
                "serial_reviews_per_min": round(serial, 1),
                "batched_reviews_per_min": round(batched, 1),
                "speedup": round(speedup, 2),
                "failed": serial_failed + batched_failed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
