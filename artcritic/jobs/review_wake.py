"""A review that finds the Critic asleep or paused wakes it once, visibly, and asks again.

vLLM 0.34 answers a paused engine with 503 "Generation is paused. Please retry after it
resumes."; the client also refuses to send to a sleeping one (older vLLM crashed on it).
Either way the right action is to wake it, never to restart it: the wake and the retry
are phases of the job, so the user sees why the review took longer.
"""

from __future__ import annotations

from artcritic.jobs import lifecycle
from artcritic.jobs.coordinator import Coordinator, PhaseSink
from artcritic.jobs.models import Phase
from artcritic.runtimes.critic import CriticAsleep, CriticVerdict, ReviewContext
from artcritic.runtimes.errors import RuntimeUnavailable


def _phase_sink(job_id: int) -> PhaseSink:
    def sink(phase: Phase, runtime: str, detail: str) -> None:
        lifecycle.job_phase_enter(job_id, phase, runtime=runtime, detail=detail)

    return sink


def review_waking_once(
    job_id: int,
    image_id: int,
    coordinator: Coordinator,
    data: bytes,
    context: ReviewContext,
    *,
    seed: int,
) -> CriticVerdict:
    """Review ``data``; on CriticAsleep wake the Critic (phases recorded) and retry once."""
    critic = coordinator.runtimes.critic
    try:
        return critic.review(data, context, seed=seed)
    except CriticAsleep as exc:
        lifecycle.job_phase_enter(
            job_id,
            Phase.STARTING,
            runtime="critic",
            detail=f"waking the Critic, then retrying once: {exc.reason}",
        )
        coordinator.wake_critic(phase=_phase_sink(job_id))
        lifecycle.job_phase_enter(
            job_id,
            Phase.REVIEWING,
            runtime="critic",
            detail=f"reviewing image {image_id} again after waking the Critic",
            progress=(0, 1),
        )
    try:
        return critic.review(data, context, seed=seed)
    except CriticAsleep as again:
        raise RuntimeUnavailable(
            f"The Critic was woken but is asleep or paused again: {again.reason}",
            "Something else is sleeping or pausing the Critic (another client of its dev-mode "
            "routes?); stop it, then re-run the review.",
        ) from None
