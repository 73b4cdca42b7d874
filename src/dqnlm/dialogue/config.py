"""The dialogue environment's configuration: every field with its meaning and unit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dqnlm.errors import ConfigError


@dataclass(frozen=True)
class DialogueConfig:
    domain: str = "movie"
    """A bundled domain name, or the path of a schema file (.json, or .yaml with PyYAML)."""
    split: str = "train"
    """The goals reset() draws from: train, or test (held out)."""
    max_turns: int = 40
    """Utterances per dialogue, both sides counted, the user's opening included (TC-Bot's
    max_turn). Also L in the rewards: +2L success, -L failure, -1 per other agent turn."""
    slot_error_rate: float = 0.0
    """Probability that each slot value the user states reaches the agent as another value."""
    intent_error_rate: float = 0.0
    """Probability that the user's intent reaches the agent as another act."""

    def errors(self) -> list[str]:
        """Every invalid value, described with its name and value."""
        problems = []
        if self.split not in ("train", "test"):
            problems.append(f"split must be train or test, got {self.split!r}")
        if self.max_turns < 3:
            problems.append(f"max_turns must be >= 3, got {self.max_turns}")
        for name in ("slot_error_rate", "intent_error_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                problems.append(f"{name} must be in [0, 1], got {value}")
        return problems

    def validate(self) -> DialogueConfig:
        problems = self.errors()
        if problems:
            raise ConfigError("invalid dialogue config: " + "; ".join(problems))
        return self
