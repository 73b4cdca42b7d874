"""Q-networks: an MLP for flat observations, and the convolutional networks of MinAtar
(Young & Tian 2019) and the Nature DQN (Mnih et al. 2015) for channel-first images.
Shared by control and dialogue."""

from __future__ import annotations

import torch
from torch import nn

CONV_KINDS: tuple[str, ...] = ("minatar", "nature")
NATURE_MIN_SIZE = 36
"""The smallest square image the Nature network's 8/4, 4/2, 3/1 convolutions accept."""


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
        return _head(self, self.body(obs.flatten(1)))


class ConvQNetwork(nn.Module):
    """Convolutional Q-network over channel-first images ``(C, H, W)``.

    * ``minatar``: one 3x3 convolution with 16 channels, stride 1, then a 128-unit layer
      (the DQN network of Young & Tian 2019);
    * ``nature``: 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, then a 512-unit layer
      (Mnih et al. 2015), for 84x84 Atari frames.

    Observations arrive as stored (uint8 frames) and are scaled by ``input_scale`` here
    (1/255 for Atari pixels, 1 for MinAtar's 0/1 channels), so replay keeps bytes.
    ``layer_norm`` normalises the flattened convolution features and the hidden layer
    (the PQN recipe of Gallici et al. 2024, on a convolutional body).
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        n_actions: int,
        kind: str = "minatar",
        input_scale: float = 1.0,
        dueling: bool = False,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        channels, height, width = obs_shape
        if kind == "minatar":
            convs, hidden = [nn.Conv2d(channels, 16, 3, stride=1)], 128
        elif kind == "nature":
            if min(height, width) < NATURE_MIN_SIZE:
                raise ValueError(
                    f"the nature network needs images of at least {NATURE_MIN_SIZE}x"
                    f"{NATURE_MIN_SIZE} pixels, got {height}x{width}"
                )
            convs = [
                nn.Conv2d(channels, 32, 8, stride=4),
                nn.Conv2d(32, 64, 4, stride=2),
                nn.Conv2d(64, 64, 3, stride=1),
            ]
            hidden = 512
        else:
            raise ValueError(f"unknown network {kind!r}; choose one of {CONV_KINDS}")
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [conv, nn.ReLU()]
        layers.append(nn.Flatten())
        with torch.no_grad():
            flat = nn.Sequential(*layers)(torch.zeros(1, *obs_shape)).shape[1]
        if layer_norm:
            layers.append(nn.LayerNorm(flat))
        layers.append(nn.Linear(flat, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)
        self.input_scale = input_scale
        self.dueling = dueling
        self.head = nn.Linear(hidden, n_actions)
        self.value = nn.Linear(hidden, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return _head(self, self.body(obs.float() * self.input_scale))


def _head(net: QNetwork | ConvQNetwork, features: torch.Tensor) -> torch.Tensor:
    q = net.head(features)
    if net.value is not None:
        # Q = V + A - mean(A): the mean makes V and A identifiable (Wang et al. 2016)
        q = net.value(features) + q - q.mean(dim=1, keepdim=True)
    return q


def build_q_network(
    obs_shape: tuple[int, ...],
    n_actions: int,
    kind: str,
    hidden_sizes: tuple[int, ...] = (256, 256),
    dueling: bool = False,
    layer_norm: bool = False,
    input_scale: float = 1.0,
) -> nn.Module:
    """``kind`` mlp (flat observations) or one of :data:`CONV_KINDS` (``(C, H, W)`` images)."""
    if kind == "mlp":
        dim = 1
        for size in obs_shape:
            dim *= size
        return QNetwork(dim, n_actions, hidden_sizes, dueling, layer_norm)
    if len(obs_shape) != 3:
        raise ValueError(f"the {kind} network needs (C, H, W) images, got shape {obs_shape}")
    return ConvQNetwork(obs_shape, n_actions, kind, input_scale, dueling, layer_norm)  # type: ignore[arg-type]
