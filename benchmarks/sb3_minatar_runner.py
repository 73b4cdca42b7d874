"""One Stable-Baselines3 DQN run on a MinAtar game, configured and evaluated like dqnlm.

Run as its own process by ``benchmarks/minatar_vs_sb3.py`` (so its wall-clock includes
interpreter start-up and imports, as dqnlm's does); it can also be run by hand:

    .venv/bin/python benchmarks/sb3_minatar_runner.py --seed 100 --steps 50000 \\
        --set eval_interval=0 [--set train_freq=4 ...]

The configuration is dqnlm's: the preset's ``DQNConfig`` (``--preset``, default
``minatar-breakout``) with the ``--set`` overrides applied by ``dqnlm.config_io.replace``,
then ``total_steps``/``seed`` from ``--steps``/``--seed``, exactly as
``python -m dqnlm train --preset P --set ... --seed S --total-steps N`` builds it. From it:

* the environment: ``dqnlm.control.envs.make_env(config)`` (MinAtar, sticky actions 0.1,
  channel-first uint8 0/1 images) in a one-env ``DummyVecEnv``, reset with the training
  seed ``dqnlm.seeding.seed_streams(S).train`` (SB3's own RNGs get ``S``);
* the Q-network: dqnlm's ``minatar`` network (3x3 convolution with 16 channels, ReLU,
  128 units, ReLU, linear head), as an SB3 features extractor with ``net_arch=[]`` and no
  image normalisation (the 0/1 channels are used as they are, as dqnlm does);
* every DQN hyperparameter (learning rate, buffer, learning_starts, batch, gamma,
  train_freq, gradient_steps, epsilon schedule) maps one to one, except that SB3 counts
  its target-update interval in env steps and dqnlm in gradient updates:
  ``target_update_interval = target_update_period * train_freq / gradient_steps``.
  dqnlm's ``max_grad_norm = 0`` (no clipping) becomes 1e10. Both use Adam and the Huber
  loss; SB3's DQN is plain DQN, so the config must have ``double_dqn = false``.

Settings SB3's DQN cannot reproduce (n-step returns, Double DQN, prioritized replay,
dueling, LayerNorm, several envs, annealed learning rate, MSE loss, periodic evaluations,
early stopping, reward clipping) are refused, so the two sides never silently differ.

After training, the final greedy evaluation is dqnlm's: ``run_episodes(lambda:
make_env(config, train=False), policy, config.final_eval_episodes, seed_streams(S).test)``
with ``model.predict(obs, deterministic=True)``. The last line of stdout is one JSON
object with the results; the SB3 Q-network and both parameter counts go with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from dqnlm.config_io import parse_override, replace
from dqnlm.control.envs import make_env, run_episodes
from dqnlm.control.presets import get_preset
from dqnlm.core.networks import ConvQNetwork
from dqnlm.seeding import seed_streams

NO_CLIP = 1e10  # dqnlm's max_grad_norm = 0 means no clipping; SB3 always clips


class MinAtarExtractor(BaseFeaturesExtractor):
    """dqnlm's ``minatar`` body: Conv2d(C, 16, 3, stride 1), ReLU, flatten, Linear(., 128),
    ReLU. With ``net_arch=[]`` SB3 adds only the linear head, as dqnlm does."""

    def __init__(self, observation_space, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        flat = 16 * (height - 2) * (width - 2)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, features_dim),
            nn.ReLU(),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def unsupported(cfg) -> list[str]:
    """Settings of ``cfg`` that SB3's DQN cannot reproduce."""
    wrong = {
        "double_dqn": (cfg.double_dqn, False),
        "n_step": (cfg.n_step, 1),
        "n_envs": (cfg.n_envs, 1),
        "prioritized": (cfg.prioritized, False),
        "dueling": (cfg.dueling, False),
        "layer_norm": (cfg.layer_norm, False),
        "anneal_lr": (cfg.anneal_lr, False),
        "loss": (cfg.loss, "huber"),
        "eval_interval": (cfg.eval_interval, 0),
        "stop_at_return": (cfg.stop_at_return, None),
        "keep_best": (cfg.keep_best, False),
        "clip_rewards": (bool(cfg.clip_rewards), False),
    }
    out = [
        f"{k}={have!r} (SB3 side needs {need!r})"
        for k, (have, need) in wrong.items()
        if have != need
    ]
    if cfg.network not in ("auto", "minatar"):
        out.append(f"network={cfg.network!r} (SB3 side builds the minatar network)")
    if cfg.target_update not in ("hard", "polyak"):
        out.append(f"target_update={cfg.target_update!r} (SB3 needs hard or polyak)")
    if (cfg.target_update_period * cfg.train_freq) % cfg.gradient_steps:
        out.append("target_update_period * train_freq must be a multiple of gradient_steps")
    return out


