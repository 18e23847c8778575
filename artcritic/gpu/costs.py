"""What GPU work costs, as pure arithmetic over measured values and a profile's economics.

A job's cost is its electricity — the GPU's own energy (NVML's counter) plus the host's
idle draw for as long as the job held the GPU, priced by the tariff in force while it ran
— plus the card's price written off over the seconds the job used it, the swap it caused
included. No ORM, no clock: every function takes plain values (STYLE item 6).

The break-even view asks what an image costs at a given duty cycle (the share of hours
the GPU is busy). Idle hours still write off the card and run the host, so

    local(d) = v + t·A/d + t·H·(1 − d)/d

with v the measured electricity of one image's work, t its busy hours, A the card's
write-off per hour and H the host's idle draw per hour. It equals a cloud price c at

    d* = t·(A + H) / (c − v + t·H)

and never when c − v + t·H ≤ 0 (the work's own electricity costs more than the cloud).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from artcritic.gpu.profiles import Economics, minutes_of

JOULES_PER_KWH = 3_600_000.0
SECONDS_PER_HOUR = 3600.0


def _finite(name: str, value: float, *, minimum: float = 0.0) -> float:
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} must be a finite number ≥ {minimum:g}, not {value}")
    return value


def price_at(economics: Economics, moment: datetime) -> float:
    """The price of a kWh at ``moment`` (aware), by the time-of-use windows in local time."""
    if moment.tzinfo is None:
        raise ValueError("price_at needs an aware datetime")
    local = moment.astimezone(ZoneInfo(economics.timezone))
    minute = local.hour * 60 + local.minute
    for window in economics.time_of_use:
        if window.covers(minute):
            return window.price_per_kwh
    return economics.price_per_kwh


def _next_boundary(economics: Economics, moment: datetime) -> datetime:
    """The first local window edge (or midnight) strictly after ``moment``."""
    zone = ZoneInfo(economics.timezone)
    local = moment.astimezone(zone)
    edges = {0} | {minutes_of(w.start) for w in economics.time_of_use}
    edges |= {minutes_of(w.end) for w in economics.time_of_use}
    candidates = []
    for day in (0, 1):
        date = local.date() + timedelta(days=day)
        for edge in edges:
            at = datetime.combine(date, time(edge // 60, edge % 60), tzinfo=zone)
            if at > moment:
                candidates.append(at)
    return min(candidates)


def electricity_cost(economics: Economics, kwh: float, start: datetime, end: datetime) -> float:
    """``kwh`` drawn evenly from ``start`` to ``end``, priced by the tariff of each moment."""
    _finite("kwh", kwh)
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    span = (end - start).total_seconds()
    if span == 0:
        return kwh * price_at(economics, start)
    cost = 0.0
    cursor = start
    while cursor < end:
        until = min(_next_boundary(economics, cursor), end)
        share = (until - cursor).total_seconds() / span
        cost += kwh * share * price_at(economics, cursor)
        cursor = until
    return cost


def mean_daily_price(economics: Economics) -> float:
    """The price of a kWh averaged over a day's 1440 minutes (what idle hours pay)."""
    total = 0.0
    for minute in range(24 * 60):
        price = economics.price_per_kwh
        for window in economics.time_of_use:
            if window.covers(minute):
                price = window.price_per_kwh
        total += price
    return total / (24 * 60)


def card_rate_per_hour(economics: Economics) -> float:
    """The card's price written off per hour of its life."""
    return economics.card_price / economics.amortisation_hours


@dataclass(frozen=True)
class JobCost:
    """One job's cost in the profile's currency, and what it is made of."""

    electricity: float
    card: float
    # Kilowatt-hours priced: the GPU's energy (when reported) plus the host's idle draw.
    kwh: float
    # False when the GPU reports no energy: the GPU's own electricity is then missing.
    energy_reported: bool

    @property
    def total(self) -> float:
        return self.electricity + self.card


