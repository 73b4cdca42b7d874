"""Epsilon-greedy acting over a batch of states, with optional action masks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def epsilon_greedy(
    rng: np.random.Generator,
    greedy: Callable[[np.ndarray], np.ndarray],
    obs: np.ndarray,
    epsilon: float,
    n_actions: int,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """One action per row of ``obs``: uniformly random with probability ``epsilon`` (among
    the ``allowed`` ones, a bool batch x actions array, when given), else ``greedy(obs)``.
    The network is skipped when every action is random."""
    n = len(obs)
    explore = rng.random(n) < epsilon
    if allowed is None:
        random_actions = rng.integers(0, n_actions, size=n)
    else:  # the allowed action with the largest uniform draw: uniform among the allowed
        random_actions = np.where(allowed, rng.random((n, n_actions)), -1.0).argmax(axis=1)
    if explore.all():
        return random_actions
    return np.where(explore, random_actions, greedy(obs))
