"""DQN training: determinism, checkpoints and resumption, divergence, and feature variants."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dqnlm.cli import main
from dqnlm.control import DQN
from dqnlm.core.checkpoint import load_checkpoint
from dqnlm.core.replay import PrioritizedReplayBuffer
from dqnlm.errors import TrainingDiverged
from dqnlm.metrics import read_metrics


def weights(agent: DQN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in agent.q_net.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def finite(agent: DQN) -> bool:
    return all(torch.isfinite(v).all() for v in agent.q_net.state_dict().values())


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_bit_identical_weights(tiny):
    config = tiny(total_steps=800)
    first, second = DQN(config), DQN(config)
    result = first.learn(progress=False, tensorboard=False)
    assert second.learn(progress=False, tensorboard=False) == result
    assert first.num_updates == second.num_updates > 0
    assert same(weights(first), weights(second))

    other = DQN(tiny(total_steps=800, seed=1))
    other.learn(progress=False, tensorboard=False)
    assert not same(weights(first), weights(other))


# ----------------------------------------------------------------------------- resumption
def test_load_restores_the_final_checkpoint(tiny, tmp_path):
    agent = DQN(tiny(checkpoint_interval=200), tmp_path / "run")
    agent.learn(progress=False, tensorboard=False)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*.json"))
    assert names == ["step-0000000400.json", "step-0000000600.json"]  # 200 was pruned

    loaded = DQN.load(tmp_path / "run")
    assert loaded.global_step == 600
    assert loaded.num_updates == agent.num_updates
    assert loaded.config == agent.config
    assert same(weights(loaded), weights(agent))
    assert same(loaded.target.state_dict(), agent.target.state_dict())
    assert loaded.rng.bit_generator.state == agent.rng.bit_generator.state
    # the optimizer moments came back too
    for p, q in zip(agent.q_net.parameters(), loaded.q_net.parameters()):
        a, b = agent.optimizer.state[p], loaded.optimizer.state[q]
        assert torch.equal(a["exp_avg"], b["exp_avg"])
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
        assert torch.equal(a["step"], b["step"])


def test_resume_with_replay_continues_to_the_new_total(tiny, tmp_path):
    run = tmp_path / "run"
    DQN(tiny(total_steps=400, save_replay=True, prioritized=True), run).learn(
        progress=False, tensorboard=False
    )
    loaded = DQN.load(run)
    assert len(loaded.replay) == 400
    assert isinstance(loaded.replay, PrioritizedReplayBuffer)
    assert loaded.replay.tree.total > 0
    assert main(["train", "--resume", str(run), "--total-steps", "600", "--no-progress"]) == 0
    final = DQN.load(run)
    assert final.global_step == 600 and final.config.total_steps == 600
    assert final.num_updates > loaded.num_updates
    steps = [int(r["step"]) for r in read_metrics(run / "metrics.csv")]
    assert steps == sorted(steps) and steps[-1] == 600


def test_resumed_exploration_follows_the_recorded_config(tiny, tmp_path):
    run = tmp_path / "run"
    DQN(tiny(total_steps=400, exploration_fraction=1.0), run).learn(
        progress=False, tensorboard=False
    )
    assert main(["train", "--resume", str(run), "--total-steps", "800", "--no-progress"]) == 0
    recorded = DQN.load(run)  # built from the config on disk: total_steps = 800
    assert recorded.config.total_steps == 800
    row = next(r for r in read_metrics(run / "metrics.csv") if r["step"] == "600")
    # the logged epsilon is the one used for the step from 599 to 600
    assert float(row["epsilon"]) == pytest.approx(recorded.epsilon(599), rel=1e-4)


TRAIN = [
    "--env",
    "CartPole-v1",
    "--set",
    "learning_starts=100",
    "--set",
    "batch_size=16",
    "--set",
    "hidden_sizes=[16]",
    "--set",
    "log_interval=100",
    "--set",
    "eval_interval=0",
    "--set",
    "final_eval_episodes=2",
    "--set",
    "checkpoint_interval=500",
    "--set",
    "seed=3",
]


def test_resume_after_sigkill(tmp_path):
    run = tmp_path / "run"
    latest = run / "checkpoints" / "latest.json"
    metrics = run / "metrics.csv"
    cmd = [sys.executable, "-m", "dqnlm", "train", *TRAIN, "--total-steps", "20000"]
    proc = subprocess.Popen(
        [*cmd, "--run-dir", str(run), "--no-progress", "--no-tensorboard"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (latest.exists() and len(metrics.read_text().splitlines()) > 4):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 30 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()

    killed = DQN.load(run)  # whatever instant the kill hit, the last checkpoint is whole
    assert killed.global_step % 500 == 0 and 500 <= killed.global_step < 3000, killed.global_step
    assert finite(killed)

    result = subprocess.run(
        [sys.executable, "-m", "dqnlm", "train", "--resume", str(run), "--total-steps", "3000"]
        + ["--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming {run} at step {killed.global_step} of 3000" in result.stdout
    ckpt = load_checkpoint(run / "checkpoints")
    assert ckpt.meta["step"] == 3000
    assert ckpt.meta["config"]["total_steps"] == 3000
    # rows logged after the checkpoint by the killed process were dropped, not duplicated
    steps = [int(r["step"]) for r in read_metrics(metrics) if r["episode_return"]]
    assert steps == sorted(set(steps)) and steps[-1] == 3000


def test_stop_at_return_ends_training_at_the_first_good_evaluation(tiny, tmp_path):
    run = tmp_path / "run"
    agent = DQN(tiny(total_steps=2000, eval_interval=200, stop_at_return=0.0), run)
    agent.learn(progress=False, tensorboard=False)
    assert agent.stopped_early and agent.global_step == 200
    final = json.loads((run / "eval.json").read_text())
    assert final["step"] == 200 and final["stopped_early"] is True
    loaded = DQN.load(run)
    assert loaded.global_step == 200 and loaded.stopped_early


# ----------------------------------------------------------------------------- divergence
def poison_update(monkeypatch, when, after: bool = False) -> None:
    """Fill the Q-network's weights with NaN around the update where ``when(agent)`` holds."""
    original = DQN._update

    def update(self):
        if not after and when(self):
            with torch.no_grad():
                for p in self.q_net.parameters():
                    p.fill_(float("nan"))
        out = original(self)
        if after and when(self):
            with torch.no_grad():
                for p in self.q_net.parameters():
                    p.fill_(float("nan"))
        return out

    monkeypatch.setattr(DQN, "_update", update)


