"""Q(lambda) targets keep the optimal Q a fixed point for every lambda (issue 11, B1).

A hand-built episode of three generated tokens over a 3-token vocabulary: Q* is built
backwards along the path (KL-regularised with a reference prior for ``soft``, greedy for
``max`` / ``double``), and the targets computed from Q = Q* must give back Q* itself.
Peng's recursion ``r + gamma [(1 - lam) V + lam G]`` does not: it leaves out the
``beta * log(pi / pi_ref)`` of every later token.
"""

from __future__ import annotations

import math

import pytest
import torch

from dqnlm.lm.qlearning import token_td_targets

BETA = 0.5
PROMPT, A0, A1, A2, PAD = 0, 2, 1, 0, 0
TOKENS = torch.tensor([[PROMPT, A0, A1, A2, PAD]])
ACTION_MASK = torch.tensor([[0, 1, 1, 1, 0]])
# R[j][a]: the reward of emitting token a in the state of position j
R = [[0.1, -0.2, 0.3], [0.0, 0.4, -0.1], [0.9, -0.5, 0.2]]
# the values of the states off the path (any numbers: only the path's states are visited)
OFF_PATH = [[1.5, -0.3, 0.0], [1.5, 0.8, -0.4]]  # s1: A1 is not the greedy token
PRIOR = torch.log_softmax(
    torch.tensor([[[0.3, 1.2, -0.5], [2.0, 0.1, 0.4], [-1.0, 1.5, 0.0], [0.0] * 3, [0.0] * 3]]),
    -1,
)


def soft_v(q: list[float], row: int) -> float:
    prior = PRIOR[0, row].exp().tolist()
    return BETA * math.log(sum(p * math.exp(v / BETA) for p, v in zip(prior, q)))


def optimal_q(kind: str, gamma: float) -> torch.Tensor:
    """Q*(s_j, .) at the path's positions 0..2; positions 3 and 4 are never read."""
    value = (lambda q, row: soft_v(q, row)) if kind == "soft" else (lambda q, row: max(q))
    q2 = list(R[2])  # the last token ends the episode
    v2 = value(q2, 2)
    q1 = [R[1][a] + gamma * (v2 if a == A1 else OFF_PATH[1][a]) for a in range(3)]
    v1 = value(q1, 1)
    q0 = [R[0][a] + gamma * (v1 if a == A0 else OFF_PATH[0][a]) for a in range(3)]
    return torch.tensor([[q0, q1, q2, [7.0] * 3, [-3.0] * 3]])


def targets(q: torch.Tensor, kind: str, gamma: float, lam: float) -> torch.Tensor:
    rewards = torch.tensor([[0.0, R[0][A0], R[1][A1], R[2][A2], 0.0]])
    prior = PRIOR if kind == "soft" else None
    _, y, _ = token_td_targets(
        q, q, TOKENS, ACTION_MASK, rewards, kind, BETA, gamma, lam, prior_logprobs=prior
    )
    return y


@pytest.mark.parametrize("kind", ["soft", "max", "double"])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
def test_optimal_q_is_a_fixed_point_for_every_lambda(kind, gamma, lam):
    q = optimal_q(kind, gamma)
    taken = [q[0, 0, A0].item(), q[0, 1, A1].item(), q[0, 2, A2].item(), 0.0]
    assert targets(q, kind, gamma, lam)[0].tolist() == pytest.approx(taken, abs=1e-6)


def peng_first_target(q: torch.Tensor, lam: float) -> float:
    """What the old recursion gave for the first token (gamma = 1)."""
    v1, v2 = soft_v(q[0, 1].tolist(), 1), soft_v(q[0, 2].tolist(), 2)
    g2 = R[2][A2]
    g1 = R[1][A1] + (1 - lam) * v2 + lam * g2
    return R[0][A0] + (1 - lam) * v1 + lam * g1


def test_soft_target_stays_at_the_optimum_where_peng_does_not():
    q = optimal_q("soft", 1.0)
    assert q[0, 0, A0].item() == pytest.approx(1.6588, abs=1e-4)
    for lam in (0.0, 0.9):
        assert targets(q, "soft", 1.0, lam)[0, 0].item() == pytest.approx(1.6588, abs=1e-4)
    # the old recursion is right at lam 0 only; at lam 0.9 it adds most of the later
    # tokens' beta * log(pi / pi_ref): A1 is a token the optimal policy disfavours, so
    # here it lands 0.14 below the optimum (averaged over the policy: lam * beta * KL above)
    assert peng_first_target(q, 0.0) == pytest.approx(1.6588, abs=1e-4)
    assert peng_first_target(q, 0.9) == pytest.approx(1.5210, abs=1e-4)
