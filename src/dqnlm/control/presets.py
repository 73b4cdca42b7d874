"""Tuned configurations, each with the evaluation mark it must reach.

Sources are noted per preset. Every preset was checked with
``dqnlm train --preset NAME --seed S`` on several seeds; see docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dqnlm.config_io import replace
from dqnlm.control.config import DQNConfig
from dqnlm.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    env_id: str
    mark: float  # mean greedy evaluation return the preset must reach
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self) -> DQNConfig:
        return replace(DQNConfig(env_id=self.env_id), self.overrides, source="preset")


PRESETS: dict[str, Preset] = {}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def describe_target(config: DQNConfig) -> str:
    if config.target_update == "hard":
        return f"hard copy every {config.target_update_period} updates"
    if config.target_update == "polyak":
        return f"polyak tau={config.tau:g} every {config.target_update_period} updates"
    return "none"
