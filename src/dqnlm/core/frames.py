"""Replay for image observations that stores every frame once.

A stacked observation ``(k * c, H, W)`` (Atari: four 84x84 greyscale frames) overlaps its
successor in ``k - 1`` frames, and each transition's next observation is the following
transition's observation. Storing ``(obs, next_obs)`` pairs keeps every frame ``2k``
times; here each environment writes its frames once into its own ring, and a transition
is two positions in that ring. 1M Atari transitions take 1M x 7 KB = 7 GB instead of 56.

Per environment the ring holds, in order, every frame of every episode: the reset frame,
then one frame per step (the true last frame at an episode's end, then the next reset
frame). A stack reaching back past its episode's first frame repeats that first frame,
as Gymnasium's ``FrameStackObservation`` (padding "reset") does, so a replayed
observation is bit-identical to the one the agent saw. n-step returns fold in here too:
a transition's next observation is simply ``n`` positions later in the same episode.

A frame overwritten in the ring retires the transitions that need it; sampling is
uniform over the transitions whose frames are all still present.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from dqnlm.core.replay import Batch

_TRANSITIONS = ("obs_pos", "next_pos", "actions", "rewards", "terminated", "discounts")


class FrameReplayBuffer:
    """Frame-once replay for ``n_envs`` environments stepped together.

    ``capacity`` counts frames (and at most that many transitions), split evenly over the
    environments. Call :meth:`begin` with each environment's first observation of an
    episode, and :meth:`step` after every vector step.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        frame_stack: int,
        n_envs: int,
        n_step: int = 1,
        gamma: float = 0.99,
        obs_dtype: np.dtype = np.uint8,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if obs_shape[0] % frame_stack:
            raise ValueError(f"{obs_shape[0]} channels do not split into {frame_stack} frames")
        per_env = -(-capacity // n_envs)
        if per_env < n_step + frame_stack:
            raise ValueError(f"replay capacity {capacity} is too small for {n_envs} envs")
        self.k, self.n_envs, self.n_step, self.gamma = frame_stack, n_envs, n_step, gamma
        self.obs_shape = tuple(obs_shape)
        self.frame_shape = (obs_shape[0] // frame_stack, *obs_shape[1:])
        self.slots, self.device = per_env, torch.device(device)
        self.frames = np.zeros((n_envs, per_env, *self.frame_shape), dtype=obs_dtype)
        # frames since the episode's first, capped at k - 1: how far back a stack may reach
        self.depth = np.zeros((n_envs, per_env), dtype=np.uint8)
        self.obs_pos = np.zeros((n_envs, per_env), dtype=np.int64)  # absolute frame positions
        self.next_pos = np.zeros((n_envs, per_env), dtype=np.int64)
        self.actions = np.zeros((n_envs, per_env), dtype=np.int64)
        self.rewards = np.zeros((n_envs, per_env), dtype=np.float32)
        self.terminated = np.zeros((n_envs, per_env), dtype=np.float32)
        self.discounts = np.zeros((n_envs, per_env), dtype=np.float32)
        self.frames_written = np.zeros(n_envs, dtype=np.int64)
        self.written = np.zeros(n_envs, dtype=np.int64)  # transitions written
        self.oldest = np.zeros(n_envs, dtype=np.int64)  # first transition still whole
        self.windows: list[deque] = [deque() for _ in range(n_envs)]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int((self.written - self.oldest).sum())

    @property
    def nbytes(self) -> int:
        arrays = [self.frames, self.depth, *(getattr(self, name) for name in _TRANSITIONS)]
        return sum(a.nbytes for a in arrays)

    # ----------------------------------------------------------------------- writing
    def _write_frame(self, env: int, frame: np.ndarray, depth: int) -> int:
        pos = int(self.frames_written[env])
        slot = pos % self.slots
        self.frames[env, slot] = frame
        self.depth[env, slot] = min(depth, self.k - 1)
        self.frames_written[env] = pos + 1
        self._retire(env)
        return pos

    def _newest(self, obs: np.ndarray) -> np.ndarray:
        return obs[-self.frame_shape[0] :]

    def begin(self, env: int, obs: np.ndarray) -> None:
        """The first observation of an episode in environment ``env``."""
        self.windows[env].clear()
        self._write_frame(env, self._newest(obs), 0)

    def step(self, actions, rewards, next_obs, terminated, truncated) -> None:
        """One vector step: ``next_obs`` holds each environment's true next observation
        (the final one where an episode ended; call :meth:`begin` with the reset one)."""
        for env in range(self.n_envs):
            pos = int(self.frames_written[env]) - 1
            depth = int(self.depth[env, pos % self.slots]) + 1
            next_pos = self._write_frame(env, self._newest(next_obs[env]), depth)
            window = self.windows[env]
            window.append((pos, int(actions[env]), float(rewards[env])))
            if terminated[env] or truncated[env]:
                while window:
                    self._emit(env, next_pos, bool(terminated[env]))
            elif len(window) == self.n_step:
                self._emit(env, next_pos, False)

    def _emit(self, env: int, next_pos: int, terminated: bool) -> None:
        window = self.windows[env]
        ret = sum(r * self.gamma**i for i, (_, _, r) in enumerate(window))
        pos, action, _ = window.popleft()
        slot = int(self.written[env]) % self.slots
        values = (pos, next_pos, action, ret, float(terminated), self.gamma ** (next_pos - pos))
        for name, value in zip(_TRANSITIONS, values):
            getattr(self, name)[env, slot] = value
        self.written[env] += 1
        self._retire(env)

    def _retire(self, env: int) -> None:
        """Drop the oldest transitions whose slot is reused or whose frames are overwritten."""
        first_frame = self.frames_written[env] - self.slots  # oldest frame still stored
        oldest = max(int(self.oldest[env]), int(self.written[env]) - self.slots)
        while oldest < self.written[env]:
            slot = oldest % self.slots
            pos = self.obs_pos[env, slot]
            if pos - self.depth[env, pos % self.slots] >= first_frame:
                break
            oldest += 1
        self.oldest[env] = oldest

    # ---------------------------------------------------------------------- sampling
    def stacks(self, env: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """The stacked observations ending at absolute frame positions ``pos``."""
        reach = self.depth[env, pos % self.slots].astype(np.int64)
        back = np.arange(self.k - 1, -1, -1)
        positions = np.maximum(pos[:, None] - back, (pos - reach)[:, None]) % self.slots
        frames = self.frames[env[:, None], positions]  # (B, k, c, H, W)
        return frames.reshape(len(pos), *self.obs_shape)

    def sample(self, batch_size: int) -> Batch:
        counts = self.written - self.oldest
        draws = self.rng.integers(0, int(counts.sum()), size=batch_size)
        ends = np.cumsum(counts)
        env = np.searchsorted(ends, draws, side="right")
        slot = (self.oldest[env] + draws - (ends[env] - counts[env])) % self.slots
        obs = self.stacks(env, self.obs_pos[env, slot])
        next_obs = self.stacks(env, self.next_pos[env, slot])
        columns = [obs, self.actions[env, slot], self.rewards[env, slot], next_obs]
        columns += [self.terminated[env, slot], self.discounts[env, slot]]
        tensors = (torch.from_numpy(c).to(self.device, non_blocking=True) for c in columns)
        return Batch(*tensors, indices=env * self.slots + slot)

    # ------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, np.ndarray]:
        """Numeric arrays only (``np.savez``); pending n-step windows are not kept: a
        resumed run starts new episodes."""
        state = {name: getattr(self, name) for name in ("frames", "depth", *_TRANSITIONS)}
        state["counters"] = np.stack([self.frames_written, self.written, self.oldest])
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in ("frames", "depth", *_TRANSITIONS):
            if state[name].shape != getattr(self, name).shape:
                raise ValueError(f"saved replay {name} has shape {state[name].shape}")
            getattr(self, name)[...] = state[name]
        self.frames_written, self.written, self.oldest = (c.copy() for c in state["counters"])
        for window in self.windows:
            window.clear()
