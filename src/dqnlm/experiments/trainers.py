"""What a sweep knows of each trainer: control DQN, dialogue DQN and LM Q-learning.

An ``[envs.NAME]`` table of a sweep file names its trainer (``trainer = "dialogue"``;
``control`` by default); its other keys are that trainer's config fields, plus the few
keys in ``table_keys`` (a preset, the control env's score bounds). Everything a sweep
does differently per trainer is one :class:`TrainerKind` in :data:`TRAINERS`; the sweep
itself (:mod:`dqnlm.experiments.sweep`) is the same for all three. Imports of the heavy
packages (gymnasium, transformers) happen only when a hook runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqnlm.config_io import replace
from dqnlm.errors import ConfigError

Entry = dict[str, Any]
"""An env's entry in sweep.json: ``trainer``, the kind's record fields, ``configs``
(variant name -> config fields as plain values)."""


def _import(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TrainerKind:
    """One trainer as a sweep sees it. Hooks get the env's ``[envs.NAME]`` label as
    ``where`` and raise ConfigError (or DQNLMError) with a one-line message."""

    name: str
    config_ref: str
    """``module:Class`` of the config dataclass."""
    trainer_ref: str
    """``module:Class`` of the trainer: ``Cls(config, run_dir)``, ``Cls.load(run_dir,
    trust_code=...)`` and ``.learn(progress=False, tensorboard=False)``, which writes
    ``eval.json`` (the mark of a finished run) and returns the final evaluation."""
    check_file: Callable[[Entry, str, str, bool], None]
    """An entry read from a sweep file: refuse what would import a module unless
    ``trust_code`` (args: entry, where, source, trust_code)."""
    trusted: Callable[[Entry, Path, str, str, bool], Entry]
    """An entry read back from ``out/sweep.json`` (written by anyone): refuse what would
    import a module or read outside ``out`` unless ``trust_code``; returns the entry with
    paths resolved as the runs will read them (args: entry, out, where, source,
    trust_code)."""
    check_runnable: Callable[[list], None]
    """Every variant's config of one env: fail before anything is written (make the env)."""
    # what a report reads (plain data)
    curve: str
    """metrics.csv column of the learning curve (rows where it is empty are skipped)."""
    final: str
    """eval.json key of a run's final score."""
    extras: tuple[str, ...] = ()
    """Further eval.json keys worth reporting beside ``final``."""
    result_format: str = ".3f"
    """How the progress bar shows ``final``."""
    table_keys: tuple[str, ...] = ()
    """Keys of ``[envs.NAME]`` besides ``trainer`` that are not config fields."""
    early_stop: str | None = None
    """The config field that stops a run early; set to None unless ``early_stop = true``."""
    record: Callable[[dict, Any], dict] = lambda table, config: {}
    """Fields of the env's sweep.json entry beside its configs (env table, env config)."""
    check_record: Callable[[Entry], None] = lambda info: None
    """Those fields, as made or read back from sweep.json: ConfigError when malformed."""
    finish: Callable[[Any], Any] = lambda config: config.validate()
    """The last step of each variant's config: validate (and resolve paths)."""
    start: Callable[[dict], Any] | None = None
    """The env table -> the config before ``[base]`` (a preset, say); None: the defaults."""

    def config(self, values: dict[str, Any], source: str) -> Any:
        """The config of ``values`` (field -> plain value), checked key by key."""
        return replace(_import(self.config_ref)(), values, source=source)

    def trainer(self, config: Any, run_dir: Path, trust_code: bool = False) -> Any:
        return _import(self.trainer_ref).create(config, run_dir, trust_code)

    def load(self, run_dir: Path, trust_code: bool = False) -> Any:
        """The trainer of a killed run, from its last checkpoint, ready to continue."""
        return _import(self.trainer_ref).load(run_dir, trust_code=trust_code)

    def summary(self, result: dict) -> str:
        """A run's final evaluation (its eval.json) in a few characters, for the progress bar."""
        if not isinstance(result.get(self.final), (int, float)):
            return "not evaluated"  # an LM run with eval_prompts = 0
        return f"{self.final} {result[self.final]:{self.result_format}}"

    def configs(self, info: Entry, where: str) -> dict[str, Any]:
        """Variant name -> config of an env's entry (``where`` names the entry in errors)."""
        configs = info["configs"].items()
        return {v: self.config(values, f"{where} x [variants.{v}]") for v, values in configs}


def trainer_of(info: Entry) -> TrainerKind:
    """The kind of an env's entry (sweep.json files older than trainers mean control)."""
    name = info.get("trainer", "control")
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; choose one of {', '.join(TRAINERS)}")
    return TRAINERS[name]


# ------------------------------------------------------------------------------- control
def _control_start(table: dict) -> Any:
    from dqnlm.control.config import DQNConfig
    from dqnlm.control.presets import get_preset

    config = get_preset(table["preset"]).config() if "preset" in table else DQNConfig()
    return replace(config, {"env_id": table["env_id"]}) if "env_id" in table else config


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _control_record(table: dict, config: Any) -> dict:
    """low/high normalise scores (random and best return); threshold is the return a run
    must reach before it can collapse (default: the preset's mark)."""
    from dqnlm.control.presets import get_preset

    mark = get_preset(table["preset"]).mark if "preset" in table else None
    threshold = table.get("threshold", mark)
    high, low = table.get("high", threshold), table.get("low")
    record = {"env_id": config.env_id, "low": low, "high": high, "threshold": threshold}
    _control_check_record(record)
    if high is not None and low is not None and high <= low:
        raise ConfigError(f"high must exceed low, got low {low}, high {high}")
    return record


