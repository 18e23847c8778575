"""bench-eta's arithmetic: ETA errors per pass and orchestration overhead (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from artcritic.gpu.profiles import Profile


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


@dataclass(frozen=True)
class JobRecord:
    """A finished job as the report needs it (seconds since an arbitrary origin)."""

    kind: str
    admitted: float
    finished: float
    predicted_finish: float | None
    predicted_samples: int
    # (phase, runtime, seconds) of its last attempt's phases, in order.
    phases: tuple[tuple[str, str, float], ...]
    # A generation's shape: (steps, width, height, batch per prompt, model mode, images).
    shape: tuple[int, int, int, int, str, int] | None = None

    @property
    def error_pct(self) -> float | None:
        took = self.finished - self.admitted
        if self.predicted_finish is None or took <= 0:
            return None
        return 100.0 * abs(self.finished - self.predicted_finish) / took


@dataclass(frozen=True)
class PassErrors:
    jobs: int
    p50_pct: float | None
    p90_pct: float | None
    from_history: int


def pass_errors(records: Sequence[JobRecord]) -> PassErrors:
    errors = [e for r in records if (e := r.error_pct) is not None]
    return PassErrors(
        jobs=len(errors),
        p50_pct=nearest_rank(errors, 0.5),
        p90_pct=nearest_rank(errors, 0.9),
        from_history=sum(1 for r in records if r.predicted_samples > 0),
    )


# Phases that are the orchestration's, not the runtimes': the claim's lead-in, checking
# memory, and between prompts or after the last one, storing and recording.
ORCHESTRATION = {"waiting_for_gpu", "verifying_vram", "uploading", "recording"}


@dataclass
class Overhead:
    """Orchestration seconds (measured) and runtime work at the profile's real durations."""

    images: int = 0
    reviews: int = 0
    orchestration_s: float = 0.0
    work_real_s: float = 0.0
    # Where the orchestration went, for the report's lines.
    parts: dict[str, float] | None = None

    @property
    def pct(self) -> float | None:
        return 100.0 * self.orchestration_s / self.work_real_s if self.work_real_s else None


def overhead(records: Sequence[JobRecord], profile: Profile, time_scale: float) -> Overhead:
    """Orchestration around sampling and reviews, against that work at real durations.

    Sampling and reviewing run on the simulators for exactly the profile's seconds times
    the time scale; what their phases took beyond that, plus the orchestration phases, is
    ours. The percentage divides those measured seconds by the work at real durations
    (time scale 1), which is what the ≤ 2 % goal is about; swaps (start, load, warm,
    release) are runtime time and in neither figure.
    """
    total = Overhead(parts={})
    assert total.parts is not None
    for record in records:
        for phase, _runtime, seconds in record.phases:
            if phase in ORCHESTRATION:
                total.orchestration_s += seconds
                total.parts[phase] = total.parts.get(phase, 0.0) + seconds
        if record.kind == "review":
            nominal = profile.durations.critic_review
            took = sum(s for p, _r, s in record.phases if p == "reviewing")
            total.reviews += 1
        elif record.shape is not None:
            steps, width, height, batch, mode, images = record.shape
            per_step = profile.models[mode].seconds_per_step_megapixel * width * height / 1e6
            # The first prompt after a load shows its first step while warming up.
            warmed = batch if any(p == "warming" for p, _r, _s in record.phases) else 0
            sampled = per_step * (steps * images - warmed)
            took = sum(s for p, _r, s in record.phases if p == "generating")
            total.images += images
            excess = max(0.0, took - sampled * time_scale)
            total.parts["generating beyond sampling"] = (
                total.parts.get("generating beyond sampling", 0.0) + excess
            )
            total.orchestration_s += excess
            total.work_real_s += per_step * steps * images
            continue
        else:
            continue
        excess = max(0.0, took - nominal * time_scale)
        key = "reviewing beyond the Critic"
        total.parts[key] = total.parts.get(key, 0.0) + excess
        total.orchestration_s += excess
        total.work_real_s += nominal
    return total
