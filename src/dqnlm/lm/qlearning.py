"""Token-level Q-learning: a causal LM's logits are its Q-values.

State ``s_j`` is the prompt plus the tokens so far; the action is the next token. One
forward pass over a batch of whole sequences gives ``Q(s_j, .)`` at every position, so
every token of every sequence is a transition and the TD targets below are computed
for all of them at once, with no Python loop over tokens.
"""

from __future__ import annotations

from typing import Literal

import torch

from dqnlm.core.td import double_value, greedy_value, lambda_returns, soft_value

TargetKind = Literal["soft", "max", "double"]


def token_td_targets(
    online_logits: torch.Tensor,
    target_logits: torch.Tensor,
    tokens: torch.Tensor,
    action_mask: torch.Tensor,
    rewards: torch.Tensor,
    kind: TargetKind = "soft",
    temperature: float = 1.0,
    gamma: float = 1.0,
    lam: float = 0.0,
    prior_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q of the tokens taken and their TD(lambda) targets, for a batch of sequences.

    Shapes: logits ``[B, L, V]`` (position ``j`` scores token ``j + 1``), ``tokens``,
    ``action_mask`` and ``rewards`` ``[B, L]``. ``action_mask`` is 1 on the tokens the
    policy generated (the completion), 0 on prompt and padding; ``rewards[:, j]`` is the
    reward for emitting ``tokens[:, j]`` (a sequence reward sits on its last token).

    ``prior_logprobs`` (``[B, L, V]``, e.g. a reference model's log-probabilities) turns the
    soft value into ``T * log sum_a prior(a) exp(Q(a) / T)``: the backup of KL-regularised
    RL, whose optimal policy is ``prior * exp(Q / T)``. It is used by ``soft`` only.

    The last generated token of each sequence ends the episode: no bootstrap. Returns
    ``(q_taken, targets, mask)``, each ``[B, L - 1]`` and aligned with ``tokens[:, 1:]``.
    """
    actions = tokens[:, 1:]
    mask = action_mask[:, 1:].to(online_logits.dtype)
    q_taken = online_logits[:, :-1].gather(-1, actions[..., None]).squeeze(-1)
    with torch.no_grad():
        next_target = target_logits[:, 1:]
        if kind == "soft":
            if prior_logprobs is not None:
                next_target = next_target + temperature * prior_logprobs[:, 1:]
            next_value = soft_value(next_target, temperature)
        elif kind == "max":
            next_value = greedy_value(next_target)
        elif kind == "double":
            next_value = double_value(online_logits[:, 1:].detach(), next_target)
        else:
            raise ValueError(f"unknown target kind {kind!r}; choose soft, max or double")
        # the final generated token: the next position is not an action of this episode
        later = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
        terminated = mask * (1.0 - later)
        targets = lambda_returns(rewards[:, 1:], next_value, terminated, gamma, lam, mask)
    return q_taken, targets, mask
