"""Cost arithmetic, each case computed by hand in its comment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from artcritic.gpu.costs import (
    break_even,
    duty_cycle,
    electricity_cost,
    job_cost,
    mean_daily_price,
    money,
    per_unit,
    price_at,
)
from artcritic.gpu.profiles import Economics


def economics(**changes: Any) -> Economics:
    values: dict[str, Any] = {
        "currency": "EUR",
        "price_per_kwh": 0.32,
        "timezone": "Europe/Berlin",
        "card_price": 2628.0,
        "amortisation_hours": 26280.0,
        "host_idle_watts": 100.0,
        "time_of_use": [{"start": "22:00", "end": "06:00", "price_per_kwh": 0.22}],
    }
    values.update(changes)
    return Economics.model_validate(values)


FLAT = {"time_of_use": [], "timezone": "UTC", "price_per_kwh": 0.30}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the tariff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc", "price"),
    [
        ("2025-01-15 21:30", 0.22),  # 22:30 in Berlin (CET, UTC+1): night tariff
        ("2025-01-15 12:00", 0.32),  # 13:00: day tariff
        ("2025-01-16 04:59", 0.22),  # 05:59: still night
        ("2025-01-16 05:00", 0.32),  # 06:00: the window's end is not in it
        ("2025-07-01 20:00", 0.22),  # 22:00 in summer (CEST, UTC+2): night begins
        ("2025-07-01 19:59", 0.32),  # 21:59 CEST: still day
    ],
)
def test_the_price_follows_the_time_of_use_windows_in_the_tariffs_local_time(
    utc: str, price: float
) -> None:
    assert price_at(economics(), at(utc)) == price


def test_energy_across_a_tariff_boundary_is_priced_by_each_part() -> None:
    # 1 kWh evenly from 21:30 to 22:30 Berlin: half at 0.32, half at 0.22 = 0.27.
    cost = electricity_cost(economics(), 1.0, at("2025-01-15 20:30"), at("2025-01-15 21:30"))
    assert cost == pytest.approx(0.27)


def test_energy_over_a_whole_day_pays_the_daily_mean() -> None:
    # 24 kWh over 24 h: 8 h at 0.22 and 16 h at 0.32 → 1.76 + 5.12 = 6.88.
    start = at("2025-01-15 00:00")
    cost = electricity_cost(economics(), 24.0, start, start + timedelta(days=1))
    assert cost == pytest.approx(6.88)
    assert mean_daily_price(economics()) == pytest.approx(6.88 / 24)


def test_an_instant_is_priced_at_its_moment() -> None:
    assert electricity_cost(economics(), 2.0, at("2025-01-15 12:00"), at("2025-01-15 12:00")) == (
        pytest.approx(0.64)
    )


def test_time_running_backwards_is_refused() -> None:
    with pytest.raises(ValueError, match="before start"):
        electricity_cost(economics(), 1.0, at("2025-01-15 12:00"), at("2025-01-15 11:00"))


# --- a job ---------------------------------------------------------------------------------


def test_a_jobs_cost_is_its_electricity_plus_the_cards_write_off_over_its_seconds() -> None:
    # GPU 36 000 J + host 100 W × 36 s = 3 600 J → 39 600 J = 0.011 kWh × 0.30 = 0.0033.
    # Card: 2628 / 26280 h = 0.1 per hour; (30 s own + 6 s swap) = 0.01 h → 0.001.
    start = at("2025-01-15 12:00")
    cost = job_cost(
        economics(**FLAT),
        gpu_energy_joules=36_000.0,
        start=start,
        end=start + timedelta(seconds=36),
        gpu_seconds=30.0,
        swap_seconds=6.0,
    )
    assert cost.kwh == pytest.approx(0.011)
    assert cost.electricity == pytest.approx(0.0033)
    assert cost.card == pytest.approx(0.001)
    assert cost.total == pytest.approx(0.0043)
    assert cost.energy_reported


def test_without_a_gpu_energy_reading_only_the_host_is_priced_and_it_says_so() -> None:
    # Host 100 W × 36 s = 3 600 J = 0.001 kWh × 0.30 = 0.0003; the GPU's part is unknown.
    start = at("2025-01-15 12:00")
    cost = job_cost(
        economics(**FLAT),
        gpu_energy_joules=None,
        start=start,
        end=start + timedelta(seconds=36),
        gpu_seconds=36.0,
        swap_seconds=0.0,
    )
    assert cost.electricity == pytest.approx(0.0003)
    assert not cost.energy_reported


def test_a_batched_jobs_share_splits_the_hosts_idle_draw() -> None:
    # Four reviews at once, each a quarter: host 100 W × 36 s × 0.25 = 900 J = 0.00025 kWh.
    start = at("2025-01-15 12:00")
    cost = job_cost(
        economics(**FLAT),
        gpu_energy_joules=None,
        start=start,
        end=start + timedelta(seconds=36),
        gpu_seconds=9.0,
        swap_seconds=0.0,
        share=0.25,
    )
    assert cost.kwh == pytest.approx(0.00025)


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5, float("nan")])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    start = at("2025-01-15 12:00")
    with pytest.raises(ValueError, match="share of the machine"):
        job_cost(
            economics(),
            gpu_energy_joules=1.0,
            start=start,
            end=start,
            gpu_seconds=0.0,
            swap_seconds=0.0,
            share=share,
        )


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_impossible_measurements_are_refused(bad: float) -> None:
    start = at("2025-01-15 12:00")
    with pytest.raises(ValueError, match="finite"):
        job_cost(
            economics(),
            gpu_energy_joules=bad,
            start=start,
            end=start,
            gpu_seconds=1.0,
            swap_seconds=0.0,
        )


def test_shares_per_image_review_or_thousand_tokens_need_something_to_share_over() -> None:
    assert per_unit(0.012, 4) == pytest.approx(0.003)
    assert per_unit(0.012, 0) is None


def test_the_duty_cycle_is_busy_time_over_the_window_and_never_above_one() -> None:
    assert duty_cycle(3600, 14_400) == 0.25
    assert duty_cycle(20_000, 14_400) == 1.0
    with pytest.raises(ValueError, match="longer than 0"):
        duty_cycle(1, 0)


# --- break-even ----------------------------------------------------------------------------


def test_break_even_by_hand() -> None:
    # v = 0.001 per image, t = 36 s = 0.01 h, A = 0.1 per hour, H = 0.1 kW × 0.25 = 0.025.
    # local(0.5) = 0.001 + 0.01·0.1/0.5 + 0.01·0.025·0.5/0.5 = 0.001 + 0.002 + 0.00025.
    # d* for c = 0.00325: 0.01·0.125 / (0.00325 − 0.001 + 0.00025) = 0.00125/0.0025 = 0.5.
    figures = break_even(
        economics(time_of_use=[], price_per_kwh=0.25),
        electricity_per_image=0.001,
        busy_seconds_per_image=36.0,
        cloud_per_image=0.00325,
    )
    assert figures.card_per_hour == pytest.approx(0.1)
    assert figures.host_per_hour == pytest.approx(0.025)
    assert figures.local_per_image(0.5) == pytest.approx(0.00325)
    assert figures.local_per_image(1.0) == pytest.approx(0.002)  # no idle hours left to pay
    assert figures.crossover == pytest.approx(0.5)


def test_a_cloud_cheaper_than_the_work_itself_never_breaks_even() -> None:
    # c − v + t·H = 0.0005 − 0.001 + 0.01·0.025 = −0.00025 ≤ 0: never.
    figures = break_even(
        economics(time_of_use=[], price_per_kwh=0.25),
        electricity_per_image=0.001,
        busy_seconds_per_image=36.0,
        cloud_per_image=0.0005,
    )
    assert figures.crossover is None


def test_a_crossover_above_one_means_out_of_reach_even_when_always_busy() -> None:
    # d* = 0.01·0.125 / (0.0015 − 0.001 + 0.00025) = 0.00125 / 0.00075 ≈ 1.667.
    figures = break_even(
        economics(time_of_use=[], price_per_kwh=0.25),
        electricity_per_image=0.001,
        busy_seconds_per_image=36.0,
        cloud_per_image=0.0015,
    )
    assert figures.crossover == pytest.approx(5 / 3)


@pytest.mark.parametrize("duty", [0.0, -0.1, 1.01])
def test_a_duty_cycle_outside_zero_to_one_is_refused(duty: float) -> None:
    figures = break_even(
        economics(), electricity_per_image=0.0, busy_seconds_per_image=1.0, cloud_per_image=1.0
    )
    with pytest.raises(ValueError, match="duty cycle"):
        figures.local_per_image(duty)


def test_money_keeps_four_decimals_for_cents_and_two_for_more() -> None:
    assert money(0.01234, "EUR") == "€0.0123"
    assert money(1204.5, "USD") == "$1,204.50"
    assert money(2.0, "SEK") == "2.00 SEK"
    assert money(None, "EUR") == "–"


# --- the profile section ----------------------------------------------------------------------


def test_overlapping_time_of_use_windows_are_refused() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        economics(
            time_of_use=[
                {"start": "22:00", "end": "06:00", "price_per_kwh": 0.2},
                {"start": "05:00", "end": "07:00", "price_per_kwh": 0.1},
            ]
        )


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 24 * 60 - 1), st.integers(0, 24 * 60 - 1)).filter(
            lambda pair: pair[0] != pair[1]
        ),
        max_size=4,
    )
)
def test_windows_are_refused_exactly_when_some_minute_of_the_day_has_two(
    spans: list[tuple[int, int]],
) -> None:
    windows = [
        {"start": _clock(start), "end": _clock(end), "price_per_kwh": 0.1} for start, end in spans
    ]

    def covers(start: int, end: int, minute: int) -> bool:
        return start <= minute < end if start < end else minute >= start or minute < end

    doubled = any(
        sum(covers(start, end, minute) for start, end in spans) > 1 for minute in range(24 * 60)
    )
    if doubled:
        with pytest.raises(ValidationError, match="overlap"):
            economics(time_of_use=windows)
    else:
        assert len(economics(time_of_use=windows).time_of_use) == len(spans)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"time_of_use": [{"start": "08:00", "end": "08:00", "price_per_kwh": 1}]}, "empty"),
        ({"time_of_use": [{"start": "25:00", "end": "08:00", "price_per_kwh": 1}]}, "pattern"),
        ({"price_per_kwh": -0.1}, "greater than or equal"),
        ({"amortisation_hours": 0}, "greater than 0"),
        ({"currency": "euro"}, "pattern"),
        ({"card_price": "2000"}, "valid number"),
    ],
)
def test_bad_economics_are_refused_naming_the_problem(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        economics(**changes)
