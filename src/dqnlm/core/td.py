"""TD targets as plain tensor functions.

Every target has the form ``y = r + discount * (1 - terminated) * V(s')``:
the ``*_value`` functions give ``V(s')`` and :func:`td_target` combines it.
``terminated`` means the MDP ended (no bootstrap). An episode cut by a time limit
(``truncated``) is *not* terminated: its last state still has a value, so it
bootstraps. ``discount`` is ``gamma ** k`` for a k-step return.
"""

from __future__ import annotations

import torch


def greedy_value(next_q_target: torch.Tensor) -> torch.Tensor:
    """DQN (Mnih et al. 2015): ``max_a Q_target(s', a)``."""
    return next_q_target.max(dim=-1).values


def double_value(next_q_online: torch.Tensor, next_q_target: torch.Tensor) -> torch.Tensor:
    """Double DQN (van Hasselt et al. 2016): the online net picks, the target net values."""
    best = next_q_online.argmax(dim=-1, keepdim=True)
    return next_q_target.gather(-1, best).squeeze(-1)


def soft_value(next_q_target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft / Boltzmann value: ``temperature * logsumexp(Q / temperature)``.

    Tends to the max as ``temperature -> 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return temperature * torch.logsumexp(next_q_target / temperature, dim=-1)


def td_target(
    rewards: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    discount: torch.Tensor | float,
) -> torch.Tensor:
    """``r + discount * (1 - terminated) * V(s')``; truncated transitions pass ``terminated=0``."""
    return rewards + discount * (1.0 - terminated.to(rewards.dtype)) * next_value


def n_step_return(
    rewards: torch.Tensor, terminated: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold a window of ``n`` rewards (last dim) into one n-step transition.

    ``terminated[..., k]`` marks that step ``k`` ended the episode; rewards after
    it are ignored. Returns ``(discounted_return, discount, terminated_any)``, where
    ``discount`` is ``gamma ** n`` to bootstrap from the state after the window,
    to be multiplied by ``1 - terminated_any`` in :func:`td_target`.
    """
    n = rewards.shape[-1]
    term = terminated.to(rewards.dtype)
    # alive[k] = 1 while no earlier step in the window terminated
    alive = torch.cumprod(torch.cat([torch.ones_like(term[..., :1]), 1.0 - term[..., :-1]], -1), -1)
    powers = gamma ** torch.arange(n, dtype=rewards.dtype, device=rewards.device)
    ret = (rewards * alive * powers).sum(-1)
    discount = torch.full_like(ret, gamma**n)
    return ret, discount, (term * alive).sum(-1).clamp(max=1.0)


def lambda_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    lam: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD(lambda) targets for whole sequences at once (last dim is time).

    ``G_t = r_t + gamma (1 - terminated_t) [(1 - lam) V(s_{t+1}) + lam G_{t+1}]``, where the
    last valid step of a sequence bootstraps fully from ``V(s_{t+1})``. ``lam = 0`` is
    one-step TD; ``lam = 1`` carries a sparse final reward back to every step. ``mask``
    marks valid steps (padding after a sequence's end is 0 and gets target 0).

    The recursion is unrolled into one ``[T, T]`` matrix of discount products per
    sequence, so there is no Python loop over time steps.
    """
    valid = torch.ones_like(rewards) if mask is None else mask.to(rewards.dtype)
    next_valid = torch.cat([valid[..., 1:], torch.zeros_like(valid[..., :1])], dim=-1)
    cont = gamma * (1.0 - terminated.to(rewards.dtype))
    lam_t = lam * next_valid  # no later step to mix in: bootstrap fully
    y = rewards + cont * (1.0 - lam_t) * next_values
    a = cont * lam_t
    steps = torch.arange(rewards.shape[-1], device=rewards.device)
    upper = steps[None, :] >= steps[:, None]  # [t, j]: j >= t
    products = torch.cumprod(
        torch.where(upper, a[..., None, :], torch.ones_like(a)[..., None, :]), -1
    )
    # weight of y_k in G_t: prod_{j=t}^{k-1} a_j, i.e. products[t, k-1], and 1 for k = t
    weights = torch.cat([torch.ones_like(products[..., :1]), products[..., :-1]], dim=-1) * upper
    return (weights * y[..., None, :]).sum(-1) * valid
