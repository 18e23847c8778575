"""The GPU scheduler: which pending job runs next, as a pure function of plain values.

Rules, in order (each a tie-break of the one before):

a1. **Aged singles.** An interactive single that has waited ``interactive_after_s``
   (``max_wait_s`` unless set shorter) runs next, oldest first, even if that forces a
   swap: a designer waiting on one image never waits out a long queue of the other runtime.
a2. **Aged work, batched.** Once any job has waited ``max_wait_s``, the resident runtime
   first finishes its own work that was queued when the other runtime's oldest job aged
   (its singles first, then oldest first); then the GPU swaps to the other runtime's oldest
   job, and that runtime in turn finishes its queued work. Newer work waits for the next
   turn. Taking the oldest aged job whatever was resident (the earlier rule) alternated
   runtimes in arrival order under overload: a burst ran 1.20–1.36× the lower bound with
   more swaps than FIFO (issue 15); batching keeps one swap per turn.
b. **Priority.** Higher ``priority`` first.
c. **Resident runtime.** On a profile where the runtimes are exclusive, a job for the
   runtime already in VRAM, so that swaps are amortised (a batch of generations, then
   their reviews).
d. **Interactive.** A single job a designer is waiting on goes first among the jobs of
   its runtime. It does not force a swap by itself: interactive singles arriving while
   the other runtime is busy made the GPU ping-pong between runtimes (the scheduling
   benchmark measured 29 swaps against FIFO's 21); a1 bounds its wait.
e. **Oldest**, by ``(enqueued_at, id)``; if nothing is for the resident runtime, this is
   the other runtime's oldest job, and it costs a swap.

The wait bound. A running job is never pre-empted. Once a job J has aged (at
``enqueued_at + ages_after_s``), the rules let only these go before it: the job in
progress (its swap plus its run), and the jobs ``ahead_once_aged`` names: for a single,
the older singles queued at that moment; for any other job, the jobs queued at that
moment and singles that arrive later. So, with L the longest expected run and S the
costliest switch,

    wait(J) ≤ aging time + L + S + Σ over those jobs (their run) + turns × S

where turns, the runs of one runtime among those jobs, alternate: at most twice the
number of jobs of the scarcer runtime plus one (and no more than there are jobs). Wait
is from enqueue until the scheduler picks J (J's own swap is part of its run). When
nothing else is queued as J ages (the GPU keeps up), this is the headline
``max_wait_s + longest job + one swap``; ``wait_bound_s`` computes both. No constant
bound holds under overload: a job queued behind 200 images waits for them whatever the
order, so the bound names the backlog it waits behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from artcritic.gpu.profiles import Durations, Profile

RUNTIMES = ("comfyui", "critic")
DEFAULT_MAX_WAIT_S = 120.0
AGING_ROUND_TRIPS = 4.0

Rule = Literal["aged", "priority", "interactive", "resident", "switch", "start", "oldest"]


@dataclass(frozen=True)
class PendingJob:
    """A queued job as the scheduler sees it: plain values read from the database."""

    id: int
    runtime: str
    kind: str
    project_id: int
    priority: int
    interactive: bool
    enqueued_at: float
    # The job's own run (no swap), from learned durations or the profile's.
    expected_seconds: float
    # What else must be resident for it: the model mode of a generation ("" for a review).
    variant: str = ""


@dataclass(frozen=True)
class Decision:
    """The job that runs next, why (in words for the UI), and whether it costs a swap."""

    job_id: int
    reason: str
    swap: bool
    rule: Rule = "oldest"


@dataclass(frozen=True)
class SchedulerPolicy:
    """The aging bound and what switching runtimes costs on this GPU."""

    max_wait_s: float
    # (resident before, runtime wanted) → seconds; None means nothing is resident.
    swap_cost_s: Mapping[tuple[str | None, str], float] = field(default_factory=dict)
    # Whether the runtimes must never share VRAM (so changing runtime means a swap).
    exclusive: bool = True
    # Release plus cold start: the first switch to a runtime that has not run yet.
    cold_switch_s: float = 0.0
    # How long an interactive single waits before it runs next whatever is resident;
    # None: the same as max_wait_s (see ``interactive_after_s``).
    interactive_wait_s: float | None = None

    def __post_init__(self) -> None:
        if not self.max_wait_s > 0:
            raise ValueError(f"max_wait_s must be positive, not {self.max_wait_s}")
        if self.interactive_wait_s is not None and not (
            0 < self.interactive_wait_s <= self.max_wait_s
        ):
            raise ValueError(
                f"interactive_wait_s must be positive and at most max_wait_s "
                f"({self.max_wait_s}), not {self.interactive_wait_s}"
            )
        for key, cost in self.swap_cost_s.items():
            if not cost >= 0:
                raise ValueError(f"swap cost {key} must be zero or more, not {cost}")

    def switch_cost(self, resident: str | None, runtime: str) -> float:
        """Seconds before a job for ``runtime`` can start when ``resident`` holds the GPU."""
        if resident == runtime:
            return 0.0
        return self.swap_cost_s.get((resident, runtime), 0.0)

    def is_swap(self, resident: str | None, runtime: str) -> bool:
        """Whether running ``runtime`` means releasing another runtime's VRAM first."""
        return self.exclusive and resident is not None and resident != runtime

    @property
    def interactive_after_s(self) -> float:
        """Seconds after which an interactive single runs next, even at the cost of a swap."""
        return self.max_wait_s if self.interactive_wait_s is None else self.interactive_wait_s

    def ages_after_s(self, job: PendingJob) -> float:
        """How long ``job`` may wait before the aging rules take it into account."""
        return self.interactive_after_s if job.interactive else self.max_wait_s

    @property
    def costliest_switch_s(self) -> float:
        """The largest switch cost, counting a first switch that cold-starts the other runtime."""
        return max(max(self.swap_cost_s.values(), default=0.0), self.cold_switch_s)


