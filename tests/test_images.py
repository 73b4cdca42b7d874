"""Image observations: the Atari and MinAtar wrappers, the frame-once replay (checked
against Gymnasium's FrameStackObservation and a naive replay of full (obs, next_obs)
pairs), the convolutional Q-networks, bad image-env input through the CLI, and a tiny
MinAtar run that learns."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch

from dqnlm import DQNConfig
from dqnlm.cli import main
from dqnlm.control import DQN
from dqnlm.control.envs import env_spaces, family, make_env, run_episodes
from dqnlm.core.frames import FrameReplayBuffer
from dqnlm.core.networks import NATURE_MIN_SIZE, ConvQNetwork, QNetwork, build_q_network
from dqnlm.core.td import td_target


@pytest.fixture
def atari():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")


@pytest.fixture
def minatar():
    pytest.importorskip("minatar")


def _preprocessing(env: gym.Env) -> gym.wrappers.AtariPreprocessing:
    while not isinstance(env, gym.wrappers.AtariPreprocessing):
        env = env.env
    return env


# ================================================================================ wrappers
def test_family_tells_the_three_kinds_apart():
    assert family("ALE/Pong-v5") == "atari"
    assert family("MinAtar/Breakout-v1") == "minatar"
    assert family("CartPole-v1") == "gym"


def test_atari_observations_are_stacked_uint8_frames(atari):
    config = DQNConfig(env_id="ALE/Pong-v5")
    space, actions = env_spaces(config)
    assert space.shape == (4, 84, 84) and space.dtype == np.uint8 and actions.n == 6
    env = make_env(config)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[i], obs[-1]) for i in range(4))  # padded with the reset frame
    obs, *_ = env.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    env.close()

    small = make_env(DQNConfig(env_id="ALE/Pong-v5", frame_stack=2, screen_size=42))
    obs, _ = small.reset(seed=0)
    assert obs.shape == (2, 42, 42) and obs.dtype == np.uint8
    small.close()


class ScreenRecorder(gym.Wrapper):
    """Keeps the raw greyscale screen after every emulator frame."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.screens: list[np.ndarray] = []

    def step(self, action):
        out = self.env.step(action)
        self.screens.append(self.env.unwrapped.ale.getScreenGrayscale().copy())
        return out


