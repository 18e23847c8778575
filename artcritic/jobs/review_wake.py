"""A review that finds the Critic asleep or paused wakes it once, visibly, and asks again.

vLLM 0.34 answers a paused engine with 503 "Generation is paused. Please retry after it
resumes."; the client also refuses to send to a sleeping one (older vLLM crashed on it).
Either way the right action is to wake it, never to restart it: the wake and the retry
are phases of the job, so the user sees why the review took longer.
"""

from __future__ import annotations

import time

from artcritic.jobs import lifecycle
from artcritic.jobs.coordinator import Coordinator, PhaseSink
from artcritic.jobs.models import Phase
from artcritic.runtimes.critic import CriticAsleep, CriticClient, CriticVerdict, ReviewContext
from artcritic.runtimes.errors import RuntimeFailure, RuntimeUnavailable

# A sleep that aborted a review (vLLM's mode=abort) is still freeing memory for a moment;
# the re-queued review waits for it to finish (at most this long) so that it finds the
# Critic asleep and wakes it, instead of being aborted by the same sleep again.
SLEEP_SETTLE_S = 10.0


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


def sleep_settle(critic: CriticClient, *, within: float = SLEEP_SETTLE_S) -> bool:
    """Wait until the Critic says it is asleep (True), or ``within`` seconds (False).

    A pause (not a sleep) never says so: then this only waits, and the retry finds out.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if critic.is_sleeping():
                return True
        except RuntimeFailure:
            return False  # no sleep routes, or no answer: nothing to wait for
        time.sleep(0.2)
    return False
