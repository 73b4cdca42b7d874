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
from dqnlm.control.envs import env_spaces, family, make_env, make_vec_env, run_episodes
from dqnlm.control.metrics import COLUMNS, plot_runs
from dqnlm.core.acting import epsilon_greedy
from dqnlm.core.checkpoint import load_optimizer_state, optimizer_state
from dqnlm.core.frames import FrameReplayBuffer
from dqnlm.core.losses import dqn_loss, gradient_step
from dqnlm.core.networks import NATURE_MIN_SIZE, build_q_network
from dqnlm.core.replay import NStepFolder, PrioritizedReplayBuffer, ReplayBuffer
from dqnlm.core.schedules import linear
from dqnlm.core.target import TargetNetwork
from dqnlm.device import resolve_device
from dqnlm.errors import DQNLMError
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
        obs_space, action_space = env_spaces(cfg)
        self.device = resolve_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        n_actions = int(action_space.n)
        self.images = len(obs_space.shape) == 3
        kind = network_kind(cfg, obs_space.shape)
        # rewards the loop trains on: sign-clipped on Atari unless the config says otherwise
        self.clip_rewards = (
            family(cfg.env_id) == "atari" if cfg.clip_rewards is None else cfg.clip_rewards
        )
        # training, validation and test episodes come from independent seed streams, so
        # evaluation never replays a training episode and adjacent run seeds share none
        self.seeds = seed_streams(cfg.seed)

        scale = 1.0 / 255 if self.images and float(obs_space.high.max()) > 1 else 1.0
        shape = (obs_space.shape, n_actions, kind, cfg.hidden_sizes, cfg.dueling, cfg.layer_norm)
        with torch.device("meta"):  # sized before anything is allocated
            check_fits(
                estimate_bytes(cfg, obs_space, build_q_network(*shape, scale)),
                f"buffer_size={cfg.buffer_size:,} with the {kind} network "
                f"(hidden_sizes={list(cfg.hidden_sizes)})",
            )
        torch.manual_seed(self.seeds.torch)
        self.q_net = build_q_network(*shape, scale).to(self.device)
        self.target = TargetNetwork(
            self.q_net, cfg.target_update, cfg.target_update_period, cfg.tau
        )
        self._params = list(self.q_net.parameters())
        # fused Adam is one kernel for all parameters, several times faster for small nets on CPU
        self.optimizer = torch.optim.Adam(self._params, lr=cfg.learning_rate, fused=True)
        if self.images:
            # each frame stored once; n-step returns fold inside (no NStepFolder)
            stack = cfg.frame_stack if family(cfg.env_id) == "atari" else 1
            self.replay = FrameReplayBuffer(
                cfg.buffer_size, obs_space.shape, stack, cfg.n_envs, cfg.n_step, cfg.gamma,
                device=self.device, seed=self.seeds.replay,
            )  # fmt: skip
        elif cfg.prioritized:
            beta = linear(cfg.per_beta0, 1.0, cfg.total_steps)
            self.replay = PrioritizedReplayBuffer(
                cfg.buffer_size, obs_space.shape, alpha=cfg.per_alpha, beta=beta,
                eps=cfg.per_eps, device=self.device, seed=self.seeds.replay,
            )  # fmt: skip
        else:
            self.replay = ReplayBuffer(
                cfg.buffer_size, obs_space.shape, device=self.device, seed=self.seeds.replay
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
        return self.q_net(self.as_input(obs)).argmax(dim=1).cpu().numpy()

    def as_input(self, obs: np.ndarray) -> torch.Tensor:
        """Observations as the network takes them: images stay uint8 (scaled inside)."""
        dtype = torch.uint8 if self.images else torch.float32
        return torch.as_tensor(obs, dtype=dtype, device=self.device)

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
        played = run_episodes(self.eval_env, self.predict, episodes, seed, gamma=cfg.gamma)
        with torch.no_grad():
            start_q = self.q_net(self.as_input(played[2]))
        return evaluation(*played, start_q)

    def eval_env(self):
        """One evaluation environment (whole games, even with terminal_on_life_loss)."""
        return make_env(self.config, train=False)

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
        envs = make_vec_env(cfg, cfg.n_envs)
        with contextlib.closing(envs), self.open_run(progress, tensorboard) as run:
            obs = self.start(envs)
            while not self.done:
                epsilon = self.exploration()
                actions = self.act(obs, epsilon)
                before, obs = self.global_step, self.env_step(envs, obs, actions)
                updates = self.update_rounds(before)
                if updates:
                    self.set_learning_rate(self.optimizer)
                for _ in range(updates):
                    self.record_update(run, *self._update())
                self.bookkeeping(run, before, epsilon)
                run.safe_point()
            run.loop_done()
            return self.finish(run)

    # The pieces of ``learn``, shared with many seeds trained in lockstep (control.lockstep).
    def open_run(self, progress: bool, tensorboard: bool, **kwargs) -> Run:
        cfg = self.config
        self._episode_returns = np.zeros(cfg.n_envs)
        self._recent: list[float] = []  # returns of episodes finished since the last log row
        self._last: dict[str, float | None] = {"return": None, "loss": None, "q": None}
        self._losses: list[float] = []
        self._qs: list[float] = []
        return Run(
            self, COLUMNS, total=cfg.total_steps, unit="step", desc=cfg.env_id,
            progress=progress, tensorboard=tensorboard, **kwargs,
        )  # fmt: skip

    def start(self, envs) -> np.ndarray:
        """The first observations; a resumed run cannot restore mid-episode env state, so
        it starts new episodes."""
        obs, _ = envs.reset(seed=self.seeds.train + self.global_step)
        self._folder = None
        if self.images:
            for i in range(self.config.n_envs):
                self.replay.begin(i, obs[i])
        elif self.config.n_step > 1:
            self._folder = NStepFolder(self.config.n_step, self.config.gamma, self.config.n_envs)
        return obs

    @property
    def done(self) -> bool:
        return self.global_step >= self.config.total_steps or self.stopped_early

    def exploration(self) -> float:
        """Epsilon now: uniform random play fills the buffer before learning starts (as SB3)."""
        random_play = self.global_step < self.config.learning_starts
        return 1.0 if random_play else self.epsilon(self.global_step)

    def env_step(self, envs, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Step the environments, store the transitions, count returns; the next obs."""
        cfg = self.config
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        done = terminated | truncated
        real_next = next_obs
        if done.any():  # store the true last observation, not the reset one
            real_next = next_obs.copy()
            for i in np.flatnonzero(done):
                real_next[i] = infos["final_obs"][i]
        stored = np.sign(rewards) if self.clip_rewards else rewards
        if self.images:
            self.replay.step(actions, stored, real_next, terminated, truncated)
            for i in np.flatnonzero(done):
                self.replay.begin(i, next_obs[i])
        elif self._folder is None:
            discounts = np.full(cfg.n_envs, cfg.gamma, dtype=np.float32)
            self.replay.add(obs, actions, stored, real_next, terminated, discounts)
        else:
            folded = self._folder.push(obs, actions, stored, real_next, terminated, truncated)
            if folded is not None:
                self.replay.add(*folded)
        self._episode_returns += rewards
        for i in np.flatnonzero(done):
            self._recent.append(float(self._episode_returns[i]))
            self._episode_returns[i] = 0.0
        self.global_step += cfg.n_envs
        return next_obs

    def update_rounds(self, before: int) -> int:
        """Gradient updates due after the vector step that began at env step ``before``."""
        cfg = self.config
        rounds = self.global_step // cfg.train_freq - before // cfg.train_freq
        # a rule on the step counter alone (not on the replay's size, which n-step windows
        # and episode ends make differ between seeds): many seeds in lockstep update together
        warmup = max(
            min(cfg.learning_starts, cfg.buffer_size), cfg.batch_size + cfg.n_envs * cfg.n_step
        )
        return rounds * cfg.gradient_steps if self.global_step >= warmup else 0

    def set_learning_rate(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self._lr()

    def record_update(self, run: Run, loss: float, mean_q: float) -> None:
        run.check_finite(loss=loss, mean_q=mean_q)
        self._losses.append(loss)
        self._qs.append(mean_q)

    def needs_weights(self, before: int) -> bool:
        """Whether :meth:`bookkeeping` after this step evaluates or checkpoints."""
        cfg, now = self.config, self.global_step
        due = Run.due(before, now, cfg.eval_interval) or Run.due(
            before, now, cfg.checkpoint_interval
        )
        return due and now < cfg.total_steps

    def bookkeeping(self, run: Run, before: int, epsilon: float, evaluate=None) -> None:
        """Log, evaluate and checkpoint on their env-step intervals; ``evaluate(episodes,
        seed)`` replaces :meth:`evaluate` (many seeds evaluate together in lockstep)."""
        cfg, now, last = self.config, self.global_step, self._last
        run.advance(now - before)
        if run.due(before, now, cfg.log_interval) or now >= cfg.total_steps:
            if self._recent:
                last["return"] = float(np.mean(self._recent))
            if self._losses:
                last["loss"], last["q"] = float(np.mean(self._losses)), float(np.mean(self._qs))
            self._recent, self._losses, self._qs = [], [], []
            run.log(
                now, episode_return=last["return"], loss=last["loss"], mean_q=last["q"],
                epsilon=epsilon,
            )  # fmt: skip
            run.advance(
                0,
                ret="-" if last["return"] is None else f"{last['return']:.1f}",
                eps=f"{epsilon:.3f}",
                loss="-" if last["loss"] is None else f"{last['loss']:.3g}",
            )
        if run.due(before, now, cfg.eval_interval) and now < cfg.total_steps:
            result = (evaluate or self.evaluate)(cfg.eval_episodes, self.seeds.validation)
            run.log(now, **_eval_columns(result))
            run.advance(0, eval=f"{result['mean_return']:.1f}")
            if cfg.keep_best and result["mean_return"] > self.best_return:
                self.best_return = result["mean_return"]
                self.best_weights = _copy(self.q_net.state_dict())
            stop = cfg.stop_at_return  # the loop runs while stopped_early is False
            self.stopped_early = stop is not None and result["mean_return"] >= stop
        if run.due(before, now, cfg.checkpoint_interval) and now < cfg.total_steps:
            run.checkpoint()

    def finish(self, run: Run) -> dict:
        """After the loop: keep the best weights if asked, the final test evaluation,
        eval.json, the last checkpoint and the learning curve."""
        cfg = self.config
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


def network_kind(cfg: DQNConfig, obs_shape: tuple[int, ...]) -> str:
    """The Q-network ``cfg.network`` names for these observations (auto resolved), or one
    clear error when it cannot take them."""
    image = len(obs_shape) == 3
    kind = cfg.network
    if kind == "auto":
        kind = (
            "mlp" if not image else "nature" if min(obs_shape[1:]) >= NATURE_MIN_SIZE else "minatar"
        )
    if kind != "mlp" and not image:
        raise DQNLMError(
            f"network={kind!r} needs image observations, but {cfg.env_id!r} has flat "
            f"observations of shape {obs_shape}; use network='mlp'"
        )
    if kind == "nature" and min(obs_shape[1:]) < NATURE_MIN_SIZE:
        raise DQNLMError(
            f"network='nature' needs images of at least {NATURE_MIN_SIZE}x{NATURE_MIN_SIZE} "
            f"pixels, but {cfg.env_id!r} gives {obs_shape[1]}x{obs_shape[2]}; use network='minatar'"
        )
    if image and cfg.prioritized:
        raise DQNLMError("prioritized replay is not available for image observations yet")
    return kind


def estimate_bytes(cfg: DQNConfig, obs_space, q_net: torch.nn.Module) -> int:
    """Memory a run allocates up front: replay, networks, gradients, Adam and a batch."""
    obs_shape = obs_space.shape
    if len(obs_shape) == 1:
        widths = [obs_shape[0], *cfg.hidden_sizes, int(q_net.head.out_features)]
        return q_learning_bytes(cfg.buffer_size, widths, cfg.batch_size, cfg.prioritized)
    frame = int(np.prod(obs_shape))
    if family(cfg.env_id) == "atari":
        frame //= cfg.frame_stack
    # each frame once, plus six 8-byte transition fields; weights held six times; a batch
    # of s and s' as uint8 and float32 with activations of a few times the input
    replay = cfg.buffer_size * (frame + 1 + 48)
    params = sum(p.numel() for p in q_net.parameters())
    batch = cfg.batch_size * 2 * int(np.prod(obs_shape)) * (1 + 4 * 8)
    return replay + 6 * 4 * params + batch


def evaluation(
    returns: np.ndarray, discounted: np.ndarray, starts: np.ndarray, start_q: torch.Tensor
) -> dict:
    """An evaluation's record from its episodes (run_episodes) and Q of their start states."""
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": len(returns),
        # how far the greedy value of the start state overshoots the discounted return
        # it actually earns (van Hasselt et al. 2016's overestimation measure)
        "q_overestimation": float(start_q.max(dim=-1).values.mean().item() - discounted.mean()),
        "returns": returns.tolist(),
    }


def _eval_columns(result: dict) -> dict[str, float]:
    """An evaluation's values in metrics.csv."""
    return {"eval_return": result["mean_return"], "q_overestimation": result["q_overestimation"]}


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
