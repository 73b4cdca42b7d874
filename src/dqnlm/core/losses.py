"""TD losses. Gradient-norm clipping is ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossKind = Literal["huber", "mse"]
LOSS_KINDS: tuple[str, ...] = ("huber", "mse")


def td_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    kind: LossKind = "huber",
    weights: torch.Tensor | None = None,
    huber_delta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (optionally importance-weighted) TD loss and the detached TD errors.

    ``huber`` is the smooth L1 loss of Mnih et al. 2015: quadratic within
    ``huber_delta`` of the target, linear outside, so large errors cannot blow up
    the gradient.
    """
    target = target.detach()
    if kind == "huber":
        per_item = F.huber_loss(predicted, target, reduction="none", delta=huber_delta)
    elif kind == "mse":
        per_item = F.mse_loss(predicted, target, reduction="none")
    else:
        raise ValueError(f"unknown loss {kind!r}; choose one of {LOSS_KINDS}")
    loss = per_item.mean() if weights is None else (weights * per_item).mean()
    return loss, (target - predicted).detach()
