"""Control DQN: seed streams, random play before learning, keep-best, interrupts, trust,
and bad input (one line, non-zero exit, nothing written)."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch

from dqnlm import run as harness
from dqnlm.cli import main
from dqnlm.control import DQN, dqn
from dqnlm.errors import ConfigError
from dqnlm.seeding import MAX_SEED, check_seed, seed_streams
from dqnlm.trust import UntrustedInput


# ------------------------------------------------------------------------------ seeding
def test_adjacent_run_seeds_share_no_episodes():
    """Before: run s seeded env j with s + j, so runs s and s + 1 shared n_envs - 1 episodes."""
    window = 100_000  # episodes (or env-step offsets) each stream may use
    ranges = []
    for seed in range(20):
        s = seed_streams(seed)
        ranges += [(b, b + window) for b in (s.train, s.validation, s.test)]
    ranges.sort()
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(ranges, ranges[1:]))


def test_runs_reset_their_envs_from_their_own_stream(tiny, monkeypatch):
    seen = []
    make = dqn.make_vec_env

    def recording(config, n_envs):
        envs = make(config, n_envs)
        reset = envs.reset
        envs.reset = lambda seed=None, **kw: (seen.append(seed), reset(seed=seed, **kw))[1]
        return envs

    monkeypatch.setattr(dqn, "make_vec_env", recording)
    for seed in (0, 1):
        DQN(tiny(seed=seed, total_steps=8, n_envs=4)).learn(progress=False, tensorboard=False)
    assert seen == [seed_streams(0).train, seed_streams(1).train]
    assert abs(seen[0] - seen[1]) >= 4  # env j of run 0 is not env j - 1 of run 1


@pytest.mark.parametrize("bad", [-1, MAX_SEED + 1, 2**70, 1.5, True, "3"])
def test_check_seed_refuses(bad):
    with pytest.raises(ConfigError, match="seed must be an integer"):
        check_seed(bad)


# ---------------------------------------------------------------- random play, keep-best
def test_play_is_uniformly_random_before_learning_starts(tiny, monkeypatch):
    """The doc says random play fills the buffer; before, a greedy schedule acted greedily."""
    agent = DQN(tiny(total_steps=300, learning_starts=200, exploration_initial_eps=0.0))
    calls = []
    predict = agent.predict
    agent.predict = lambda obs: (calls.append(agent.global_step), predict(obs))[1]
    agent.learn(progress=False, tensorboard=False)
    training_calls = [step for step in calls if step < 300]
    assert training_calls and min(training_calls) >= 200


def test_keep_best_restores_better_validation_weights(tiny):
    agent = DQN(tiny(keep_best=True))
    best = {k: torch.randn_like(v) for k, v in agent.q_net.state_dict().items()}
    agent.best_weights, agent.best_return = best, float("inf")
    assert agent._restore_best()
    assert all(torch.equal(agent.q_net.state_dict()[k], best[k]) for k in best)

    agent = DQN(tiny(keep_best=True))
    before = {k: v.clone() for k, v in agent.q_net.state_dict().items()}
    agent.best_weights, agent.best_return = best, -1.0  # worse than any CartPole return
    assert not agent._restore_best()
    assert all(torch.equal(agent.q_net.state_dict()[k], before[k]) for k in before)


def test_keep_best_survives_resume(tiny, tmp_path):
    config = tiny(keep_best=True, eval_interval=200, total_steps=400, checkpoint_interval=200)
    agent = DQN(config, tmp_path / "run")
    result = agent.learn(progress=False, tensorboard=False)
    assert isinstance(result["kept_best"], bool)  # eval.json says whether it happened
    loaded = DQN.load(tmp_path / "run")
    assert loaded.best_return == agent.best_return > 0
    assert all(
        torch.equal(loaded.best_weights[k], agent.best_weights[k]) for k in loaded.best_weights
    )


# ------------------------------------------------------------------------------ interrupts
def test_interrupt_saves_a_checkpoint_and_resumes(tiny, tmp_path):
    agent = DQN(tiny(total_steps=600, checkpoint_interval=10_000), tmp_path / "run")
    update = agent._update

    def interrupted():
        if agent.num_updates == 20:
            raise KeyboardInterrupt
        return update()

    agent._update = interrupted
    with pytest.raises(KeyboardInterrupt):
        agent.learn(progress=False, tensorboard=False)
    loaded = DQN.load(tmp_path / "run")
    assert loaded.global_step == agent.global_step > 0
    assert loaded.num_updates == 20
    loaded.learn(progress=False, tensorboard=False)
    assert loaded.global_step == 600


# ------------------------------------------------------------------------------------ trust
EVIL = """
import pathlib, gymnasium
pathlib.Path(__file__).with_name("ran.txt").write_text("imported")
gymnasium.register("EvilCart-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                   max_episode_steps=500)
"""


def test_checkpoint_env_id_cannot_import_a_module_without_trust(tiny, tmp_path, monkeypatch):
    (tmp_path / "evil_control_env.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    try:
        DQN(tiny(env_id="evil_control_env:EvilCart-v0", total_steps=200), run).learn(
            progress=False, tensorboard=False
        )
        (tmp_path / "ran.txt").unlink()
        sys.modules.pop("evil_control_env")

        with pytest.raises(UntrustedInput, match="evil_control_env"):
            DQN.load(run)
        assert not (tmp_path / "ran.txt").exists()  # refused before anything was imported
        assert DQN.load(run, trust_code=True).global_step == 200
    finally:  # other tests must not find this module cached
        sys.modules.pop("evil_control_env", None)


def test_own_modules_need_no_trust(tiny, tmp_path):
    run = tmp_path / "run"
    DQN(tiny(env_id="dqnlm.dialogue:Dialogue-v0", total_steps=40), run).learn(
        progress=False, tensorboard=False
    )
    assert DQN.load(run).config.env_id == "dqnlm.dialogue:Dialogue-v0"


def test_config_file_env_id_needs_trust(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('env_id = "os:CartPole-v1"\n')
    code = main(["train", "--config", str(config), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code != 0 and "'os'" in err and "--trust-code" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "args, named",
    [
        (["--env", ""], "''"),
        (["--env", "nosuchmodule_xyz:Thing-v0"], "nosuchmodule_xyz"),
        (["--env", ":"], "':'"),
        (["--env", "CartPole-v1", "--seed", "-1"], "-1"),
        (["--env", "CartPole-v1", "--seed", str(2**64)], str(2**64)),
        (["--env", "CartPole-v1", "--set", "buffer_size=100000000000"], "buffer"),
        (["--env", "CartPole-v1", "--set", "hidden_sizes=[100000, 100000]"], "100000"),
        (["--env", "CartPole-v1", "--set", "n_envs=100000000"], "n_envs"),
        (["--env", "CartPole-v1", "--set", "total_steps=1e30"], "total_steps"),
    ],
)
def test_bad_train_input_is_one_line(tmp_path, capsys, args, named):
    code = main(["train", *args, "--run-dir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("dqnlm: error:") and len(err.splitlines()) == 1, err
    assert named in err
    assert not (tmp_path / "r").exists()


def test_memory_estimate_counts_the_replay(tiny):
    import gymnasium as gym

    from dqnlm.core.networks import QNetwork

    SPACE, NET = gym.spaces.Box(-1, 1, (4,)), QNetwork(4, 2, (8,))  # noqa: N806
    config = tiny(buffer_size=1_000_000)
    # 4 floats of obs and of next obs, plus action, reward, done and discount
    assert dqn.estimate_bytes(config, SPACE, NET) >= 1_000_000 * (2 * 4 * 4 + 20)
    assert json.dumps(dqn.estimate_bytes(tiny(), SPACE, NET))  # a plain int


# ------------------------------------------------------------------- sweeps of presets
def test_sweep_keeps_the_presets_early_stop_only_when_asked(tmp_path):
    from dqnlm.experiments.sweep import load_sweep

    text = '[envs.cartpole]\npreset = "cartpole"\n[variants.preset]\n'
    (tmp_path / "plain.toml").write_text("seeds = [3]\n" + text)
    (tmp_path / "early.toml").write_text("seeds = [3]\nearly_stop = true\n" + text)
    (tmp_path / "bad.toml").write_text('seeds = [3]\nearly_stop = "yes"\n' + text)
    plain = load_sweep(tmp_path / "plain.toml")["envs"]["cartpole"]["configs"]["preset"]
    early = load_sweep(tmp_path / "early.toml")["envs"]["cartpole"]["configs"]["preset"]
    assert plain["stop_at_return"] is None
    assert early["stop_at_return"] == 500.0
    with pytest.raises(ConfigError, match="early_stop must be true or false, got 'yes'"):
        load_sweep(tmp_path / "bad.toml")


def test_checkpoints_carry_every_torch_generator(tiny, tmp_path, monkeypatch):
    """Exact resume on a GPU needs the CUDA generators too, not only the CPU one."""
    fake_cuda = torch.tensor([7, 7, 7], dtype=torch.uint8)
    monkeypatch.setattr(
        harness,
        "rng_tensors",
        lambda: {"rng.torch": torch.get_rng_state(), "rng.cuda.0": fake_cuda},
    )
    restored = []
    monkeypatch.setattr(harness, "restore_rng", lambda tensors: restored.append(tensors))
    DQN(tiny(total_steps=200), tmp_path / "run").learn(progress=False, tensorboard=False)
    DQN.load(tmp_path / "run")
    assert torch.equal(restored[0]["rng.cuda.0"], fake_cuda)


def test_a_checkpoint_with_nan_weights_is_refused(tiny, tmp_path):
    from dqnlm.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    DQN(tiny(total_steps=200), run).learn(progress=False, tensorboard=False)
    ckpt = load_checkpoint(run / "checkpoints")
    tensors = {
        k: torch.full_like(v, float("nan")) if k.startswith("q_net.") else v
        for k, v in ckpt.tensors.items()
    }
    save_checkpoint(run / "checkpoints", 300, tensors, ckpt.meta)  # hashes that match
    with pytest.raises(CheckpointError, match="non-finite"):
        DQN.load(run)


@pytest.mark.parametrize("make", ["/dev/zero", "folder", "huge"])
def test_a_config_that_is_no_page_of_settings_is_one_line(tmp_path, capsys, make):
    path = {"/dev/zero": "/dev/zero", "folder": str(tmp_path), "huge": str(tmp_path / "h.toml")}
    if make == "huge":
        (tmp_path / "h.toml").write_text("# " + "x" * (2 << 20) + "\n")
    code = main(["train", "--config", path[make], "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and path[make] in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, named",
    [
        (["--episodes", "100000000"], "--episodes"),
        (["--seed", "-1"], "-1"),
        (["--seed", str(2**70)], str(2**70)),
        (["--seed", str(MAX_SEED - 2), "--episodes", "5"], "--seed plus --episodes"),
    ],
)
def test_bad_eval_input_is_one_line(tiny, tmp_path, capsys, args, named):
    DQN(tiny(total_steps=200), tmp_path / "run").learn(progress=False, tensorboard=False)
    code = main(["eval", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and named in err, err


def test_a_signalled_sweep_worker_starts_no_further_run(tiny, tmp_path, monkeypatch):
    """The pool queues more runs than it has workers; a worker that a SIGTERM stopped
    mid-run must not go on to train the next queued one."""
    from dqnlm.experiments import sweep, worker

    monkeypatch.setattr(worker, "_state", "idle")
    first = sweep.Run("cartpole", "v", 0, dataclasses.asdict(tiny(total_steps=400)))
    second = sweep.Run("cartpole", "v", 1, dataclasses.asdict(tiny(total_steps=400, seed=1)))
    learn = DQN.learn

    def signalled(agent, **kwargs):
        agent._update = lambda: worker._on_signal(15, None)  # SIGTERM in the first update
        return learn(agent, **kwargs)

    monkeypatch.setattr(DQN, "learn", signalled)
    with pytest.raises(KeyboardInterrupt):
        sweep.execute(first, first.directory(tmp_path))
    assert (first.directory(tmp_path) / "checkpoints" / "latest.json").is_file()
    with pytest.raises(KeyboardInterrupt):
        sweep.execute(second, second.directory(tmp_path))
    assert not second.directory(tmp_path).exists()
