"""Multi-turn TD alignment on a hand-built two-turn dialogue: user tokens never receive a
TD loss, the last token of an agent turn bootstraps across the user's reply from the
first decision of the next agent turn, and packing matches a plain loop."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dqnlm.lm.config import LMConfig
from dqnlm.lm.multiturn import pack_decisions
from dqnlm.lm.qlearning import anchored_q, token_td_targets, update_loss

EOS = 0
# position: 0  1  2  3  4  5    6  7  8  9
# speaker:  u  u  u  a  a  a/eos u u a  a/eos
TOKENS = torch.tensor([[5, 6, 7, 1, 2, EOS, 8, 9, 3, EOS]])
ACTIONS = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0, 1, 1]], dtype=torch.float32)
SUCCESS = 20.0
REWARDS = torch.tensor([[0, 0, 0, 0, 0, -1.0, 0, 0, 0, SUCCESS]])
VOCAB = 10


def test_decisions_are_the_states_before_agent_tokens():
    d = pack_decisions(TOKENS, ACTIONS, REWARDS)
    assert d.index.tolist() == [[2, 3, 4, 7, 8, 0]]
    assert d.tokens.tolist() == [[0, 1, 2, EOS, 3, EOS]]
    assert d.actions.tolist() == [[0, 1, 1, 1, 1, 1]]
    assert d.rewards.tolist() == [[0, 0, 0, -1.0, 0, SUCCESS]]


def test_the_bootstrap_crosses_the_user_turn():
    torch.manual_seed(0)
    beta = 0.5
    online, target, ref = (torch.randn(1, 10, VOCAB) for _ in range(3))
    d = pack_decisions(TOKENS, ACTIONS, REWARDS)
    prior = torch.log_softmax(d.gather(ref), -1)
    _, targets, mask = token_td_targets(
        anchored_q(d.gather(online), d.gather(ref), beta),
        anchored_q(d.gather(target), d.gather(ref), beta),
        d.tokens, d.actions, d.rewards, "soft", beta, 1.0, 0.0, prior_logprobs=prior,
    )  # fmt: skip
    # the soft value of the state at position 7: the user has replied, the agent speaks next
    v7 = beta * (torch.logsumexp(target[0, 7], -1) - torch.logsumexp(ref[0, 7], -1))
    assert targets[0, 2] == pytest.approx(float(-1.0 + v7), abs=1e-5)  # turn 1's end-of-turn
    assert targets[0, 4] == pytest.approx(SUCCESS)  # the last token: no bootstrap
    # inside a turn the next state is the next position
    v4 = beta * (torch.logsumexp(target[0, 4], -1) - torch.logsumexp(ref[0, 4], -1))
    assert targets[0, 1] == pytest.approx(float(v4), abs=1e-5)
    assert mask.tolist() == [[1, 1, 1, 1, 1]]


@pytest.mark.parametrize("kind", ["soft", "max"])
def test_user_tokens_never_receive_a_td_loss(kind):
    torch.manual_seed(1)
    config = dataclasses.replace(LMConfig(), kind=kind, beta=0.5, lam=0.9)
    online = torch.randn(1, 10, VOCAB, requires_grad=True)
    target, ref = torch.randn(1, 10, VOCAB), torch.randn(1, 10, VOCAB)
    d = pack_decisions(TOKENS, ACTIONS, REWARDS)
    loss, _, _ = update_loss(
        d.gather(online), d.gather(ref), d.gather(target), d.tokens, d.actions, d.rewards, config
    )
    loss.backward()
    touched = online.grad.abs().sum(-1)[0]
    decisions = [2, 3, 4, 7, 8]
    assert all(touched[p] > 0 for p in decisions)
    assert all(touched[p] == 0 for p in range(10) if p not in decisions)


def test_packing_matches_a_loop_over_ragged_dialogues():
    gen = torch.Generator().manual_seed(3)
    rows, length = 6, 40
    actions = (torch.rand(rows, length, generator=gen) < 0.4).float()
    actions[:, 0] = 0
    actions[2] = 0  # a dialogue in which the agent said nothing
    tokens = torch.randint(1, 50, (rows, length), generator=gen)
    rewards = torch.randn(rows, length, generator=gen)
    d = pack_decisions(tokens, actions, rewards)
    for b in range(rows):
        expected = [p for p in range(length - 1) if actions[b, p + 1] == 1]
        n = len(expected)
        assert d.index[b, :n].tolist() == expected
        assert d.actions[b, 1 : n + 1].sum() == n and d.actions[b, n + 1 :].sum() == 0
        assert d.tokens[b, 1 : n + 1].tolist() == [int(tokens[b, p + 1]) for p in expected]
        assert d.rewards[b, 1 : n + 1].tolist() == [float(rewards[b, p + 1]) for p in expected]
    logits = torch.randn(rows, length, 7, generator=gen)
    assert torch.equal(d.gather(logits)[0, :1], logits[0, d.index[0, :1]])


def test_an_agent_token_at_position_zero_is_refused():
    with pytest.raises(ValueError, match="first position"):
        pack_decisions(TOKENS, torch.ones_like(ACTIONS), REWARDS)
