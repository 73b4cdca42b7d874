"""Multi-turn token-level Q-learning: one whole dialogue is one sequence.

A dialogue's tokens interleave what the environment said (user turns, state lines) and
what the agent generated. Only the agent's tokens are actions. The state before each
agent token is a *decision*; consecutive decisions are consecutive transitions, whether
they sit next to each other inside a turn or on either side of a user turn. So the TD
target of the last token of an agent turn bootstraps from the value at the first
decision of the next agent turn, which has read the user's reply, and the dialogue's
return reaches the words of early turns.

:func:`pack_decisions` gathers the decisions of each sequence into a dense batch laid out
as single-turn completions: position ``i`` holds the logits of decision ``i`` and
position ``i + 1`` the token it chose. Every single-turn update then applies unchanged
(:func:`dqnlm.lm.qlearning.update_loss`: soft targets with the reference as prior,
Q(lambda), the target network's rule). Environment tokens never become actions, so
they never get a TD loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Decisions:
    index: torch.Tensor
    """``[B, T + 1]`` long: position in the full sequence of each decision (whose logits
    choose the next agent token); the last column and padding point at position 0."""
    tokens: torch.Tensor
    """``[B, T + 1]``: column ``i + 1`` is the agent token decision ``i`` chose (column 0: pad)."""
    actions: torch.Tensor
    """``[B, T + 1]`` float: 1 at column ``i + 1`` when decision ``i`` exists."""
    rewards: torch.Tensor
    """``[B, T + 1]``: the reward of the token at column ``i + 1``."""

    def gather(self, per_position: torch.Tensor) -> torch.Tensor:
        """``[B, L, ...]`` (logits, reference statistics) -> ``[B, T + 1, ...]`` at the decisions."""
        index = self.index
        if per_position.dim() > 2:
            index = index.reshape(*index.shape, *([1] * (per_position.dim() - 2)))
            index = index.expand(*self.index.shape, *per_position.shape[2:])
        return per_position.gather(1, index)


def pack_decisions(
    tokens: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, pad: int = 0
) -> Decisions:
    """Dense decisions of whole-dialogue sequences.

    ``tokens``, ``actions`` and ``rewards`` are ``[B, L]``: ``actions`` is 1 on the agent's
    generated tokens and 0 on everything the environment said and on padding;
    ``rewards[:, j]`` is paid for emitting ``tokens[:, j]`` (a turn's reward sits on its
    last agent token). Position 0 can never be an action (nothing precedes it)."""
    if actions[:, :1].any():
        raise ValueError("the first position of a sequence cannot be an agent token")
    chosen = actions[:, 1:].bool()  # decision at p chooses token p + 1
    counts = chosen.sum(1)
    width = int(counts.max()) if len(counts) else 0
    rows = tokens.shape[0]
    index = torch.zeros(rows, width + 1, dtype=torch.long, device=tokens.device)
    order = torch.arange(width, device=tokens.device)
    valid = order[None, :] < counts[:, None]
    # stable sort puts decisions first, in order; padding after them
    positions = torch.arange(chosen.shape[1], device=tokens.device).expand_as(chosen)
    keyed = torch.where(chosen, positions, positions + chosen.shape[1])
    ordered = keyed.sort(1).values[:, :width]
    index[:, :width] = torch.where(valid, ordered, 0)
    packed_tokens = torch.full((rows, width + 1), pad, dtype=tokens.dtype, device=tokens.device)
    packed_tokens[:, 1:] = torch.where(valid, tokens.gather(1, index[:, :width] + 1), pad)
    packed_actions = torch.zeros(rows, width + 1, dtype=torch.float32, device=tokens.device)
    packed_actions[:, 1:] = valid.float()
    packed_rewards = torch.zeros(rows, width + 1, dtype=rewards.dtype, device=tokens.device)
    packed_rewards[:, 1:] = torch.where(valid, rewards.gather(1, index[:, :width] + 1), 0)
    return Decisions(index, packed_tokens, packed_actions, packed_rewards)
