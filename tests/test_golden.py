"""Golden runs: two fixed-seed CartPole runs, pinned so that any change to the order of
random draws, updates, target syncs or checkpoints in the control loop breaks them (issue
12), while the last-bit differences between CPUs' float kernels do not. A deliberate change
to the algorithm records new values, and says so in its commit.

Weights pinned bit for bit cannot do both: closed-loop RL amplifies kernel noise, so
hashes recorded on one CPU (AMD EPYC) failed on another (Intel Xeon). Hence:

* Every action is uniformly random (epsilon 1, no keep_best, no early stop): the env
  trajectory and the replay's contents are numpy and Gymnasium alone, exact on any CPU.
* Pinned exactly (SHA-256): the replay's contents after training, and the loop's schedule
  as hooks see it: each replay sample (env step, replay position and size, the sampled
  indices), each target sync (update count), each evaluation and checkpoint (env step,
  update count, both numpy generators' states).
* Pinned to 1e-3 of each tensor's norm: every parameter tensor's sum and L2 norm at the
  checkpoints. Kernel noise (ATen AVX512 / AVX2 / scalar kernels, MKL code paths, 1 to 4
  threads, 6e-8 nudges of the initial weights) moved them by at most 4e-6; target syncs
  every 51 updates instead of 50, or one gradient step skipped, by more than 5e-2.

Discrete choices on float values would turn kernel noise into real divergence: double
DQN's argmax is off, and prioritized sampling (which follows float TD errors) pins no
sampled indices and compares weights only at its first checkpoint (250 updates), since
its indices part after a few hundred updates under kernel noise.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from dqnlm.control.config import DQNConfig
from dqnlm.control.dqn import DQN

RTOL = 1e-3  # of each tensor's L2 norm

BASE = {
    "env_id": "CartPole-v1",
    "seed": 7,
    "total_steps": 3000,
    "n_envs": 2,
    "device": "cpu",
    "hidden_sizes": (32, 32),
    "layer_norm": True,
    "learning_starts": 500,
    "buffer_size": 2000,
    "batch_size": 32,
    "train_freq": 2,
    "target_update_period": 50,
    "eval_interval": 1000,
    "eval_episodes": 2,
    "final_eval_episodes": 2,
    "checkpoint_interval": 1000,
    "log_interval": 500,
    "n_step": 3,
    "learning_rate": 1e-3,
    # the data must not depend on the network: uniformly random actions throughout, and
    # no evaluation that feeds back into training
    "exploration_initial_eps": 1.0,
    "exploration_final_eps": 1.0,
    "keep_best": False,
    "stop_at_return": None,
    # double DQN's online argmax jumps when kernel noise flips a near tie; max does not
    "double_dqn": False,
}
VARIANTS = {
    "hard-nstep": {},
    "polyak-prioritized-dueling": {
        "target_update": "polyak",
        "tau": 0.05,
        "target_update_period": 1,
        "prioritized": True,
        "dueling": True,
        "n_step": 1,
        "anneal_lr": True,
    },
}
EXPECTED = {
    "hard-nstep": {
        "global_step": 3000,
        "num_updates": 1251,
        "syncs": 25,
        "replay": "2a13e5e09e0859549b06a7eceb413a849dfe734d0fcf309f7a3c882c0492aece",
        "events": "e2f3f28147eee767c024242882809a281a0d8d97691ce5f7a91e23c5c33dad43",
        "checkpoints": {
            1000: {
                "body.0.bias": (-0.5198727438692003, 1.682729782464331),
                "body.0.weight": (3.20379615528509, 3.0403358232713993),
                "body.1.bias": (0.4771528346464038, 0.26110048473151914),
                "body.1.weight": (32.409764528274536, 5.737940608924012),
                "body.3.bias": (0.8859362229704857, 0.5984562175986237),
                "body.3.weight": (-0.0919534616987221, 3.321742643888967),
                "body.4.bias": (3.173964522778988, 1.0231524454384118),
                "body.4.weight": (35.36128485202789, 6.310047739743658),
                "head.bias": (0.4460606127977371, 0.33135732486269737),
                "head.weight": (5.653266268665902, 1.7825387193111932),
            },
            2000: {
                "body.0.bias": (-0.5447991210967302, 1.4963586306019276),
                "body.0.weight": (0.6762047223746777, 3.407315358839828),
                "body.1.bias": (-0.057841213420033455, 0.30637501840072484),
                "body.1.weight": (32.45214885473251, 5.7737495761109745),
                "body.3.bias": (1.2042974459473044, 0.5683378911577015),
                "body.3.weight": (6.419902482768521, 3.830331361387696),
                "body.4.bias": (9.494379405165091, 2.6243031483756347),
                "body.4.weight": (41.17057281732559, 7.5529203335746855),
                "head.bias": (1.0091507136821747, 0.7269001382279651),
                "head.weight": (10.312930731102824, 3.5001381331325985),
            },
            3000: {
                "body.0.bias": (-1.184581585926935, 1.5633644073277975),
                "body.0.weight": (-0.13882937701418996, 3.5886865698300148),
                "body.1.bias": (0.10010992555180565, 0.3953708663241305),
                "body.1.weight": (32.723952531814575, 5.830264336696984),
                "body.3.bias": (1.1826240001246333, 0.5666334981235902),
                "body.3.weight": (7.023997546435567, 4.057312686453167),
                "body.4.bias": (12.58501547574997, 3.2598536455914764),
                "body.4.weight": (44.20091611146927, 8.171684355582618),
                "head.bias": (1.1637724041938782, 0.8339284375968762),
                "head.weight": (11.89753543457482, 4.155305188636305),
            },
        },
    },
    "polyak-prioritized-dueling": {
        "global_step": 3000,
        "num_updates": 1251,
        "syncs": 1251,
        "replay": "97d61a9d944c4f5814f76427038343c13ba75942e03eaa2f4f3b948f082574ba",
        "events": "8b825f9fb126fc09d428adc4b42b79917a1eeb107b14006c8e8640fe2f6df6d3",
        "checkpoints": {
            1000: {
                "body.0.bias": (-0.6354300091043115, 1.689866787168191),
                "body.0.weight": (4.1610928636509925, 2.992131147716284),
                "body.1.bias": (0.7138914780516643, 0.24057431100364435),
                "body.1.weight": (32.504692912101746, 5.750875109230487),
                "body.3.bias": (0.9001101776957512, 0.5299866515551733),
                "body.3.weight": (2.4861835419142153, 3.215669597947978),
                "body.4.bias": (1.8439528103917837, 0.6621841297730713),
                "body.4.weight": (33.903501093387604, 6.023115011193531),
                "head.bias": (-0.0047556012868881226, 0.1076654639098397),
                "head.weight": (0.20248654717579484, 0.7673664778774552),
                "value.bias": (0.09738221019506454, 0.09738221019506454),
                "value.weight": (1.4302784129977226, 1.1108714769796402),
            },
        },
    },
}


def weight_stats(agent: DQN) -> dict[str, tuple[float, float]]:
    """Each parameter tensor's (sum, L2 norm), in float64."""
    return {
        name: (float(value.double().sum()), float(value.double().norm()))
        for name, value in sorted(agent.q_net.state_dict().items())
    }


