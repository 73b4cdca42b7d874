"""TD targets on hand-computed examples (two states, two actions, gamma = 0.9)."""

from __future__ import annotations

import math

import pytest
import torch

from dqnlm.core.losses import td_loss
from dqnlm.core.td import (
    double_value,
    greedy_value,
    lambda_returns,
    soft_value,
    td_target,
)

GAMMA = 0.9
# row 0: the classic example, next state s2 has Q_target = [1.0, 0.5], so V(s2) = 1
NEXT_Q_TARGET = torch.tensor([[1.0, 0.5], [0.2, 0.7]])
REWARDS = torch.tensor([1.0, 0.0])
NOT_DONE = torch.zeros(2)


def close(actual: torch.Tensor, expected: list[float]) -> bool:
    return torch.allclose(actual, torch.tensor(expected), atol=1e-6)


def test_greedy_target_is_r_plus_gamma_max():
    value = greedy_value(NEXT_Q_TARGET)
    assert close(value, [1.0, 0.7])
    target = td_target(REWARDS, value, NOT_DONE, GAMMA)
    assert close(target, [1.0 + 0.9 * 1.0, 0.0 + 0.9 * 0.7])
    assert target[0].item() == pytest.approx(1.9)


def test_double_value_uses_online_argmax_and_target_value():
    # the online net prefers action 1 in row 0 and action 0 in row 1: the opposite of the target
    next_q_online = torch.tensor([[0.3, 0.8], [0.9, 0.1]])
    value = double_value(next_q_online, NEXT_Q_TARGET)
    assert close(value, [0.5, 0.2])
    assert not torch.allclose(value, greedy_value(NEXT_Q_TARGET))
    assert close(td_target(REWARDS, value, NOT_DONE, GAMMA), [1.45, 0.18])


def test_double_equals_greedy_when_both_nets_agree():
    assert torch.equal(double_value(NEXT_Q_TARGET, NEXT_Q_TARGET), greedy_value(NEXT_Q_TARGET))


def test_soft_value_matches_hand_formula():
    t = 0.5
    expected = [
        t * math.log(math.exp(1.0 / t) + math.exp(0.5 / t)),
        t * math.log(math.exp(0.2 / t) + math.exp(0.7 / t)),
    ]
    assert close(soft_value(NEXT_Q_TARGET, t), expected)


def test_soft_value_tends_to_max_as_temperature_falls():
    greedy = greedy_value(NEXT_Q_TARGET)
    gaps = []
    for t in (1.0, 0.1, 0.01, 0.001):
        soft = soft_value(NEXT_Q_TARGET, t)
        # max <= soft <= max + t * log(n_actions)
        assert torch.all(soft >= greedy - 1e-6)
        assert torch.all(soft <= greedy + t * math.log(2) + 1e-6)
        gaps.append((soft - greedy).max().item())
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-5


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_soft_value_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        soft_value(NEXT_Q_TARGET, temperature)


def test_terminated_does_not_bootstrap_but_truncated_does():
    reward, value = torch.tensor([1.0]), greedy_value(NEXT_Q_TARGET[:1])
    terminated = td_target(reward, value, torch.tensor([1.0]), GAMMA)
    assert terminated.item() == pytest.approx(1.0)
    # a time-limit truncation passes terminated=0: the last state still has a value
    truncated = td_target(reward, value, torch.tensor([0.0]), GAMMA)
    assert truncated.item() == pytest.approx(1.9)


def test_td_target_accepts_bool_terminated_and_per_item_discounts():
    target = td_target(
        REWARDS, torch.ones(2), torch.tensor([False, True]), torch.tensor([0.5, 0.9])
    )
    assert close(target, [1.5, 0.0])


def test_td_target_never_reads_the_value_of_a_terminated_transition():
    # a final state with every action ruled out has V = -inf; 0 * -inf would be NaN
    value = torch.tensor([-math.inf, math.nan, 2.0])
    target = td_target(torch.ones(3), value, torch.tensor([1.0, 1.0, 0.0]), GAMMA)
    assert close(target, [1.0, 1.0, 1.0 + 0.9 * 2.0])


