"""Aggregate statistics for multi-seed RL experiments, after rliable (Agarwal et al. 2021).

Scores are ``(runs x tasks)`` matrices: one row per seed, one column per environment, usually
min-max normalized first (:func:`normalize`). The point estimates (:func:`iqm`, :func:`mean`,
:func:`median`, :func:`optimality_gap`, :func:`probability_of_improvement`) follow rliable's
definitions; intervals come from a stratified percentile bootstrap that resamples runs with
replacement independently within each task, never mixing tasks.

We do not depend on the ``rliable`` package: it requires ``arch``, ``scipy``, ``pandas``,
``seaborn`` and ``absl-py`` for what is a few dozen lines of numpy, so the estimators are
implemented here with numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

Aggregate = Callable[[np.ndarray], "float | np.ndarray"]


class Interval(NamedTuple):
    """A point estimate with the bounds of its bootstrap confidence interval."""

    point: float
    lower: float
    upper: float


class Profile(NamedTuple):
    """A performance profile: fraction of runs scoring above each tau, with optional CI bands."""

    taus: np.ndarray
    values: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None


# ---------------------------------------------------------------- input checks


def _check_values(array: np.ndarray, name: str) -> np.ndarray:
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite values")
    return array


def _as_scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """A 1-D sample of scores or a (runs x tasks) matrix, as floats."""
    array = np.asarray(scores, dtype=float)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or a (runs x tasks) matrix, got shape {array.shape}")
    return _check_values(array, name)


def _as_matrix(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """A (runs x tasks) matrix, as floats."""
    array = np.asarray(scores, dtype=float)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a (runs x tasks) matrix, got shape {array.shape}"
            " (use scores[:, None] for the runs of a single task)"
        )
    return _check_values(array, name)


def _as_score_dict(score_dict: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    """Each algorithm's (runs x tasks) matrix; all must cover the same number of tasks."""
    if not score_dict:
        raise ValueError("score_dict is empty: give at least one algorithm")
    matrices = {algo: _as_matrix(s, f"scores of {algo!r}") for algo, s in score_dict.items()}
    tasks = {algo: m.shape[1] for algo, m in matrices.items()}
    if len(set(tasks.values())) > 1:
        raise ValueError(f"algorithms have mismatched task counts: {tasks}")
    return matrices


def _check_bootstrap(reps: int, confidence: float) -> None:
    if not isinstance(reps, int | np.integer) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


# ---------------------------------------------------------------- point estimates


def iqm(scores: ArrayLike) -> float:
    """Interquartile mean: the 25% trimmed mean pooled over all runs and tasks.

    As ``scipy.stats.trim_mean(scores, 0.25, axis=None)``: sort the n pooled scores, drop
    ``int(0.25 * n)`` from each end and average the rest.
    """
    values = np.sort(_as_scores(scores).ravel())
    cut = int(0.25 * values.size)
    return float(values[cut : values.size - cut].mean())


def mean(scores: ArrayLike) -> float:
    """Mean over tasks of the per-task mean score (of the values for a 1-D sample)."""
    return float(_task_means(_as_scores(scores)).mean())


def median(scores: ArrayLike) -> float:
    """Median over tasks of the per-task mean score (of the values for a 1-D sample)."""
    return float(np.median(_task_means(_as_scores(scores))))


def optimality_gap(scores: ArrayLike, gamma: float = 1.0) -> float:
    """How far scores fall short of ``gamma``: ``gamma - mean(min(scores, gamma))``."""
    return float(gamma - np.minimum(_as_scores(scores), gamma).mean())


def _task_means(scores: np.ndarray) -> np.ndarray:
    return scores if scores.ndim == 1 else scores.mean(axis=0)


def normalize(scores: ArrayLike, low: ArrayLike, high: ArrayLike) -> np.ndarray:
    """Min-max normalize per task: ``(scores - low) / (high - low)``.

    ``low`` and ``high`` (e.g. random and maximum score) are scalars or one value per task
    (the last axis of ``scores``).
    """
    array = _as_scores(scores)
    lo = _check_values(np.asarray(low, dtype=float), "low")
    hi = _check_values(np.asarray(high, dtype=float), "high")
    tasks = array.shape[-1]
    for name, bound in (("low", lo), ("high", hi)):
        if bound.ndim > 1 or bound.size not in (1, tasks):
            raise ValueError(
                f"{name} must be a scalar or one value per task ({tasks}), got shape {bound.shape}"
            )
    if np.any(hi == lo):
        raise ValueError("high equals low for some task: the normalization range is empty")
    return (array - lo) / (hi - lo)


