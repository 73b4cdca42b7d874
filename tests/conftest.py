"""Shared fixtures: single-threaded torch and a tiny, fast DQN configuration."""

from __future__ import annotations

import signal

import pytest
import torch

from dqnlm import DQNConfig

torch.set_num_threads(1)

# A shell that starts a job in the background (as CI may) makes it ignore SIGINT, and
# Python then installs no KeyboardInterrupt handler. Ctrl-C tests need the handler an
# interactive terminal gets; children spawned by the tests inherit the default again.
signal.signal(signal.SIGINT, signal.default_int_handler)

TINY = {
    "env_id": "CartPole-v1",
    "seed": 0,
    "total_steps": 600,
    "learning_starts": 100,
    "batch_size": 16,
    "hidden_sizes": (16,),
    "target_update_period": 50,
    "eval_interval": 0,
    "eval_episodes": 1,
    "final_eval_episodes": 1,
    "log_interval": 100,
    "checkpoint_interval": 10_000,
    "device": "cpu",
}


@pytest.fixture
def tiny():
    """``tiny(**overrides)`` builds a DQNConfig that trains CartPole in well under a second."""

    def make(**overrides) -> DQNConfig:
        return DQNConfig(**{**TINY, **overrides})

    return make


@pytest.fixture(autouse=True)
def _denormals_back_on():
    """`dqnlm train` flushes denormal floats to zero for the whole process (a speed-up);
    tests that call the CLI in-process must not leave that to the tests after them
    (numpy's subnormal arithmetic, which property tests exercise, would change)."""
    yield
    torch.set_flush_denormal(False)
