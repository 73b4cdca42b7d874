"""Memory estimates made before allocating, so a run that cannot fit is refused up front
with its estimate instead of failing (or swapping) half-way."""

from __future__ import annotations

import os

from dqnlm.errors import DQNLMError


class DoesNotFit(DQNLMError):
    """A requested size would not fit in this machine's memory."""


def available_bytes() -> int:
    """Memory available to a new allocation: MemAvailable where Linux reports it, else RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def q_learning_bytes(buffer_size: int, widths: list[int], batch_size: int, trees: bool) -> int:
    """What a Q-learning run with an MLP of layer ``widths`` allocates up front: a replay of
    two float32 observations and four scalars a transition (and float64 sum and min trees
    with ``trees``), the float32 weights held six times (online, target, best, gradients,
    two Adam moments) and one batch's activations (forward and backward, s and s')."""
    params = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    replay = buffer_size * (8 * widths[0] + 20 + (32 if trees else 0))
    batch = batch_size * (8 * widths[0] + 20 + 24 * sum(widths))
    return replay + 6 * 4 * params + batch


def check_fits(estimate: float, what: str, fraction: float = 0.9) -> None:
    """Refuse ``what`` in one line if ``estimate`` bytes exceed ``fraction`` of free memory."""
    free = available_bytes()
    if estimate > fraction * free:
        raise DoesNotFit(
            f"{what} needs about {human_bytes(estimate)}, but only {human_bytes(free)} of memory "
            "is available; reduce it"
        )