def _cold_start(d: Durations, runtime: str) -> float:
    if runtime == "comfyui":
        return d.comfyui_start + d.comfyui_load + d.comfyui_warm
    return d.critic_start + d.critic_load + d.critic_warm


def _release(profile: Profile, runtime: str) -> float:
    d = profile.durations
    if runtime == "comfyui":
        # The schema has no separate ComfyUI stop figure; /free is the time to give VRAM back.
        return d.comfyui_free
    return d.critic_stop if profile.runtimes.critic.release == "stop" else d.critic_sleep


def _return(profile: Profile, runtime: str) -> float:
    """Bringing a released runtime back, by how it was released."""
    d = profile.durations
    if runtime == "comfyui":
        if profile.runtimes.comfyui.release == "free":
            # The process survives /free; the weights are read again and the first pass warms.
            return d.comfyui_load + d.comfyui_warm
        return _cold_start(d, runtime)
    release = profile.runtimes.critic.release
    if release == "sleep1":
        return d.critic_wake  # weights come back from host RAM
    if release == "sleep2":
        return d.critic_wake + d.critic_load  # weights were discarded: read them again
    return _cold_start(d, runtime)


def policy_from_profile(profile: Profile, *, max_wait_s: float | None = None) -> SchedulerPolicy:
    """Swap costs from the profile's durations and release strategies, and the aging bound."""
    # Costs are the steady state: the other runtime was started once and is now parked by
    # its release strategy. Without exclusivity nothing is released, so only a cold start
    # costs and switching is free.
    d = profile.durations
    exclusive = profile.are_exclusive(*RUNTIMES)
    table: dict[tuple[str | None, str], float] = {
        (None, runtime): _cold_start(d, runtime) for runtime in RUNTIMES
    }
    for before in RUNTIMES:
        for after in RUNTIMES:
            if before != after:
                cost = _release(profile, before) + _return(profile, after) if exclusive else 0.0
                table[(before, after)] = cost
    # The first switch to a runtime that never ran is a release plus a cold start.
    cold_switch = (
        max(
            (
                _release(profile, before) + _cold_start(d, after)
                for before in RUNTIMES
                for after in RUNTIMES
                if before != after
            ),
            default=0.0,
        )
        if exclusive
        else 0.0
    )
    if max_wait_s is None:
        # Aging must outlast a round trip of swaps several times over, or every aged pick
        # is a swap and the schedule decays into FIFO with extra swaps.
        round_trip = table[("comfyui", "critic")] + table[("critic", "comfyui")]
        max_wait_s = max(DEFAULT_MAX_WAIT_S, AGING_ROUND_TRIPS * round_trip)
    return SchedulerPolicy(
        max_wait_s=max_wait_s, swap_cost_s=table, exclusive=exclusive, cold_switch_s=cold_switch
    )


