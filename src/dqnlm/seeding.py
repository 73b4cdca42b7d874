"""Seed streams: one run seed -> independent seeds for training, validation and test.

Deriving each stream with ``numpy.random.SeedSequence`` (rather than ``seed + i``)
means runs with adjacent seeds share no episodes, so per-seed results are independent
samples, as the bootstrap confidence intervals in reports assume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dqnlm.errors import ConfigError

MAX_SEED = 2**32 - 1
# Episodes of one stream are seeded ``base + i``; a base never exceeds this, so that
# ``base + i`` stays a valid 32-bit seed for up to ~1e9 episodes.
_BASE_LIMIT = 2**31


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` if it is an int in [0, 2**32 - 1]; else a one-line ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return seed


@dataclass(frozen=True)
class SeedStreams:
    """Base seeds of one run. Episode ``i`` of a stream uses ``base + i``."""

    torch: int  # network initialisation and torch sampling
    explore: int  # epsilon-greedy draws
    replay: int  # replay sampling
    train: int  # training environments (vector env j resets with ``train + j``)
    validation: int  # periodic evaluations (may stop training early)
    test: int  # the final evaluation and ``dqnlm eval``


def seed_streams(seed: int) -> SeedStreams:
    """Independent base seeds for run ``seed`` (adjacent run seeds share none)."""
    check_seed(seed)
    bases = np.random.SeedSequence(seed).generate_state(6, dtype=np.uint32) % _BASE_LIMIT
    return SeedStreams(*(int(b) for b in bases))
