"""Device selection shared by every trainer."""

from __future__ import annotations

import torch

from dqnlm.errors import DQNLMError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DQNLMError("device 'cuda' was requested but CUDA is not available")
    return torch.device(name)
