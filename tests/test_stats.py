"""rliable-style statistics on hand-computed (runs x tasks) score matrices."""

from __future__ import annotations

import numpy as np
import pytest

from dqnlm.experiments import (
    Interval,
    iqm,
    mean,
    median,
    normalize,
    optimality_gap,
    performance_profile,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)

# ---------------------------------------------------------------- point estimates


def test_iqm_of_one_to_eight_is_mean_of_middle_half():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean(3, 4, 5, 6)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([1, 2, 9], 4.0),  # n = 3: int(0.75) = 0 cut, plain mean
        ([10, 1, 3, 2, 50], 5.0),  # n = 5: cut 1 each end -> mean(2, 3, 10)
        ([1, 2, 3, 4, 5, 100], 3.5),  # n = 6: cut 1 -> mean(2, 3, 4, 5)
        ([7, 1, 6, 2, 5, 3, 4], 4.0),  # n = 7: cut 1 -> mean(2, ..., 6)
        ([42], 42.0),
    ],
)
def test_iqm_follows_scipy_trim_rule_when_n_not_divisible_by_four(scores, expected):
    assert iqm(scores) == pytest.approx(expected)


def test_iqm_pools_all_runs_and_tasks():
    scores = [[1, 100], [2, 3], [4, 5], [6, 70]]
    # pooled: 1 2 [3 4 5 6] 70 100 -> 4.5; per-task IQMs would be 3 and 37.5
    assert iqm(scores) == pytest.approx(4.5)


def test_mean_and_median_aggregate_per_task_means():
    scores = [[0, 1, 4], [2, 3, 8]]  # task means 1, 2, 6
    assert mean(scores) == pytest.approx(3.0)
    assert median(scores) == pytest.approx(2.0)  # the pooled median would be 2.5
    assert median([5, 1, 3]) == pytest.approx(3.0)


def test_optimality_gap_clips_at_gamma():
    scores = [[0.5, 1.5], [0.2, 1.0]]
    assert optimality_gap(scores) == pytest.approx(1 - (0.5 + 1 + 0.2 + 1) / 4)  # 0.325
    assert optimality_gap(scores, gamma=2) == pytest.approx(2 - 0.8)


def test_normalize_per_task_range():
    out = normalize([[0, 50], [10, 100]], low=[0, 50], high=[10, 150])
    np.testing.assert_allclose(out, [[0, 0], [1, 0.5]])
    np.testing.assert_allclose(normalize([2, 4], 0, 8), [0.25, 0.5])


# ---------------------------------------------------------------- probability of improvement

POI_X = [[1, 4], [2, 3]]
POI_Y = [[1, 3], [0, 5]]


def test_probability_of_improvement_by_hand_with_ties():
    # task 0: x {1, 2} vs y {1, 0}: 1=1 half, 1>0, 2>1, 2>0 -> 3.5 / 4 = 0.875
    # task 1: x {4, 3} vs y {3, 5}: 4>3, 4<5, 3=3 half, 3<5 -> 1.5 / 4 = 0.375
    assert probability_of_improvement(POI_X, POI_Y) == pytest.approx(0.625)
    assert probability_of_improvement(POI_Y, POI_X) == pytest.approx(0.375)
    assert probability_of_improvement(POI_X, POI_X) == pytest.approx(0.5)


def test_probability_of_improvement_with_different_run_counts():
    # x {3, 4, 2} vs y {2}: 1 + 1 + 1/2 over 3 pairs
    assert probability_of_improvement([[3], [4], [2]], [[2]]) == pytest.approx(5 / 6)


def test_probability_of_improvement_ci():
    ci = probability_of_improvement_ci(POI_X, POI_Y, reps=500, seed=1)
    assert ci.point == pytest.approx(0.625)
    assert 0.0 <= ci.lower <= ci.point <= ci.upper <= 1.0
    assert ci == probability_of_improvement_ci(POI_X, POI_Y, reps=500, seed=1)
    separated = probability_of_improvement_ci([[5, 6], [7, 8]], [[1, 2], [3, 4]], reps=100)
    assert separated == Interval(1.0, 1.0, 1.0)


# ---------------------------------------------------------------- performance profile


def test_performance_profile_on_tiny_matrix():
    scores = {"a": [[0.1, 0.5], [0.4, 0.9], [0.6, 0.2]]}
    profile = performance_profile(scores, taus=[0.0, 0.3, 0.5, 1.0])["a"]
    # > 0: all six; > 0.3: 0.5 0.4 0.9 0.6; > 0.5 (strict): 0.9 0.6; > 1: none
    np.testing.assert_allclose(profile.values, [1, 4 / 6, 2 / 6, 0])
    assert profile.lower is None and profile.upper is None


