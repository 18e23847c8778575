"""Calibration: how the Critic's four scores predict the team's verdict.

A small L2-regularised logistic regression in pure Python (no numpy: the project does not
depend on it, and five coefficients do not need it), fitted by Newton's method. Pure: rows
in, coefficients and agreements out; no ORM, no clock.

Rows are grouped: the Critic's scores are integers 0–10, so images with the same scores and
verdicts become one row with a count (a project whose Critic scores cluster fits far fewer
rows than it has images; ``make bench-calibration`` measures scattered scores).

Held-out agreement is k-fold (``FOLDS``): the samples are numbered in row order and
sample *i* is held out in fold *i mod k*, so a row's count is spread evenly over the
folds and the result is the same on every run (no random split to explain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCORES = 4
FOLDS = 5
# Below this many decided, reviewed images (or without both verdicts at least this often)
# a fit says "not enough decisions" rather than a number nobody should trust.
MIN_SAMPLES = 10
MIN_PER_VERDICT = 2
# Ridge on the four weights (not the intercept): keeps a fit finite when the team's
# verdict is perfectly separated by one score, which is common on small projects.
L2 = 1.0
MAX_ITERATIONS = 50
TOLERANCE = 1e-10


@dataclass(frozen=True)
class Row:
    """``count`` decided images whose latest review gave these scores and verdicts."""

    scores: tuple[int, int, int, int]
    team_approves: bool
    critic_approves: bool
    count: int = 1


@dataclass(frozen=True)
class Model:
    """P(team approves) = sigmoid(intercept + Σ weight·(score − 5)/5)."""

    intercept: float
    weights: tuple[float, float, float, float]

    def probability(self, scores: tuple[int, int, int, int] | list[int]) -> float:
        z = self.intercept + sum(
            w * x for w, x in zip(self.weights, _features(scores)[1:], strict=False)
        )
        return _sigmoid(z)

    def approves(self, scores: tuple[int, int, int, int] | list[int]) -> bool:
        return self.probability(scores) >= 0.5


@dataclass(frozen=True)
class Fit:
    """A calibration: the model on all rows, and held-out against raw agreement.

    ``model`` is None when there are too few decisions; ``reason`` then says how many there
    are and how many it takes.
    """

    model: Model | None
    samples: int
    approvals: int
    rejections: int
    held_out_agreeing: int
    held_out_compared: int
    raw_agreeing: int
    raw_compared: int
    reason: str = ""


class CalibrationInputInvalid(ValueError):
    """A row that cannot be a Critic review's scores."""


