"""Simulated time: every simulated delay is scaled by ARTCRITIC_SIM_TIME_SCALE.

A scale of 1.0 runs at the profile's real-world durations (a demo), 0.01 makes a
20 s weight load take 0.2 s (the tests). Scale 0 means no waiting at all.
"""

from __future__ import annotations

import asyncio
import os
import time


def time_scale() -> float:
    """The current scale; a malformed value is an error, not a silent 1.0."""
    raw = os.environ.get("ARTCRITIC_SIM_TIME_SCALE", "1.0")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"ARTCRITIC_SIM_TIME_SCALE={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"ARTCRITIC_SIM_TIME_SCALE={value} must not be negative")
    return value


def scaled(seconds: float) -> float:
    """Real seconds to wait for ``seconds`` of simulated time."""
    return max(0.0, seconds) * time_scale()


def sim_sleep(seconds: float) -> None:
    """Block for ``seconds`` of simulated time."""
    delay = scaled(seconds)
    if delay:
        time.sleep(delay)


async def sim_sleep_async(seconds: float) -> None:
    """Await ``seconds`` of simulated time."""
    delay = scaled(seconds)
    if delay:
        await asyncio.sleep(delay)
