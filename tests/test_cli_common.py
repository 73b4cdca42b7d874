"""What the three train commands share (dqnlm.cli.common): --version, the --resume guard,
config layering and --threads."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest
import torch

from dqnlm.cli import main
from dqnlm.cli.common import layer_config, refuse_config_with_resume
from dqnlm.control import DQNConfig
from dqnlm.errors import DQNLMError


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dqnlm: error: ")
    assert "Traceback" not in out + err
    return lines[0]


def needs_lm(command: str) -> None:
    if command == "lm":
        pytest.importorskip("transformers")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"dqnlm {importlib.metadata.version('dqnlm')}\n"


# ------------------------------------------------------------------------- --resume guard
OWN_FLAGS = [  # (command, flag, value, the name the error gives it)
    ("train", "--preset", "cartpole", "preset"),
    ("train", "--env", "CartPole-v1", "env_id"),
    ("lm train", "--preset", "sentiment", "preset"),
    ("lm train", "--model", "some/model", "model"),
    ("lm train", "--reward", "vader", "reward"),
    ("dialogue train", "--domain", "movie", "domain"),
]
SHARED_FLAGS = [
    ("--config", "c.toml", "config"),
    ("--seed", "1", "seed"),
    ("--run-dir", "elsewhere", "run_dir"),
    ("--set", "gamma=0.9", "--set"),
]
REFUSED = OWN_FLAGS + [
    (command, *flag) for command in ("train", "lm train", "dialogue train") for flag in SHARED_FLAGS
]


@pytest.mark.parametrize(("command", "flag", "value", "name"), REFUSED)
def test_resume_refuses_each_config_flag(command, flag, value, name, tmp_path, capsys):
    needs_lm(command.split()[0])
    argv = [*command.split(), "--resume", str(tmp_path), flag, value]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert "--resume takes its config from the run directory" in line
    assert line.endswith(f"(got {name})")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("train", ["--total-steps", "5", "--device", "cpu"]),
        ("lm train", ["--rounds", "5", "--device", "cpu"]),
        ("dialogue train", ["--epochs", "5"]),
    ],
)
def test_resume_lets_the_allowed_flags_through(command, allowed, tmp_path, capsys):
    needs_lm(command.split()[0])
    assert main([*command.split(), "--resume", str(tmp_path), *allowed, "--no-progress"]) == 1
    assert "no checkpoint found" in one_error_line(capsys)  # past the guard, to the run


def test_resume_guard_names_every_flag_given():
    args = argparse.Namespace(preset="p", config=None, seed=3, run_dir=None, overrides=["a=1"])
    with pytest.raises(DQNLMError) as error:
        refuse_config_with_resume(args, ("epochs", "device"), ("preset",))
    assert str(error.value) == (
        "--resume takes its config from the run directory; only --epochs and --device may "
        "be given with it (got preset, seed, --set)"
    )
    args = argparse.Namespace(preset=None, config=None, seed=None, run_dir=None, overrides=[])
    refuse_config_with_resume(args, ("epochs",), ("preset",))


# ------------------------------------------------------------------------- config layers
def test_layers_apply_in_order_file_then_set_then_flags(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('env_id = "Acrobot-v1"\ngamma = 0.9\nbatch_size = 8\nlearning_rate = 0.002\n')
    config = layer_config(
        DQNConfig(seed=5),
        file,
        ["gamma=0.8", "batch_size=16", "env_id=MountainCar-v0"],
        {"batch_size": 32, "seed": None},
        before_set={"env_id": "CartPole-v1", "tau": None},
    )
    assert config.learning_rate == 0.002  # only the file sets it
    assert config.gamma == 0.8  # --set beats the file
    assert config.batch_size == 32  # flags beat --set
    assert config.env_id == "MountainCar-v0"  # --set beats the flags applied before it
    assert config.seed == 5 and config.tau == DQNConfig().tau  # None: not given


def test_the_file_check_sees_only_values_no_later_layer_replaces(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('env_id = "evil:Env"\ngamma = 0.9\n')
    seen = []
    for before_set, overrides in [({}, []), ({"env_id": "CartPole-v1"}, []), ({}, ["env_id=X"])]:
        layer_config(DQNConfig(), file, overrides, {}, before_set, lambda v, s: seen.append(v))
    assert seen == [{"env_id": "evil:Env", "gamma": 0.9}, {"gamma": 0.9}, {"gamma": 0.9}]


def test_a_module_env_id_in_a_config_file_needs_trust_code(tmp_path, capsys):
    file = tmp_path / "c.toml"
    file.write_text('env_id = "evil_module:Env"\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(file), "--run-dir", str(run)]) == 1
    line = one_error_line(capsys)
    assert "evil_module" in line and "--trust-code" in line
    assert not run.exists()
    # a flag or --set that replaces the env_id means the file's module is never imported
    for replaced in (["--env", "CartPole-v1"], ["--set", "env_id=CartPole-v1"]):
        argv = ["train", "--config", str(file), *replaced, "--set", "total_steps=-5"]
        assert main([*argv, "--run-dir", str(run)]) == 1
        assert "total_steps" in one_error_line(capsys)


def test_train_layers_file_then_set_then_flags(tmp_path, capsys):
    # every layer sets invalid values: the one error line shows which layer won each field
    file = tmp_path / "c.toml"
    file.write_text("gamma = 2.0\ntotal_steps = -1\nbuffer_size = 5\nbatch_size = 10\n")
    run = tmp_path / "run"
    argv = ["train", "--config", str(file), "--set", "gamma=3", "--set", "total_steps=-2"]
    assert main([*argv, "--total-steps", "-3", "--run-dir", str(run)]) == 1
    line = one_error_line(capsys)
    assert "batch_size (10) must not exceed buffer_size (5)" in line  # only the file sets them
    assert "gamma must be in [0, 1], got 3.0" in line  # --set beats the file
    assert "total_steps must be >= 0, got -3" in line  # the flag beats --set
    assert "2.0" not in line and "-1" not in line and "-2" not in line
    assert not run.exists()


# ------------------------------------------------------------------------- --threads
@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "command", ["train", "dialogue train", "lm train", "lm eval RUN", "lm generate RUN --prompt a"]
)
@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one_is_one_line(command, threads, tmp_path, capsys, keep_threads):
    needs_lm(command.split()[0])
    run = tmp_path / "run"
    argv = [*command.replace("RUN", str(run)).split(), "--threads", threads]
    assert main(argv) == 1
    assert one_error_line(capsys) == f"dqnlm: error: --threads must be >= 1, got {threads}"
    assert not run.exists()


def test_threads_are_applied(tmp_path, capsys, keep_threads):
    torch.set_num_threads(1)
    assert main(["train", "--resume", str(tmp_path), "--threads", "2"]) == 1
    assert "no checkpoint found" in one_error_line(capsys)
    assert torch.get_num_threads() == 2
