"""The break-even chart as plain SVG geometry (no JavaScript, no charting library).

Pure: a ``BreakEven`` and the measured duty cycle in, coordinates and tick labels out; the
template draws them. Local cost per image rises without bound as the duty cycle falls, so
the y axis stops at a multiple of the larger of the cloud price and the local cost at
100 %, and the curve is clipped there.
"""

from __future__ import annotations

from dataclasses import dataclass

from artcritic.gpu.costs import BreakEven, money

WIDTH, HEIGHT = 640, 340
LEFT, RIGHT, TOP, BOTTOM = 72, 18, 16, 44
MIN_DUTY = 0.01
HEADROOM = 3.0


@dataclass(frozen=True)
class Tick:
    at: float  # pixels along the axis
    label: str


@dataclass(frozen=True)
class Chart:
    """Coordinates in the SVG's viewBox (WIDTH × HEIGHT)."""

    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    local_points: str  # the local cost curve as "x,y x,y …"
    cloud_y: float
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    # The measured duty cycle and its local cost (None when nothing was measured).
    measured_x: float | None
    measured_y: float | None
    measured_off_chart: bool
    crossover_x: float | None
    y_max: float


# A phone gets its own drawing, narrower and taller, so that its labels stay legible.
NARROW_WIDTH, NARROW_HEIGHT = 340, 300


def break_even_chart(
    figures: BreakEven,
    measured: float | None,
    *,
    currency: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """Local cost per image against the cloud price, by duty cycle from 1 % to 100 %."""
    y_max = HEADROOM * max(figures.cloud_per_image, figures.local_per_image(1.0))
    if y_max <= 0:
        y_max = 1.0
    plot_h = height - TOP - BOTTOM

    def _x(duty: float) -> float:
        return LEFT + duty * (width - LEFT - RIGHT)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - min(value, y_max) / y_max)

    steps = 120
    points = []
    for n in range(steps + 1):
        duty = MIN_DUTY + (1 - MIN_DUTY) * n / steps
        points.append(f"{_x(duty):.1f},{y(figures.local_per_image(duty)):.1f}")
    measured_x = measured_y = None
    off_chart = False
    if measured is not None and measured > 0:
        duty = min(1.0, measured)
        local = figures.local_per_image(duty)
        measured_x, measured_y, off_chart = _x(duty), y(local), local > y_max
    crossover = figures.crossover
    return Chart(
        width=width,
        height=height,
        left=LEFT,
        right=width - RIGHT,
        top=TOP,
        bottom=height - BOTTOM,
        local_points=" ".join(points),
        cloud_y=y(figures.cloud_per_image),
        x_ticks=[Tick(_x(d / 100), f"{d} %") for d in (0, 25, 50, 75, 100)],
        y_ticks=[Tick(y(y_max * k / 4), money(y_max * k / 4, currency)) for k in range(5)],
        measured_x=measured_x,
        measured_y=measured_y,
        measured_off_chart=off_chart,
        crossover_x=_x(crossover) if crossover is not None and crossover <= 1 else None,
        y_max=y_max,
    )
