"""dqnlm: deep Q-learning with target networks, for control, language models and dialogue."""

from dqnlm.control import DQN, DQNConfig

__version__ = "0.1.0"
__all__ = ["DQN", "DQNConfig", "__version__"]