def _features(scores: tuple[int, ...] | list[int]) -> list[float]:
    # Centred and scaled to −1…1 so that one L2 penalty means the same for every score.
    return [1.0, *((float(s) - 5.0) / 5.0 for s in scores)]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def rows_check(rows: list[Row]) -> None:
    """Refuse rows no Critic review could give (wrong arity, out of 0–10, bad counts)."""
    for row in rows:
        if len(row.scores) != SCORES:
            raise CalibrationInputInvalid(f"{len(row.scores)} scores; a review has {SCORES}")
        for score in row.scores:
            if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
                raise CalibrationInputInvalid(f"score {score!r} is not an integer 0–10")
        if isinstance(row.count, bool) or not isinstance(row.count, int) or row.count < 1:
            raise CalibrationInputInvalid(f"count {row.count!r} is not a positive integer")


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the 5×5 Newton step)."""
    n = len(vector)
    a = [[*row[:], vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-300:
            raise ZeroDivisionError("singular Hessian")
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            for c in range(col, n + 1):
                a[r][c] -= factor * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - sum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x


def model_fit(weighted: list[tuple[Row, float]], l2: float = L2) -> Model:
    """The penalised maximum-likelihood model of rows with weights (a count or a fold's
    share of it). The penalty makes the objective strictly concave, so Newton converges."""
    beta = [0.0] * (SCORES + 1)
    data = [(_features(row.scores), 1.0 if row.team_approves else 0.0, w) for row, w in weighted]
    for _ in range(MAX_ITERATIONS):
        gradient = [0.0] * (SCORES + 1)
        hessian = [[0.0] * (SCORES + 1) for _ in range(SCORES + 1)]
        for x, y, w in data:
            p = _sigmoid(sum(b * v for b, v in zip(beta, x, strict=False)))
            residual, curvature = w * (y - p), w * p * (1.0 - p)
            for i in range(SCORES + 1):
                gradient[i] += residual * x[i]
                for j in range(i + 1):
                    hessian[i][j] += curvature * x[i] * x[j]
        for i in range(1, SCORES + 1):
            gradient[i] -= l2 * beta[i]
            hessian[i][i] += l2
        for i in range(SCORES + 1):
            for j in range(i + 1, SCORES + 1):
                hessian[i][j] = hessian[j][i]
        step = _solve(hessian, gradient)
        beta = [b + s for b, s in zip(beta, step, strict=False)]
        if max(abs(s) for s in step) < TOLERANCE:
            break
    return Model(intercept=beta[0], weights=(beta[1], beta[2], beta[3], beta[4]))


def fold_counts(offset: int, count: int, folds: int = FOLDS) -> list[int]:
    """How many of samples ``offset … offset+count−1`` fall in each fold (sample i in i mod k)."""
    shares = [count // folds] * folds
    for j in range(count % folds):
        shares[(offset + j) % folds] += 1
    return shares


def calibration_fit(rows: list[Row], folds: int = FOLDS) -> Fit:
    """Fit on every row, and measure on held-out folds how often the calibrated verdict
    equals the team's, beside how often the raw Critic's does on the same images."""
    rows_check(rows)
    samples = sum(row.count for row in rows)
    approvals = sum(row.count for row in rows if row.team_approves)
    rejections = samples - approvals
    raw_agreeing = sum(row.count for row in rows if row.critic_approves == row.team_approves)
    if samples < MIN_SAMPLES or min(approvals, rejections) < MIN_PER_VERDICT:
        return Fit(
            model=None,
            samples=samples,
            approvals=approvals,
            rejections=rejections,
            held_out_agreeing=0,
            held_out_compared=0,
            raw_agreeing=raw_agreeing,
            raw_compared=samples,
            reason=(
                f"{samples} decided, reviewed image{'s' if samples != 1 else ''} "
                f"({approvals} approved, {rejections} rejected by the team); calibration needs "
                f"at least {MIN_SAMPLES}, with at least {MIN_PER_VERDICT} of each verdict."
            ),
        )
    shares: list[list[int]] = []
    offset = 0
    for row in rows:
        shares.append(fold_counts(offset, row.count, folds))
        offset += row.count
    agreeing = 0
    for fold in range(folds):
        train = [
            (row, float(row.count - share[fold])) for row, share in zip(rows, shares, strict=False)
        ]
        model = model_fit([(row, w) for row, w in train if w > 0])
        for row, share in zip(rows, shares, strict=False):
            if share[fold] and model.approves(row.scores) == row.team_approves:
                agreeing += share[fold]
    full = model_fit([(row, float(row.count)) for row in rows])
    return Fit(
        model=full,
        samples=samples,
        approvals=approvals,
        rejections=rejections,
        held_out_agreeing=agreeing,
        held_out_compared=samples,
        raw_agreeing=raw_agreeing,
        raw_compared=samples,
    )


def rows_group(rows: list[Row]) -> list[Row]:
    """Merge identical rows into one with their summed count, in a stable order (sorted),
    so that the folds — and so the held-out figure — do not depend on the query's order."""
    counts: dict[tuple[tuple[int, int, int, int], bool, bool], int] = {}
    for row in rows:
        key = (row.scores, row.team_approves, row.critic_approves)
        counts[key] = counts.get(key, 0) + row.count
    return [Row(s, t, c, n) for (s, t, c), n in sorted(counts.items())]
