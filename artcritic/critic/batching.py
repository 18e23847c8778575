"""How many reviews go to the Critic at once: plain numbers in, a count out.

vLLM batches the requests it is running (continuous batching) up to ``--max-num-seqs``;
each running request holds KV-cache blocks for its prompt and answer, so no more are
sent than the KV cache the profile sized can hold at their worst case (a review may use
its whole ``max_model_len``: the prompt plus the verdict's reserved tokens). Beyond either
limit vLLM would queue them itself, out of our sight, or preempt running ones.
"""

from __future__ import annotations

import itertools

from artcritic.gpu.budget import critic_need
from artcritic.gpu.profiles import Profile


def reviews_in_flight(*, max_num_seqs: int, kv_tokens: int, tokens_per_review: int) -> int:
    """Reviews sent at once: at most max_num_seqs and what the KV cache holds, at least 1."""
    if max_num_seqs < 1 or kv_tokens < 0 or tokens_per_review < 1:
        raise ValueError(
            f"max_num_seqs ({max_num_seqs}) and tokens per review ({tokens_per_review}) must be "
            f"at least 1 and the KV cache ({kv_tokens} tokens) not negative"
        )
    return max(1, min(max_num_seqs, kv_tokens // tokens_per_review))


def kv_tokens_for(profile: Profile) -> int:
    """Tokens vLLM's KV cache holds: its claim less weights, vision encoder and activations."""
    need = critic_need(profile)
    others = need.total_bytes - need.kv_bytes
    return max(0, need.claim_bytes - others) // max(1, need.kv_bytes_per_token)


def reviews_in_flight_for(profile: Profile) -> int:
    """``reviews_in_flight`` for the profile's Critic."""
    runtime = profile.runtimes.critic
    return reviews_in_flight(
        max_num_seqs=runtime.max_num_seqs,
        kv_tokens=kv_tokens_for(profile),
        tokens_per_review=runtime.max_model_len,
    )


def gpu_share(timeline: list[tuple[float, int]], since: float, until: float) -> float:
    """Time-weighted mean of 1/n over [since, until], n the reviews running (at least 1).

    ``timeline`` holds (time, n from then on), oldest first; before its first entry and
    where n is 0 the job is counted as alone. A span of no length is a share of 1.
    """
    if until <= since:
        return 1.0
    total = 0.0
    points = [*timeline, (until, 0)]
    for (start, n), (end, _) in itertools.pairwise(points):
        low, high = max(start, since), min(end, until)
        if high > low:
            total += (high - low) / max(1, n)
    first = min((t for t, _ in timeline), default=until)
    total += max(0.0, min(first, until) - since)  # before any review counted: alone
    return min(1.0, max(total / (until - since), 1e-6))
