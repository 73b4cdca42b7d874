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


MAX_LOCKSTEP_SEEDS = 1024
"""Seeds one ``--seeds`` list may name: far beyond any experiment's need."""


def parse_seeds(spec: str, name: str = "--seeds") -> list[int]:
    """``0-9``, ``1,3,5`` or ``0-4,10-12`` as a list of distinct seeds, in order; a
    one-line ConfigError naming the offending part otherwise."""
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ConfigError(
                f"{name} takes seeds like 0-9 or 1,3,5, got {spec!r} (bad part {part!r})"
            ) from None
        check_seed(first, name)
        check_seed(last, name)
        if last < first:
            raise ConfigError(f"{name} range {part!r} runs backwards; write {last}-{first}")
        if last - first + 1 + len(seeds) > MAX_LOCKSTEP_SEEDS:
            raise ConfigError(f"{name} names more than {MAX_LOCKSTEP_SEEDS} seeds ({spec!r})")
        seeds += range(first, last + 1)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{name} names seed {repeated[0]} twice ({spec!r})")
    return seeds
