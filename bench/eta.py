"""ETA benchmark: how far the promised finish times are from the real ones, cold and warm.

What runs. Its own database (``artcritic_bench_eta`` on the configured PostgreSQL, created
and migrated if missing, dropped afterwards if this run created it, unless --keep-db), its
own S3 bucket, Redis namespace and simulated-GPU folder. One GPU ``benchgpu`` on the
sim-32gb profile (simulators on free ports), served by the real Celery GPU worker (the
production command), whose process driver starts the simulated ComfyUI and Critic at a
fast time scale (``--time-scale``, default 0.1: a 20 s load takes 2 s; faster scales let
the orchestration's own milliseconds, which do not scale, weigh on the figures).

What is measured. A seeded mixed workload (``bench/etabench/workload.py``: waves of
batches — fixed seeds as one prompt, incremented seeds as one prompt per image — and
interactive singles, FLUX and SDXL, two sizes; every image then reviewed) is submitted
through the real ``request_submit``, which stores each job's predicted start and finish
when it is admitted (reviews are predicted by the worker when it queues them). Twice:
cold — an empty history, so predictions start from the profile's numbers and learn as
runs finish — and warm — the same workload again, with the first pass's history. Both
passes start with the runtimes stopped. A job's error is |finished − predicted finish| /
(finished − admitted); p50 and p90 are nearest-rank over the pass's finished jobs.

Overhead. From the warm pass's phase history: what the orchestration took (the claim's
lead-in, checking VRAM, storing and recording, and what generating and reviewing took
beyond the simulators' exact work) over that work at real durations (time scale 1),
which is what the ≤ 2 % goal is about. Runtime swaps are runtime time and in neither.

The last line is one JSON object: {"jobs", "cold_p50_err_pct", "cold_p90_err_pct",
"warm_p50_err_pct", "warm_p90_err_pct", "overhead_pct"}.
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
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: `python bench/eta.py`
    sys.path.insert(0, str(ROOT))

from bench.etabench.report import (  # noqa: E402
    JobRecord,
    Overhead,
    PassErrors,
    overhead,
    pass_errors,
)
from bench.etabench.workload import PROJECTS, Submission, waves_build  # noqa: E402
from bench.livebench import stack  # noqa: E402

if TYPE_CHECKING:
    from artcritic.gpu.profiles import Profile

GPU = "benchgpu"
WAVE_TIMEOUT_S = 240.0
READY_TIMEOUT_S = 90.0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=9, help="workload seed")
    parser.add_argument("--waves", type=int, default=6, help="waves per pass (≥ 1)")
    parser.add_argument("--time-scale", type=float, default=0.1, help="simulators' time scale")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--database", default="artcritic_bench_eta", help="database to use")
    args = parser.parse_args(argv)
    if args.waves < 1 or not 0 < args.time_scale <= 1:
        parser.error("--waves ≥ 1 and 0 < --time-scale ≤ 1, please")
    database_guard(parser, args.database)
    return args


def database_guard(parser: argparse.ArgumentParser, database: str) -> None:
    """A benchmark drops its database afterwards: never the one the settings name."""
    configured = urlparse(os.environ.get("DATABASE_URL", stack.DEFAULT_DATABASE_URL)).path
    if database == configured.lstrip("/"):
        parser.error(f"--database {database} is the configured database; use its own")


def worker_environment(args: argparse.Namespace, run: str, sim_dir: Path) -> dict[str, str]:
    """What this process and the worker share: the bench database, bucket and namespace."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artcritic.settings",
        "DATABASE_URL": stack.database_url(args.database),
        "ARTCRITIC_INSTANCE": run,
        "ARTCRITIC_CHANNEL_PREFIX": run,
        "S3_BUCKET": run,
        "ARTCRITIC_DEBUG": "1",
        "ARTCRITIC_GPU": GPU,
        "ARTCRITIC_SIM_DIR": str(sim_dir),
        "ARTCRITIC_SIM_TIME_SCALE": str(args.time_scale),
        "ARTCRITIC_SUBMIT_RATE_PER_MINUTE": "100000",
        "ARTCRITIC_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