def job_cost(
    economics: Economics,
    *,
    gpu_energy_joules: float | None,
    start: datetime,
    end: datetime,
    gpu_seconds: float,
    swap_seconds: float,
    share: float = 1.0,
) -> JobCost:
    """Electricity (GPU energy + host idle over start→end, by tariff) + the card's write-off.

    ``gpu_seconds`` is the job's own use of the GPU and ``swap_seconds`` the runtime swap it
    caused (release, start, load, warm); the card is written off over both. Where the GPU
    reports no energy, only the host's part is priced and ``energy_reported`` says so.
    ``share`` is the job's part of the machine over start→end (below 1 while other jobs ran
    beside it, as batched reviews do): the host's idle draw is split the same way.
    """
    _finite("gpu_seconds", gpu_seconds)
    _finite("swap_seconds", swap_seconds)
    if not 0 < share <= 1:
        raise ValueError(f"a job's share of the machine must be in (0, 1], not {share}")
    wall = (end - start).total_seconds()
    _finite("the job's wall time", wall)
    host_joules = economics.host_idle_watts * wall * share
    gpu_joules = 0.0 if gpu_energy_joules is None else _finite("energy", gpu_energy_joules)
    kwh = (gpu_joules + host_joules) / JOULES_PER_KWH
    card = (gpu_seconds + swap_seconds) / SECONDS_PER_HOUR * card_rate_per_hour(economics)
    return JobCost(
        electricity=electricity_cost(economics, kwh, start, end),
        card=card,
        kwh=kwh,
        energy_reported=gpu_energy_joules is not None,
    )


def per_unit(total: float, units: float) -> float | None:
    """``total`` shared over ``units`` (images, reviews, thousands of tokens); None for none."""
    return total / units if units > 0 else None


def duty_cycle(busy_seconds: float, window_seconds: float) -> float:
    """The share of a window the GPU spent on jobs, 0 to 1."""
    _finite("busy_seconds", busy_seconds)
    if not window_seconds > 0:
        raise ValueError(f"the window must be longer than 0 s, not {window_seconds}")
    return min(1.0, busy_seconds / window_seconds)


@dataclass(frozen=True)
class BreakEven:
    """Local cost per image against a cloud price, by duty cycle (see the module docstring)."""

    # Measured: electricity of one image's work, and the GPU hours it keeps the card busy.
    electricity_per_image: float
    busy_hours_per_image: float
    # From the profile: the card's write-off and the host's idle electricity per hour.
    card_per_hour: float
    host_per_hour: float
    cloud_per_image: float

    def local_per_image(self, duty: float) -> float:
        """What one image costs locally when the GPU is busy ``duty`` of the hours (0 < d ≤ 1)."""
        if not 0 < duty <= 1:
            raise ValueError(f"a duty cycle is above 0 and at most 1, not {duty}")
        t = self.busy_hours_per_image
        return (
            self.electricity_per_image
            + t * self.card_per_hour / duty
            + t * self.host_per_hour * (1 - duty) / duty
        )

    @property
    def crossover(self) -> float | None:
        """The duty cycle where local equals cloud; None when local never gets that cheap."""
        t = self.busy_hours_per_image
        margin = self.cloud_per_image - self.electricity_per_image + t * self.host_per_hour
        if margin <= 0:
            return None
        return t * (self.card_per_hour + self.host_per_hour) / margin


def break_even(
    economics: Economics,
    *,
    electricity_per_image: float,
    busy_seconds_per_image: float,
    cloud_per_image: float,
) -> BreakEven:
    """The break-even figures for measured per-image numbers and a cloud price per image."""
    _finite("electricity per image", electricity_per_image)
    _finite("busy seconds per image", busy_seconds_per_image)
    _finite("cloud price per image", cloud_per_image)
    return BreakEven(
        electricity_per_image=electricity_per_image,
        busy_hours_per_image=busy_seconds_per_image / SECONDS_PER_HOUR,
        card_per_hour=card_rate_per_hour(economics),
        host_per_hour=economics.host_idle_watts / 1000.0 * mean_daily_price(economics),
        cloud_per_image=cloud_per_image,
    )


def money(amount: float | None, currency: str) -> str:
    """'€0.0123', '€12.40', '$1,204.50': small amounts keep four decimals, larger two."""
    if amount is None:
        return "–"
    symbol = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF "}.get(currency)
    digits = 4 if abs(amount) < 1 else 2
    text = f"{amount:,.{digits}f}"
    return f"{symbol}{text}" if symbol else f"{text} {currency}"
