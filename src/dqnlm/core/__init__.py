"""The Q-learning core: target networks, TD targets, losses, replay, schedules, checkpoints.

Depends on torch, numpy and safetensors only; never on gymnasium, transformers or
the dialogue code. Every application (control, language models, dialogue) is a
client of this package.
"""

from dqnlm.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dqnlm.core.losses import td_loss
from dqnlm.core.replay import NStepFolder, PrioritizedReplayBuffer, ReplayBuffer, SumTree
from dqnlm.core.schedules import constant, linear
from dqnlm.core.target import TargetNetwork, hard_update, polyak_update
from dqnlm.core.td import double_value, greedy_value, lambda_returns, soft_value, td_target

__all__ = [
    "CheckpointError",
    "NStepFolder",
    "PrioritizedReplayBuffer",
    "ReplayBuffer",
    "SumTree",
    "TargetNetwork",
    "constant",
    "double_value",
    "greedy_value",
    "hard_update",
    "lambda_returns",
    "linear",
    "load_checkpoint",
    "polyak_update",
    "save_checkpoint",
    "soft_value",
    "td_loss",
    "td_target",
]