def test_nan_raises_training_diverged_and_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch):
    run = tmp_path / "run"
    agent = DQN(tiny(checkpoint_interval=200, train_freq=1), run)
    poison_update(monkeypatch, lambda a: a.last_checkpoint is not None and a.global_step >= 250)
    with pytest.raises(TrainingDiverged) as info:
        agent.learn(progress=False, tensorboard=False)
    message = str(info.value)
    assert "env step 250" in message
    assert "step-0000000200.json" in message  # names the last good checkpoint

    monkeypatch.undo()
    restored = DQN.load(run)
    assert restored.global_step == 200
    assert finite(restored)
    assert torch.isfinite(restored.q_net(torch.zeros(1, 4))).all()


def test_checkpoint_after_a_bad_step_is_not_reported_good(tiny, tmp_path, monkeypatch):
    run = tmp_path / "run"
    agent = DQN(tiny(checkpoint_interval=200, train_freq=1), run)
    # the update at env step 400 returns a finite loss but leaves NaN weights behind,
    # just before the checkpoint at 400: that checkpoint must be refused, 200 kept
    poison_update(monkeypatch, lambda a: a.global_step == 400, after=True)
    with pytest.raises(TrainingDiverged) as info:
        agent.learn(progress=False, tensorboard=False)
    monkeypatch.undo()
    good = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    assert good == "step-0000000200.json"
    assert good in str(info.value) and "400" in str(info.value)
    assert finite(DQN.load(run))


# ----------------------------------------------------------------------------- variants
def check_n_step(agent: DQN) -> None:
    discounts = np.unique(agent.replay.discounts[: len(agent.replay)])
    assert np.isclose(discounts, agent.config.gamma**3).any()  # full windows
    allowed = np.array([agent.config.gamma**k for k in (1, 2, 3)])  # truncated/terminated tails
    assert all(np.isclose(d, allowed).any() for d in discounts)


