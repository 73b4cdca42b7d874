"""Token-level Q-learning: a causal LM's logits are its Q-values.

State ``s_j`` is the prompt plus the tokens so far; the action is the next token. One
forward pass over a batch of whole sequences gives ``Q(s_j, .)`` at every position, so
every token of every sequence is a transition and the TD targets below are computed
for all of them at once, with no Python loop over tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from dqnlm.core.td import double_value, greedy_value, lambda_returns, soft_value

if TYPE_CHECKING:
    from dqnlm.lm.config import LMConfig
    from dqnlm.lm.generation import TokenBatch

TargetKind = Literal["soft", "max", "double"]


def anchored_q(logits: torch.Tensor, ref_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """``Q = beta * (logits - ref_logits)``: 0 at the start, and softmax(logits) = pi_ref * exp(Q / beta).

    A token the reference bans (logit -inf) gets Q = -inf, not ``-inf - -inf = NaN``: the
    soft value weighs it by ``pi_ref = 0`` and max / double never pick it.
    """
    return (beta * (logits - ref_logits)).masked_fill(ref_logits == -torch.inf, -torch.inf)


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
    """Q of the tokens taken and their Q(lambda) targets, for a batch of sequences.

    Shapes: logits ``[B, L, V]`` (position ``j`` scores token ``j + 1``), ``tokens``,
    ``action_mask`` and ``rewards`` ``[B, L]``. ``action_mask`` is 1 on the tokens the
    policy generated (the completion), 0 on prompt and padding; ``rewards[:, j]`` is the
    reward for emitting ``tokens[:, j]`` (a sequence reward sits on its last token).

    ``prior_logprobs`` (``[B, L, V]``, e.g. a reference model's log-probabilities) turns the
    soft value into ``T * log sum_a prior(a) exp(Q(a) / T)``: the backup of KL-regularised
    RL, whose optimal policy is ``prior * exp(Q / T)``. It is used by ``soft`` only.

    Targets are Q(lambda) returns (:func:`dqnlm.core.td.lambda_returns`) that subtract the
    target network's Q of each next token taken, so the optimal Q is their fixed point for
    every ``lam``. The last generated token of each sequence ends the episode: no bootstrap.
    Returns ``(q_taken, targets, mask)``, each ``[B, L - 1]`` and aligned with ``tokens[:, 1:]``.
    """
    actions = tokens[:, 1:]
    mask = action_mask[:, 1:].to(online_logits.dtype)
    q_taken = online_logits[:, :-1].gather(-1, actions[..., None]).squeeze(-1)
    with torch.no_grad():
        next_target = target_logits[:, 1:]
        # Qbar(s_{t+1}, a_{t+1}); the last step has no next action (lambda_returns ignores it)
        next_q_taken = next_target[:, :-1].gather(-1, actions[:, 1:, None]).squeeze(-1)
        next_q_taken = torch.cat([next_q_taken, torch.zeros_like(next_q_taken[:, :1])], dim=1)
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
        targets = lambda_returns(
            rewards[:, 1:], next_value, next_q_taken, terminated, gamma, lam, mask
        )
    return q_taken, targets, mask


def needs_reference_logits(config: LMConfig) -> bool:
    """Whether an update needs the reference's logits over the whole vocabulary: max and
    double targets pick an argmax of Q, the KL penalty sums over every token. Soft targets
    and CQL need only :func:`reference_stats`, which a replay buffer can keep."""
    return config.kind != "soft" or config.kl_penalty > 0


def reference_stats(ref_logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[B, L, 2]``: at position ``j`` the reference's logit of the next token
    ``tokens[:, j + 1]`` (0 at the last position) and its log-normaliser over the vocabulary.

    With ``Q = beta (l - r)`` and prior ``softmax(r)`` the soft value is
    ``beta log sum_a softmax(r)_a exp(l_a - r_a) = beta (logsumexp(l) - logsumexp(r))``:
    the frozen reference enters a soft TD update through these two numbers only.
    """
    taken = ref_logits[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
    taken = torch.cat([taken, torch.zeros_like(taken[:, :1])], 1)
    return torch.stack([taken, torch.logsumexp(ref_logits, -1)], -1)


def update_loss(
    logits: torch.Tensor,
    reference: torch.Tensor,
    target_logits: torch.Tensor,
    tokens: torch.Tensor,
    action_mask: torch.Tensor,
    rewards: torch.Tensor,
    config: LMConfig,
    count: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of one TD update on a batch of sequences: ``(loss, cql term, mean Q taken)``.

    ``logits`` and ``target_logits`` are the online and target models' logits ``[B, L, V]``;
    ``reference`` is the reference's logits ``[B, L, V]``, or (soft targets without KL
    penalty) its :func:`reference_stats` ``[B, L, 2]``. The TD loss (mse), the CQL term and
    the KL penalty are means over generated tokens only (0 if a batch has none). Positions
    that are not generated tokens are dropped by indexing, never multiplied by 0, so NaN or
    inf there (e.g. -inf logits of banned tokens at padding) reaches neither the loss nor
    the gradient. ``count`` replaces the number of generated tokens the means divide by:
    a data-parallel rank holding part of a batch divides by the whole batch's count, so
    the ranks' gradients sum to the whole batch's.
    """
    full = reference.shape == logits.shape
    if not needs_reference_logits(config):
        stats = reference_stats(reference, tokens) if full else reference
        return _soft_update_loss(
            logits, stats, target_logits, tokens, action_mask, rewards, config, count
        )
    if not full:
        raise ValueError(f"kind={config.kind!r} or kl_penalty > 0 needs the reference's logits")
    cfg, ref_logits = config, reference
    prior = torch.log_softmax(ref_logits, -1)
    q = anchored_q(logits, ref_logits, cfg.beta)
    q_taken, targets, mask = token_td_targets(
        q,
        anchored_q(target_logits, ref_logits, cfg.beta),
        tokens,
        action_mask,
        rewards,
        cfg.kind,
        cfg.beta,
        cfg.gamma,
        cfg.lam,
        prior_logprobs=prior,
    )
    rows = mask.bool()  # [B, L - 1]: the states a generated token was chosen in
    count = (rows.sum() if count is None else count).clamp(min=1)
    taken = q_taken[rows]
    loss = F.mse_loss(taken, targets[rows], reduction="sum") / count
    cql = torch.zeros((), device=logits.device)
    if cfg.cql_alpha > 0:
        # V(s) - Q(s, a): pushes down every action's value relative to the data's
        value = cfg.beta * torch.logsumexp(q[:, :-1][rows] / cfg.beta + prior[:, :-1][rows], -1)
        cql = (value - taken).sum() / count
        loss = loss + cfg.cql_alpha * cql
    if cfg.kl_penalty > 0:
        logp = torch.log_softmax(logits[:, :-1][rows], -1)
        p = logp.exp()
        # tokens both models ban contribute 0, not 0 * (-inf - -inf)
        gap = torch.where(p > 0, logp - prior[:, :-1][rows], 0.0)
        loss = loss + cfg.kl_penalty * (p * gap).sum() / count
    return loss, cql, taken.detach().sum() / count


def _soft_update_loss(logits, stats, target_logits, tokens, action_mask, rewards, cfg, count):
    """:func:`update_loss` for soft targets, from the reference's two numbers per position:
    no vocabulary-sized tensor but the two models' logits (see :func:`reference_stats`)."""
    beta, actions = cfg.beta, tokens[:, 1:]
    ref_taken, ref_lse = stats[:, :-1, 0], stats[..., 1]
    mask = action_mask[:, 1:].to(logits.dtype)
    rows = mask.bool()
    count = (rows.sum() if count is None else count).clamp(min=1)
    q_taken = beta * (logits[:, :-1].gather(-1, actions[..., None]).squeeze(-1) - ref_taken)
    with torch.no_grad():
        target_taken = target_logits[:, :-1].gather(-1, actions[..., None]).squeeze(-1)
        next_q_taken = beta * (target_taken - ref_taken)[:, 1:]  # Qbar(s_{t+1}, a_{t+1})
        next_q_taken = torch.cat([next_q_taken, torch.zeros_like(next_q_taken[:, :1])], 1)
        next_value = beta * (torch.logsumexp(target_logits[:, 1:], -1) - ref_lse[:, 1:])
        later = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
        targets = lambda_returns(
            rewards[:, 1:], next_value, next_q_taken, mask * (1.0 - later), cfg.gamma, cfg.lam, mask
        )
    taken = q_taken[rows]
    loss = F.mse_loss(taken, targets[rows], reduction="sum") / count
    cql = torch.zeros((), device=logits.device)
    if cfg.cql_alpha > 0:  # V(s) - Q(s, a), V the online soft value
        value = beta * (torch.logsumexp(logits[:, :-1][rows], -1) - ref_lse[:, :-1][rows])
        cql = (value - taken).sum() / count
        loss = loss + cfg.cql_alpha * cql
    return loss, cql, taken.detach().sum() / count


def sequence_kl(ref_logits: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Per-text sum over generated tokens of log pi(a|s) - log pi_ref(a|s), where pi is the
    distribution each token was drawn from (temperature, top-k, top-p and min_new_tokens
    included): a sample of the sequence KL(pi || pi_ref) in nats. ``ref_logits`` may cover
    the last positions only, from the last prompt position on."""
    window = ref_logits.shape[1]
    taken = batch.tokens[:, -window + 1 :, None]
    ref_logp = torch.log_softmax(ref_logits[:, :-1], -1).gather(-1, taken).squeeze(-1)
    generated = batch.actions[:, -window + 1 :].bool()  # select: padding may hold -inf - -inf
    return torch.where(generated, batch.logprobs[:, -window + 1 :] - ref_logp, 0.0).sum(1)