def test_atari_frames_are_the_max_of_the_last_two_screens_and_stack_by_one(atari):
    import cv2

    env = make_env(DQNConfig(env_id="ALE/Pong-v5", sticky_action_prob=0.0))
    pre = _preprocessing(env)
    recorder = pre.env = ScreenRecorder(pre.env)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    pooling_mattered = False
    for _ in range(120):
        recorder.screens.clear()
        next_obs, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        assert not (terminated or truncated)
        assert len(recorder.screens) == 4  # frame_skip emulator frames per agent step
        last, before = recorder.screens[-1], recorder.screens[-2]
        pooled = cv2.resize(np.maximum(before, last), (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(next_obs[-1], pooled)  # newest channel: newest frame
        pooling_mattered |= not np.array_equal(
            pooled, cv2.resize(last, (84, 84), interpolation=cv2.INTER_AREA)
        )
        np.testing.assert_array_equal(next_obs[:-1], obs[1:])  # the stack shifts by one
        obs = next_obs
    assert pooling_mattered  # the moving ball shows in both frames
    env.close()


def _atari_trajectory(config: DQNConfig, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    env = make_env(config)
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(123).integers(env.action_space.n, size=steps)
    frames, rewards = [obs[-1]], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        frames.append(obs[-1])
        rewards.append(reward)
        assert not (terminated or truncated)
    env.close()
    return np.stack(frames), np.array(rewards)


def test_atari_sticky_actions_are_seeded(atari):
    config = DQNConfig(env_id="ALE/Pong-v5")
    env = make_env(config)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    env.close()
    off = make_env(DQNConfig(env_id="ALE/Pong-v5", sticky_action_prob=0.0))
    assert off.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    off.close()

    frames, rewards = _atari_trajectory(config, seed=5, steps=100)
    again, again_rewards = _atari_trajectory(config, seed=5, steps=100)
    np.testing.assert_array_equal(frames, again)
    np.testing.assert_array_equal(rewards, again_rewards)
    other, _ = _atari_trajectory(config, seed=6, steps=100)
    assert not np.array_equal(frames, other)  # the seed draws the repeated actions


def test_terminal_on_life_loss_applies_to_training_envs_only(atari):
    config = DQNConfig(env_id="ALE/Breakout-v5", terminal_on_life_loss=True, sticky_action_prob=0.0)
    train, test = make_env(config, train=True), make_env(config, train=False)
    assert _preprocessing(train).terminal_on_life_loss
    assert not _preprocessing(test).terminal_on_life_loss
    assert not _preprocessing(make_env(DQNConfig(env_id="ALE/Breakout-v5"))).terminal_on_life_loss

    train.reset(seed=0)
    test.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(2000):
        action = 1 if step % 10 == 0 else int(rng.integers(4))  # FIRE serves the ball
        _, _, train_end, _, train_info = train.step(action)
        _, _, test_end, _, test_info = test.step(action)
        assert train_info["lives"] == test_info["lives"]
        if train_end:
            break
    else:
        pytest.fail("no life was lost in 2000 steps")
    assert train_info["lives"] == 4 and not test_end  # the game goes on in evaluation
    train.close()
    test.close()


@pytest.mark.parametrize(
    "env_id",
    [
        "MinAtar/Freeway-v1",
        "ALE/Pong-v5",
    ],
)
def test_max_episode_steps_counts_agent_steps(env_id):
    pytest.importorskip("ale_py" if family(env_id) == "atari" else "minatar")
    env = make_env(DQNConfig(env_id=env_id, max_episode_steps=100))
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 200:
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
    env.close()
    assert (steps, terminated, truncated) == (100, False, True)


def test_minatar_observations_are_the_game_state_channel_first(minatar):
    config = DQNConfig(env_id="MinAtar/Breakout-v1")
    space, actions = env_spaces(config)
    env = make_env(config)
    game = env.unwrapped.game
    channels = game.state_shape()[-1]
    assert space.shape == (channels, 10, 10) and space.dtype == np.uint8 and actions.n == 3
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        assert obs.shape == (channels, 10, 10) and obs.dtype == np.uint8
        assert obs.flags.c_contiguous
        np.testing.assert_array_equal(obs, game.state().transpose(2, 0, 1).astype(np.uint8))
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()


def _minatar_trajectory(config: DQNConfig, seed: int, steps: int) -> list:
    env = make_env(config)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in np.random.default_rng(7).integers(env.action_space.n, size=steps):
        obs, reward, terminated, truncated, _ = env.step(int(action))
        out += [obs, reward, terminated]
        if terminated or truncated:
            break
    env.close()
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_minatar_sticky_actions_are_seeded(minatar):
    config = DQNConfig(env_id="MinAtar/Breakout-v1")
    env = make_env(config)
    assert env.unwrapped.game.sticky_action_prob == pytest.approx(0.1)
    env.close()
    env = make_env(DQNConfig(env_id="MinAtar/Breakout-v1", sticky_action_prob=0.5))
    assert env.unwrapped.game.sticky_action_prob == pytest.approx(0.5)
    env.close()
    assert _same(_minatar_trajectory(config, 3, 200), _minatar_trajectory(config, 3, 200))
    trajectories = [_minatar_trajectory(config, seed, 200) for seed in range(4, 8)]
    assert not all(_same(trajectories[0], t) for t in trajectories[1:])


# ========================================================================= frame replay
class CodedFrames(gym.Env):
    """Frames whose first pixels spell (env, episode, step). Episodes end by ``script``
    (``(length, "terminated" | "truncated")`` per episode, cycled; reward 2**(t - 1) at
    step t) or at random (normal rewards)."""

    def __init__(self, index: int, frame_shape=(3, 3), script=None, end_prob=0.15) -> None:
        self.observation_space = gym.spaces.Box(0, 255, frame_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.index, self.script, self.end_prob = index, script, end_prob
        self.episode, self.t = -1, 0

    def frame(self) -> np.ndarray:
        frame = np.zeros(self.observation_space.shape, np.uint8)
        flat = frame.reshape(-1)
        flat[:3] = self.index, self.episode, self.t
        code = 7 * self.index + 13 * self.episode + 29 * self.t
        flat[3:] = (np.arange(3, flat.size) * 31 + code) % 251
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        assert self.episode < 256
        if self.script:
            self.length, self.kind = self.script[self.episode % len(self.script)]
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        if self.script:
            reward = 2.0 ** (self.t - 1)
            end = self.t == self.length
            terminated, truncated = (
                end and self.kind == "terminated",
                end and self.kind != "terminated",
            )
        else:
            reward, u = float(self.np_random.normal()), self.np_random.random()
            terminated = bool(u < self.end_prob / 2)
            truncated = not terminated and bool(u < self.end_prob or self.t >= 40)
        return self.frame(), reward, terminated, truncated, {}


def code(stack: np.ndarray, k: int) -> list[tuple[int, int, int]]:
    """(env, episode, step) of every frame of a stacked observation, oldest first."""
    return [tuple(int(v) for v in f[:3]) for f in stack.reshape(k, -1)]


@dataclass
class Transition:
    key: tuple[int, int, int]
    obs: np.ndarray
    action: int
    ret: float
    next_obs: np.ndarray
    terminated: bool
    discount: float
    reach: int  # the first frame position its observation needs


class NaiveReplay:
    """The reference: every step's full stacked (obs, next_obs) as Gymnasium's
    FrameStackObservation gave them, n-step transitions and their liveness worked out from
    the definitions (a transition lives while all its frames are among the last ``slots``
    written and it is among the last ``slots`` transitions of its environment)."""

    def __init__(self, n_envs: int, k: int, n_step: int, gamma: float, slots: int) -> None:
        self.k, self.n, self.gamma, self.slots = k, n_step, gamma, slots
        self.episodes: list[list[dict]] = [[] for _ in range(n_envs)]
        self.frames_written = [0] * n_envs
        self.frame_log: list[list[np.ndarray]] = [[] for _ in range(n_envs)]  # newest frames

    def _frame(self, env: int, obs: np.ndarray) -> None:
        self.frame_log[env].append(obs.reshape(self.k, -1)[-1].copy())
        self.frames_written[env] += 1

    def begin(self, env: int, obs: np.ndarray) -> None:
        self.episodes[env].append(
            {"start": self.frames_written[env], "obs": obs, "steps": [], "ended": False}
        )
        self._frame(env, obs)

    def step(self, env, action, reward, next_obs, terminated, truncated) -> None:
        episode = self.episodes[env][-1]
        obs = episode["steps"][-1]["next_obs"] if episode["steps"] else episode["obs"]
        pos = self.frames_written[env] - 1
        episode["steps"].append(
            {"obs": obs, "pos": pos, "action": int(action), "reward": float(reward),
             "next_obs": next_obs, "terminated": bool(terminated)}
        )  # fmt: skip
        episode["ended"] = bool(terminated or truncated)
        self._frame(env, next_obs)

    def transitions(self, env: int) -> list[Transition]:
        """Every n-step transition complete so far, in the order they become complete."""
        out = []
        for episode in self.episodes[env]:
            steps = episode["steps"]
            for i, first in enumerate(steps):
                m = min(self.n, len(steps) - i)
                if m < self.n and not episode["ended"]:
                    break
                last = steps[i + m - 1]
                ret = sum(self.gamma**j * steps[i + j]["reward"] for j in range(m))
                out.append(
                    Transition(
                        code(first["obs"], self.k)[-1], first["obs"], first["action"], ret,
                        last["next_obs"], last["terminated"], self.gamma**m,
                        max(episode["start"], first["pos"] - self.k + 1),
                    )
                )  # fmt: skip
        return out

    def live(self) -> dict[tuple[int, int, int], Transition]:
        out = {}
        for env in range(len(self.episodes)):
            every = self.transitions(env)
            first_frame = self.frames_written[env] - self.slots
            for t in every[max(0, len(every) - self.slots) :]:
                if t.reach >= first_frame:
                    out[t.key] = t
        return out


def drive(buffer, naive, envs, steps, rng, obs_shape, check_every=0, batch=256):
    """Play ``envs`` (each a FrameStackObservation) with random actions, feeding the frame
    replay as DQN does and the naive one alike; check samples every ``check_every`` steps."""

    def begin(i, obs):
        buffer.begin(i, obs)
        naive.begin(i, obs)

    for i, env in enumerate(envs):
        begin(i, env.reset(seed=i)[0].reshape(obs_shape))
    for step in range(steps):
        actions = rng.integers(3, size=len(envs))
        results = [env.step(int(a)) for env, a in zip(envs, actions)]
        next_obs = np.stack([r[0].reshape(obs_shape) for r in results])
        rewards = np.array([r[1] for r in results], dtype=np.float32)
        terminated = np.array([r[2] for r in results])
        truncated = np.array([r[3] for r in results])
        buffer.step(actions, rewards, next_obs, terminated, truncated)
        for i in range(len(envs)):
            naive.step(i, actions[i], rewards[i], next_obs[i], terminated[i], truncated[i])
        for i in np.flatnonzero(terminated | truncated):
            begin(i, envs[i].reset()[0].reshape(obs_shape))
        if check_every and (step + 1) % check_every == 0:
            check_samples(buffer, naive, batch)


def check_samples(buffer, naive, batch_size):
    """Every sampled transition is exactly a live one of the naive replay; returns the keys."""
    live = naive.live()
    assert len(buffer) == len(live)
    if not live:
        return set()
    batch = buffer.sample(batch_size)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (batch_size, *buffer.obs_shape)
    keys = [code(obs, naive.k)[-1] for obs in batch.obs.numpy()]
    missing = [key for key in keys if key not in live]
    assert not missing, f"sampled {missing}, retired or never complete"
    refs = [live[key] for key in keys]
    np.testing.assert_array_equal(batch.obs.numpy(), np.stack([t.obs for t in refs]))
    np.testing.assert_array_equal(batch.next_obs.numpy(), np.stack([t.next_obs for t in refs]))
    np.testing.assert_array_equal(batch.actions.numpy(), [t.action for t in refs])
    np.testing.assert_allclose(batch.rewards.numpy(), [t.ret for t in refs], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch.terminated.numpy(), [t.terminated for t in refs])
    np.testing.assert_allclose(batch.discounts.numpy(), [t.discount for t in refs], rtol=1e-6)
    return set(keys)


def make_pair(n_envs, k, n_step, gamma, capacity, frame_shape=(3, 3), seed=0, **env_kwargs):
    obs_shape = (k * (frame_shape[0] if len(frame_shape) == 3 else 1), *frame_shape[-2:])
    buffer = FrameReplayBuffer(capacity, obs_shape, k, n_envs, n_step, gamma, seed=seed)
    naive = NaiveReplay(n_envs, k, n_step, gamma, buffer.slots)
    envs = [
        gym.wrappers.FrameStackObservation(CodedFrames(i, frame_shape, **env_kwargs), k)
        for i in range(n_envs)
    ]
    return buffer, naive, envs, obs_shape


def test_every_frame_is_stored_once():
    buffer, naive, envs, shape = make_pair(2, 4, 3, 0.9, capacity=1000)
    drive(buffer, naive, envs, 80, np.random.default_rng(0), shape)
    assert buffer.frames.shape == (2, 500, 1, 3, 3)  # frames, not stacks
    for env in range(2):
        steps = sum(len(e["steps"]) for e in naive.episodes[env])
        resets = len(naive.episodes[env])
        assert resets > 3  # the run crossed episode boundaries
        assert buffer.frames_written[env] == steps + resets == naive.frames_written[env]
        written = int(buffer.frames_written[env])
        log = np.stack(naive.frame_log[env]).reshape(written, 1, 3, 3)
        np.testing.assert_array_equal(buffer.frames[env, :written], log)
        assert not buffer.frames[env, written:].any()


def test_a_million_atari_transitions_fit_in_under_10_gb():
    frame = 84 * 84
    small = FrameReplayBuffer(1000, (4, 84, 84), 4, 1)
    per_transition = small.nbytes / 1000
    assert FrameReplayBuffer(2000, (4, 84, 84), 4, 1).nbytes == 2 * small.nbytes  # linear
    assert frame <= per_transition <= frame + 64  # one frame, not eight
    assert per_transition * 1_000_000 < 10e9
    # a naive replay keeps obs and next_obs, four frames each
    assert per_transition * 7 < 2 * 4 * frame
    # spread over environments the ring is split, not multiplied
    assert FrameReplayBuffer(1000, (4, 84, 84), 4, 8).nbytes == small.nbytes


SCRIPT = [(4, "terminated"), (4, "truncated"), (1, "terminated"), (6, "truncated")]


def test_stacks_and_n_step_returns_across_episode_boundaries():
    k, n, gamma = 4, 3, 0.5
    buffer, naive, envs, shape = make_pair(1, k, n, gamma, capacity=1000, script=SCRIPT)
    drive(buffer, naive, envs, 15, np.random.default_rng(0), shape)
    seen = check_samples(buffer, naive, 2000)
    assert len(buffer) == 15 and seen == set(naive.live())

    batch = buffer.sample(2000)
    rows = {code(batch.obs[b].numpy(), k)[-1]: b for b in range(2000)}

    def row(episode, t):
        b = rows[(0, episode, t)]
        obs, next_obs = (code(x[b].numpy(), k) for x in (batch.obs, batch.next_obs))
        return (
            [f[1:] for f in obs], [f[1:] for f in next_obs], float(batch.rewards[b]),
            float(batch.discounts[b]), bool(batch.terminated[b]),
        )  # fmt: skip

    def stack(episode, t):  # FrameStackObservation's padding: the first frame repeats
        return [(episode, max(0, t - j)) for j in range(k - 1, -1, -1)]

    # episode 0: rewards 1, 2, 4, 8, terminated after 4 steps
    assert row(0, 0) == (stack(0, 0), stack(0, 3), 3.0, 0.125, False)
    assert row(0, 1) == (stack(0, 1), stack(0, 4), 6.0, 0.125, True)  # reaches the end
    assert row(0, 2) == (stack(0, 2), stack(0, 4), 8.0, 0.25, True)  # folded short
    assert row(0, 3) == (stack(0, 3), stack(0, 4), 8.0, 0.5, True)
    # episode 1, truncated: right after the reset no frame of episode 0 shows
    assert row(1, 0) == ([(1, 0)] * 4, stack(1, 3), 3.0, 0.125, False)
    assert row(1, 2) == (stack(1, 2), stack(1, 4), 8.0, 0.25, False)
    assert row(1, 3) == (stack(1, 3), stack(1, 4), 8.0, 0.5, False)
    # episode 2: one step, terminated
    assert row(2, 0) == ([(2, 0)] * 4, [(2, 0)] * 3 + [(2, 1)], 1.0, 0.5, True)
    # episode 3, truncated after 6 steps: full windows, then the folded tail
    assert row(3, 2) == (stack(3, 2), stack(3, 5), 12.0, 0.125, False)
    assert row(3, 4) == (stack(3, 4), stack(3, 6), 32.0, 0.25, False)
    assert row(3, 5) == (stack(3, 5), stack(3, 6), 32.0, 0.5, False)

    # terminated tails do not bootstrap, truncated ones do: r + gamma^k V(s')
    b_term, b_trunc = rows[(0, 0, 3)], rows[(0, 1, 3)]
    value = torch.tensor([100.0, 100.0])
    target = td_target(
        batch.rewards[[b_term, b_trunc]], value,
        batch.terminated[[b_term, b_trunc]], batch.discounts[[b_term, b_trunc]],
    )  # fmt: skip
    assert target.tolist() == [8.0, 8.0 + 0.5 * 100.0]


def test_episodes_still_running_keep_their_last_steps_pending():
    buffer, naive, envs, shape = make_pair(1, 2, 3, 0.9, 100, script=[(10, "terminated")])
    drive(buffer, naive, envs, 5, np.random.default_rng(0), shape)
    assert len(buffer) == 3  # steps 3 and 4 wait for their third reward
    assert check_samples(buffer, naive, 500) == {(0, 0, 0), (0, 0, 1), (0, 0, 2)}


def test_wrap_around_retires_transitions_whose_frames_are_overwritten():
    k = 4
    buffer, naive, envs, shape = make_pair(2, k, 2, 0.9, capacity=24, end_prob=0.1)
    assert buffer.slots == 12
    drive(buffer, naive, envs, 150, np.random.default_rng(1), shape, check_every=1, batch=64)
    assert naive.frames_written[0] > 5 * buffer.slots  # wrapped many times
    assert 0 < len(buffer) <= 2 * buffer.slots
    # every transition still sampled has its whole stack in the ring
    for env in range(2):
        first = buffer.frames_written[env] - buffer.slots
        for t in naive.live().values():
            if t.key[0] == env:
                assert t.reach >= first


@pytest.mark.parametrize(
    "n_envs, k, n_step, capacity, frame_shape, seed",
    [
        (3, 4, 1, 10_000, (3, 3), 0),  # no wrap, one-step
        (3, 4, 3, 10_000, (2, 3, 3), 1),  # two channels per frame, n-step
        (4, 2, 5, 60, (3, 3), 2),  # wraps, n-step longer than the stack
        (2, 1, 2, 16, (2, 3, 3), 3),  # no stacking (MinAtar), tight ring
        (5, 3, 4, 33, (3, 3), 4),  # capacity not a multiple of n_envs
    ],
)
def test_matches_a_naive_replay_of_full_pairs(n_envs, k, n_step, capacity, frame_shape, seed):
    rng = np.random.default_rng(seed)
    buffer, naive, envs, shape = make_pair(
        n_envs, k, n_step, 0.97, capacity, frame_shape, seed=seed, end_prob=0.2
    )
    drive(buffer, naive, envs, 120, rng, shape, check_every=7, batch=128)
    live = naive.live()
    seen = check_samples(buffer, naive, 40 * len(live))
    assert seen == set(live)  # every live transition can be drawn
    ended = [e for env in naive.episodes for e in env if e["ended"]]
    assert any(e["steps"][-1]["terminated"] for e in ended)
    assert any(not e["steps"][-1]["terminated"] for e in ended)


def test_state_dict_round_trip(tmp_path):
    args = (2, 4, 3, 0.9, 40)
    buffer, naive, envs, shape = make_pair(*args, seed=5)
    rng = np.random.default_rng(0)
    drive(buffer, naive, envs, 60, rng, shape)
    np.savez(tmp_path / "replay.npz", **buffer.state_dict())
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as saved:
        state = dict(saved)

    loaded = make_pair(*args, seed=5)[0]
    loaded.load_state_dict(state)
    assert len(loaded) == len(buffer) > 0
    for name in ("obs", "actions", "rewards", "next_obs", "terminated", "discounts"):
        a, b = getattr(buffer.sample(64), name), getattr(loaded.sample(64), name)
        assert torch.equal(a, b), name

    # a resumed run starts new episodes: both go on alike
    for replay in (buffer, loaded):
        for i, env in enumerate(envs):
            replay.begin(i, env.reset(seed=100 + i)[0].reshape(shape))
    actions = rng.integers(3, size=(30, 2))
    for a in actions:
        next_obs = np.stack([env.step(int(x))[0].reshape(shape) for env, x in zip(envs, a)])
        for replay in (buffer, loaded):
            replay.step(a, np.ones(2), next_obs, np.zeros(2, bool), np.zeros(2, bool))
    assert len(loaded) == len(buffer)
    first, second = buffer.sample(64), loaded.sample(64)
    assert torch.equal(first.obs, second.obs) and torch.equal(first.next_obs, second.next_obs)

    other = FrameReplayBuffer(80, shape, 4, 2)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(state)


def test_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match="channels"):
        FrameReplayBuffer(100, (5, 84, 84), 4, 1)
    with pytest.raises(ValueError, match="too small"):
        FrameReplayBuffer(10, (4, 84, 84), 4, 2, n_step=3)


# ============================================================================== networks
def test_minatar_network_shapes():
    net = ConvQNetwork((4, 10, 10), 6, "minatar")
    assert net(torch.zeros(5, 4, 10, 10, dtype=torch.uint8)).shape == (5, 6)
    dueling = build_q_network((7, 10, 10), 3, "minatar", dueling=True, layer_norm=True)
    assert dueling(torch.ones(2, 7, 10, 10)).shape == (2, 3)
    assert isinstance(build_q_network((4,), 2, "mlp"), QNetwork)


def test_nature_network_shapes_and_minimum_size():
    net = build_q_network((4, 84, 84), 18, "nature", input_scale=1 / 255)
    assert net(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).shape == (3, 18)
    small = ConvQNetwork((1, NATURE_MIN_SIZE, NATURE_MIN_SIZE), 2, "nature")
    assert small(torch.zeros(1, 1, NATURE_MIN_SIZE, NATURE_MIN_SIZE)).shape == (1, 2)
    with pytest.raises(ValueError, match=f"at least {NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}.*35x84"):
        ConvQNetwork((4, 35, 84), 6, "nature")
    with pytest.raises(ValueError, match="unknown network"):
        ConvQNetwork((4, 84, 84), 6, "resnet")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_q_network((16,), 2, "minatar")


@pytest.mark.parametrize("kind, shape", [("nature", (4, 40, 40)), ("minatar", (3, 10, 10))])
def test_uint8_input_is_scaled_inside(kind, shape):
    torch.manual_seed(0)
    net = ConvQNetwork(shape, 4, kind, input_scale=1 / 255)
    pixels = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    scaled = net(pixels)
    net.input_scale = 1.0  # the same weights, fed floats scaled by hand
    torch.testing.assert_close(scaled, net(pixels.float() / 255))
    assert not torch.allclose(scaled, net(pixels.float()))


def test_dqn_picks_the_image_network_and_frame_replay(atari, minatar):
    agent = DQN(DQNConfig(env_id="ALE/Pong-v5", buffer_size=1000, device="cpu"))
    assert isinstance(agent.q_net, ConvQNetwork) and agent.q_net.input_scale == 1 / 255
    assert isinstance(agent.replay, FrameReplayBuffer) and agent.replay.k == 4
    assert agent.replay.frames.dtype == np.uint8 and agent.clip_rewards
    agent = DQN(DQNConfig(env_id="MinAtar/Breakout-v1", buffer_size=1000, device="cpu"))
    assert isinstance(agent.q_net, ConvQNetwork) and agent.q_net.input_scale == 1.0
    assert isinstance(agent.replay, FrameReplayBuffer) and agent.replay.k == 1
    assert not agent.clip_rewards


# ============================================================================= bad input
def _train_fails(tmp_path, capsys, args) -> str:
    code = main(["train", *args, "--run-dir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("dqnlm: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()
    return err


def test_a_minatar_game_typo_names_it_and_suggests_the_game(tmp_path, capsys, minatar):
    err = _train_fails(tmp_path, capsys, ["--env", "MinAtar/Brekout-v1"])
    assert "'Brekout'" in err and "'Breakout'" in err and "MinAtar/Breakout-v1" in err


def test_atari_settings_are_refused_on_other_envs(tmp_path, capsys):
    err = _train_fails(tmp_path, capsys, ["--env", "CartPole-v1", "--set", "frame_stack=2"])
    assert "frame_stack" in err and "CartPole-v1" in err


def test_the_nature_network_is_refused_on_minatar(tmp_path, capsys, minatar):
    args = ["--env", "MinAtar/Breakout-v1", "--set", "network=nature"]
    err = _train_fails(tmp_path, capsys, args)
    assert "nature" in err and "10x10" in err


@pytest.mark.parametrize(
    "module, env_id, extra",
    [
        ("ale_py", "ALE/Pong-v5", "dqnlm[atari]"),
        ("minatar.gym", "MinAtar/Breakout-v1", "dqnlm[minatar]"),
    ],
)
def test_a_missing_extra_names_the_pip_install(
    tmp_path, capsys, monkeypatch, module, env_id, extra
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    err = _train_fails(tmp_path, capsys, ["--env", env_id])
    assert f"pip install '{extra}'" in err and env_id in err


# ======================================================================= a run that learns
# Breakout learns fastest of the MinAtar games on a tiny budget; seeds 0-4 of this config
# all ended 2.2-3.9 above random play on the final evaluation's episodes (random: 0.2-0.8)
LEARN = {
    "env_id": "MinAtar/Breakout-v1",
    "seed": 0,
    "total_steps": 6_000,
    "learning_starts": 500,
    "n_step": 3,
    "train_freq": 4,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "target_update_period": 100,
    "exploration_fraction": 0.2,
    "buffer_size": 6_000,
    "eval_interval": 0,
    "final_eval_episodes": 10,
    "log_interval": 1000,
    "checkpoint_interval": 10**9,
    "device": "cpu",
}


def test_a_tiny_minatar_run_beats_random_play(minatar, tmp_path):
    config = DQNConfig(**LEARN)
    agent = DQN(config, tmp_path / "run")
    final = agent.learn(progress=False, tensorboard=False)
    n_actions = agent.q_net.head.out_features
    rng = np.random.default_rng(0)
    random_returns, _, _ = run_episodes(
        lambda: make_env(config, train=False),
        lambda obs: rng.integers(n_actions, size=len(obs)),
        config.final_eval_episodes,
        agent.seeds.test,  # the final evaluation's episodes
    )
    assert math.isfinite(final["mean_return"])
    assert final["mean_return"] >= random_returns.mean() + 1.0, (final, random_returns)


def test_a_short_atari_run_trains_checkpoints_resumes_and_evaluates(atari, tmp_path, capsys):
    """Every Atari code path end to end, briefly: preprocessing, the nature network, the
    frame replay with n-step returns, clipped rewards, a checkpoint with the replay, resume,
    and evaluation on whole games (a time limit keeps them short)."""
    from dqnlm.cli import main

    run = tmp_path / "pong"
    args = ["train", "--preset", "pong", "--seed", "3", "--run-dir", str(run), "--no-progress",
            "--no-tensorboard", "--total-steps", "160", "--set", "learning_starts=100",
            "--set", "batch_size=4", "--set", "buffer_size=400", "--set", "n_step=3",
            "--set", "checkpoint_interval=80", "--set", "eval_interval=0",
            "--set", "final_eval_episodes=1", "--set", "max_episode_steps=50",
            "--set", "save_replay=true"]  # fmt: skip
    assert main(args) == 0
    agent = DQN.load(run)
    assert agent.global_step == 160 and agent.num_updates == 16  # at steps 100, 104, ..., 160
    assert agent.clip_rewards and type(agent.q_net).__name__ == "ConvQNetwork"
    assert len(agent.replay) > 0 and agent.replay.frames.shape[2:] == (1, 84, 84)
    assert main(["train", "--resume", str(run), "--total-steps", "200", "--no-progress",
                 "--no-tensorboard"]) == 0  # fmt: skip
    assert DQN.load(run).global_step == 200
    assert main(["eval", str(run), "--episodes", "1", "--json"]) == 0
    assert '"episodes": 1' in capsys.readouterr().out
