"""DQNConfig validation, --set parsing, TOML round trips and field docs."""

from __future__ import annotations

import dataclasses

import pytest

from dqnlm.config_io import field_docs, load_toml, parse_override, replace, to_toml
from dqnlm.control.config import DQNConfig
from dqnlm.errors import ConfigError


def test_defaults_are_valid():
    assert DQNConfig().validate() == DQNConfig()


def test_validation_lists_every_problem_at_once():
    config = DQNConfig(gamma=1.5, batch_size=128, buffer_size=100, tau=0.0, total_steps=-1)
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert "gamma must be in [0, 1], got 1.5" in message
    assert "batch_size (128) must not exceed buffer_size (100)" in message
    assert "tau must be in (0, 1], got 0.0" in message
    assert "total_steps must be >= 0, got -1" in message
    assert "\n" not in message and message.count(";") == 3  # four problems, one line


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("target_update", "soft", "target_update"),
        ("loss", "l1", "loss"),
        ("device", "tpu", "device"),
        ("hidden_sizes", (64, 0), "hidden_sizes"),
        ("exploration_final_eps", 1.5, "exploration_final_eps"),
        ("per_eps", 0.0, "per_eps"),
        ("learning_rate", float("nan"), "finite"),
        ("n_envs", 0, "n_envs"),
    ],
)
def test_each_invalid_value_is_named(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        DQNConfig(**{field: value}).validate()


def test_parse_override_types():
    assert parse_override("learning_rate=3e-4") == ("learning_rate", 3e-4)
    assert parse_override(" batch_size = 32 ") == ("batch_size", 32)
    assert parse_override("dueling=true") == ("dueling", True)
    assert parse_override("hidden_sizes=[64,64]") == ("hidden_sizes", [64, 64])
    assert parse_override("target_update=polyak") == ("target_update", "polyak")
    assert parse_override("env_id=CartPole-v1") == ("env_id", "CartPole-v1")
    assert parse_override('env_id="Acrobot-v1"') == ("env_id", "Acrobot-v1")


@pytest.mark.parametrize("text", ["gamma", "=3", ""])
def test_parse_override_needs_key_and_value(text):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(text)


def test_replace_coerces_overrides():
    overrides = dict(
        parse_override(o)
        for o in ("learning_rate=3e-4", "hidden_sizes=[64,64]", "target_update=polyak", "tau=1")
    )
    config = replace(DQNConfig(), overrides)
    assert config.learning_rate == 3e-4 and isinstance(config.learning_rate, float)
    assert config.hidden_sizes == (64, 64)
    assert config.target_update == "polyak"
    assert config.tau == 1.0 and isinstance(config.tau, float)
    assert replace(DQNConfig(), {"total_steps": 1e5}).total_steps == 100_000


def test_unknown_key_suggests_the_close_match():
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'.*'learning_rate'"):
        replace(DQNConfig(), {"learning_rat": 1e-3}, source="--set")
    with pytest.raises(ConfigError, match="in --set"):
        replace(DQNConfig(), {"zzz": 1}, source="--set")


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("batch_size", "big", "batch_size must be int"),
        ("batch_size", 3.5, "batch_size must be int"),
        ("batch_size", True, "batch_size must be int"),
        ("learning_rate", "fast", "learning_rate must be float"),
        ("dueling", 1, "dueling must be bool"),
        ("env_id", 3, "env_id must be str"),
        ("hidden_sizes", [64, "a"], "hidden_sizes must be a list of integers"),
        ("hidden_sizes", 64, "hidden_sizes must be a list of integers"),
    ],
)
def test_wrong_types_are_rejected(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        replace(DQNConfig(), {key: value})


def test_toml_round_trip(tmp_path):
    config = DQNConfig(
        env_id="Acrobot-v1",
        seed=7,
        hidden_sizes=(32, 16),
        dueling=True,
        learning_rate=3e-4,
        gamma=0.97,
        target_update="polyak",
        tau=0.005,
        per_eps=1e-8,
    )
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    loaded = replace(DQNConfig(), load_toml(path), source=str(path))
    assert loaded == config
    assert load_toml(path)["hidden_sizes"] == [32, 16]


def test_load_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("gamma = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)


def test_every_field_has_a_doc():
    docs = field_docs(DQNConfig)
    names = [f.name for f in dataclasses.fields(DQNConfig)]
    assert sorted(docs) == sorted(names)
    assert all(docs[name].strip() for name in names)
    assert "\n" not in "".join(docs.values())
    assert "discount" in docs["gamma"].lower()


def test_optional_stop_at_return():
    assert DQNConfig().stop_at_return is None
    config = replace(DQNConfig(), dict([parse_override("stop_at_return=475")]))
    assert config.stop_at_return == 475.0 and isinstance(config.stop_at_return, float)
    with pytest.raises(ConfigError, match="stop_at_return must be float"):
        replace(DQNConfig(), {"stop_at_return": "high"})
    assert "stop_at_return" not in to_toml(DQNConfig())  # None is simply left out


def test_toml_round_trip_with_stop_at_return(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(to_toml(DQNConfig(stop_at_return=-120.5)))
    assert replace(DQNConfig(), load_toml(path)).stop_at_return == -120.5
