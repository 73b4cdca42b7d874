"""Gymnasium environments: checks with clear errors, image preprocessing, vector envs and
batched evaluation.

Three families, told apart by the id:

* ``ALE/<Game>-v5``: Atari through ale-py (the ``[atari]`` extra, which ships the ROMs),
  preprocessed as Machado et al. 2018 recommend and the common Gymnasium wrappers do:
  sticky actions (``sticky_action_prob``, 0.25), ``frame_skip`` frames per agent step with
  the last two max-pooled, 84x84 greyscale, ``frame_stack`` frames stacked channel-first,
  optional no-op starts and (training only) life loss as episode end. Rewards are
  sign-clipped by the training loop, never by the environment, so evaluations report
  game scores.
* ``MinAtar/<Game>-v1``: MinAtar (Young & Tian 2019; the ``[minatar]`` extra), 10x10
  images with one 0/1 channel per object kind, channel-first uint8, sticky actions 0.1.
* anything else: any Gymnasium id with flat vector observations.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from dqnlm.errors import DQNLMError

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
STICKY_DEFAULT = {"atari": 0.25, "minatar": 0.1}
"""Sticky-action probability by family (Machado et al. 2018; Young & Tian 2019)."""
ATARI_ONLY = ("frame_skip", "frame_stack", "screen_size", "noop_max", "terminal_on_life_loss")
"""Config fields that only Atari preprocessing reads."""


def family(env_id: str) -> str:
    """``atari``, ``minatar`` or ``gym``."""
    if env_id.startswith("ALE/"):
        return "atari"
    if env_id.startswith("MinAtar/"):
        return "minatar"
    return "gym"


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _minatar_registered(env_id: str) -> None:
    try:
        import minatar.gym as minatar_gym
    except ImportError:
        raise DQNLMError(f"{env_id!r} needs MinAtar: pip install 'dqnlm[minatar]'") from None
    if "MinAtar/Breakout-v1" not in gym.registry:
        minatar_gym.register_envs()
    names = {game.title().replace("_", ""): game for game in MINATAR_GAMES}
    game = env_id.removeprefix("MinAtar/").rsplit("-v", 1)[0]
    if game not in names:
        raise DQNLMError(
            f"unknown MinAtar game {game!r} in {env_id!r}; {_suggest(game, names)}"
            f"choose one of: {', '.join(f'MinAtar/{n}-v1' for n in names)}"
        )


def _atari_registered(env_id: str) -> None:
    try:
        import ale_py
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError as e:
        raise DQNLMError(
            f"{env_id!r} needs the Atari extra (ale-py with its ROMs, and OpenCV for "
            f"preprocessing; missing: {e.name}): pip install 'dqnlm[atari]'"
        ) from None
    gym.register_envs(ale_py)
    if env_id not in gym.registry:
        games = [k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
        raise DQNLMError(
            f"unknown Atari game {env_id!r}; {_suggest(env_id, games)}"
            "Atari ids look like ALE/Pong-v5 or ALE/Breakout-v5"
        )


def _make_raw(env_id: str, **kwargs: Any) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise DQNLMError(
            f"environment {env_id!r} needs an optional dependency ({e}); "
            "for Box2D environments: pip install 'dqnlm[box2d]'"
        ) from None
    except gym.error.Error as e:
        raise DQNLMError(f"unknown environment id {env_id!r}: {e}") from None
    except (ImportError, ValueError, AttributeError, TypeError) as e:  # a malformed module:Env id
        raise DQNLMError(f"cannot make environment {env_id!r}: {type(e).__name__}: {e}") from None


def make_env(config: Any, train: bool = True) -> gym.Env:
    """One environment as ``config`` (a DQNConfig) describes it, preprocessed for its family.
    ``train=False`` (evaluation) plays whole games even with ``terminal_on_life_loss``."""
    env_id, kind = config.env_id, family(config.env_id)
    limit = {"max_episode_steps": config.max_episode_steps} if config.max_episode_steps else {}
    sticky = config.sticky_action_prob
    if kind == "minatar":
        _minatar_registered(env_id)
        sticky = STICKY_DEFAULT["minatar"] if sticky is None else sticky
        env = _make_raw(env_id, sticky_action_prob=sticky, **limit)
        channels = env.observation_space.shape[-1]
        space = gym.spaces.Box(0, 1, (channels, *env.observation_space.shape[:2]), np.uint8)
        return gym.wrappers.TransformObservation(env, _channels_first, space)
    if kind == "atari":
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

        _atari_registered(env_id)
        sticky = STICKY_DEFAULT["atari"] if sticky is None else sticky
        # frameskip=1: AtariPreprocessing skips frames itself, max-pooling the last two
        env = _make_raw(env_id, frameskip=1, repeat_action_probability=sticky)
        env = AtariPreprocessing(
            env,
            noop_max=config.noop_max,
            frame_skip=config.frame_skip,
            screen_size=config.screen_size,
            terminal_on_life_loss=config.terminal_on_life_loss and train,
        )
        if config.max_episode_steps:  # counted in agent steps, after the frame skip
            env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
        return FrameStackObservation(env, config.frame_stack)
    return _make_raw(env_id, **limit)


def _channels_first(obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(obs, -1, 0), dtype=np.uint8)


def env_spaces(config: Any) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    """The observation and action spaces of ``config``'s environment after preprocessing,
    refusing what DQN cannot handle and settings that do not apply."""
    env_id, kind = config.env_id, family(config.env_id)
    if kind != "atari":
        defaults = type(config)()
        odd = [name for name in ATARI_ONLY if getattr(config, name) != getattr(defaults, name)]
        if odd:
            raise DQNLMError(
                f"{odd[0]}={getattr(config, odd[0])!r} applies to Atari environments "
                f"(ALE/...) only, not {env_id!r}; leave it at {getattr(defaults, odd[0])!r}"
            )
    if kind == "gym" and config.sticky_action_prob is not None:
        raise DQNLMError(
            f"sticky_action_prob applies to Atari and MinAtar environments only, not {env_id!r}"
        )
    env = make_env(config)
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(action_space, gym.spaces.Discrete):
        raise DQNLMError(
            f"DQN needs a discrete action space, but {env_id!r} has {action_space}; "
            "choose an environment with Discrete actions"
        )
    image = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 3
    if not isinstance(obs_space, gym.spaces.Box) or not (len(obs_space.shape) == 1 or image):
        raise DQNLMError(
            f"dqnlm's Q-networks need flat vector observations or channel-first images, "
            f"but {env_id!r} has {obs_space}"
        )
    if image and obs_space.dtype != np.uint8:
        raise DQNLMError(f"image observations must be uint8, but {env_id!r} has {obs_space}")
    if image and obs_space.shape[-1] <= 4 < min(obs_space.shape[:2]):
        raise DQNLMError(
            f"{env_id!r} gives channel-last images {obs_space.shape} (height, width, "
            "channels); dqnlm's convolutional networks take channel-first (C, H, W) images"
        )
    return obs_space, action_space


def make_vec_env(config: Any, n_envs: int) -> SyncVectorEnv:
    """``n_envs`` training copies stepped in lock-step. SAME_STEP autoreset puts the true
    last observation of a finished episode in ``info["final_obs"]`` and returns the reset one."""
    return SyncVectorEnv(
        [lambda: make_env(config) for _ in range(n_envs)], autoreset_mode=AutoresetMode.SAME_STEP
    )


def run_episodes(
    env: str | Callable[[], gym.Env],
    policy,
    episodes: int,
    seed: int,
    batch: int = 32,
    gamma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play ``episodes`` episodes, ``batch`` at a time with one policy call per step:
    (returns, returns discounted by ``gamma``, the first observation of each episode).

    ``env`` is a Gymnasium id or a function making one environment. ``policy`` maps an
    observation array ``(n, *obs_shape)`` to actions ``(n,)``. Episode ``i`` is seeded with
    ``seed + i``, so the same call always plays the same episodes.
    """
    make = (lambda: _make_raw(env)) if isinstance(env, str) else env
    (played,) = run_episodes_together(
        [make], lambda obs: [policy(obs[0])], episodes, [seed], batch, gamma
    )
    return played