def test_performance_profile_bands_bracket_the_profile():
    rng = np.random.default_rng(0)
    taus = np.linspace(-2, 2, 9)
    profile = performance_profile({"a": rng.normal(size=(6, 3))}, taus, reps=200)["a"]
    assert np.all(profile.lower <= profile.values + 1e-12)
    assert np.all(profile.values <= profile.upper + 1e-12)
    assert np.all(np.diff(profile.values) <= 0)  # non-increasing in tau


# ---------------------------------------------------------------- stratified bootstrap


def test_bootstrap_ci_contains_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(size=(5, 4)), "b": rng.normal(1.0, size=(5, 4))}
    ci = stratified_bootstrap_ci(scores, iqm, reps=500, seed=3)
    for algo, (point, lower, upper) in ci.items():
        assert lower <= point <= upper, algo
        assert point == pytest.approx(iqm(scores[algo]))
    assert ci == stratified_bootstrap_ci(scores, iqm, reps=500, seed=3)
    assert ci != stratified_bootstrap_ci(scores, iqm, reps=500, seed=4)
    # each algorithm's interval does not depend on the others
    assert stratified_bootstrap_ci({"a": scores["a"]}, iqm, reps=500, seed=3)["a"] == ci["a"]


def test_bootstrap_ci_percentiles_by_hand():
    # one task, runs {0, 1}: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    wide = stratified_bootstrap_ci({"a": [[0.0], [1.0]]}, mean)["a"]
    assert wide == Interval(0.5, 0.0, 1.0)
    narrow = stratified_bootstrap_ci({"a": [[0.0], [1.0]]}, mean, confidence=0.4)["a"]
    assert narrow == Interval(0.5, 0.5, 0.5)  # 30th and 70th percentiles


def test_bootstrap_ci_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=(5, 3)), rng.normal(size=(100, 3))
    ci = stratified_bootstrap_ci({"few": few, "many": many}, mean, reps=300)
    assert ci["many"].upper - ci["many"].lower < 0.5 * (ci["few"].upper - ci["few"].lower)


def test_bootstrap_ci_of_constant_matrix_collapses():
    ci = stratified_bootstrap_ci({"a": np.full((5, 3), 0.7)}, iqm, reps=100)["a"]
    assert ci == pytest.approx((0.7, 0.7, 0.7))


def test_bootstrap_never_mixes_tasks():
    rng = np.random.default_rng(0)
    scores = np.column_stack([rng.uniform(0, 1, 8), rng.uniform(10, 11, 8)])

    def checked_mean(resample: np.ndarray) -> float:
        assert np.all(resample[:, 0] < 1) and np.all(resample[:, 1] >= 10)
        assert np.isin(resample[:, 0], scores[:, 0]).all()
        return mean(resample)

    stratified_bootstrap_ci({"a": scores}, checked_mean, reps=200)
    # one run per task: every stratified resample is the matrix itself
    assert stratified_bootstrap_ci({"a": [[1.0, 5.0, 9.0]]}, mean, reps=50)["a"] == (5, 5, 5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: iqm([]), "empty"),
        (lambda: mean(np.zeros((0, 3))), "empty"),
        (lambda: median([1.0, np.nan]), "NaN"),
        (lambda: optimality_gap([1.0, np.inf]), "infinite"),
        (lambda: iqm(np.zeros((2, 2, 2))), "shape"),
        (lambda: probability_of_improvement([[1, 2]], [[1, 2, 3]]), "mismatched task counts"),
        (lambda: probability_of_improvement([1, 2], [1, 2]), "runs x tasks"),
        (lambda: stratified_bootstrap_ci({"a": [[1, 2]], "b": [[1]]}, mean), "mismatched task"),
        (lambda: stratified_bootstrap_ci({}, mean), "score_dict is empty"),
        (lambda: stratified_bootstrap_ci({"a": [[1.0]]}, mean, reps=0), "reps"),
        (lambda: stratified_bootstrap_ci({"a": [[1.0]]}, mean, confidence=1.0), "confidence"),
        (lambda: performance_profile({"a": [[np.nan]]}, [0.0]), "NaN"),
        (lambda: performance_profile({"a": [[1.0]]}, []), "taus is empty"),
        (lambda: normalize([[1, 2]], [0, 0], [1, 0]), "high equals low"),
        (lambda: normalize([[1, 2]], [0, 0, 0], 1), "one value per task"),
        (lambda: probability_of_improvement_ci([[1]], [[np.nan]]), "y contains NaN"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