def _control_check_record(info: Entry) -> None:
    if not isinstance(info.get("env_id"), str):
        raise ConfigError("needs an env_id string")
    for key in ("low", "high", "threshold"):
        value = info.get(key)
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise ConfigError(f"{key} must be a finite number or null, got {value!r}")


def _control_env_ids(info: Entry) -> list[tuple[str, Any]]:
    """(label, env_id) of the entry and of each variant's config (a report makes the
    entry's env, each run its config's)."""
    ids = [("env_id", info.get("env_id"))]
    ids += [(f"[variants.{v}] env_id", c.get("env_id")) for v, c in info["configs"].items()]
    return [(label, env_id) for label, env_id in ids if isinstance(env_id, str)]


def _control_check_file(info: Entry, where: str, source: str, trust_code: bool) -> None:
    from dqnlm.trust import check_module_reference

    for label, env_id in _control_env_ids(info):
        check_module_reference(env_id, f"{where} {label}", source, trust_code)


def _control_trusted(info: Entry, out: Path, where: str, source: str, trust_code: bool) -> Entry:
    _control_check_file(info, where, source, trust_code)
    return info


def _control_check_runnable(configs: list) -> None:
    from dqnlm.control.envs import env_spaces

    checked = set()
    for config in configs:  # each environment with its settings, once
        key = dataclasses.replace(config, seed=0)
        if key not in checked:
            env_spaces(config)
            checked.add(key)


# ------------------------------------------------------------------------------ dialogue
def _dialogue_finish(config: Any) -> Any:
    """A schema file is named by its absolute path, as the trainer resolves it."""
    from dqnlm.dialogue.schema import bundled_domains

    if config.domain not in bundled_domains() and Path(config.domain).is_file():
        config = dataclasses.replace(config, domain=str(Path(config.domain).resolve()))
    return config.validate()


def _dialogue_trusted(info: Entry, out: Path, where: str, source: str, trust_code: bool) -> Entry:
    """A schema file outside ``out`` only with ``trust_code``; relative paths start at ``out``."""
    from dqnlm.dialogue.dqn import domain_inside

    configs = dict(info["configs"])
    for variant, config in TRAINERS["dialogue"].configs(info, f"{source} {where}").items():
        here = f"{source} {where} x [variants.{variant}]"
        domain = domain_inside(config, out, here, trust_code).domain
        configs[variant] = {**configs[variant], "domain": domain}
    return {**info, "configs": configs}


def _dialogue_check_runnable(configs: list) -> None:
    from dqnlm.dialogue.env import DialogueEnv

    for env_config in dict.fromkeys(c.env_config("train") for c in configs):
        DialogueEnv(env_config)  # loads and checks the domain's schema


# ------------------------------------------------------------------------------------ lm
def _lm_start(table: dict) -> Any:
    from dqnlm.lm.config import preset_config

    return preset_config(table.get("preset"))


def _lm_check_file(info: Entry, where: str, source: str, trust_code: bool) -> None:
    from dqnlm.lm.rewards import check_reward_module

    for variant, values in info["configs"].items():
        check_reward_module(
            values["reward"], f"{source} {where} x [variants.{variant}]", trust_code
        )


def _lm_trusted(info: Entry, out: Path, where: str, source: str, trust_code: bool) -> Entry:
    """No reward module, and no model, prompts or data outside ``out``, unless ``trust_code``."""
    from dqnlm.lm.trainer import check_run_config

    for variant, config in TRAINERS["lm"].configs(info, f"{source} {where}").items():
        check_run_config(config, out, f"{source} {where} x [variants.{variant}]", trust_code)
    return info


TRAINERS: dict[str, TrainerKind] = {
    "control": TrainerKind(
        name="control",
        config_ref="dqnlm.control.config:DQNConfig",
        trainer_ref="dqnlm.control.dqn:DQN",
        start=_control_start,
        check_file=_control_check_file,
        trusted=_control_trusted,
        check_runnable=_control_check_runnable,
        curve="eval_return",
        final="mean_return",
        result_format=".1f",
        table_keys=("preset", "env_id", "low", "high", "threshold"),
        early_stop="stop_at_return",
        record=_control_record,
        check_record=_control_check_record,
    ),
    "dialogue": TrainerKind(
        name="dialogue",
        config_ref="dqnlm.dialogue.config:DialogueDQNConfig",
        trainer_ref="dqnlm.dialogue.dqn:DialogueDQN",
        check_file=lambda *args: None,  # a schema file is data: it imports nothing
        trusted=_dialogue_trusted,
        check_runnable=_dialogue_check_runnable,
        curve="eval_success",
        final="success_rate",
        extras=("avg_turns",),
        finish=_dialogue_finish,
    ),
    "lm": TrainerKind(
        name="lm",
        config_ref="dqnlm.lm.config:LMConfig",
        trainer_ref="dqnlm.lm.trainer:LMTrainer",
        start=_lm_start,
        check_file=_lm_check_file,
        trusted=_lm_trusted,
        check_runnable=lambda configs: None,  # validated already; loading a model is a run's work
        curve="reward",
        final="reward",
        extras=("kl", "distinct_2"),
        result_format="+.3f",
        table_keys=("preset",),
    ),
}
"""Every trainer a sweep can run, by the name a sweep file gives it."""
