"""DQN on Gymnasium: experience replay plus a target network (Mnih et al. 2015).

``DQN.learn`` is the whole training loop, top to bottom: act epsilon-greedily in
vectorized environments, store transitions, do TD updates against the target
network, and log, evaluate and checkpoint on fixed env-step intervals.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

from dqnlm.control.config import DQNConfig
from dqnlm.control.envs import env_spaces, make_vec_env, run_episodes
from dqnlm.control.metrics import COLUMNS, plot_runs
from dqnlm.core.acting import epsilon_greedy
from dqnlm.core.checkpoint import load_optimizer_state, optimizer_state
from dqnlm.core.losses import dqn_loss, gradient_step
from dqnlm.core.networks import QNetwork
from dqnlm.core.replay import NStepFolder, PrioritizedReplayBuffer, ReplayBuffer
from dqnlm.core.schedules import linear
from dqnlm.core.target import TargetNetwork
from dqnlm.device import resolve_device
from dqnlm.resources import check_fits, q_learning_bytes
from dqnlm.run import Run, Trainer, generator_states, restore_generators, unprefixed
from dqnlm.seeding import seed_streams
from dqnlm.trust import check_module_reference


class DQN(Trainer):
    """Deep Q-learning with experience replay and a target network.

    >>> agent = DQN(DQNConfig(env_id="CartPole-v1", total_steps=20_000))
    >>> agent.learn()                      # doctest: +SKIP
    >>> agent.evaluate(episodes=10)        # doctest: +SKIP
    """

    def __init__(self, config: DQNConfig, run_dir: str | Path | None = None) -> None:
        self.config = cfg = config.validate()
        obs_space, action_space = env_spaces(cfg.env_id)
        self.device = resolve_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        n_actions = int(action_space.n)
        check_fits(
            estimate_bytes(cfg, obs_space.shape[0], n_actions),
            f"buffer_size={cfg.buffer_size:,} with hidden_sizes={list(cfg.hidden_sizes)}",
        )
        # training, validation and test episodes come from independent seed streams, so
        # evaluation never replays a training episode and adjacent run seeds share none
        self.seeds = seed_streams(cfg.seed)

        torch.manual_seed(self.seeds.torch)
        self.q_net = QNetwork(
            obs_space.shape[0], n_actions, cfg.hidden_sizes, cfg.dueling, cfg.layer_norm
        ).to(self.device)
        self.target = TargetNetwork(
            self.q_net, cfg.target_update, cfg.target_update_period, cfg.tau
        )
        self._params = list(self.q_net.parameters())
        # fused Adam is one kernel for all parameters, several times faster for small nets on CPU
        self.optimizer = torch.optim.Adam(self._params, lr=cfg.learning_rate, fused=True)
        replay_cls = PrioritizedReplayBuffer if cfg.prioritized else ReplayBuffer
        extra = {}
        if cfg.prioritized:
            beta = linear(cfg.per_beta0, 1.0, cfg.total_steps)
            extra = {"alpha": cfg.per_alpha, "beta": beta, "eps": cfg.per_eps}
        self.replay = replay_cls(
            cfg.buffer_size, obs_space.shape, device=self.device, seed=self.seeds.replay, **extra
        )
        self.rng = np.random.default_rng(self.seeds.explore)  # exploration
        self.epsilon = linear(
            cfg.exploration_initial_eps,
            cfg.exploration_final_eps,
            int(cfg.exploration_fraction * cfg.total_steps),
        )
        # counters, saved in checkpoints
        self.global_step = 0  # env steps, summed over envs
        self.num_updates = 0  # gradient updates; drives the target network
        self.stopped_early = False  # stop_at_return was reached
        # keep_best: the best periodic validation score and the weights that earned it
        self.best_return = -math.inf
        self.best_weights: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for a batch of observations."""
        q = self.q_net(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        return q.argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions; skips the network when every action is random."""
        n_actions = self.q_net.head.out_features
        return epsilon_greedy(self.rng, self.predict, obs, epsilon, n_actions)

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> dict:
        """Greedy returns of ``episodes`` episodes seeded ``seed, seed + 1, ...``.

        The default seeds are the run's test seeds, which training and its periodic
        evaluations never use.
        """
        episodes = episodes or self.config.final_eval_episodes
        seed = self.seeds.test if seed is None else seed
        cfg = self.config
        returns, discounted, starts = run_episodes(
            cfg.env_id, self.predict, episodes, seed, gamma=cfg.gamma
        )
        with torch.no_grad():
            start_q = self.q_net(torch.as_tensor(starts, dtype=torch.float32, device=self.device))
        return {
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "episodes": episodes,
            # how far the greedy value of the start state overshoots the discounted return
            # it actually earns (van Hasselt et al. 2016's overestimation measure)
            "q_overestimation": float(start_q.max(dim=1).values.mean().item() - discounted.mean()),
            "returns": returns.tolist(),
        }

    # ---------------------------------------------------------------- learning
    def _lr(self) -> float:
        cfg = self.config
        if not cfg.anneal_lr:
            return cfg.learning_rate
        return cfg.learning_rate * max(1.0 - self.global_step / max(cfg.total_steps, 1), 0.0)

    def _update(self) -> tuple[float, float]:
        """One gradient step on a replay batch; returns (loss, mean Q of taken actions)."""
        cfg = self.config
        if cfg.prioritized:
            batch = self.replay.sample(cfg.batch_size, self.global_step)
        else:
            batch = self.replay.sample(cfg.batch_size)
        loss, q, td_error = dqn_loss(self.q_net, self.target, batch, cfg.loss, cfg.double_dqn)

        gradient_step(self.optimizer, self._params, loss, cfg.max_grad_norm)
        self.num_updates += 1
        self.target.update(self.num_updates)
        if cfg.prioritized:
            self.replay.update_priorities(batch.indices, td_error.cpu().numpy())
        loss_value, mean_q = torch.stack([loss.detach(), q.detach().mean()]).tolist()  # one sync
        return loss_value, mean_q

    def learn(self, progress: bool = True, tensorboard: bool = True) -> dict:
        """Train until ``total_steps`` env steps; returns the final evaluation."""
        cfg = self.config
        envs = make_vec_env(cfg.env_id, cfg.n_envs)
        # a resumed run cannot restore mid-episode env state: it starts new episodes
        obs, _ = envs.reset(seed=self.seeds.train + self.global_step)
        folder = NStepFolder(cfg.n_step, cfg.gamma, cfg.n_envs) if cfg.n_step > 1 else None
        warmup = max(cfg.batch_size, min(cfg.learning_starts, cfg.buffer_size))
        episode_returns = np.zeros(cfg.n_envs)
        recent: list[float] = []  # returns of episodes finished since the last log row
        last_return = last_loss = last_q = None
        losses, qs = [], []
        run = Run(
            self, COLUMNS, total=cfg.total_steps, unit="step", desc=cfg.env_id,
            progress=progress, tensorboard=tensorboard,
        )  # fmt: skip
        with contextlib.closing(envs), run:
            while self.global_step < cfg.total_steps and not self.stopped_early:
                # uniform random play fills the buffer before learning starts (as SB3)
                random_play = self.global_step < cfg.learning_starts
                epsilon = 1.0 if random_play else self.epsilon(self.global_step)
                actions = self.act(obs, epsilon)
                next_obs, rewards, terminated, truncated, infos = envs.step(actions)
                done = terminated | truncated
                real_next = next_obs
                if done.any():  # store the true last observation, not the reset one
                    real_next = next_obs.copy()
                    for i in np.flatnonzero(done):
                        real_next[i] = infos["final_obs"][i]
                if folder is None:
                    discounts = np.full(cfg.n_envs, cfg.gamma, dtype=np.float32)
                    self.replay.add(obs, actions, rewards, real_next, terminated, discounts)
                else:
                    folded = folder.push(obs, actions, rewards, real_next, terminated, truncated)
                    if folded is not None:
                        self.replay.add(*folded)
                episode_returns += rewards
                for i in np.flatnonzero(done):
                    recent.append(float(episode_returns[i]))
                    episode_returns[i] = 0.0
                obs = next_obs

                before = self.global_step
                self.global_step += cfg.n_envs
                rounds = self.global_step // cfg.train_freq - before // cfg.train_freq
                if rounds and len(self.replay) >= warmup:
                    for group in self.optimizer.param_groups:
                        group["lr"] = self._lr()
                    for _ in range(rounds * cfg.gradient_steps):
                        loss, mean_q = self._update()
                        run.check_finite(loss=loss, mean_q=mean_q)
                        losses.append(loss)
                        qs.append(mean_q)
                run.advance(self.global_step - before)

                now = self.global_step
                if run.due(before, now, cfg.log_interval) or now >= cfg.total_steps:
                    if recent:
                        last_return = float(np.mean(recent))
                    if losses:
                        last_loss, last_q = float(np.mean(losses)), float(np.mean(qs))
                    recent, losses, qs = [], [], []
                    run.log(
                        now,
                        episode_return=last_return,
                        loss=last_loss,
                        mean_q=last_q,
                        epsilon=epsilon,
                    )
                    run.advance(
                        0,
                        ret="-" if last_return is None else f"{last_return:.1f}",
                        eps=f"{epsilon:.3f}",
                        loss="-" if last_loss is None else f"{last_loss:.3g}",
                    )
                if run.due(before, now, cfg.eval_interval) and now < cfg.total_steps:
                    result = self.evaluate(cfg.eval_episodes, self.seeds.validation)
                    run.log(now, **_eval_columns(result))
                    run.advance(0, eval=f"{result['mean_return']:.1f}")
                    if cfg.keep_best and result["mean_return"] > self.best_return:
                        self.best_return = result["mean_return"]
                        self.best_weights = _copy(self.q_net.state_dict())
                    stop = cfg.stop_at_return  # the loop runs while stopped_early is False
                    self.stopped_early = stop is not None and result["mean_return"] >= stop
                if run.due(before, now, cfg.checkpoint_interval) and now < cfg.total_steps:
                    run.checkpoint()
                run.safe_point()
            run.loop_done()
            kept_best = cfg.keep_best and not self.stopped_early and self._restore_best()
            final = self.evaluate(cfg.final_eval_episodes)
            final["step"], final["stopped_early"] = self.global_step, self.stopped_early
            final["kept_best"] = bool(kept_best)  # the final weights are an earlier best
            run.log(self.global_step, **_eval_columns(final))
            # eval.json first: a kill between the two resumes from the previous
            # checkpoint, never from a finished one whose final row is already logged
            run.finish(final)
            run.checkpoint()
        if self.run_dir is not None:
            plot_runs([self.run_dir], self.run_dir / "learning_curve.png", title=cfg.env_id)
        return final

    def _restore_best(self) -> bool:
        """Put back the best validation weights if the final ones score lower on the same
        validation episodes; returns whether it did. Selection never sees the test seeds."""
        if self.best_weights is None:
            return False
        cfg = self.config
        now = self.evaluate(cfg.eval_episodes, self.seeds.validation)["mean_return"]
        if self.best_return <= now:
            return False
        self.q_net.load_state_dict(self.best_weights)
        return True

    # ------------------------------------------------------------- checkpoints
    @property
    def step(self) -> int:
        return self.global_step

    def where(self) -> str:
        return f"env step {self.global_step} (gradient update {self.num_updates})"

    def finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in self.q_net.parameters())

    def state(self):
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        tensors = {f"q_net.{k}": v for k, v in self.q_net.state_dict().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        tensors.update(opt_tensors)
        if self.best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_weights.items()})
        meta = {
            "num_updates": self.num_updates,
            "stopped_early": self.stopped_early,
            "best_return": self.best_return if self.best_weights is not None else None,
            "optimizer": opt_meta,
            "rng": generator_states(explore=self.rng, replay=self.replay.rng),
        }
        return tensors, meta, self.replay.state_dict() if self.config.save_replay else None

    def load_state(self, tensors, meta, arrays) -> None:
        self.q_net.load_state_dict(unprefixed(tensors, "q_net."))
        self.target.load_state_dict(unprefixed(tensors, "target."))
        load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        restore_generators(meta["rng"], explore=self.rng, replay=self.replay.rng)
        if arrays is not None:
            self.replay.load_state_dict(arrays)
        self.global_step = int(meta["step"])
        self.num_updates = int(meta["num_updates"])
        self.stopped_early = bool(meta["stopped_early"])
        if meta["best_return"] is not None:
            self.best_return = float(meta["best_return"])
            self.best_weights = unprefixed(tensors, "best.")

    @classmethod
    def config_from_checkpoint(cls, meta, run_dir, source, trust_code) -> DQNConfig:
        """A checkpoint's ``env_id`` may not import a module outside dqnlm (Gymnasium's
        ``module:Env``) unless ``trust_code``: the run directory may come from a stranger."""
        config = DQNConfig(**_tuples(meta["config"]))
        check_module_reference(config.env_id, "env_id", source, trust_code)
        return config


def estimate_bytes(cfg: DQNConfig, obs_dim: int, n_actions: int) -> int:
    """Memory a run allocates up front: replay, networks, gradients, Adam and a batch."""
    widths = [obs_dim, *cfg.hidden_sizes, n_actions]
    return q_learning_bytes(cfg.buffer_size, widths, cfg.batch_size, cfg.prioritized)


def _eval_columns(result: dict) -> dict[str, float]:
    """An evaluation's values in metrics.csv."""
    return {"eval_return": result["mean_return"], "q_overestimation": result["q_overestimation"]}


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
