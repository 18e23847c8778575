"""The calibration fit on hand-computed cases: pure, no database."""

from __future__ import annotations

import math

import pytest

from artcritic.critic.calibration import (
    CalibrationInputInvalid,
    Model,
    Row,
    calibration_fit,
    fold_counts,
    model_fit,
    rows_group,
)


def test_with_one_score_pattern_the_fit_is_the_teams_approval_share() -> None:
    # Every image scored (5, 5, 5, 5): the features are all zero, only the intercept is
    # free (it is not penalised), and its maximum likelihood is logit(share approved).
    rows = [Row((5, 5, 5, 5), True, True, 3), Row((5, 5, 5, 5), False, True, 1)]
    model = model_fit([(row, float(row.count)) for row in rows])
    assert model.intercept == pytest.approx(math.log(3 / 1), abs=1e-9)
    assert model.probability((5, 5, 5, 5)) == pytest.approx(0.75, abs=1e-9)
    assert model.weights == pytest.approx((0.0, 0.0, 0.0, 0.0), abs=1e-9)


def test_the_fit_learns_that_the_team_follows_taste_where_the_critic_approves_everything() -> None:
    # The team rejects taste 1–3 and approves taste 7–9, four images each; the Critic
    # approves all 24.
    rows = [Row((taste, 5, 5, 5), taste >= 7, True, 4) for taste in (1, 2, 3, 7, 8, 9)]
    fit = calibration_fit(rows)
    assert (fit.samples, fit.approvals, fit.rejections) == (24, 12, 12)
    # Raw: the Critic agrees on the 12 approved images only.
    assert (fit.raw_agreeing, fit.raw_compared) == (12, 24)
    assert fit.model is not None
    assert fit.model.weights[0] > 1.0  # taste carries the verdict
    assert fit.model.approves((9, 5, 5, 5))
    assert not fit.model.approves((1, 5, 5, 5))
    # Held out, every fold still sees both sides of the gap: all 24 right.
    assert (fit.held_out_agreeing, fit.held_out_compared) == (24, 24)


def test_held_out_agreement_by_hand_with_identical_scores() -> None:
    # Ten images all scored (5, 5, 5, 5): the team rejected 3 and approved 7; the Critic
    # rejected all. Grouped and sorted, samples 0–2 are the rejections and 3–9 the
    # approvals; fold f holds samples f and f+5:
    #   folds 0–2 hold one rejection and one approval and train on 2 rejections and
    #   6 approvals (p = 0.75, approve): 1 right each;
    #   folds 3 and 4 hold two approvals, train on 3 and 5 (p = 0.625, approve): 2 right each.
    rows = [Row((5, 5, 5, 5), True, False, 7), Row((5, 5, 5, 5), False, False, 3)]
    fit = calibration_fit(rows_group(rows))
    assert (fit.held_out_agreeing, fit.held_out_compared) == (7, 10)
    assert (fit.raw_agreeing, fit.raw_compared) == (3, 10)
    assert fit.model is not None
    assert fit.model.probability((5, 5, 5, 5)) == pytest.approx(0.7, abs=1e-9)


def test_too_few_decisions_give_no_model_and_say_how_many_it_takes() -> None:
    rows = [Row((8, 8, 8, 8), True, True, 6), Row((2, 2, 2, 2), False, False, 3)]
    fit = calibration_fit(rows)
    assert fit.model is None
    assert fit.reason == (
        "9 decided, reviewed images (6 approved, 3 rejected by the team); calibration needs "
        "at least 10, with at least 2 of each verdict."
    )
    assert (fit.raw_agreeing, fit.raw_compared) == (9, 9)


def test_one_sided_decisions_give_no_model() -> None:
    fit = calibration_fit([Row((8, 8, 8, 8), True, True, 30), Row((2, 2, 2, 2), False, True, 1)])
    assert fit.model is None
    assert "30 approved, 1 rejected" in fit.reason


def test_folds_split_each_row_evenly_and_in_order() -> None:
    assert fold_counts(0, 7, 5) == [2, 2, 1, 1, 1]
    assert fold_counts(3, 4, 5) == [1, 1, 0, 1, 1]  # samples 3, 4, 5, 6
    assert sum(fold_counts(12, 23, 5)) == 23


def test_grouping_sums_counts_and_does_not_depend_on_the_order() -> None:
    a = [
        Row((1, 2, 3, 4), True, False),
        Row((9, 9, 9, 9), False, True),
        Row((1, 2, 3, 4), True, False),
    ]
    assert rows_group(a) == rows_group(list(reversed(a)))
    assert Row((1, 2, 3, 4), True, False, 2) in rows_group(a)


@pytest.mark.parametrize(
    "row",
    [
        Row((1, 2, 3), True, True),  # type: ignore[arg-type]
        Row((1, 2, 3, 11), True, True),
        Row((1, 2, 3, -1), True, True),
        Row((1, 2, 3, 4.5), True, True),  # type: ignore[arg-type]
        Row((1, 2, 3, True), True, True),  # type: ignore[arg-type]
        Row((1, 2, 3, 4), True, True, 0),
        Row((1, 2, 3, 4), True, True, "3"),  # type: ignore[arg-type]
    ],
)
def test_rows_no_review_could_give_are_refused(row: Row) -> None:
    with pytest.raises(CalibrationInputInvalid):
        calibration_fit([row] * 12)


def test_probabilities_are_finite_for_extreme_coefficients() -> None:
    model = Model(intercept=800.0, weights=(800.0, 0.0, 0.0, 0.0))
    assert model.probability((10, 0, 0, 0)) == 1.0
    assert Model(-800.0, (0.0, 0.0, 0.0, 0.0)).probability((0, 0, 0, 0)) == 0.0
