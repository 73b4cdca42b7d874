"""The run lifecycle every trainer shares (dqnlm.run), tested once for all three trainers:
SIGKILL right after the first checkpoint, ``load`` and finish; the result must equal an
uninterrupted run where the trainer promises exact resumes (dialogue, LM), and for the
control DQN (whose environments restart their episodes) reach the full budget with whole
outputs. Also: a failed start leaves nothing behind, and divergence stops every trainer."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lm_helpers import save_tiny_lm, toy_config, write_prompts

from dqnlm.errors import TrainingDiverged
from dqnlm.metrics import read_metrics

TESTS = Path(__file__).parent

# Runs in a child process: train, and after the first checkpoint say so and wait to be killed.
CHILD = """
import importlib, json, sys, time
import torch
torch.set_num_threads(1)
module, name, config_module, config_name, values, run_dir, marker = json.loads(sys.argv[1])
cls = getattr(importlib.import_module(module), name)
config_cls = getattr(importlib.import_module(config_module), config_name)
values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
trainer = cls(config_cls(**values), run_dir)
save = trainer.save_checkpoint

def save_then_wait():
    path = save()
    open(marker, "w").write(str(path))
    time.sleep(120)  # the parent kills us here: a SIGKILL right after a checkpoint
    return path

trainer.save_checkpoint = save_then_wait
trainer.learn(progress=False, tensorboard=False)
"""


def control(tmp_path: Path):
    from dqnlm.control.config import DQNConfig
    from dqnlm.control.dqn import DQN

    config = DQNConfig(
        total_steps=1200, learning_starts=200, batch_size=16, hidden_sizes=(16,),
        target_update_period=50, eval_interval=400, eval_episodes=2, final_eval_episodes=2,
        log_interval=200, checkpoint_interval=400, device="cpu", keep_best=True,
    )  # fmt: skip
    return DQN, config, False


def dialogue(tmp_path: Path):
    from dqnlm.dialogue.config import DialogueDQNConfig
    from dqnlm.dialogue.dqn import DialogueDQN

    config = DialogueDQNConfig(
        warm_start_dialogues=20, epochs=4, dialogues_per_epoch=10, eval_episodes=10,
        eval_interval=1, hidden_sizes=(32,), batch_size=16, test_episodes=5,
        checkpoint_interval=2, target_update_period=25,
    )  # fmt: skip
    return DialogueDQN, config, True


def lm(tmp_path: Path):
    from dqnlm.lm.trainer import LMTrainer

    model = save_tiny_lm(tmp_path / "tiny")
    prompts = write_prompts(tmp_path / "prompts.jsonl", ["a b", "c d", "e f", "b c"])
    config = toy_config(
        model, prompts, rounds=4, checkpoint_every=2, prompts_per_round=8,
        eval_prompts=4, eval_set=str(prompts),
    )  # fmt: skip
    return LMTrainer, config, True


TRAINERS = {"control": control, "dialogue": dialogue, "lm": lm}


def trained(trainer) -> dict[str, torch.Tensor]:
    """The weights training changes, and the lagged target."""
    tensors, _, _ = trainer.state()
    return {k: v for k, v in tensors.items() if k.split(".")[0] in ("q_net", "model", "target")}


def kill_after_first_checkpoint(cls, config, run_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "saved"
    args = [
        cls.__module__, cls.__name__, type(config).__module__, type(config).__name__,
        dataclasses.asdict(config), str(run_dir), str(marker),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        proc.kill()
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not (run_dir / "eval.json").exists()


@pytest.mark.parametrize("kind", sorted(TRAINERS))
def test_sigkill_then_load_finishes_the_run(kind, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    cls, config, exact = TRAINERS[kind](tmp_path)
    run_dir = tmp_path / "run"
    kill_after_first_checkpoint(cls, config, run_dir, tmp_path)

    resumed = cls.load(run_dir, trust_code=True)  # the LM's reward is a test module
    assert resumed.step > 0 and resumed.last_checkpoint is not None
    result = resumed.learn(progress=False, tensorboard=False)
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(json.dumps(result))
    steps = [int(r["step"]) for r in read_metrics(run_dir / "metrics.csv")]
    assert steps == sorted(steps)  # rows logged after the checkpoint were not repeated

    whole = cls(config, tmp_path / "whole")
    expected = whole.learn(progress=False, tensorboard=False)
    assert resumed.step == whole.step
    if exact:
        a, b = trained(resumed), trained(whole)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert _no_time(run_dir) == _no_time(whole.run_dir)
        assert result == expected or _same_but_time(result, expected)


def _no_time(run_dir: Path) -> list[dict]:
    rows = read_metrics(run_dir / "metrics.csv")
    return [{k: v for k, v in row.items() if k not in ("time_s", "tokens_per_s")} for row in rows]


def _same_but_time(a: dict, b: dict) -> bool:
    drop = ("train_seconds", "tokens_per_s", "peak_memory_mb", "peak_gpu_memory_mb")
    return {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }


@pytest.mark.parametrize("kind", sorted(TRAINERS))
def test_a_failed_start_leaves_no_run_directory(kind, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    cls, config, _ = TRAINERS[kind](tmp_path)
    trainer = cls(config, tmp_path / "run")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(trainer, "state", broken)  # the first checkpoint fails
    with pytest.raises(RuntimeError, match="boom"):
        trainer.learn(progress=False, tensorboard=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", sorted(TRAINERS))
def test_divergence_stops_every_trainer_naming_where(kind, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    cls, config, _ = TRAINERS[kind](tmp_path)
    trainer = cls(config, tmp_path / "run")
    update = trainer._update

    def poisoned():
        loss, *rest = update()
        return (loss * float("nan"), *rest)

    monkeypatch.setattr(trainer, "_update", poisoned)
    with pytest.raises(TrainingDiverged, match="training diverged at .*=nan"):
        trainer.learn(progress=False, tensorboard=False)
    assert not (tmp_path / "run" / "eval.json").exists()


def test_a_checkpoint_from_before_the_harness_is_refused_in_one_line(tmp_path, monkeypatch):
    from dqnlm.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    monkeypatch.syspath_prepend(str(TESTS))
    cls, config, _ = TRAINERS["dialogue"](tmp_path)
    run = tmp_path / "run"
    cls(config, run).learn(progress=False, tensorboard=False)
    ckpt = load_checkpoint(run / "checkpoints")
    old = {("dialogues" if k == "step" else k): v for k, v in ckpt.meta.items()}
    save_checkpoint(run / "checkpoints", 10**6, ckpt.tensors, old, ckpt.arrays)
    with pytest.raises(CheckpointError, match="older than its run harness") as error:
        cls.load(run)
    assert "\n" not in str(error.value)
