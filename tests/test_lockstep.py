"""Many seeds in lockstep (control.lockstep): each seed is the run it would be alone."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from dqnlm.cli import main
from dqnlm.control import DQN
from dqnlm.control.lockstep import Lockstep, lockstep, seed_dir
from dqnlm.core.networks import QNetwork, build_q_network
from dqnlm.core.stacked import StackedModules, clip_grad_norm_per_member
from dqnlm.errors import ConfigError, DQNLMError
from dqnlm.seeding import parse_seeds

SEEDS = [3, 7, 11]


def _lockstep_config(tiny, **overrides):
    return tiny(
        total_steps=400, n_envs=2, learning_starts=64, batch_size=16, hidden_sizes=(16, 16),
        layer_norm=True, n_step=3, train_freq=2, target_update_period=10, max_grad_norm=0.5,
        anneal_lr=True, **overrides,
    )  # fmt: skip


def _separate(config, seeds):
    agents = [DQN(dataclasses.replace(config, seed=s)) for s in seeds]
    for agent in agents:
        agent.learn(progress=False, tensorboard=False)
    return agents


def _assert_same_run(ours: DQN, alone: DQN, atol: float = 1e-5) -> None:
    assert (ours.global_step, ours.num_updates) == (alone.global_step, alone.num_updates)
    # the same actions, so the same experience, bit for bit
    for name in ("obs", "actions", "rewards", "next_obs", "terminated", "discounts"):
        np.testing.assert_array_equal(getattr(ours.replay, name), getattr(alone.replay, name))
    for (name, a), b in zip(ours.q_net.state_dict().items(), alone.q_net.state_dict().values()):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-4, msg=name)
    for a, b in zip(ours.target.state_dict().values(), alone.target.state_dict().values()):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)
    for p_ours, p_alone in zip(ours._params, alone._params):
        a, b = ours.optimizer.state[p_ours], alone.optimizer.state[p_alone]
        assert float(a["step"]) == float(b["step"])
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], atol=atol, rtol=1e-4)


@pytest.mark.parametrize("target_update", ["hard", "polyak", "none"])
def test_lockstep_matches_separate_runs(tiny, target_update):
    config = _lockstep_config(tiny, target_update=target_update, tau=0.5)
    ours = lockstep(config, SEEDS, None)
    ours.learn(progress=False, tensorboard=False)
    assert ours.agents[0].num_updates > 100  # many updates, each checked below
    for agent, alone in zip(ours.agents, _separate(config, SEEDS)):
        _assert_same_run(agent, alone)


def test_seeds_that_stop_early_leave_and_the_others_go_on(tiny):
    # a low early-stop mark that some seeds reach at the first evaluation and others later
    config = _lockstep_config(tiny, eval_interval=100, eval_episodes=2, stop_at_return=25.0)
    seeds = [0, 1, 2, 3, 4, 5]
    ours = lockstep(config, seeds, None)
    results = ours.learn(progress=False, tensorboard=False)
    alone = _separate(config, seeds)
    steps = [r["step"] for r in results]
    assert len(set(steps)) > 1, steps  # not all stopped together: the stack shrank
    for agent, other, result in zip(ours.agents, alone, results):
        _assert_same_run(agent, other)
        assert result["stopped_early"] == other.stopped_early


def test_lockstep_is_bit_identical_on_rerun(tiny):
    config = _lockstep_config(tiny)
    runs = [lockstep(config, SEEDS, None) for _ in range(2)]
    for run in runs:
        run.learn(progress=False, tensorboard=False)
    for a, b in zip(*(r.agents for r in runs)):
        for x, y in zip(a.q_net.state_dict().values(), b.q_net.state_dict().values()):
            assert torch.equal(x, y)


def test_minatar_lockstep_matches_separate_runs(tiny):
    pytest.importorskip("minatar")
    config = tiny(
        env_id="MinAtar/Breakout-v1", total_steps=200, learning_starts=64, batch_size=8,
        n_step=2, train_freq=2, target_update_period=10, buffer_size=500,
    )  # fmt: skip
    ours = lockstep(config, [1, 2], None)
    ours.learn(progress=False, tensorboard=False)
    for agent, alone in zip(ours.agents, _separate(config, [1, 2])):
        assert agent.num_updates == alone.num_updates > 50
        np.testing.assert_array_equal(agent.replay.frames, alone.replay.frames)
        for a, b in zip(agent.q_net.state_dict().values(), alone.q_net.state_dict().values()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ stacked networks
@pytest.mark.parametrize(
    "make",
    [
        lambda: QNetwork(4, 3, (8, 8), dueling=True, layer_norm=True),
        lambda: build_q_network((4, 10, 10), 3, "minatar", layer_norm=True),
        lambda: build_q_network((2, 40, 40), 5, "nature", input_scale=1 / 255),
    ],
)
def test_stacked_members_compute_what_each_module_computes(make):
    modules = [make() for _ in range(3)]
    stacked = StackedModules(modules)
    shape = (
        3,
        5,
        *((4,) if isinstance(modules[0], QNetwork) else modules[0].body[0].weight.shape[1:2]),
    )
    if not isinstance(modules[0], QNetwork):
        size = 10 if modules[0].head.out_features == 3 else 40
        shape = (*shape, size, size)
        x = torch.randint(0, 255, shape, dtype=torch.uint8)
    else:
        x = torch.randn(shape)
    out = stacked(x)
    for i, module in enumerate(modules):
        torch.testing.assert_close(out[i], module(x[i]), atol=1e-5, rtol=1e-5)
        assert stacked.member_state(i).keys() == module.state_dict().keys()


def test_per_member_clipping_is_each_members_own_clip():
    modules = [QNetwork(4, 2, (8,)) for _ in range(2)]
    stacked = StackedModules(modules)
    x = torch.randn(2, 16, 4)
    (stacked(x) * torch.tensor([1.0, 100.0]).view(2, 1, 1)).pow(2).mean(-1).mean(
        -1
    ).sum().backward()
    for i, module in enumerate(modules):
        (module(x[i]) * [1.0, 100.0][i]).pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    clip_grad_norm_per_member(list(stacked.parameters()), 1.0)
    for i, module in enumerate(modules):
        for (name, p), stacked_p in zip(module.named_parameters(), stacked.parameters()):
            torch.testing.assert_close(stacked_p.grad[i], p.grad, atol=1e-6, rtol=1e-5, msg=name)


# ------------------------------------------------------------------------ refusals
def test_lockstep_refuses_seeds_with_different_configs(tiny):
    agents = [DQN(tiny(seed=1)), DQN(tiny(seed=2, learning_rate=1e-2))]
    with pytest.raises(DQNLMError, match="different configs"):
        Lockstep(agents)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("0-3", [0, 1, 2, 3]), ("1,3,5", [1, 3, 5]), ("0-1, 7-8", [0, 1, 7, 8]), ("4", [4])],
)
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("3-1", "backwards"),
        ("a-b", "'a-b'"),
        ("1,1", "twice"),
        ("0-5000", "more than"),
        ("-1", "bad part"),
    ],
)
def test_parse_seeds_refuses(spec, named):
    with pytest.raises(ConfigError, match=named):
        parse_seeds(spec)


# ------------------------------------------------------------------------------ CLI
def test_cli_seeds_write_ordinary_run_dirs_that_eval_and_resume_accept(tmp_path, capsys):
    root = tmp_path / "many"
    args = ["train", "--env", "CartPole-v1", "--seeds", "1-2", "--total-steps", "300",
            "--set", "learning_starts=100", "--set", "batch_size=16", "--set", "hidden_sizes=[16]",
            "--run-dir", str(root), "--no-progress", "--no-tensorboard"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "seed 1: eval mean return" in out and "2 seeds: median" in out
    for seed in (1, 2):
        run = seed_dir(root, seed)
        assert json.loads((run / "eval.json").read_text())["step"] == 300
        assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["step"] == 300
    # resume the lockstep run for longer: both seeds continue from their checkpoints
    assert main(["train", "--resume", str(root), "--total-steps", "400", "--no-progress",
                 "--no-tensorboard"]) == 0  # fmt: skip
    for seed in (1, 2):
        assert DQN.load(seed_dir(root, seed)).global_step == 400


def test_cli_refuses_seed_and_seeds_together(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--env", "CartPole-v1", "--seed", "1", "--seeds", "1-2"])
    assert e.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_bad_seeds_is_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(
        ["train", "--env", "CartPole-v1", "--seeds", "5-2", "--run-dir", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "backwards" in err
    assert not (tmp_path / "r").exists()


def test_sweep_lockstep_trains_each_cells_seeds_together(tmp_path):
    from dqnlm.experiments.sweep import load_sweep, sweep

    text = """