def test_td_loss_ignores_whatever_masked_items_hold():
    predicted = torch.tensor([1.0, 2.0, math.nan, -math.inf], requires_grad=True)
    target = torch.tensor([0.5, 2.5, math.inf, math.nan])
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0])
    for kind in ("huber", "mse"):
        loss, errors = td_loss(predicted, target, kind, weights=mask)
        (grad,) = torch.autograd.grad(loss, predicted)
        clean = torch.tensor([1.0, 2.0], requires_grad=True)
        expected, _ = td_loss(clean, target[:2], kind)
        (clean_grad,) = torch.autograd.grad(expected * 2 / 4, clean)  # mean over 4 items
        assert loss.item() == pytest.approx(expected.item() / 2)
        assert torch.equal(grad, torch.cat([clean_grad, torch.zeros(2)]))
        assert torch.isfinite(errors).all()


def test_lambda_returns_hand_computed():
    gamma, lam = 0.9, 0.5
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[2.0, 4.0, 8.0]])  # V(s_1), V(s_2), V(s_3)
    qbar = torch.tensor([[3.0, 0.5, 6.0]])  # Qbar(s_1, a_1), Qbar(s_2, a_2), (no a_3)
    term = torch.tensor([[0.0, 0.0, 1.0]])  # the sequence ends after step 2
    g2 = 1.0  # terminal: no bootstrap
    g1 = 0.0 + gamma * (4.0 + lam * (g2 - 0.5))
    g0 = 0.0 + gamma * (2.0 + lam * (g1 - 3.0))
    out = lambda_returns(r, v, qbar, term, gamma, lam)
    assert torch.allclose(out, torch.tensor([[g0, g1, g2]]))


def test_lambda_returns_limits_and_padding():
    r = torch.tensor([[0.5, 0.0, 1.0, 7.0]])
    v = torch.tensor([[2.0, 4.0, 8.0, 9.0]])
    qbar = torch.tensor([[1.0, 3.0, 5.0, 9.0]])
    term = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # last step is padding
    # lam = 0 is one-step TD everywhere
    one_step = lambda_returns(r, v, qbar, term, 0.9, 0.0, mask)
    assert torch.allclose(one_step, torch.tensor([[0.5 + 0.9 * 2, 0.9 * 4, 1 + 0.9 * 8, 0.0]]))
    # lam = 1: the discounted sum of r_k + gamma (V_{k+1} - Qbar_{k+1}), then V after the
    # last valid step
    mc = lambda_returns(r, v, qbar, term, 0.9, 1.0, mask)
    g2 = 1 + 0.9 * 8
    g1 = 0.9 * (4 - 3) + 0.9 * g2
    g0 = 0.5 + 0.9 * (2 - 1) + 0.9 * g1
    assert torch.allclose(mc, torch.tensor([[g0, g1, g2, 0.0]]))


def test_lambda_returns_equal_to_peng_when_qbar_is_the_value():
    # with Qbar = V the correction vanishes: (1 - lam) V + lam G, the old recursion
    r, v = torch.tensor([[0.0, 0.3, 1.0]]), torch.tensor([[2.0, 4.0, 8.0]])
    term, gamma, lam = torch.tensor([[0.0, 0.0, 1.0]]), 0.9, 0.7
    g2 = 1.0
    g1 = 0.3 + gamma * ((1 - lam) * 4.0 + lam * g2)
    g0 = gamma * ((1 - lam) * 2.0 + lam * g1)
    out = lambda_returns(r, v, v, term, gamma, lam)
    assert torch.allclose(out, torch.tensor([[g0, g1, g2]]))


def test_lambda_returns_ignore_nan_and_inf_outside_the_mask():
    r = torch.tensor([[0.5, 1.0, math.nan, math.inf]])
    v = torch.tensor([[2.0, -math.inf, math.nan, math.nan]])  # V after the terminal step
    qbar = torch.tensor([[3.0, math.nan, -math.inf, math.nan]])
    term = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    out = lambda_returns(r, v, qbar, term, 0.9, 0.5, mask)
    assert torch.allclose(out, torch.tensor([[0.5 + 0.9 * (2.0 + 0.5 * (1.0 - 3.0)), 1.0, 0, 0]]))
