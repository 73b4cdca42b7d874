"""Golden runs: fixed-seed CartPole runs whose final weights are pinned bit for bit.

The hashes were recorded before the run harness refactor (issue 12); any change to the
order of random draws, updates, target syncs or checkpoints in the control loop breaks
them. A deliberate change to the algorithm records new hashes, and says so in its commit.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from dqnlm.control.config import DQNConfig
from dqnlm.control.dqn import DQN

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
    "keep_best": True,
    "log_interval": 500,
    "n_step": 3,
    "learning_rate": 1e-3,
}
VARIANTS = {
    "hard-nstep-keepbest": ({}, "b6cf466625773b52722016930bcf37951d085eec32376472458ba3b3a24a8238"),
    "polyak-prioritized-dueling": (
        {
            "target_update": "polyak",
            "tau": 0.05,
            "target_update_period": 1,
            "prioritized": True,
            "dueling": True,
            "n_step": 1,
            "anneal_lr": True,
        },
        "90870a044e21932152f64fa47d34c30da1737b6a9ff83ea4008878f7f5a8641f",
    ),
}


def weights_digest(agent: DQN) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(agent.q_net.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fixed_seed_cartpole_run_is_bit_identical_to_the_recorded_one(name, tmp_path):
    overrides, expected = VARIANTS[name]
    torch.set_num_threads(1)
    agent = DQN(DQNConfig(**{**BASE, **overrides}), tmp_path / "run")
    agent.learn(progress=False, tensorboard=False)
    assert weights_digest(agent) == expected