class Worker:
    """The production GPU worker command for ``benchgpu``, stopped by its PID."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.log = folder / f"worker-{uuid.uuid4().hex[:6]}.log"
        argv = [
            sys.executable, "-m", "celery", "-A", "artcritic", "worker", "-Q", f"gpu.{GPU}",
            "-n", f"gpu.{GPU}.{uuid.uuid4().hex[:6]}@%h", "--concurrency", "1",
            "--prefetch-multiplier", "1", "--pool", "solo", "--without-mingle",
            "--without-gossip", "-l", "INFO",
        ]  # fmt: skip
        import subprocess

        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
                argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while " ready." not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise stack.BenchError(f"the GPU worker did not start:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=10)


def _bucket(name: str, *, remove: bool = False) -> None:
    from django.conf import settings
    from minio import Minio

    client = Minio(
        settings.S3_ENDPOINT,
        access_key=settings.S3_ACCESS_KEY,
        secret_key=settings.S3_SECRET_KEY,
        secure=settings.S3_SECURE,
    )
    if not remove:
        client.make_bucket(name)
        return
    for item in client.list_objects(name, recursive=True):
        client.remove_object(name, item.object_name or "")
    client.remove_bucket(name)


def _world(time_scale: float) -> tuple[Profile, list[Any]]:
    """The GPU on sim-32gb with simulators on free ports, three projects and their owners."""
    from django.contrib.auth import get_user_model

    from artcritic.gpu.models import Gpu, HardwareProfile
    from artcritic.gpu.profiles import Profile, profile_read
    from artcritic.studio.models import Membership, Project, Role

    # A kept database (--keep-db) starts over: the cold pass must have no history.
    Project.objects.filter(created_by__username__startswith="bench-eta-").delete()
    profile, _ = profile_read(ROOT / "profiles" / "sim-32gb.toml")
    data = profile.model_dump(mode="json")
    for runtime in ("comfyui", "critic"):
        data["runtimes"][runtime]["url"] = f"http://127.0.0.1:{stack.free_port()}"
    profile = Profile.model_validate(data)
    row, _ = HardwareProfile.objects.update_or_create(
        name=profile.name, defaults={"data": data, "simulated": True}
    )
    Gpu.objects.update_or_create(name=GPU, defaults={"active_profile": row})
    owners = []
    for number, name in enumerate(PROJECTS):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-eta-{number}")
        project = Project.objects.create(name=name, brief="ETA benchmark.", created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
        owners.append((project, user))
    return profile, owners


def _stop_runtimes(profile: Profile, sim_dir: Path) -> None:
    """Stop the simulators and mark them stopped: each pass starts from a cold GPU."""
    from artcritic.gpu.models import Gpu, RuntimeStatus
    from artcritic.gpu.runtime_state import runtime_state_set
    from artcritic.runtimes.drivers.factory import driver_for

    gpu = Gpu.objects.get(name=GPU)
    for runtime in ("comfyui", "critic"):
        driver_for(runtime, profile, gpu=GPU, env={"ARTCRITIC_SIM_DIR": str(sim_dir)}).stop()
        runtime_state_set(gpu, runtime, RuntimeStatus.STOPPED, detail="stopped between passes")


def _submit(submission: Submission, owners: list[Any]) -> None:
    from artcritic.jobs.services import request_submit
    from artcritic.studio.services import RequestDraft

    project, user = owners[submission.project]
    request_submit(
        project=project,
        user=user,
        data=RequestDraft(
            profile_name="sim-32gb",
            text=submission.text,
            negative_text="blurry",
            model_mode=submission.model_mode,
            width=submission.width,
            height=submission.height,
            steps=submission.steps,
            cfg=1.0 if submission.model_mode.startswith("flux") else 7.0,
            sampler="euler",
            scheduler="simple",
            lora_name="",
            lora_strength=1.0,
            seed_policy=submission.seed_policy,
            seed=submission.seed,
            count=submission.count,
        ),
    )


def _drained(worker: Worker) -> None:
    """Wait until every job on the GPU has ended (generations and the reviews they queued)."""
    from django.db import close_old_connections

    from artcritic.jobs.models import FINISHED_STATUSES, Job

    deadline = time.monotonic() + WAVE_TIMEOUT_S
    while True:
        close_old_connections()
        active = Job.objects.filter(gpu=GPU).exclude(status__in=FINISHED_STATUSES).count()
        if not active:
            return
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise stack.BenchError(f"a wave did not finish:\n{worker.text()[-3000:]}")
        time.sleep(0.2)


def _records(since: float) -> list[JobRecord]:
    """The jobs admitted since ``since`` (epoch seconds), with their last attempt's phases."""
    from datetime import UTC, datetime

    from django.db.models import F, Window
    from django.db.models.functions import Lead

    from artcritic.gpu.admission import batch_for, request_settings
    from artcritic.jobs.history import PhaseRow, last_attempt
    from artcritic.jobs.models import Job, JobPhase, JobStatus

    start = datetime.fromtimestamp(since, tz=UTC)
    jobs = list(
        Job.objects.filter(gpu=GPU, admitted_at__gte=start, status=JobStatus.DONE)
        .select_related("request")
        .order_by("pk")
    )
    rows: dict[int, list[PhaseRow]] = {}
    for job_id, status, phase, runtime, began, ended in (
        JobPhase.objects.filter(job__in=jobs)
        .annotate(
            ended_at=Window(
                Lead("started_at"), partition_by=[F("job_id")], order_by=[F("started_at"), F("id")]
            )
        )
        .order_by("job_id", "started_at", "id")
        .values_list("job_id", "status", "phase", "runtime", "started_at", "ended_at")
    ):
        rows.setdefault(job_id, []).append(PhaseRow(status, phase, runtime, "", began, ended))
    records = []
    for job in jobs:
        attempt = last_attempt(rows.get(job.pk, []))
        phases = tuple(
            (row.phase, row.runtime, (row.ended_at - row.started_at).total_seconds())
            for row in attempt
            if row.ended_at is not None and row.status == JobStatus.RUNNING
        )
        shape = None
        if job.request is not None:
            request = job.request
            shape = (
                request.steps, request.width, request.height,
                batch_for(request_settings(request)), request.model_mode, request.count,
            )  # fmt: skip
        assert job.admitted_at is not None
        assert job.finished_at is not None
        records.append(
            JobRecord(
                kind=job.kind,
                admitted=job.admitted_at.timestamp(),
                finished=job.finished_at.timestamp(),
                predicted_finish=job.predicted_finish_at.timestamp()
                if job.predicted_finish_at
                else None,
                predicted_samples=job.predicted_samples or 0,
                phases=phases,
                shape=shape,
            )
        )
    return records


