"""The Prometheus collector: every metric family, built from PostgreSQL at scrape time.

Why scrape-time collection and not prometheus_client's multiprocess mode: the GPU worker,
the default worker and the web server are separate processes (and hosts, with several
GPUs), and everything worth counting is already written to PostgreSQL where the work
happens — jobs with their phases, measurements and costs, images, reviews, runtime
states, and the NVML reading each GPU worker stores every 2 s. Reading it when Prometheus
asks needs no shared directory of mmap files, survives worker restarts without resetting
counters, and can never disagree with the pages. The one exception is what only the web
process knows, its live sockets (``artcritic.live.socket_stats``).
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from artcritic.gpu.models import RuntimeName, RuntimeStatus
from artcritic.jobs.accounting import eta_accuracy
from artcritic.jobs.models import PENDING_STATUSES, JobStatus
from artcritic.live import socket_stats
from artcritic.live.stats import live_stats_read
from artcritic.metrics import selectors

PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_STATUSES = (*PENDING_STATUSES, JobStatus.RUNNING)


class ArtcriticCollector(Collector):
    """Collects on every scrape; each method yields the families of one subject."""

    def collect(self) -> Iterator[Metric]:
        gpus = selectors.gpus()
        yield from self._gpus(gpus)
        yield from self._runtimes()
        yield from self._queue([gpu.name for gpu in gpus])
        yield from self._phases()
        yield from self._work()
        yield from self._critic([gpu.name for gpu in gpus])
        yield from self._eta([gpu.name for gpu in gpus])
        yield from self._overhead(gpus)
        yield from self._live()

    def _gpus(self, gpus: list[selectors.GpuRow]) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "artcritic_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=["gpu"]
        )
        total = GaugeMetricFamily(
            "artcritic_gpu_memory_total_bytes", "GPU memory in all (NVML).", labels=["gpu"]
        )
        headroom = GaugeMetricFamily(
            "artcritic_gpu_memory_headroom_bytes",
            "The active profile's usable memory (total − reserve) minus what is in use.",
            labels=["gpu"],
        )
        power = GaugeMetricFamily(
            "artcritic_gpu_power_watts", "Power draw, where the card reports it.", labels=["gpu"]
        )
        energy = CounterMetricFamily(
            "artcritic_gpu_energy_joules",
            "NVML's total-energy counter, where the card reports it.",
            labels=["gpu"],
        )
        utilization = GaugeMetricFamily(
            "artcritic_gpu_utilization_ratio",
            "GPU utilisation 0–1, where the card reports it.",
            labels=["gpu"],
        )
        age = GaugeMetricFamily(
            "artcritic_gpu_reading_age_seconds",
            "Seconds since the GPU worker stored its last NVML reading.",
            labels=["gpu"],
        )
        readable = GaugeMetricFamily(
            "artcritic_gpu_reading_ok",
            "1 when the last reading succeeded, 0 when NVML could not be read.",
            labels=["gpu"],
        )
        simulated = GaugeMetricFamily(
            "artcritic_gpu_simulated", "1 for a simulated GPU.", labels=["gpu"]
        )
        now = timezone.now()
        for gpu in gpus:
            reading = gpu.reading
            simulated.add_metric([gpu.name], float(gpu.simulated))
            if gpu.reading_at is None:
                continue
            age.add_metric([gpu.name], (now - gpu.reading_at).total_seconds())
            readable.add_metric([gpu.name], 1.0 if reading.get("ok") else 0.0)
            if not reading.get("ok"):
                continue
            used.add_metric([gpu.name], float(reading.get("used_bytes") or 0))
            total.add_metric([gpu.name], float(reading.get("total_bytes") or 0))
            if gpu.usable_bytes is not None:
                headroom.add_metric(
                    [gpu.name], float(gpu.usable_bytes - int(reading.get("used_bytes") or 0))
                )
            if reading.get("power_watts") is not None:
                power.add_metric([gpu.name], float(reading["power_watts"]))
            if reading.get("energy_joules") is not None:
                energy.add_metric([gpu.name], float(reading["energy_joules"]))
            if reading.get("utilization_pct") is not None:
                utilization.add_metric([gpu.name], float(reading["utilization_pct"]) / 100)
        yield from (used, total, headroom, power, energy, utilization, age, readable, simulated)

    def _runtimes(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "artcritic_runtime_state",
            "1 for each runtime's current state on each GPU, 0 for the others.",
            labels=["gpu", "runtime", "state"],
        )
        for gpu, runtime, status in selectors.runtime_states():
            for value in RuntimeStatus.values:
                state.add_metric([gpu, runtime, value], 1.0 if value == status else 0.0)
        yield state

    def _queue(self, gpu_names: list[str]) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "artcritic_queue_depth",
            "Jobs waiting or running, per GPU, runtime and status.",
            labels=["gpu", "runtime", "status"],
        )
        counts = {(g, r, s): n for g, r, s, n in selectors.queue_depth()}
        names = sorted(set(gpu_names) | {g for g, _r, _s in counts})
        for gpu in names:
            for runtime in RuntimeName.values:
                for status in QUEUE_STATUSES:
                    depth.add_metric(
                        [gpu, runtime, status], float(counts.get((gpu, runtime, status), 0))
                    )
        yield depth

    def _phases(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            "artcritic_phase_duration_seconds",
            "How long each phase of a running job took, per GPU, runtime and phase.",
            labels=["gpu", "runtime", "phase"],
        )
        for gpu, runtime, phase, cumulative, total, count in selectors.phase_histogram(
            PHASE_BUCKETS
        ):
            buckets = [(str(b), float(n)) for b, n in zip(PHASE_BUCKETS, cumulative, strict=True)]
            histogram.add_metric(
                [gpu, runtime or "none", phase], [*buckets, ("+Inf", float(count))], total
            )
        yield histogram
        swaps = CounterMetricFamily(
            "artcritic_swaps",
            "Runtime releases to make room for the other.",
            labels=["gpu", "runtime"],
        )
        for gpu, runtime, n in selectors.swaps():
            swaps.add_metric([gpu, runtime], float(n))
        yield swaps

    def _work(self) -> Iterator[Metric]:
        swap_seconds = CounterMetricFamily(
            "artcritic_swap_seconds", "Seconds jobs spent swapping runtimes.", labels=["gpu"]
        )
        busy = CounterMetricFamily(
            "artcritic_gpu_busy_seconds",
            "Seconds the GPU spent on jobs (their own work and the swaps they caused).",
            labels=["gpu"],
        )
        cost = CounterMetricFamily(
            "artcritic_cost", "Cost of measured jobs, in the profile's currency.",
            labels=["gpu", "currency"],
        )  # fmt: skip
        kwh = CounterMetricFamily(
            "artcritic_priced_energy_kwh",
            "Kilowatt-hours priced: GPU energy (when reported) plus the host's idle draw.",
            labels=["gpu"],
        )
        swap_by_gpu: dict[str, float] = {}
        busy_by_gpu: dict[str, float] = {}
        kwh_by_gpu: dict[str, float] = {}
        for row in selectors.job_totals():
            swap_by_gpu[row.gpu] = swap_by_gpu.get(row.gpu, 0.0) + row.swap_s
            busy_by_gpu[row.gpu] = busy_by_gpu.get(row.gpu, 0.0) + row.busy_s
            kwh_by_gpu[row.gpu] = kwh_by_gpu.get(row.gpu, 0.0) + row.kwh
            if row.currency:
                cost.add_metric([row.gpu, row.currency], row.cost)
        for gpu in sorted(swap_by_gpu):
            swap_seconds.add_metric([gpu], swap_by_gpu[gpu])
            busy.add_metric([gpu], busy_by_gpu[gpu])
            kwh.add_metric([gpu], kwh_by_gpu[gpu])
        yield from (swap_seconds, busy, cost, kwh)
        images = CounterMetricFamily("artcritic_images", "Images stored.", labels=["gpu"])
        for gpu, n in selectors.images():
            images.add_metric([gpu], float(n))
        reviews = CounterMetricFamily(
            "artcritic_reviews", "Critic reviews stored.", labels=["gpu", "verdict"]
        )
        for gpu, verdict, n in selectors.reviews():
            reviews.add_metric([gpu, verdict], float(n))
        finished = CounterMetricFamily(
            "artcritic_jobs_finished", "Jobs that ended, by kind and status.",
            labels=["gpu", "kind", "status"],
        )  # fmt: skip
        failures = CounterMetricFamily(
            "artcritic_job_failures",
            "Jobs failed, blocked or interrupted, by reason.",
            labels=["gpu", "kind", "status", "reason"],
        )
        by_status: dict[tuple[str, str, str], int] = {}
        for gpu, kind, status, reason, n in selectors.finished_jobs():
            by_status[(gpu, kind, status)] = by_status.get((gpu, kind, status), 0) + n
            if status in (JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.INTERRUPTED):
                failures.add_metric([gpu, kind, status, reason or "unknown"], float(n))
        for (gpu, kind, status), n in sorted(by_status.items()):
            finished.add_metric([gpu, kind, status], float(n))
        yield from (images, reviews, finished, failures)

    def _critic(self, gpu_names: list[str]) -> Iterator[Metric]:
        speed = GaugeMetricFamily(
            "artcritic_critic_tokens_per_second",
            "Completion tokens per second over the GPU's last 100 reviews.",
            labels=["gpu"],
        )
        for gpu, value in selectors.critic_tokens_per_second(gpu_names).items():
            speed.add_metric([gpu], value)
        yield speed

    def _eta(self, gpu_names: list[str]) -> Iterator[Metric]:
        seconds = GaugeMetricFamily(
            "artcritic_eta_error_seconds",
            "Absolute error of the finish time predicted at admission, last 100 jobs.",
            labels=["gpu", "quantile"],
        )
        ratio = GaugeMetricFamily(
            "artcritic_eta_error_ratio",
            "The same error over the admitted → finished time, last 100 jobs.",
            labels=["gpu", "quantile"],
        )
        measured = GaugeMetricFamily(
            "artcritic_eta_jobs_measured",
            "Finished jobs with a prediction behind the ETA error figures.",
            labels=["gpu"],
        )
        for gpu, accuracy in eta_accuracy(gpu_names).items():
            measured.add_metric([gpu], float(accuracy.jobs))
            for quantile, value, pct in (
                ("0.5", accuracy.median_abs_s, accuracy.median_pct),
                ("0.9", accuracy.p90_abs_s, accuracy.p90_pct),
            ):
                if value is not None:
                    seconds.add_metric([gpu, quantile], value)
                if pct is not None:
                    ratio.add_metric([gpu, quantile], pct / 100)
        yield from (seconds, ratio, measured)

    def _overhead(self, gpus: list[selectors.GpuRow]) -> Iterator[Metric]:
        overhead = GaugeMetricFamily(
            "artcritic_overhead_seconds",
            "Orchestration around the runtimes' work (median of recent runs): lead_in and "
            "record per job, handoff and store per image.",
            labels=["gpu", "runtime", "step"],
        )
        for gpu, runtime, step, seconds, _runs in selectors.overhead(gpus):
            overhead.add_metric([gpu, runtime, step], seconds)
        yield overhead

    def _live(self) -> Iterator[Metric]:
        stats = socket_stats.stats()
        try:
            live = live_stats_read()
        except redis.RedisError:
            live = None
        if live is not None:
            sockets = GaugeMetricFamily(
                "artcritic_live_connected_sockets",
                "Live dashboard sockets open on every web process of this instance.",
            )
            sockets.add_metric([], float(live.sockets))
            frames = CounterMetricFamily(
                "artcritic_live_frames",
                "Frames handed to live sockets, by the web processes running now.",
            )
            frames.add_metric([], float(live.frames))
            dropped = CounterMetricFamily(
                "artcritic_live_frames_dropped",
                "Frames dropped for sockets that could not keep up (each resync counts once).",
            )
            dropped.add_metric([], float(live.dropped))
            resyncs = CounterMetricFamily(
                "artcritic_live_resyncs", "Sockets sent a fresh hello after falling behind."
            )
            resyncs.add_metric([], float(live.resyncs))
            yield from (sockets, frames, dropped, resyncs)
        latency = HistogramMetricFamily(
            "artcritic_live_event_latency_seconds",
            "From an event's publication to its hand-over to sockets, on this web process.",
        )
        latency.add_metric(
            [],
            [("+Inf" if b == float("inf") else str(b), float(n)) for b, n in stats.buckets],
            stats.total_s,
        )
        yield latency
