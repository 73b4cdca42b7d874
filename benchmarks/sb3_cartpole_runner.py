"""One Stable-Baselines3 DQN run on CartPole-v1, evaluated exactly like a dqnlm run.

Run as its own process by ``benchmarks/cartpole_vs_sb3.py`` (so its wall-clock includes
interpreter start-up and imports, as dqnlm's does); it can also be run by hand:

    .venv/bin/python benchmarks/sb3_cartpole_runner.py --seed 0 [--stop-at 490]

Hyperparameters are rl-baselines3-zoo's tuned ones for CartPole-v1 (hyperparams/dqn.yml).
Every ``--eval-interval`` env steps a callback plays ``--eval-episodes`` greedy episodes
with :func:`dqnlm.control.envs.run_episodes` on dqnlm's validation seeds
(``dqnlm.seeding.seed_streams(seed).validation + i``) and notes the training-clock time at which the mean first reaches
``--target``. ``--stop-at R`` ends training once such a mean is >= R (as dqnlm's
``stop_at_return`` and SB3's ``StopTrainingOnRewardThreshold``). After training, the
final greedy evaluation uses dqnlm's test seeds (``seed_streams(seed).test + i``). The last line of
stdout is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from dqnlm.control.envs import run_episodes
from dqnlm.seeding import seed_streams

ENV_ID = "CartPole-v1"
# the same offsets as dqnlm.control.dqn, repeated so this process imports no more of dqnlm

# rl-baselines3-zoo, hyperparams/dqn.yml, CartPole-v1 (n_timesteps: 5e4)
ZOO_HYPERPARAMS = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}
ZOO_TIMESTEPS = 50_000


class PeriodicEval(BaseCallback):
    """Greedy evaluation every ``interval`` env steps on dqnlm's validation seeds.

    Like dqnlm, it skips the periodic evaluation at (or past) the last training step,
    where the final evaluation takes over.
    """

    def __init__(
        self,
        seed: int,
        total: int,
        interval: int,
        episodes: int,
        target: float,
        stop_at: float | None,
    ) -> None:
        super().__init__(verbose=0)
        self.seed, self.total, self.interval = seed, total, interval
        self.episodes, self.target, self.stop_at = episodes, target, stop_at
        self.start = 0.0
        self.evals: list[dict] = []
        self.time_to_target: float | None = None
        self.stopped_early = False

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def greedy(self, obs):
        return self.model.predict(obs, deterministic=True)[0]

    def _on_step(self) -> bool:
        now = self.num_timesteps
        if self.interval <= 0 or now % self.interval or now >= self.total:
            return True
        returns, _, _ = run_episodes(
            ENV_ID, self.greedy, self.episodes, seed_streams(self.seed).validation
        )
        mean = float(returns.mean())
        elapsed = time.perf_counter() - self.start
        self.evals.append({"step": now, "time_s": round(elapsed, 3), "eval_return": mean})
        if self.time_to_target is None and mean >= self.target:
            self.time_to_target = elapsed
        if self.stop_at is not None and mean >= self.stop_at:
            self.stopped_early = True
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, required=True, help="seed for SB3 and the evaluations")
    p.add_argument(
        "--steps",
        type=int,
        default=ZOO_TIMESTEPS,
        help=f"training budget in env steps (default: the zoo's {ZOO_TIMESTEPS})",
    )
    p.add_argument(
        "--stop-at",
        type=float,
        metavar="R",
        help="stop training once a periodic evaluation's mean return is >= R (default: never)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=475.0,
        help="return whose first crossing is timed (default: 475, CartPole-v1's threshold)",
    )
    p.add_argument(
        "--eval-interval",
        type=int,
        default=2500,
        help="env steps between periodic evaluations (default: 2500)",
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=10,
        help="greedy episodes per periodic evaluation (default: 10)",
    )
    p.add_argument(
        "--final-episodes",
        type=int,
        default=20,
        help="greedy episodes in the final evaluation (default: 20)",
    )
    p.add_argument(
        "--device", default="auto", help="torch device for SB3, as dqnlm's default (auto)"
    )
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    callback = PeriodicEval(
        args.seed, args.steps, args.eval_interval, args.eval_episodes, args.target, args.stop_at
    )
    model = DQN(
        "MlpPolicy", ENV_ID, seed=args.seed, verbose=0, device=args.device, **ZOO_HYPERPARAMS
    )
    model.learn(total_timesteps=args.steps, callback=callback)
    final, _, _ = run_episodes(
        ENV_ID, callback.greedy, args.final_episodes, seed_streams(args.seed).test
    )
    train_time = time.perf_counter() - callback.start
    final_mean = float(final.mean())
    time_to_target = callback.time_to_target
    if time_to_target is None and final_mean >= args.target:
        time_to_target = train_time  # as for dqnlm: reached only in the final evaluation
    result = {
        "seed": args.seed,
        "target": args.target,
        "time_to_475": time_to_target,
        "final_mean": final_mean,
        "final_std": float(final.std()),
        "final_returns": final.tolist(),
        "steps": int(model.num_timesteps),
        "stopped_early": callback.stopped_early,
        "train_time_s": train_time,
        "evals": callback.evals,
        "device": str(model.device),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