def _pass(
    name: str,
    waves: list[list[Submission]],
    *,
    owners: list[Any],
    env: dict[str, str],
    folder: Path,
    profile: Profile,
    sim_dir: Path,
) -> tuple[list[JobRecord], float]:
    """Run every wave on a cold GPU; the pass's finished jobs and its wall time."""
    _stop_runtimes(profile, sim_dir)
    worker = Worker(env, folder)
    started = time.time()
    try:
        for number, wave in enumerate(waves, start=1):
            for submission in wave:
                _submit(submission, owners)
            _drained(worker)
            print(f"{name}: wave {number}/{len(waves)} done ({len(wave)} requests)", flush=True)
    finally:
        worker.stop()
    return _records(started), time.time() - started


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def report_lines(
    cold: PassErrors, warm: PassErrors, work: Overhead, walls: tuple[float, float], scale: float
) -> list[str]:
    lines = [
        f"time scale {scale:g}; passes took {walls[0]:.0f} s (cold) and {walls[1]:.0f} s (warm)",
        f"cold: {cold.jobs} jobs, ETA error p50 {_pct(cold.p50_pct)}, p90 {_pct(cold.p90_pct)}; "
        f"{cold.from_history} predicted from measured runs, the rest from the profile",
        f"warm: {warm.jobs} jobs, ETA error p50 {_pct(warm.p50_pct)}, p90 {_pct(warm.p90_pct)}; "
        f"{warm.from_history} predicted from measured runs (goal: p90 ≤ 15 %)",
        f"overhead (warm pass): {work.orchestration_s:.2f} s of orchestration for "
        f"{work.images} images and {work.reviews} reviews = {_pct(work.pct)} of their work at "
        f"real durations ({work.work_real_s:.0f} s; goal ≤ 2 %)",
    ]
    for part, seconds in sorted((work.parts or {}).items(), key=lambda item: -item[1]):
        lines.append(f"  {part:<28} {seconds:7.2f} s")
    load = os.getloadavg()
    lines.append(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
    )
    return lines


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    run = f"bencheta{uuid.uuid4().hex[:8]}"
    folder = Path(tempfile.mkdtemp(prefix="bench-eta-"))
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
    profile = None
    try:
        call_command("migrate", interactive=False, verbosity=0)
        _bucket(run)
        bucket = True
        profile, owners = _world(args.time_scale)
        waves = waves_build(args.seed, waves=args.waves)
        where = {"owners": owners, "env": env, "folder": folder, "sim_dir": sim_dir}
        cold, cold_wall = _pass("cold", waves, profile=profile, **where)
        warm, warm_wall = _pass("warm", waves, profile=profile, **where)
    except KeyboardInterrupt:
        print("eta benchmark interrupted; stopping what it started", file=sys.stderr)
        return 130
    except BaseException:
        print(f"eta benchmark failed; logs in {folder}", file=sys.stderr)
        raise
    finally:
        if profile is not None:
            _stop_runtimes(profile, sim_dir)
        if bucket:
            _bucket(run, remove=True)
        stack.channel_keys_delete(run)
        connections.close_all()
        if created and not args.keep_db:
            stack.database_drop(url)
    shutil.rmtree(folder, ignore_errors=True)
    cold_errors, warm_errors = pass_errors(cold), pass_errors(warm)
    work = overhead(warm, profile, args.time_scale)
    print("\n".join(report_lines(cold_errors, warm_errors, work, (cold_wall, warm_wall),
                                 args.time_scale)))  # fmt: skip
    if created and args.keep_db:
        print(f"(kept database {args.database})")
    print(
        json.dumps(
            {
                "jobs": cold_errors.jobs + warm_errors.jobs,
                "cold_p50_err_pct": _round(cold_errors.p50_pct),
                "cold_p90_err_pct": _round(cold_errors.p90_pct),
                "warm_p50_err_pct": _round(warm_errors.p50_pct),
                "warm_p90_err_pct": _round(warm_errors.p90_pct),
                "overhead_pct": _round(work.pct),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
