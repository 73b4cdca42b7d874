"""The Q-network: an MLP from a flat observation to one Q-value per action (control and dialogue)."""

from __future__ import annotations

import torch
from torch import nn


class QNetwork(nn.Module):
    """MLP Q-network with optional LayerNorm and an optional dueling head."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: tuple[int, ...] = (256, 256),
        dueling: bool = False,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if layer_norm:
                layers.append(nn.LayerNorm(size))
            layers.append(nn.ReLU())
            width = size
        self.body = nn.Sequential(*layers)
        self.dueling = dueling
        self.head = nn.Linear(width, n_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.body(obs.flatten(1))
        q = self.head(features)
        if self.value is not None:
            # Q = V + A - mean(A): the mean makes V and A identifiable (Wang et al. 2016)
            q = self.value(features) + q - q.mean(dim=1, keepdim=True)
        return q
