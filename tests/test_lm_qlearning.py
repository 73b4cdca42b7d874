"""Token-level TD targets against a hand-computed example."""

import math

import pytest
import torch

from dqnlm.lm.config import LMConfig
from dqnlm.lm.qlearning import (
    anchored_q,
    needs_reference_logits,
    reference_stats,
    token_td_targets,
    update_loss,
)


def example():
    # one sequence: prompt token 0, then generated tokens 2, 1, then padding (0)
    tokens = torch.tensor([[0, 2, 1, 0]])
    action_mask = torch.tensor([[0, 1, 1, 0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])  # the sequence reward sits on the last token
    online = torch.tensor(
        [[[0.0, 0.5, 2.0], [1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    )  # position j scores token j + 1
    target = torch.tensor([[[0.0, 0.0, 0.0], [0.2, 0.1, 0.7], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]]])
    return online, target, tokens, action_mask, rewards


def test_soft_targets_by_hand():
    online, target, tokens, action_mask, rewards = example()
    q, y, mask = token_td_targets(online, target, tokens, action_mask, rewards, "soft", 1.0)
    # Q(s0, 2) = 2.0 and Q(s1, 1) = 3.0; the third "action" is padding
    assert q[0, :2].tolist() == [2.0, 3.0] and mask.tolist() == [[1.0, 1.0, 0.0]]
    # step 1 bootstraps from the soft value of the target at position 1; step 2 is terminal
    v1 = math.log(math.exp(0.2) + math.exp(0.1) + math.exp(0.7))
    assert y[0, 0].item() == pytest.approx(0.0 + v1)
    assert y[0, 1].item() == pytest.approx(1.0)  # final token: reward only, no bootstrap
    assert y[0, 2].item() == 0.0


def test_max_double_and_lambda():
    online, target, tokens, action_mask, rewards = example()
    _, y_max, _ = token_td_targets(online, target, tokens, action_mask, rewards, "max")
    assert y_max[0, 0].item() == pytest.approx(0.7)
    # double: the online logits at position 1 pick token 1, valued by the target (0.1)
    _, y_double, _ = token_td_targets(online, target, tokens, action_mask, rewards, "double")
    assert y_double[0, 0].item() == pytest.approx(0.1)
    # lambda = 1 carries the final reward back to the first generated token, plus the
    # greedy gap of the token taken next: max_a Qbar(s1, a) - Qbar(s1, 1) = 0.7 - 0.1
    _, y_mc, _ = token_td_targets(online, target, tokens, action_mask, rewards, "max", lam=1.0)
    assert y_mc[0, :2].tolist() == pytest.approx([1.0 + 0.6, 1.0])


def test_gradient_flows_only_into_taken_q():
    online, target, tokens, action_mask, rewards = example()
    online.requires_grad_(True)
    q, y, mask = token_td_targets(online, target, tokens, action_mask, rewards, "double")
    assert not y.requires_grad
    ((q - y) ** 2 * mask).sum().backward()
    assert online.grad[0, 0, 2] != 0 and online.grad[0, 1, 1] != 0
    assert online.grad.abs().sum() == online.grad[0, 0, 2].abs() + online.grad[0, 1, 1].abs()


def test_soft_value_with_a_reference_prior_by_hand():
    """V(s) = T log sum_a prior(a) exp(Q(a) / T): the KL-regularised backup."""
    online, target, tokens, action_mask, rewards = example()
    prior = torch.log_softmax(
        torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0] * 3, [0.0] * 3]]), -1
    )
    temperature = 0.5
    _, y, _ = token_td_targets(
        online, target, tokens, action_mask, rewards, "soft", temperature, prior_logprobs=prior
    )
    p = [math.exp(v) for v in prior[0, 1].tolist()]
    q = target[0, 1].tolist()
    v1 = temperature * math.log(sum(pa * math.exp(qa / temperature) for pa, qa in zip(p, q)))
    assert y[0, 0].item() == pytest.approx(v1, rel=1e-6)
    # Q = 0 everywhere gives V = 0 for any prior: the anchored Q starts consistent
    zeros = torch.zeros_like(target)
    _, y0, _ = token_td_targets(
        zeros, zeros, tokens, action_mask, rewards * 0, "soft", 0.1, prior_logprobs=prior
    )
    assert y0.abs().max().item() == pytest.approx(0.0, abs=1e-6)


def replayed_batch():
    """Two sequences: 2 prompt tokens, then 3 and 2 generated tokens, then padding."""
    torch.manual_seed(0)
    tokens = torch.tensor([[1, 2, 3, 0, 2, 0], [3, 1, 2, 2, 0, 0]])
    action_mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0]])
    rewards = torch.tensor([[0, 0, 0.2, 0, 0.7, 0], [0, 0, -0.1, 0.5, 0, 0]])
    logits, ref, target = (torch.randn(2, 6, 5) for _ in range(3))
    return logits, ref, target, tokens, action_mask, rewards


