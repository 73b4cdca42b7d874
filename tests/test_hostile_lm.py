"""Hostile input to `dqnlm lm ...`: each refused in one line, exit code 1, no traceback,
nothing half-written, and nothing imported or unpickled that the user did not ask for."""

from __future__ import annotations

import sys
import time

import pytest
import torch

pytest.importorskip("transformers")

from lm_helpers import save_tiny_lm, tiny_lm, toy_config, write_prompts  # noqa: E402

from dqnlm.cli import main  # noqa: E402
from dqnlm.lm.trainer import LMTrainer  # noqa: E402

EVIL = """
from pathlib import Path
Path(__file__).with_name("imported.txt").write_text("ran")

def score(texts):
    return [0.0 for _ in texts]
"""

EXITS = """
import sys

def score(texts):
    sys.exit(0)

def boom(texts):
    raise ValueError("no such\\nthing")
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return {
        "root": root,
        "model": save_tiny_lm(root / "model"),
        "prompts": write_prompts(root / "prompts.jsonl", ["a b", "c d e", "f"]),
    }


def train_args(files, run_dir, *extra: str) -> list[str]:
    """A `dqnlm lm train` command line that succeeds in about a second without ``extra``."""
    sets = {
        "prompts": files["prompts"],
        "device": "cpu",
        "prompt_tokens": 4,
        "new_tokens": 6,
        "prompts_per_round": 4,
        "batch_size": 4,
        "eval_prompts": 0,
    }
    return [
        *("lm", "train", "--model", str(files["model"]), "--reward", "keyword:x"),
        *(arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")),
        *("--rounds", "2", "--run-dir", str(run_dir), "--no-progress", "--no-tensorboard"),
        *extra,
    ]


def one_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit code 1 and a single error line; return that line."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dqnlm: error: ") and "Traceback" not in err
    return lines[0]


def use_args(command: str, run, tmp_path) -> list[str]:
    """`dqnlm lm eval|generate|explain|train --resume` on ``run``."""
    return {
        "eval": ["lm", "eval", str(run), "--n", "2", "--prompts", "general"],
        "generate": ["lm", "generate", str(run), "--prompt", "a b", "--n", "2"],
        "explain": [
            "lm",
            "explain",
            str(run),
            "--prompt",
            "a b",
            "--out",
            str(tmp_path / "x.html"),
        ],
        "resume": ["lm", "train", "--resume", str(run), "--rounds", "3", "--no-progress"],
    }[command]


# ------------------------------------------------------------ D1: code and paths from a run
@pytest.fixture
def evil_run(files, tmp_path, monkeypatch):
    """A run whose reward is ``evilmod:score``, with evilmod.py lying inside the run folder
    (so ``python -m dqnlm`` run from there would find it), and its model and prompts inside."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "evilmod.py").write_text(EVIL)
    model = save_tiny_lm(run / "base")
    prompts = write_prompts(run / "prompts.jsonl", ["a b"])
    monkeypatch.syspath_prepend(str(run))
    config = toy_config(model, prompts, reward="evilmod:score", prompt_tokens=4, new_tokens=6)
    LMTrainer(config, run, progress=False).save_checkpoint()
    sys.modules.pop("evilmod")
    (run / "imported.txt").unlink()
    monkeypatch.chdir(run)
    yield run
    sys.modules.pop("evilmod", None)


@pytest.mark.parametrize("command", ["eval", "generate", "explain", "resume"])
def test_a_reward_module_named_by_a_run_is_not_imported_without_trust_code(
    evil_run, capsys, tmp_path, command
):
    argv = use_args(command, evil_run, tmp_path)
    line = one_error(capsys, argv)
    assert "reward = 'evilmod:score'" in line and "module 'evilmod'" in line
    assert "--trust-code" in line
    assert not (evil_run / "imported.txt").exists() and "evilmod" not in sys.modules
    assert main([*argv, "--trust-code"]) == 0  # the user vouches for it: it runs
    assert (evil_run / "imported.txt").exists()


@pytest.fixture(scope="module")
def outside_run(files):
    """A normal run whose model and prompts live outside the run folder."""
    run = files["root"] / "outside"
    assert main(train_args(files, run)) == 0
    return run


@pytest.mark.parametrize("command", ["eval", "generate", "explain", "resume"])
def test_paths_outside_the_run_need_trust_code(outside_run, files, capsys, tmp_path, command):
    line = one_error(capsys, use_args(command, outside_run, tmp_path))
    assert f"model = '{files['model']}'" in line and "outside its folder" in line
    assert not (tmp_path / "x.html").exists()
    if command != "resume":  # (resuming would change the shared run)
        assert main([*use_args(command, outside_run, tmp_path), "--trust-code"]) == 0


