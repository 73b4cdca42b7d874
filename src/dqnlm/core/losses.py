"""TD losses, and the DQN / Double DQN loss of a replay batch. Gradient-norm clipping is
``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from dqnlm.core.td import double_value, greedy_value, td_target

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

    The mean runs over the last dimension: a scalar for one batch, one loss per member
    for ``(members, batch)`` inputs (many seeds trained in lockstep).

    ``huber`` is the smooth L1 loss of Mnih et al. 2015: quadratic within
    ``huber_delta`` of the target, linear outside, so large errors cannot blow up
    the gradient. Items of weight 0 are masked out: whatever they hold (NaN, inf) reaches
    neither the loss nor the gradient, because they are selected away before the loss.
    """
    target = target.detach()
    if weights is not None:
        keep = weights != 0
        predicted = torch.where(keep, predicted, 0.0)
        target = torch.where(keep, target, 0.0)
    if kind == "huber":
        per_item = F.huber_loss(predicted, target, reduction="none", delta=huber_delta)
    elif kind == "mse":
        per_item = F.mse_loss(predicted, target, reduction="none")
    else:
        raise ValueError(f"unknown loss {kind!r}; choose one of {LOSS_KINDS}")
    loss = per_item.mean(-1) if weights is None else (weights * per_item).mean(-1)
    return loss, (target - predicted).detach()


def dqn_loss(
    q_net: Callable[[torch.Tensor], torch.Tensor],
    target_net: Callable[[torch.Tensor], torch.Tensor],
    batch,
    kind: LossKind = "huber",
    double: bool = True,
    invalid: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DQN (or Double DQN) TD loss of a replay batch: (loss, Q of the taken actions,
    TD errors). ``invalid(states)`` (bool, batch x actions) rules actions out of the
    bootstrap (action masking); importance weights come from ``batch.weights``.

    A batch with a leading members dimension (``actions`` of shape ``(members, batch)``,
    networks mapping ``(members, batch, ...)`` to ``(members, batch, actions)``) gives one
    loss per member."""
    dim = batch.actions.dim() - 1  # the batch dimension: 1 with a members dimension
    n = batch.actions.shape[dim]
    if double:
        # one forward over [s; s'] costs less than two small ones; the s' half is detached
        q_all = q_net(torch.cat([batch.obs, batch.next_obs], dim=dim))
        q_obs, next_online = q_all.split(n, dim=dim)
        next_online = next_online.detach()
    else:
        q_obs = q_net(batch.obs)
    q = q_obs.gather(-1, batch.actions[..., None]).squeeze(-1)
    with torch.no_grad():
        next_target = target_net(batch.next_obs)
        if invalid is not None:
            ruled_out = invalid(batch.next_obs)
            next_target = next_target.masked_fill(ruled_out, -math.inf)
            if double:
                next_online = next_online.masked_fill(ruled_out, -math.inf)
        next_value = double_value(next_online, next_target) if double else greedy_value(next_target)
        target = td_target(batch.rewards, next_value, batch.terminated, batch.discounts)
    loss, td_error = td_loss(q, target, kind, batch.weights)
    return loss, q, td_error


def gradient_step(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    loss: torch.Tensor,
    max_grad_norm: float,
) -> None:
    """Backpropagate ``loss`` and step ``optimizer``, clipping the global gradient norm of
    ``params`` to ``max_grad_norm`` first (0: no clipping)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
