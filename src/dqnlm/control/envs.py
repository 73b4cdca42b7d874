"""Gymnasium environments: checks with clear errors, and vectorized construction."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from dqnlm.errors import DQNLMError


def _make(env_id: str) -> gym.Env:
    try:
        return gym.make(env_id)
    except gym.error.DependencyNotInstalled as e:
        raise DQNLMError(
            f"environment {env_id!r} needs an optional dependency ({e}); "
            "for Box2D environments: pip install 'dqnlm[box2d]'"
        ) from None
    except gym.error.Error as e:
        raise DQNLMError(f"unknown environment id {env_id!r}: {e}") from None
    except (ImportError, ValueError, AttributeError) as e:  # a malformed or broken module:Env id
        raise DQNLMError(f"cannot make environment {env_id!r}: {type(e).__name__}: {e}") from None


def env_spaces(env_id: str) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    """The observation and action spaces of ``env_id``, refusing what DQN cannot handle."""
    env = _make(env_id)
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(action_space, gym.spaces.Discrete):
        raise DQNLMError(
            f"DQN needs a discrete action space, but {env_id!r} has {action_space}; "
            "choose an environment with Discrete actions"
        )
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise DQNLMError(
            f"dqnlm's MLP Q-network needs flat vector observations, but {env_id!r} has {obs_space}"
        )
    return obs_space, action_space


def make_vec_env(env_id: str, n_envs: int) -> SyncVectorEnv:
    """``n_envs`` copies stepped in lock-step. SAME_STEP autoreset puts the true last
    observation of a finished episode in ``info["final_obs"]`` and returns the reset one."""
    return SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(n_envs)], autoreset_mode=AutoresetMode.SAME_STEP
    )


def run_episodes(
    env_id: str, policy, episodes: int, seed: int, batch: int = 32, gamma: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play ``episodes`` episodes, ``batch`` at a time with one policy call per step:
    (returns, returns discounted by ``gamma``, the first observation of each episode).

    ``policy`` maps an observation array ``(n, obs_dim)`` to actions ``(n,)``. Episode
    ``i`` is seeded with ``seed + i``, so the same call always plays the same episodes.
    """
    returns, discounted = np.zeros(episodes), np.zeros(episodes)
    starts = []
    for start in range(0, episodes, batch):
        ids = range(start, min(start + batch, episodes))
        envs = [_make(env_id) for _ in ids]
        obs = [env.reset(seed=seed + i)[0] for env, i in zip(envs, ids)]
        starts += obs
        live, discount = list(range(len(envs))), 1.0
        while live:
            actions = policy(np.stack([obs[j] for j in live]))
            still = []
            for j, action in zip(live, actions):
                obs[j], reward, terminated, truncated, _ = envs[j].step(int(action))
                returns[start + j] += reward
                discounted[start + j] += discount * reward
                if not (terminated or truncated):
                    still.append(j)
            live, discount = still, discount * gamma
        for env in envs:
            env.close()
    return returns, discounted, np.stack(starts)
