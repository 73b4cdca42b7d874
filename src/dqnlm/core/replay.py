"""Experience replay: a uniform ring buffer, prioritized replay, and n-step folding.

Buffers are preallocated once: memory is ``capacity x observation size``.
Each transition stores its own bootstrap ``discount`` (``gamma ** k``), which is
how n-step and truncated windows share one TD formula.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from dqnlm.core.schedules import Schedule


@dataclass
class Batch:
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    discounts: torch.Tensor
    indices: np.ndarray
    weights: torch.Tensor | None = None  # importance weights (prioritized replay only)


_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "discounts")


class ReplayBuffer:
    """Uniform experience replay over a fixed-capacity ring.

    Storage is host memory (numpy), written in place; a sampled batch becomes
    torch tensors on ``device`` without an extra copy on CPU.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype = np.float32,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _FIELDS)

    def add(self, obs, actions, rewards, next_obs, terminated, discounts) -> np.ndarray:
        """Append a batch of transitions (first dim); returns the slots written."""
        n = len(actions)
        if self.pos + n <= self.capacity:
            slots = np.arange(self.pos, self.pos + n)
            where: slice | np.ndarray = slice(self.pos, self.pos + n)
        else:
            slots = where = (self.pos + np.arange(n)) % self.capacity
        for name, value in zip(_FIELDS, (obs, actions, rewards, next_obs, terminated, discounts)):
            getattr(self, name)[where] = value
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return slots

    def _gather(self, indices: np.ndarray) -> Batch:
        tensors = (torch.from_numpy(getattr(self, name)[indices]) for name in _FIELDS)
        return Batch(*(t.to(self.device, non_blocking=True) for t in tensors), indices=indices)

    def sample(self, batch_size: int) -> Batch:
        return self._gather(self.rng.integers(0, self.size, size=batch_size))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Numeric arrays only, for ``np.savez`` (loaded back with ``allow_pickle=False``)."""
        state = {name: getattr(self, name)[: self.size] for name in _FIELDS}
        state["pos_size"] = np.array([self.pos, self.size], dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pos, size = (int(x) for x in state["pos_size"])
        if size > self.capacity:
            raise ValueError(f"saved replay holds {size} items, capacity is {self.capacity}")
        self.pos, self.size = pos, size
        for name in _FIELDS:
            getattr(self, name)[:size] = state[name]


class SumTree:
    """Binary tree whose every node holds the sum of its children; leaves hold priorities.

    ``update`` and ``find`` take arrays and walk the tree one level per numpy op,
    so a batch costs O(batch x log capacity) with no Python loop over items.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.depth = max(capacity - 1, 0).bit_length()
        self.leaf_base = 1 << self.depth  # leaves live at [base, 2 * base); the root is node 1
        self.tree = np.zeros(2 * self.leaf_base, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(indices) + self.leaf_base]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        nodes = np.asarray(indices, dtype=np.int64) + self.leaf_base
        self.tree[nodes] = priorities
        for _ in range(self.depth):
            nodes = np.unique(nodes // 2)
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index whose prefix-sum interval contains each value in ``[0, total)``."""
        values = np.asarray(values, dtype=np.float64).copy()
        nodes = np.ones(len(values), dtype=np.int64)
        for _ in range(self.depth):
            left = self.tree[2 * nodes]
            # never step into an empty subtree, whatever rounding did to `values`
            right = (values >= left) & (self.tree[2 * nodes + 1] > 0)
            values -= left * right
            nodes = 2 * nodes + right
        return nodes - self.leaf_base


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016).

    ``P(i) = p_i^alpha / sum_j p_j^alpha`` with ``p_i = |td_error_i| + eps``; new
    transitions get the largest priority seen so far so each is replayed at least
    once. Importance weights ``(N P(i))^-beta`` are normalised by the batch max;
    ``beta`` follows a schedule (usually annealed to 1) over sampling calls' step.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        alpha: float = 0.6,
        beta: Schedule = lambda step: 0.4,
        eps: float = 1e-6,
        **kwargs,
    ) -> None:
        super().__init__(capacity, obs_shape, **kwargs)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0

    def add(self, *args) -> np.ndarray:
        slots = super().add(*args)
        self.tree.update(slots, np.full(len(slots), self.max_priority**self.alpha))
        return slots

    def sample(self, batch_size: int, step: int = 0) -> Batch:
        # stratified: one draw from each of batch_size equal slices of the total mass
        bounds = (np.arange(batch_size) + self.rng.random(batch_size)) * (
            self.tree.total / batch_size
        )
        indices = np.minimum(self.tree.find(bounds), self.size - 1)
        probs = self.tree[indices] / self.tree.total
        weights = (self.size * probs) ** (-self.beta(step))
        batch = self._gather(indices)
        batch.weights = torch.as_tensor(weights / weights.max(), dtype=torch.float32).to(
            self.device
        )
        return batch

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices, priorities**self.alpha)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = super().state_dict()
        state["priorities"] = self.tree[np.arange(self.size)]
        state["max_priority"] = np.array([self.max_priority])
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.tree.update(np.arange(self.size), state["priorities"])
        self.max_priority = float(state["max_priority"][0])


class NStepFolder:
    """Fold per-environment 1-step transitions into n-step ones, for vectorized envs.

    ``push`` takes one vector step and returns the n-step transitions that are now
    complete: a window of n rewards, or the shorter tail of an episode that just
    ended. A terminated tail does not bootstrap; a truncated tail bootstraps from
    the final observation with discount ``gamma ** len(tail)``.
    """

    def __init__(self, n: int, gamma: float, n_envs: int) -> None:
        self.n, self.gamma = n, gamma
        self.windows: list[deque] = [deque() for _ in range(n_envs)]

    def _emit(self, window: deque, next_obs, terminated: bool, out: list) -> None:
        ret = sum(r * self.gamma**k for k, (_, _, r) in enumerate(window))
        obs, action, _ = window[0]
        out.append((obs, action, ret, next_obs, float(terminated), self.gamma ** len(window)))
        window.popleft()

    def push(self, obs, actions, rewards, next_obs, terminated, truncated) -> tuple | None:
        out: list = []
        for i, window in enumerate(self.windows):
            window.append((obs[i], actions[i], float(rewards[i])))
            if terminated[i] or truncated[i]:
                while window:
                    self._emit(window, next_obs[i], bool(terminated[i]), out)
            elif len(window) == self.n:
                self._emit(window, next_obs[i], False, out)
        if not out:
            return None
        return tuple(np.stack(column) for column in zip(*out))
