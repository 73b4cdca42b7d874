"""Schedules map a step counter to a value (exploration rate, PER beta, learning rate)."""

from __future__ import annotations

from collections.abc import Callable

Schedule = Callable[[int], float]


def constant(value: float) -> Schedule:
    return lambda step: value


def linear(start: float, end: float, duration: int) -> Schedule:
    """``start`` at step 0, moving linearly to ``end`` at ``duration``, then held."""
    if duration <= 0:
        return constant(end)

    def schedule(step: int) -> float:
        fraction = min(max(step, 0) / duration, 1.0)
        return start + fraction * (end - start)

    return schedule