def _order(job: PendingJob) -> tuple[float, int]:
    return (job.enqueued_at, job.id)


def _preference(
    job: PendingJob, resident: str | None, policy: SchedulerPolicy
) -> tuple[int, bool, bool, float, int]:
    """Rules b-e as one sort key: smaller runs first."""
    stays = policy.exclusive and job.runtime == resident
    # An interactive job jumps the queue of the runtime in VRAM; it does not force a swap
    # by itself (that ping-pongs the GPU: see bench/scheduling.py), only aging does.
    return (-job.priority, not stays, not job.interactive, job.enqueued_at, job.id)


def schedule_next(
    pending: Sequence[PendingJob],
    *,
    resident: str | None,
    now: float,
    policy: SchedulerPolicy,
) -> Decision | None:
    """The job the GPU should run next, or None when nothing is pending."""
    if not pending:
        return None
    if len({job.id for job in pending}) != len(pending):
        raise ValueError("pending jobs must have distinct ids")

    aged_pick = _aged_pick(pending, resident=resident, now=now, policy=policy)
    if aged_pick is not None:
        return aged_pick

    job = min(pending, key=lambda j: _preference(j, resident, policy))
    swap = policy.is_swap(resident, job.runtime)
    rule, reason = _explain(job, pending, resident, policy)
    return Decision(job_id=job.id, reason=reason, swap=swap, rule=rule)


def _waited(job: PendingJob, now: float) -> str:
    return f"waited {now - job.enqueued_at:.0f} s"


def _aged_pick(
    pending: Sequence[PendingJob], *, resident: str | None, now: float, policy: SchedulerPolicy
) -> Decision | None:
    """Rules a1 and a2: what runs once some job has waited its aging time, else None."""
    singles = [
        job
        for job in pending
        if job.interactive and now - job.enqueued_at >= policy.interactive_after_s
    ]
    if singles:
        job = min(singles, key=_order)
        return Decision(
            job_id=job.id,
            reason=f"interactive single aged past {policy.interactive_after_s:.0f} s "
            f"({_waited(job, now)}); runs next whatever is resident",
            swap=policy.is_swap(resident, job.runtime),
            rule="aged",
        )
    aged = [job for job in pending if now - job.enqueued_at >= policy.ages_after_s(job)]
    if not aged:
        return None
    if not policy.exclusive or resident is None:
        job = min(aged, key=_order)
        return Decision(
            job_id=job.id,
            reason=f"aged past {policy.max_wait_s:.0f} s ({_waited(job, now)}); "
            "the oldest such job runs first",
            swap=policy.is_swap(resident, job.runtime),
            rule="aged",
        )
    # The other runtime's jobs that have aged; the gate is when its oldest one aged.
    waiting = [job for job in aged if job.runtime != resident]
    gate = min((job.enqueued_at + policy.max_wait_s for job in waiting), default=math.inf)
    # The resident runtime first finishes its own work queued by then, oldest first: the
    # batch that shares this swap. Newer work of its own waits for the next turn, so the
    # other runtime's aged job waits for a known backlog, not for whatever keeps arriving.
    # Its interactive singles go too (first): they share the swap that brought it here, and
    # the other runtime's jobs count them in their bound (``wait_bound_s``).
    own = [
        job
        for job in pending
        if job.runtime == resident and (job.enqueued_at <= gate or job.interactive)
    ]
    if own:
        job = min(own, key=lambda j: (not j.interactive, j.enqueued_at, j.id))
        if job.interactive:
            reason = (
                f"interactive single for the resident runtime ({resident}): it goes before "
                f"the work that waited past {policy.max_wait_s:.0f} s, sharing its swap"
            )
        elif waiting:
            reason = (
                f"{len(waiting)} {waiting[0].runtime} job(s) waited past "
                f"{policy.max_wait_s:.0f} s; {resident} first finishes its work queued before "
                "then, sharing one swap"
            )
        else:
            reason = (
                f"aged past {policy.max_wait_s:.0f} s ({_waited(job, now)}); the oldest job "
                f"for the resident runtime ({resident}) runs first"
            )
        return Decision(job_id=job.id, reason=reason, swap=False, rule="aged")
    job = min(waiting, key=_order)
    return Decision(
        job_id=job.id,
        reason=f"aged past {policy.max_wait_s:.0f} s ({_waited(job, now)}) and nothing "
        f"queued before it for {resident}; swapping, then its runtime's queued work follows",
        swap=policy.is_swap(resident, job.runtime),
        rule="aged",
    )


