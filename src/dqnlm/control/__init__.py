"""DQN on Gymnasium environments, built on :mod:`dqnlm.core`."""

from dqnlm.control.config import DQNConfig
from dqnlm.control.dqn import DQN

__all__ = ["DQN", "DQNConfig"]
