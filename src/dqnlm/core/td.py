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
    """``r + discount * (1 - terminated) * V(s')``; truncated transitions pass ``terminated=0``.

    A terminated transition's ``V(s')`` is never read, so it may be inf or NaN (e.g. every
    action ruled out in a final state): it is selected away, not multiplied by 0.
    """
    bootstrap = torch.where(terminated.bool(), 0.0, discount * next_value)
    return rewards + bootstrap


def lambda_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    next_q_taken: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    lam: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Q(lambda) targets (Harutyunyan et al. 2016) for whole sequences at once (last dim is time).

    ``G_t = r_t + gamma (1 - terminated_t) [V(s_{t+1}) + lam (G_{t+1} - Qbar(s_{t+1}, a_{t+1}))]``

    ``next_values`` is ``V(s_{t+1})`` (soft, max or double) and ``next_q_taken`` the target
    network's ``Qbar(s_{t+1}, a_{t+1})`` of the action actually taken next. Subtracting it
    keeps the optimal Q a fixed point for every ``lam``: if ``Qbar = Q*`` then
    ``G_{t+1} - Qbar = 0`` and ``G_t = r_t + gamma V*(s_{t+1}) = Q*(s_t, a_t)``. (Mixing in
    ``G_{t+1}`` alone, as Peng's TD(lambda) does, drops ``V - Qbar``: the soft value's
    ``beta * log(pi / pi_ref)`` of later tokens, or the max's greedy gap.) ``lam = 0`` is
    one-step TD; ``lam = 1`` is the discounted return of ``r_k + gamma (V_{k+1} - Qbar_{k+1})``,
    for the soft value the reward minus ``beta * log(pi / pi_ref)`` of each later token.
    The last valid step of a sequence bootstraps fully from ``V(s_{t+1})``. ``mask`` marks
    valid steps; padding gets target 0 whatever its inputs hold, NaN or inf included.

    The recursion is unrolled into one ``[T, T]`` matrix of discount products per
    sequence, so there is no Python loop over time steps.
    """
    valid = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask != 0
    next_valid = torch.cat([valid[..., 1:], torch.zeros_like(valid[..., :1])], dim=-1)
    bootstraps = valid & ~terminated.bool()
    mixes = bootstraps & next_valid  # a later step to mix in; else bootstrap fully
    # select, never multiply by 0: values where a step does not read them may be inf or NaN
    zero = torch.zeros_like(rewards)
    y = torch.where(valid, rewards, zero)
    y = y + torch.where(bootstraps, gamma * next_values, zero)
    y = y - torch.where(mixes, gamma * lam * next_q_taken, zero)
    a = torch.where(mixes, gamma * lam, zero)
    steps = torch.arange(rewards.shape[-1], device=rewards.device)
    upper = steps[None, :] >= steps[:, None]  # [t, j]: j >= t
    products = torch.cumprod(
        torch.where(upper, a[..., None, :], torch.ones_like(a)[..., None, :]), -1
    )
    # weight of y_k in G_t: prod_{j=t}^{k-1} a_j, i.e. products[t, k-1], and 1 for k = t
    weights = torch.cat([torch.ones_like(products[..., :1]), products[..., :-1]], dim=-1) * upper
    return (weights * y[..., None, :]).sum(-1)