def _explain(
    job: PendingJob,
    pending: Sequence[PendingJob],
    resident: str | None,
    policy: SchedulerPolicy,
) -> tuple[Rule, str]:
    """Name the first rule that set the chosen job apart from the others."""
    if any(other.priority < job.priority for other in pending):
        return "priority", f"priority {job.priority}, the highest waiting"
    same = [o for o in pending if o.runtime == job.runtime]
    if job.interactive and any(not other.interactive for other in same):
        return "interactive", "interactive: a designer is waiting on this single job"
    if not policy.exclusive:
        return "oldest", "oldest job; both runtimes stay resident on this profile"
    if resident is None:
        return "start", f"oldest job; starting {job.runtime}"
    if job.runtime == resident:
        return "resident", f"same runtime as resident ({resident}), amortising the swap"
    return "switch", f"no job left for {resident}; swapping to {job.runtime} for its oldest job"


def wait_bound_s(
    policy: SchedulerPolicy,
    pending: Sequence[PendingJob],
    *,
    job: PendingJob | None = None,
    ahead: Sequence[PendingJob] = (),
) -> float:
    """The most a job waits from enqueue until it is picked (see the module docstring).

    ``pending``: the jobs the GPU may be running when it ages (the longest of them counts).
    ``job``: the job in question (a single ages sooner); None gives the bound of any job.
    ``ahead``: the jobs that may still go before it once it has aged (``ahead_once_aged``);
    none while the GPU keeps up, which is the headline ``max_wait_s + longest + one swap``.
    """
    longest = max((other.expected_seconds for other in pending), default=0.0)
    switch = policy.costliest_switch_s
    threshold = policy.max_wait_s if job is None else policy.ages_after_s(job)
    # The jobs ahead run in turns of one runtime, alternating, so there are at most twice
    # as many turns as the scarcer runtime has jobs, plus one; each turn starts with a swap.
    scarcer = min(sum(other.runtime == runtime for other in ahead) for runtime in RUNTIMES)
    turns = min(len(ahead), 2 * scarcer + 1)
    backlog = sum(other.expected_seconds for other in ahead) + turns * switch
    return threshold + longest + switch + backlog


def ahead_once_aged(
    job: PendingJob,
    jobs: Sequence[PendingJob],
    picked_at: Mapping[int, float],
    policy: SchedulerPolicy,
) -> list[PendingJob]:
    """The jobs that went before ``job`` after it aged, as far as the rules allow them to.

    Once a job has aged, the rules let only these go first (after the job in progress): for
    an interactive single, the older singles queued when it aged; for any other job, every
    job queued when it aged, and singles that arrive later (they jump every queue). The
    first set is known at that moment; the singles are what designers add afterwards.
    ``picked_at`` maps each job id to when the scheduler picked it.
    """
    aged_at = job.enqueued_at + policy.ages_after_s(job)
    if picked_at[job.id] <= aged_at:
        return []
    found = []
    for other in jobs:
        if other.id == job.id or picked_at[other.id] <= aged_at:
            continue  # the job itself, or one already started by then
        queued = other.enqueued_at <= aged_at
        if job.interactive:
            if queued and other.interactive and _order(other) < _order(job):
                found.append(other)
        elif queued or (other.interactive and picked_at[other.id] < picked_at[job.id]):
            found.append(other)
    return found