def probability_of_improvement(x: ArrayLike, y: ArrayLike) -> float:
    """P(X > Y) averaged over tasks, X and Y being (runs x tasks) score matrices.

    Per task this is the Mann-Whitney U statistic over ``runs_x * runs_y``: the fraction of
    (x run, y run) pairs in which x scores higher, ties counting 1/2. Run counts may differ.
    """
    mx, my = _as_matrix(x, "x"), _as_matrix(y, "y")
    if mx.shape[1] != my.shape[1]:
        raise ValueError(f"x and y have mismatched task counts: {mx.shape[1]} != {my.shape[1]}")
    return _poi(mx, my)


def _poi(x: np.ndarray, y: np.ndarray) -> float:
    xs, ys = x[:, None, :], y[None, :, :]  # (runs_x, runs_y, tasks) pairs
    per_task = ((xs > ys) + 0.5 * (xs == ys)).mean(axis=(0, 1))
    return float(per_task.mean())


# ---------------------------------------------------------------- stratified bootstrap


def _resample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw runs with replacement independently within each task (column)."""
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(runs, tasks))
    return scores[rows, np.arange(tasks)]


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 100.0 * (1.0 - confidence) / 2.0
    return np.percentile(samples, alpha, axis=0), np.percentile(samples, 100.0 - alpha, axis=0)


def _bootstrap(
    scores: np.ndarray, aggregate: Aggregate, reps: int, confidence: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    samples = np.array([aggregate(_resample(scores, rng)) for _ in range(reps)], dtype=float)
    return _percentiles(samples, confidence)


def stratified_bootstrap_ci(
    score_dict: Mapping[str, ArrayLike],
    aggregate: Aggregate,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap CI of ``aggregate`` (e.g. :func:`iqm`) for each algorithm.

    ``score_dict`` maps algorithm -> (runs x tasks) matrix. Each of ``reps`` resamples draws
    runs with replacement within each task. Every algorithm gets its own generator seeded
    with ``seed``, so its interval does not depend on the other entries.
    """
    _check_bootstrap(reps, confidence)
    result = {}
    for algo, scores in _as_score_dict(score_dict).items():
        lower, upper = _bootstrap(scores, aggregate, reps, confidence, seed)
        result[algo] = Interval(float(aggregate(scores)), float(lower), float(upper))
    return result


def performance_profile(
    score_dict: Mapping[str, ArrayLike],
    taus: ArrayLike,
    reps: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Profile]:
    """Run-score distribution: per algorithm, the fraction of runs with score > tau.

    The fraction is taken per task and averaged over tasks (the same as pooling all runs, as
    every task has the same number of runs). ``reps > 0`` adds stratified bootstrap CI bands.
    """
    tau = _check_values(np.asarray(taus, dtype=float), "taus")
    if tau.ndim != 1:
        raise ValueError(f"taus must be 1-D, got shape {tau.shape}")
    if reps:
        _check_bootstrap(reps, confidence)

    def profile(scores: np.ndarray) -> np.ndarray:
        return (scores[..., None] > tau).mean(axis=0).mean(axis=0)

    result = {}
    for algo, scores in _as_score_dict(score_dict).items():
        bands = _bootstrap(scores, profile, reps, confidence, seed) if reps else (None, None)
        result[algo] = Profile(tau, profile(scores), *bands)
    return result


def probability_of_improvement_ci(
    x: ArrayLike, y: ArrayLike, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """P(X > Y) with a percentile CI, resampling x and y runs independently within each task."""
    _check_bootstrap(reps, confidence)
    mx, my = _as_matrix(x, "x"), _as_matrix(y, "y")
    point = probability_of_improvement(mx, my)
    rng = np.random.default_rng(seed)
    samples = np.array([_poi(_resample(mx, rng), _resample(my, rng)) for _ in range(reps)])
    lower, upper = _percentiles(samples, confidence)
    return Interval(point, float(lower), float(upper))