seeds = [1, 2]
lockstep = true
[base]
total_steps = 300
learning_starts = 100
batch_size = 16
hidden_sizes = [16]
eval_interval = 0
final_eval_episodes = 2
[envs.cartpole]
env_id = "CartPole-v1"
[variants.hard]
target_update = "hard"
[variants.none]
target_update = "none"
"""
    (tmp_path / "s.toml").write_text(text)
    spec = load_sweep(tmp_path / "s.toml")
    assert spec["lockstep"] is True
    dirs = sweep(spec, tmp_path / "out", workers=1, progress=False)
    assert len(dirs) == 4
    for run_dir in dirs:
        ours = DQN.load(run_dir)
        alone = DQN(ours.config)
        alone.learn(progress=False, tensorboard=False)
        assert ours.num_updates == alone.num_updates
        for a, b in zip(ours.q_net.state_dict().values(), alone.q_net.state_dict().values()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_sweep_refuses_a_lockstep_that_is_not_a_bool(tmp_path):
    from dqnlm.experiments.sweep import load_sweep

    (tmp_path / "s.toml").write_text(
        'lockstep = "yes"\n[envs.c]\nenv_id = "CartPole-v1"\n[variants.v]\n'
    )
    with pytest.raises(ConfigError, match="lockstep must be true or false"):
        load_sweep(tmp_path / "s.toml")


def test_sigterm_checkpoints_every_seed_and_resume_continues_them(tmp_path):
    """SIGTERM to `dqnlm train --seeds`: every seed saves a consistent checkpoint at the same
    step, the process exits 143 without a traceback, and --resume continues all of them."""
    import os
    import signal
    import subprocess
    import sys

    from test_hostile_runs import wait_for_rows

    from dqnlm.core.checkpoint import load_checkpoint

    root = tmp_path / "many"
    args = ["train", "--env", "CartPole-v1", "--seeds", "4-6", "--total-steps", "10000000",
            "--set", "learning_starts=100", "--set", "batch_size=16", "--set", "hidden_sizes=[16]",
            "--set", "log_interval=100", "--run-dir", str(root), "--no-progress",
            "--no-tensorboard"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqnlm", *args], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for_rows(proc, root / "s6" / "metrics.csv", rows=4)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    steps = {load_checkpoint(seed_dir(root, s) / "checkpoints").meta["step"] for s in (4, 5, 6)}
    assert len(steps) == 1 and steps.pop() >= 300  # one consistent step for every seed
    assert main(["train", "--resume", str(root), "--total-steps", "2000", "--no-progress",
                 "--no-tensorboard"]) == 0  # fmt: skip
    assert {DQN.load(seed_dir(root, s)).global_step for s in (4, 5, 6)} == {2000}