def replay_digest(agent: DQN) -> str:
    """SHA-256 of the replay's stored transitions (not prioritized replay's priorities)."""
    digest = hashlib.sha256()
    for name, value in sorted(agent.replay.state_dict().items()):
        if name not in ("priorities", "max_priority"):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def golden_run(name: str, run_dir, monkeypatch) -> dict:
    """Train variant ``name`` with hooks on the loop's schedule; what the test compares."""
    agent = DQN(DQNConfig(**{**BASE, **VARIANTS[name]}), run_dir)
    replay, target = agent.replay, agent.target
    events: list[tuple] = []
    checkpoints: dict[int, dict[str, tuple[float, float]]] = {}

    def generators() -> str:
        return repr((agent.rng.bit_generator.state, replay.rng.bit_generator.state))

    def sample(*args, _sample=replay.sample, **kwargs):
        batch = _sample(*args, **kwargs)
        indices = [] if agent.config.prioritized else batch.indices.tolist()
        events.append(("sample", agent.global_step, replay.pos, len(replay), indices))
        return batch

    def update(num_updates, _update=target.update):
        synced = _update(num_updates)
        if synced:
            events.append(("sync", num_updates))
        return synced

    def evaluate(*args, _evaluate=agent.evaluate, **kwargs):
        events.append(("evaluate", agent.global_step, agent.num_updates, generators()))
        return _evaluate(*args, **kwargs)

    def save_checkpoint(_save=agent.save_checkpoint):
        events.append(("checkpoint", agent.global_step, agent.num_updates, generators()))
        checkpoints[agent.global_step] = weight_stats(agent)
        return _save()

    monkeypatch.setattr(replay, "sample", sample)
    monkeypatch.setattr(target, "update", update)
    monkeypatch.setattr(agent, "evaluate", evaluate)
    monkeypatch.setattr(agent, "save_checkpoint", save_checkpoint)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent.learn(progress=False, tensorboard=False)
    finally:
        torch.set_num_threads(threads)
    return {
        "global_step": agent.global_step,
        "num_updates": agent.num_updates,
        "syncs": sum(event[0] == "sync" for event in events),
        "replay": replay_digest(agent),
        "events": hashlib.sha256(repr(events).encode()).hexdigest(),
        "checkpoints": checkpoints,
    }


def worst_deviation(got: dict, expected: dict) -> tuple[float, str]:
    """The largest |difference| of a tensor's sum or norm, over its expected norm."""
    assert sorted(got) == sorted(expected)
    return max(
        (max(abs(s - s0), abs(n - n0)) / n0, name)
        for name, ((s, n), (s0, n0)) in ((k, (got[k], expected[k])) for k in expected)
    )


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fixed_seed_cartpole_run_matches_the_recorded_one(name, tmp_path, monkeypatch):
    got = golden_run(name, tmp_path / "run", monkeypatch)
    expected = EXPECTED[name]
    for key in ("global_step", "num_updates", "syncs", "replay", "events"):
        assert got[key] == expected[key], key
    for step, stats in expected["checkpoints"].items():
        assert step in got["checkpoints"], f"no checkpoint at env step {step}"
        deviation, tensor = worst_deviation(got["checkpoints"][step], stats)
        assert deviation <= RTOL, f"{tensor} at env step {step}: off by {deviation:.2e}"