def loss_and_grad(logits, ref, target, tokens, action_mask, rewards, config):
    logits = logits.clone().requires_grad_(True)
    loss, cql, mean_q = update_loss(logits, ref, target, tokens, action_mask, rewards, config)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), cql, mean_q, grad


CONFIGS = [
    LMConfig(kind=kind, lam=lam, beta=0.2, cql_alpha=0.3, kl_penalty=0.2)
    for kind in ("soft", "max", "double")
    for lam in (0.0, 0.9)
]
FAST = [LMConfig(lam=lam, beta=0.2, cql_alpha=0.3) for lam in (0.0, 0.9)]  # reference stats


@pytest.mark.parametrize(
    "config", CONFIGS + FAST, ids=lambda c: f"{c.kind}-lam{c.lam}-kl{c.kl_penalty}"
)
def test_nan_and_inf_at_masked_positions_change_nothing(config):
    logits, ref, target, tokens, action_mask, rewards = replayed_batch()
    clean = loss_and_grad(logits, ref, target, tokens, action_mask, rewards, config)
    # rows that score no generated token: the prompt's first, padding, the end
    unused = torch.cat([action_mask[:, 1:], torch.zeros(2, 1, dtype=torch.long)], 1) == 0
    logits[unused] = torch.tensor([-math.inf, math.nan, 0.0, -math.inf, math.inf])
    ref[unused] = -math.inf
    target[unused] = math.nan
    rewards = rewards.masked_fill(action_mask == 0, math.nan)
    dirty = loss_and_grad(logits, ref, target, tokens, action_mask, rewards, config)
    assert torch.isfinite(dirty[0]) and torch.isfinite(dirty[3]).all()
    for a, b in zip(clean, dirty):
        assert torch.allclose(a, b)


@pytest.mark.parametrize(
    "config", CONFIGS + FAST, ids=lambda c: f"{c.kind}-lam{c.lam}-kl{c.kl_penalty}"
)
def test_a_token_both_models_ban_is_as_if_it_were_not_in_the_vocabulary(config):
    logits, ref, target, tokens, action_mask, rewards = replayed_batch()
    smaller = loss_and_grad(
        logits[..., :4], ref[..., :4], target[..., :4], tokens, action_mask, rewards, config
    )
    for t in (logits, ref, target):
        t[..., 4] = -math.inf  # token 4 is never sampled, by either model
    banned = loss_and_grad(logits, ref, target, tokens, action_mask, rewards, config)
    assert torch.isfinite(banned[3]).all() and banned[3][..., 4].abs().max() == 0
    for a, b in zip(smaller[:3], banned[:3]):
        assert torch.allclose(a, b)
    assert torch.allclose(smaller[3], banned[3][..., :4])


def soft_loss_from_full_vocabulary(logits, ref, target, tokens, action_mask, rewards, config):
    """The soft TD loss written out over the whole vocabulary (the definition)."""
    prior = torch.log_softmax(ref, -1)
    q = anchored_q(logits, ref, config.beta)
    q_taken, targets, mask = token_td_targets(
        q, anchored_q(target, ref, config.beta), tokens, action_mask, rewards, "soft",
        config.beta, config.gamma, config.lam, prior_logprobs=prior,
    )  # fmt: skip
    rows = mask.bool()
    loss = ((q_taken[rows] - targets[rows]) ** 2).mean()
    value = config.beta * torch.logsumexp(q[:, :-1][rows] / config.beta + prior[:, :-1][rows], -1)
    return loss + config.cql_alpha * (value - q_taken[rows]).mean()


SOFT = [LMConfig(lam=lam, beta=0.2, cql_alpha=cql) for lam in (0.0, 0.9) for cql in (0.0, 0.3)]


@pytest.mark.parametrize("config", SOFT, ids=lambda c: f"lam{c.lam}-cql{c.cql_alpha}")
def test_soft_update_from_cached_reference_stats_equals_the_full_vocabulary_loss(config):
    logits, ref, target, tokens, action_mask, rewards = replayed_batch()
    expected = loss_and_grad_of(soft_loss_from_full_vocabulary, logits, ref, target, tokens,
                                action_mask, rewards, config)  # fmt: skip
    stats = reference_stats(ref, tokens)
    assert stats.shape == (*tokens.shape, 2)
    for reference in (ref, stats):  # full logits, or the two numbers a replay buffer keeps
        got = loss_and_grad(logits, reference, target, tokens, action_mask, rewards, config)
        assert torch.allclose(got[0], expected[0], atol=1e-6)
        assert torch.allclose(got[3], expected[1], atol=1e-6)


def loss_and_grad_of(fn, logits, *args):
    logits = logits.clone().requires_grad_(True)
    loss = fn(logits, *args)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def test_max_targets_refuse_reference_stats():
    logits, ref, target, tokens, action_mask, rewards = replayed_batch()
    config = LMConfig(kind="max")
    assert needs_reference_logits(config) and needs_reference_logits(LMConfig(kl_penalty=0.1))
    with pytest.raises(ValueError, match="needs the reference's logits"):
        update_loss(logits, reference_stats(ref, tokens), target, tokens, action_mask, rewards,
                    config)  # fmt: skip