def sb3_hyperparameters(cfg) -> dict:
    """SB3 DQN keyword arguments equal to dqnlm config ``cfg``."""
    return {
        "learning_rate": cfg.learning_rate,
        "buffer_size": cfg.buffer_size,
        "learning_starts": cfg.learning_starts,
        "batch_size": cfg.batch_size,
        "gamma": cfg.gamma,
        "train_freq": cfg.train_freq,  # env steps, as dqnlm
        "gradient_steps": cfg.gradient_steps,
        # SB3 counts env steps; dqnlm counts gradient updates
        "target_update_interval": cfg.target_update_period * cfg.train_freq // cfg.gradient_steps,
        "tau": 1.0 if cfg.target_update == "hard" else cfg.tau,
        "exploration_initial_eps": cfg.exploration_initial_eps,
        "exploration_final_eps": cfg.exploration_final_eps,
        "exploration_fraction": cfg.exploration_fraction,
        "max_grad_norm": cfg.max_grad_norm if cfg.max_grad_norm > 0 else NO_CLIP,
    }


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, required=True, help="run seed, as dqnlm's --seed")
    p.add_argument("--steps", type=int, required=True, help="env steps (frames), as --total-steps")
    p.add_argument(
        "--preset", default="minatar-breakout", help="dqnlm preset (default: %(default)s)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dqnlm config override, as `dqnlm train --set` (repeatable)",
    )
    p.add_argument("--device", default="cpu", help="torch device for SB3 (default: cpu)")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    values = dict(parse_override(text) for text in args.overrides)
    cfg = replace(get_preset(args.preset).config(), values, source="--set")
    cfg = replace(cfg, {"total_steps": args.steps, "seed": args.seed}, source="runner").validate()
    problems = unsupported(cfg)
    if problems:
        print("sb3_minatar_runner: cannot reproduce " + "; ".join(problems), file=sys.stderr)
        return 2
    streams = seed_streams(args.seed)

    start = time.perf_counter()
    venv = DummyVecEnv([lambda: make_env(cfg)])
    hyper = sb3_hyperparameters(cfg)
    model = DQN(
        "CnnPolicy",
        venv,
        seed=args.seed,
        verbose=0,
        device=args.device,
        policy_kwargs={
            "features_extractor_class": MinAtarExtractor,
            "features_extractor_kwargs": {"features_dim": 128},
            "net_arch": [],
            "normalize_images": False,
        },
        **hyper,
    )
    model.env.seed(streams.train)  # the first reset of learn() uses dqnlm's training seed
    obs_shape, n_actions = venv.observation_space.shape, int(venv.action_space.n)
    ours_net = ConvQNetwork(obs_shape, n_actions, kind="minatar")
    q_net = model.policy.q_net
    print(f"SB3 Q-network ({n_params(q_net):,} parameters):\n{q_net}", file=sys.stderr)
    print(
        f"dqnlm minatar network ({n_params(ours_net):,} parameters):\n{ours_net}", file=sys.stderr
    )
    model.learn(total_timesteps=cfg.total_steps)
    train_time = time.perf_counter() - start

    def greedy(obs):
        return model.predict(obs, deterministic=True)[0]

    final, _, _ = run_episodes(
        lambda: make_env(cfg, train=False), greedy, cfg.final_eval_episodes, streams.test
    )
    result = {
        "seed": args.seed,
        "final_mean": float(final.mean()),
        "final_std": float(final.std()),
        "final_returns": final.tolist(),
        "episodes": int(cfg.final_eval_episodes),
        "steps": int(model.num_timesteps),
        "train_time_s": train_time,
        "eval_time_s": time.perf_counter() - start - train_time,
        "sb3_hyperparameters": hyper,
        "sb3_q_params": n_params(q_net),
        "dqnlm_q_params": n_params(ours_net),
        "sb3_q_net": str(q_net),
        "obs_shape": list(obs_shape),
        "n_actions": n_actions,
        "device": str(model.device),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