def check_prioritized(agent: DQN) -> None:
    assert isinstance(agent.replay, PrioritizedReplayBuffer)
    leaves = agent.replay.tree[np.arange(len(agent.replay))]
    assert np.all(leaves > 0) and len(np.unique(leaves)) > 10  # TD errors changed them


def check_polyak(agent: DQN) -> None:
    target = agent.target.module
    assert target is not agent.q_net
    assert not torch.equal(target.head.weight, agent.q_net.head.weight)
    assert all(torch.isfinite(p).all() for p in target.parameters())


VARIANTS = {
    "n_step": ({"n_step": 3}, check_n_step),
    "prioritized": ({"prioritized": True}, check_prioritized),
    "dueling": ({"dueling": True}, lambda a: a.q_net.value is not None),
    "layer_norm": (
        {"layer_norm": True},
        lambda a: any(isinstance(m, torch.nn.LayerNorm) for m in a.q_net.modules()),
    ),
    "polyak": ({"target_update": "polyak", "tau": 0.05, "target_update_period": 1}, check_polyak),
    "none": ({"target_update": "none"}, lambda a: a.target.module is a.q_net),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_to_finite_weights(tiny, name):
    overrides, check = VARIANTS[name]
    agent = DQN(tiny(total_steps=400, **overrides))
    result = agent.learn(progress=False, tensorboard=False)
    # one update every 4 steps from step 100 (learning_starts, counted in env steps, so
    # every variant and every seed in lockstep starts at the same step) to 400
    assert agent.global_step == 400
    assert agent.num_updates == 76
    assert finite(agent)
    # the final evaluation is the mean of its episodes, on the run's own test seeds
    assert result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    assert agent.evaluate()["returns"] == result["returns"]
    assert check(agent) is not False


# ------------------------------------------------------------------ counters and n_envs
@pytest.mark.parametrize("n_envs", [1, 4])
def test_update_and_target_schedule_do_not_depend_on_n_envs(tiny, tmp_path, n_envs):
    """Env-step intervals count steps summed over envs; the target counts gradient updates.

    Unlike SB3's old bug (interval divided by n_envs on every load), nothing is rescaled
    on creation or on load.
    """
    config = tiny(n_envs=n_envs, total_steps=800, train_freq=4, target_update_period=50)
    agent = DQN(config, tmp_path / "run")
    copies = []
    update = agent.target.update
    agent.target.update = lambda n: copies.append(n) if update(n) else None
    agent.learn(progress=False, tensorboard=False)
    # one round per 4 env steps from the step the buffer holds learning_starts=100 items
    assert agent.num_updates == len(range(100, 801, 4))
    assert copies == list(range(50, agent.num_updates + 1, 50))
    loaded = DQN.load(tmp_path / "run")
    assert (loaded.target.period, loaded.config.train_freq) == (50, 4)
    assert loaded.num_updates == agent.num_updates and loaded.global_step == 800


# ------------------------------------------------------------------- overestimation measure
def test_q_overestimation_is_start_q_minus_the_discounted_return(tiny, tmp_path):
    """A Q-network that says 5 everywhere overshoots each CartPole episode of T steps
    (reward 1 per step) by 5 - (1 - gamma^T) / (1 - gamma)."""
    agent = DQN(tiny(total_steps=500, gamma=0.9))
    with torch.no_grad():
        agent.q_net.head.weight.zero_()
        agent.q_net.head.bias.fill_(5.0)
    result = agent.evaluate(episodes=3, seed=0)
    lengths = np.array(result["returns"])  # CartPole pays 1 per step
    discounted = (1 - 0.9**lengths) / (1 - 0.9)
    assert result["q_overestimation"] == pytest.approx(5.0 - discounted.mean(), rel=1e-6)
    agent = DQN(tiny(total_steps=600, eval_interval=300), tmp_path / "run")
    agent.learn(progress=False, tensorboard=False)
    final = agent.evaluate()
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.csv") if r["eval_return"]]
    assert [int(r["step"]) for r in rows] == [300, 600]  # one periodic evaluation, then the final
    # the logged numbers are the evaluations' own, not placeholders
    assert float(rows[-1]["q_overestimation"]) == pytest.approx(final["q_overestimation"])
    assert float(rows[-1]["eval_return"]) == pytest.approx(final["mean_return"])
    assert np.isfinite(float(rows[0]["q_overestimation"]))
