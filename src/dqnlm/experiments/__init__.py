"""Multi-seed experiments: sweeps, aggregate statistics and reports (issue 5)."""

from dqnlm.experiments.stats import (
    Interval,
    Profile,
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

__all__ = [
    "Interval",
    "Profile",
    "iqm",
    "mean",
    "median",
    "normalize",
    "optimality_gap",
    "performance_profile",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap_ci",
]