def test_a_config_file_may_not_import_a_reward_module_without_trust_code(
    files, tmp_path, capsys, monkeypatch
):
    (tmp_path / "evilmod2.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "handed.toml"
    toml.write_text('reward = "evilmod2:score"\n')
    run = tmp_path / "run"
    argv = [a for a in train_args(files, run, "--config", str(toml)) if a != "keyword:x"]
    argv.remove("--reward")
    line = one_error(capsys, argv)
    assert f"{toml} sets reward = 'evilmod2:score'" in line and "--trust-code" in line
    assert not (tmp_path / "imported.txt").exists() and not run.exists()
    try:
        assert main([*argv, "--trust-code"]) == 0
        assert (tmp_path / "imported.txt").exists()
    finally:
        sys.modules.pop("evilmod2", None)


def test_a_module_reward_on_the_command_line_is_the_users_own_choice(files, tmp_path, capsys):
    run = tmp_path / "run"
    argv = train_args(files, run, "--reward", "python:lm_helpers:share_of_x")
    assert main(argv) == 0
    assert (run / "checkpoints" / "latest.json").is_file()


# ----------------------------------------------------------------------- D2: pickled weights
@pytest.fixture(scope="module")
def pickled_model(files):
    """A model folder holding only ``pytorch_model.bin``: loading it unpickles."""
    folder = files["root"] / "pickled"
    model, tokenizer = tiny_lm()
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickled_weights_are_refused_without_trust_code(files, pickled_model, tmp_path, capsys):
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, "--model", str(pickled_model)))
    assert str(pickled_model) in line and "pytorch_model.bin" in line
    assert "--trust-code" in line and not run.exists()
    assert main(train_args(files, run, "--model", str(pickled_model), "--trust-code")) == 0


def test_a_classifier_reward_with_pickled_weights_is_refused(pickled_model):
    from dqnlm.errors import DQNLMError
    from dqnlm.lm.rewards import parse_reward

    with pytest.raises(DQNLMError, match="cannot load a text classifier") as error:
        parse_reward(f"classifier:{pickled_model}")
    assert "safetensors" in str(error.value) and "\n" not in str(error.value)


# -------------------------------------------------------------------- D6: a run that blows up
def test_a_learning_rate_of_1e30_ends_in_one_training_diverged_line(files, tmp_path, capsys):
    run = tmp_path / "run"
    # one TD update per round: its loss is finite, but the weights it leaves overflow
    sets = ("learning_rate=1e30", "checkpoint_every=1", "updates_per_round=1")
    line = one_error(capsys, train_args(files, run, *(a for s in sets for a in ("--set", s))))
    assert "training diverged in round 1" in line and "logits are not finite" in line
    assert not run.exists()  # no checkpoint was ever good: nothing is left behind


def test_a_checkpoint_whose_logits_overflow_fails_generate_in_one_line(files, tmp_path, capsys):
    run = tmp_path / "run"
    config = toy_config(files["model"], files["prompts"], reward="keyword:x", prompt_tokens=4)
    trainer = LMTrainer(config, run, progress=False)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.mul_(1e30)  # finite weights, infinite logits
    trainer.save_checkpoint()
    argv = ["lm", "generate", str(run), "--prompt", "a b", "--trust-code"]
    assert "logits are NaN or infinite" in one_error(capsys, argv)


def test_a_checkpoint_with_nan_weights_is_refused_on_load(files, tmp_path, capsys):
    run = tmp_path / "run"
    config = toy_config(files["model"], files["prompts"], reward="keyword:x", prompt_tokens=4)
    trainer = LMTrainer(config, run, progress=False)
    trainer.save_checkpoint()
    trainer.finite = lambda: True  # as a stranger's tool would write it
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    trainer.save_checkpoint()
    argv = ["lm", "generate", str(run), "--prompt", "a b", "--trust-code"]
    assert "non-finite (NaN or infinite) weights" in one_error(capsys, argv)


# ------------------------------------------------------------- D10/D11: models, rewards, seeds
def test_a_truncated_safetensors_model_is_one_line(files, tmp_path, capsys):
    folder = save_tiny_lm(tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    run = tmp_path / "run"
    capsys.readouterr()
    line = one_error(capsys, train_args(files, run, "--model", str(folder)))
    assert f"cannot load a causal LM from {folder}" in line and not run.exists()


def test_an_empty_model_folder_says_what_is_missing(files, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error(capsys, train_args(files, tmp_path / "run", "--model", str(empty)))
    assert f"{empty} is not a Hugging Face model directory: it has no config.json" in line


@pytest.mark.parametrize("offline", ["env", "unreachable"])
def test_an_unknown_hub_name_fails_fast_when_offline(files, tmp_path, capsys, monkeypatch, offline):
    import socket

    if offline == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # no flag set, but no network either: the probe must fail fast, not retry

        def unreachable(*args, **kwargs):
            raise OSError("network is unreachable")

        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(socket, "create_connection", unreachable)
    started = time.perf_counter()
    argv = train_args(files, tmp_path / "run", "--model", "nobody-xyz/not-a-model")
    line = one_error(capsys, argv)
    assert time.perf_counter() - started < 15
    assert "'nobody-xyz/not-a-model' is not a local directory" in line


@pytest.fixture
def exits_module(tmp_path, monkeypatch):
    (tmp_path / "dqnlm_exits_mod.py").write_text(EXITS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "dqnlm_exits_mod"
    sys.modules.pop("dqnlm_exits_mod", None)


@pytest.mark.parametrize(
    ("function", "needle"),
    [("score", "raised SystemExit: 0"), ("boom", "raised ValueError: no such thing")],
)
def test_a_reward_that_exits_or_raises_is_one_error_line(
    files, tmp_path, capsys, exits_module, function, needle
):
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, "--reward", f"{exits_module}:{function}"))
    assert f"reward '{exits_module}:{function}' {needle}" in line and not run.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**30)])
