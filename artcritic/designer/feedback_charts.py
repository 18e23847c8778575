"""The Feedback page's charts as plain SVG geometry (no JavaScript, no charting library).

Pure: periods and score counts in, coordinates and labels out; the template draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

from artcritic.critic.feedback import Distribution, Period

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 14, 34


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class AgreementChart:
    """Agreement per period (0–100 %) against time, and the calibrated held-out line."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: str
    dots: list[Dot]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    calibrated_y: float | None


# A phone gets its own drawing, narrower and taller, so that its labels stay legible.
NARROW_WIDTH, NARROW_HEIGHT = 340, 240


def agreement_chart(
    periods: list[Period],
    unit: str,
    calibrated_percent: float | None,
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> AgreementChart:
    """Periods spaced by date (a quiet week leaves a gap), y from 0 to 100 %."""
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def y(percent: float) -> float:
        return round(TOP + plot_h * (1 - percent / 100), 1)

    first = periods[0].start if periods else None
    span = (periods[-1].start - first).days if periods and first else 0

    def x(index: int) -> float:
        if not span or first is None:
            return round(LEFT + plot_w / 2, 1)
        return round(LEFT + plot_w * (periods[index].start - first).days / span, 1)

    dots = []
    for i, period in enumerate(periods):
        when = period.start.strftime("%-d %b %Y")
        label = f"week of {when}" if unit == "week" else when
        dots.append(
            Dot(
                x(i),
                y(period.percent),
                f"{label}: {period.agreeing} of {period.compared} reviews agree "
                f"({period.percent} %)",
            )
        )
    # At most five date labels (three on a phone), evenly chosen, so they never overlap.
    labels = 5 if width >= WIDTH else 3
    last = len(periods) - 1
    shown = sorted({round(k * last / (labels - 1)) for k in range(labels)}) if periods else []
    x_ticks = [Tick(x(i), periods[i].start.strftime("%-d %b")) for i in shown]
    return AgreementChart(
        width=width,
        height=height,
        left=LEFT,
        right=width - RIGHT,
        top=TOP,
        bottom=height - BOTTOM,
        points=" ".join(f"{d.x},{d.y}" for d in dots),
        dots=dots,
        x_ticks=x_ticks,
        y_ticks=[Tick(y(p), f"{p} %") for p in (0, 25, 50, 75, 100)],
        calibrated_y=None if calibrated_percent is None else y(calibrated_percent),
    )


D_WIDTH, D_HEIGHT = 264, 132
D_LEFT, D_RIGHT, D_MID = 8, 8, 60
BAR_GAP = 3


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    title: str


@dataclass(frozen=True)
class DistributionChart:
    """Approved above the middle line, rejected below it, one column per score 0–10."""

    width: int
    height: int
    mid: int
    bar_width: float
    approved: list[Bar]
    rejected: list[Bar]
    labels: list[Tick]


def distribution_chart(distribution: Distribution) -> DistributionChart:
    column = (D_WIDTH - D_LEFT - D_RIGHT) / 11
    bar_width = round(column - BAR_GAP, 1)
    tallest = max([*distribution.approved, *distribution.rejected, 1])
    half = D_MID - 6  # the room above (and below) the middle line

    def bars(counts: tuple[int, ...], verdict: str, above: bool) -> list[Bar]:
        result = []
        for score, n in enumerate(counts):
            if not n:
                continue
            h = round(max(1.5, half * n / tallest), 1)
            result.append(
                Bar(
                    x=round(D_LEFT + score * column + BAR_GAP / 2, 1),
                    y=D_MID - h if above else D_MID,
                    height=h,
                    title=f"score {score}: {n} {verdict} image{'s' if n != 1 else ''}",
                )
            )
        return result

    return DistributionChart(
        width=D_WIDTH,
        height=D_HEIGHT,
        mid=D_MID,
        bar_width=bar_width,
        approved=bars(distribution.approved, "approved", above=True),
        rejected=bars(distribution.rejected, "rejected", above=False),
        labels=[Tick(round(D_LEFT + s * column + column / 2, 1), str(s)) for s in (0, 5, 10)],
    )