def run_episodes_together(
    makes: list[Callable[[], gym.Env]],
    policy,
    episodes: int,
    seeds: list[int],
    batch: int = 32,
    gamma: float = 1.0,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`run_episodes` for several members at once (many seeds in lockstep): member
    ``m`` plays its own environments seeded ``seeds[m] + i``, and ``policy`` maps the list
    of members' observation arrays (an empty array for a member with no live episode) to
    their actions in one call per step. Member ``m``'s result is exactly what
    ``run_episodes`` with member ``m``'s policy would return."""
    members = range(len(makes))
    returns = [np.zeros(episodes) for _ in members]
    discounted = [np.zeros(episodes) for _ in members]
    starts: list[list] = [[] for _ in members]
    for start in range(0, episodes, batch):
        ids = range(start, min(start + batch, episodes))
        envs = [[makes[m]() for _ in ids] for m in members]
        obs = [[e.reset(seed=seeds[m] + i)[0] for e, i in zip(envs[m], ids)] for m in members]
        for m in members:
            starts[m] += obs[m]
        live = [list(range(len(ids))) for _ in members]
        discount = 1.0
        while any(live):
            batch_obs = [
                np.stack([obs[m][j] for j in live[m]])
                if live[m]
                else np.zeros((0, *np.shape(obs[m][0])))
                for m in members
            ]
            actions = policy(batch_obs)
            for m in members:
                still = []
                for j, action in zip(live[m], actions[m]):
                    obs[m][j], reward, terminated, truncated, _ = envs[m][j].step(int(action))
                    returns[m][start + j] += reward
                    discounted[m][start + j] += discount * reward
                    if not (terminated or truncated):
                        still.append(j)
                live[m] = still
            discount *= gamma
        for member_envs in envs:
            for e in member_envs:
                e.close()
    return [(returns[m], discounted[m], np.stack(starts[m])) for m in members]
