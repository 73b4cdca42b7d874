"""Replay buffers: ring storage, sum-tree invariants, prioritized sampling, n-step folding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dqnlm.core.replay import NStepFolder, PrioritizedReplayBuffer, ReplayBuffer, SumTree

OBS_DIM = 3


def rows(start: int, n: int):
    """Transitions whose every field encodes its row number i."""
    i = np.arange(start, start + n)
    obs = np.repeat(i[:, None], OBS_DIM, axis=1).astype(np.float32)
    return obs, i % 2, 10.0 * i, obs + 0.5, (i % 3 == 0), np.full(n, 0.9)


def stored_rows(buffer: ReplayBuffer) -> list[int]:
    return buffer.obs[:, 0].astype(int).tolist()


# ----------------------------------------------------------------------------- ReplayBuffer
def test_ring_wraps_and_overwrites_the_oldest():
    buffer = ReplayBuffer(5, (OBS_DIM,))
    assert list(buffer.add(*rows(0, 3))) == [0, 1, 2]
    assert list(buffer.add(*rows(3, 4))) == [3, 4, 0, 1]  # crosses the end of the ring
    assert len(buffer) == 5 and buffer.pos == 2
    assert stored_rows(buffer) == [5, 6, 2, 3, 4]
    assert buffer.rewards.tolist() == [50.0, 60.0, 20.0, 30.0, 40.0]
    assert buffer.terminated.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_ring_one_row_at_a_time_matches_batched_adds():
    buffer = ReplayBuffer(5, (OBS_DIM,))
    for i in range(7):
        buffer.add(*rows(i, 1))
    assert len(buffer) == 5 and buffer.pos == 2
    assert stored_rows(buffer) == [5, 6, 2, 3, 4]


def test_sampled_batch_dtypes_shapes_and_consistency():
    buffer = ReplayBuffer(10, (OBS_DIM,), seed=1)
    buffer.add(*rows(0, 7))
    batch = buffer.sample(32)
    assert batch.obs.shape == batch.next_obs.shape == (32, OBS_DIM)
    assert batch.obs.dtype == batch.next_obs.dtype == torch.float32
    assert batch.actions.shape == (32,) and batch.actions.dtype == torch.int64
    for field in (batch.rewards, batch.terminated, batch.discounts):
        assert field.shape == (32,) and field.dtype == torch.float32
    assert batch.weights is None
    assert batch.indices.min() >= 0 and batch.indices.max() < 7  # only filled slots
    # every field of a sampled row comes from the same transition
    row = batch.obs[:, 0]
    assert torch.equal(row, torch.from_numpy(batch.indices).float())
    assert torch.equal(batch.rewards, 10.0 * row)
    assert torch.equal(batch.next_obs, batch.obs + 0.5)
    assert torch.equal(batch.actions, row.long() % 2)


def test_nbytes_is_capacity_times_row_size():
    # per slot: obs + next_obs (2 x 4 x float32), action int64, reward/terminated/discount float32
    per_slot = 2 * 4 * 4 + 8 + 3 * 4
    for capacity in (100, 1000, 10_000):
        assert ReplayBuffer(capacity, (4,)).nbytes == capacity * per_slot
    assert ReplayBuffer(100, (8,), obs_dtype=np.uint8).nbytes == 100 * (2 * 8 + 8 + 3 * 4)


def npz_round_trip(state: dict) -> dict:
    blob = io.BytesIO()
    np.savez(blob, **state)
    blob.seek(0)
    with np.load(blob, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("n_rows", [3, 7])  # partly filled, and wrapped
def test_state_dict_round_trip(n_rows):
    buffer = ReplayBuffer(5, (OBS_DIM,))
    buffer.add(*rows(0, n_rows))
    restored = ReplayBuffer(5, (OBS_DIM,))
    restored.load_state_dict(npz_round_trip(buffer.state_dict()))
    assert (restored.pos, len(restored)) == (buffer.pos, len(buffer))
    for name in ("obs", "actions", "rewards", "next_obs", "terminated", "discounts"):
        assert np.array_equal(getattr(restored, name), getattr(buffer, name))
    # both continue writing at the same slot
    assert list(restored.add(*rows(100, 1))) == list(buffer.add(*rows(100, 1)))


def test_load_state_dict_rejects_more_items_than_capacity():
    buffer = ReplayBuffer(5, (OBS_DIM,))
    buffer.add(*rows(0, 5))
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(3, (OBS_DIM,)).load_state_dict(buffer.state_dict())


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, (OBS_DIM,))


# ----------------------------------------------------------------------------- SumTree
def check_tree(tree: SumTree, leaves: np.ndarray) -> None:
    for node in range(1, tree.leaf_base):
        assert tree.tree[node] == tree.tree[2 * node] + tree.tree[2 * node + 1]
    assert np.array_equal(tree[np.arange(tree.capacity)], leaves)
    assert np.all(tree.tree[tree.leaf_base + tree.capacity :] == 0)  # padding leaves stay empty
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12, abs=1e-12)


priorities = st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False)


@st.composite
def tree_updates(draw):
    capacity = draw(st.integers(1, 37))
    batches = draw(
        st.lists(
            st.lists(st.tuples(st.integers(0, capacity - 1), priorities), min_size=1, max_size=12),
            min_size=1,
            max_size=6,
        )
    )
    return capacity, batches


@settings(max_examples=150, deadline=None, derandomize=True)  # same examples every run
@given(tree_updates())
def test_sum_tree_invariants_after_batched_updates(case):
    capacity, batches = case
    tree, leaves = SumTree(capacity), np.zeros(capacity)
    for batch in batches:  # indices may repeat inside a batch
        indices = np.array([i for i, _ in batch])
        values = np.array([p for _, p in batch])
        tree.update(indices, values)
        for i in set(indices.tolist()):
            written = tree[np.array([i])][0]
            assert written in values[indices == i]  # one of the values given for that index
            leaves[i] = written
        check_tree(tree, leaves)


@settings(max_examples=150, deadline=None, derandomize=True)  # same examples every run
@given(tree_updates(), st.data())
def test_sum_tree_find_returns_the_leaf_whose_interval_holds_v(case, data):
    capacity, batches = case
    tree = SumTree(capacity)
    for batch in batches:
        tree.update(np.array([i for i, _ in batch]), np.array([p for _, p in batch]))
    leaves = tree[np.arange(capacity)]
    total = tree.total
    if total <= 0:
        return
    values = np.array(
        data.draw(st.lists(st.floats(0.0, total, exclude_max=True), min_size=1, max_size=20))
    )
    found = tree.find(values)
    starts = np.concatenate([[0.0], np.cumsum(leaves)[:-1]])
    tol = 1e-9 * total
    for v, leaf in zip(values, found):
        assert 0 <= leaf < capacity
        assert leaves[leaf] > 0
        assert starts[leaf] - tol <= v < starts[leaf] + leaves[leaf] + tol


def test_sum_tree_find_hand_example():
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 0.0, 2.0, 3.0]))  # intervals [0,1) [1,1) [1,3) [3,6)
    assert tree.total == 6.0
    values = np.array([0.0, 0.99, 1.0, 2.5, 3.0, 5.99])
    assert tree.find(values).tolist() == [0, 0, 2, 2, 3, 3]


# ----------------------------------------------------------------------------- prioritized
def test_new_items_get_the_max_priority_seen():
    buffer = PrioritizedReplayBuffer(8, (OBS_DIM,), alpha=0.5, eps=1e-6)
    buffer.add(*rows(0, 3))
    assert np.allclose(buffer.tree[np.arange(3)], 1.0)  # max priority starts at 1
    buffer.update_priorities(np.array([1]), np.array([-8.0]))  # |td error| counts
    assert buffer.max_priority == pytest.approx(8.0 + 1e-6)
    assert buffer.tree[np.array([1])][0] == pytest.approx((8.0 + 1e-6) ** 0.5)
    buffer.update_priorities(np.array([0]), np.array([0.5]))  # a smaller error keeps the max
    buffer.add(*rows(3, 1))
    assert buffer.tree[np.array([3])][0] == pytest.approx((8.0 + 1e-6) ** 0.5)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_sampling_frequency_is_proportional_to_priority_power_alpha(alpha):
    buffer = PrioritizedReplayBuffer(4, (OBS_DIM,), alpha=alpha, seed=3)
    buffer.add(*rows(0, 4))
    errors = np.array([1.0, 2.0, 3.0, 4.0])
    buffer.update_priorities(np.arange(4), errors)
    counts = np.zeros(4)
    for _ in range(100):
        counts += np.bincount(buffer.sample(200).indices, minlength=4)
    expected = errors**alpha / (errors**alpha).sum()
    assert np.allclose(counts / counts.sum(), expected, atol=0.01)


def test_importance_weights_follow_the_formula_and_max_is_one():
    beta = 0.7
    buffer = PrioritizedReplayBuffer(6, (OBS_DIM,), alpha=1.0, beta=lambda step: beta, seed=0)
    buffer.add(*rows(0, 6))
    buffer.update_priorities(np.arange(6), np.array([0.1, 1.0, 2.0, 4.0, 8.0, 16.0]))
    batch = buffer.sample(64, step=5)
    weights = batch.weights.numpy()
    assert batch.weights.dtype == torch.float32
    assert np.all(weights <= 1.0) and weights.max() == 1.0
    probs = buffer.tree[batch.indices] / buffer.tree.total
    raw = (6 * probs) ** -beta
    assert np.allclose(weights, raw / raw.max(), rtol=1e-6)
    # the rarest sample gets the largest weight
    assert weights[np.argmin(probs)] == 1.0


def test_beta_schedule_is_called_with_the_sampling_step():
    seen = []
    buffer = PrioritizedReplayBuffer(4, (OBS_DIM,), beta=lambda step: seen.append(step) or 1.0)
    buffer.add(*rows(0, 4))
    buffer.sample(2, step=123)
    assert seen == [123]


def test_prioritized_state_dict_round_trip():
    buffer = PrioritizedReplayBuffer(5, (OBS_DIM,), alpha=0.6)
    buffer.add(*rows(0, 7))
    buffer.update_priorities(np.array([0, 3]), np.array([5.0, 0.2]))
    restored = PrioritizedReplayBuffer(5, (OBS_DIM,), alpha=0.6)
    restored.load_state_dict(npz_round_trip(buffer.state_dict()))
    assert restored.max_priority == buffer.max_priority
    assert np.array_equal(restored.tree.tree, buffer.tree.tree)
    assert np.array_equal(restored.obs, buffer.obs)


# ----------------------------------------------------------------------------- n-step folding
def step_obs(t: int) -> np.ndarray:
    """Observations of both envs at time t: env i sees [10 t + i]."""
    return np.array([[10.0 * t], [10.0 * t + 1]])


def test_n_step_folder_hand_computed():
    folder = NStepFolder(n=3, gamma=0.5, n_envs=2)
    push = folder.push
    no = np.array([False, False])
    actions = np.array([0, 1])

    # t=0: nothing complete yet
    assert push(step_obs(0), actions, np.array([1.0, 10.0]), step_obs(1), no, no) is None

    # t=1: both windows hold 2 of 3 steps
    assert push(step_obs(1), actions, np.array([2.0, 20.0]), step_obs(2), no, no) is None
    obs, act, ret, next_obs, term, disc = push(
        step_obs(2), actions, np.array([4.0, 30.0]), step_obs(3), np.array([False, True]), no
    )
    # t=2: env 0 completes a full window [1, 2, 4]; env 1 terminates with a full window
    # [10, 20, 30], which folds into 3 transitions (every suffix), none bootstrapping
    assert obs[:, 0].tolist() == [0.0, 1.0, 11.0, 21.0]
    assert act.tolist() == [0, 1, 1, 1]
    assert ret.tolist() == [1 + 0.5 * 2 + 0.25 * 4, 10 + 0.5 * 20 + 0.25 * 30, 20 + 15, 30]
    assert next_obs[:, 0].tolist() == [30.0, 31.0, 31.0, 31.0]
    assert term.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert disc.tolist() == [0.125, 0.125, 0.25, 0.5]


def test_n_step_folder_terminated_and_truncated_tails():
    folder = NStepFolder(n=3, gamma=0.5, n_envs=2)
    no = np.array([False, False])
    actions = np.array([0, 1])
    folder.push(step_obs(0), actions, np.array([1.0, 10.0]), step_obs(1), no, no)
    # t=1: env 1 terminates after 2 steps; env 0 continues
    obs, _, ret, next_obs, term, disc = folder.push(
        step_obs(1), actions, np.array([2.0, 20.0]), step_obs(2), np.array([False, True]), no
    )
    assert obs[:, 0].tolist() == [1.0, 11.0]
    assert ret.tolist() == [10 + 0.5 * 20, 20.0]
    assert next_obs[:, 0].tolist() == [21.0, 21.0]
    assert term.tolist() == [1.0, 1.0]  # terminated: td_target will not bootstrap
    assert disc.tolist() == [0.25, 0.5]

    # t=2: env 0 completes [1, 2, 4]; env 1 starts a new episode
    obs, _, ret, _, term, disc = folder.push(
        step_obs(2), actions, np.array([4.0, 100.0]), step_obs(3), no, no
    )
    assert (obs[:, 0].tolist(), ret.tolist(), term.tolist(), disc.tolist()) == (
        [0.0],
        [3.0],
        [0.0],
        [0.125],
    )

    # t=3: env 0 is truncated with window [2, 4, 8]: every suffix bootstraps, gamma ** len
    obs, _, ret, next_obs, term, disc = folder.push(
        step_obs(3), actions, np.array([8.0, 200.0]), step_obs(4), no, np.array([True, False])
    )
    assert obs[:, 0].tolist() == [10.0, 20.0, 30.0]
    assert ret.tolist() == [2 + 0.5 * 4 + 0.25 * 8, 4 + 0.5 * 8, 8.0]
    assert next_obs[:, 0].tolist() == [40.0, 40.0, 40.0]
    assert term.tolist() == [0.0, 0.0, 0.0]
    assert disc.tolist() == [0.125, 0.25, 0.5]

    # env 1's new episode [100, 200] is still pending
    assert len(folder.windows[1]) == 2