def test_bad_seeds_are_one_line_in_every_lm_command(files, outside_run, tmp_path, capsys, seed):
    line = one_error(capsys, train_args(files, tmp_path / "run", "--seed", seed))
    assert f"seed must be an integer in [0, 4294967295], got {seed}" in line
    assert not (tmp_path / "run").exists()
    for argv in (
        ["lm", "generate", str(outside_run), "--prompt", "a", "--seed", seed],
        ["lm", "explain", str(outside_run), "--prompt", "a", "--out", str(tmp_path / "x.html")],
        ["lm", "pretrain", "--out", str(tmp_path / "m"), "--steps", "1", "--seed", seed],
    ):
        if "explain" in argv:
            argv += ["--seed", seed]
        assert f"got {seed}" in one_error(capsys, argv)
    assert not (tmp_path / "m").exists() and not (tmp_path / "x.html").exists()


# --------------------------------------------------------------------- D8: resource blow-ups
@pytest.mark.parametrize(
    ("key", "value"),
    [("prompts_per_round", 10**8), ("batch_size", 10**8), ("replay_capacity", 10**11)],
)
def test_sizes_that_cannot_fit_are_refused_with_the_estimate(files, tmp_path, capsys, key, value):
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, "--set", f"{key}={value}"))
    assert f"{key}={value}" in line and "needs about" in line and "available" in line
    assert not run.exists()


def test_generate_n_has_a_cap(outside_run, capsys):
    argv = ["lm", "generate", str(outside_run), "--prompt", "a", "--n", str(10**8)]
    assert "--n must be in [1, 10000], got 100000000" in one_error(capsys, argv)


# --------------------------------------------------------------- Ctrl-C / SIGTERM in training
def test_an_interrupt_saves_a_checkpoint_that_resumes(files, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    calls = {"n": 0}
    update = LMTrainer._update

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 7:  # round 2, third TD update
            raise KeyboardInterrupt
        return update(self)

    monkeypatch.setattr(LMTrainer, "_update", interrupted)
    argv = train_args(files, run, "--set", "checkpoint_every=100", "--rounds", "3")
    assert main(argv) == 130
    assert "interrupted: saved" in capsys.readouterr().err
    monkeypatch.setattr(LMTrainer, "_update", update)
    saved = LMTrainer.load(run, trust_code=True)
    assert saved.round == 1 and saved.num_updates == 6  # the updates made so far
    resume = ["lm", "train", "--resume", str(run), "--no-progress", "--trust-code"]
    assert main(resume) == 0
    assert "resuming" in capsys.readouterr().out
    assert LMTrainer.load(run, trust_code=True).round == 3


def test_a_model_folder_that_is_not_a_causal_lm_is_one_line(files, tmp_path, capsys):
    from transformers import ViTConfig, ViTModel

    folder = tmp_path / "vit"
    config = ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=8, image_size=4, patch_size=2)  # fmt: skip
    ViTModel(config).save_pretrained(folder)
    save_tiny_lm(tmp_path / "tok")  # a tokenizer, so the weights are what fails
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tmp_path / "tok" / name).read_bytes())
    run = tmp_path / "run"
    capsys.readouterr()  # the saves' own progress bars
    line = one_error(capsys, train_args(files, run, "--model", str(folder)))
    assert f"cannot load a causal LM from {folder}" in line and "ViTConfig" in line
    assert not run.exists()


def test_a_truncated_gguf_file_is_one_line(files, tmp_path, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 20)
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, "--model", str(gguf)))
    assert str(gguf) in line and not run.exists()


def test_a_chat_template_that_fails_is_one_line_naming_the_switch(files, tmp_path, capsys):
    folder = save_tiny_lm(tmp_path / "model")
    config_file = folder / "tokenizer_config.json"
    import json

    values = json.loads(config_file.read_text())
    values["chat_template"] = "{{ raise_exception('no user turns here') }}"
    config_file.write_text(json.dumps(values))
    run = tmp_path / "run"
    capsys.readouterr()
    line = one_error(capsys, train_args(files, run, "--model", str(folder)))
    assert "chat template failed" in line and "chat_template=false" in line
    assert "no user turns here" in line and not run.exists()
    capsys.readouterr()
    assert main(train_args(files, run, "--model", str(folder), "--set", "chat_template=false")) == 0
