"""A DQN dialogue policy against the user simulator (TC-Bot's agent_dqn, on the core).

``DialogueDQN.learn`` is the whole loop, top to bottom: fill the replay with the rule
agent's dialogues (warm start), then run epochs. An epoch plays ``dialogues_per_epoch``
epsilon-greedy dialogues on training goals, each followed by one TD update per
``train_freq`` agent turns it played (the target network follows the gradient updates,
as in control), and every ``eval_interval`` epochs plays greedy dialogues on training
goals to keep the best policy. Held-out test goals are played only once, at the end.
The bookkeeping (run dir, metrics, checkpoints, resume, Ctrl-C) is :mod:`dqnlm.run`'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from dqnlm.config_io import load_toml, replace
from dqnlm.core.acting import epsilon_greedy
from dqnlm.core.checkpoint import (
    CheckpointError,
    atomic_write,
    atomic_write_text,
    load_optimizer_state,
    optimizer_state,
)
from dqnlm.core.losses import dqn_loss, gradient_step
from dqnlm.core.networks import QNetwork
from dqnlm.core.replay import ReplayBuffer
from dqnlm.core.schedules import linear
from dqnlm.core.target import TargetNetwork
from dqnlm.device import resolve_device
from dqnlm.dialogue.agents import RuleAgent, evaluate
from dqnlm.dialogue.config import DialogueDQNConfig
from dqnlm.dialogue.env import DialogueEnv
from dqnlm.dialogue.schema import bundled_domains
from dqnlm.dialogue.tracker import ActionMask, StateTracker
from dqnlm.errors import DQNLMError
from dqnlm.metrics import numeric_rows, pyplot, save_figure, series
from dqnlm.resources import check_fits, q_learning_bytes
from dqnlm.run import Run, Trainer, generator_states, restore_generators, unprefixed
from dqnlm.seeding import seed_streams
from dqnlm.trust import check_inside

COLUMNS = (
    "step",  # dialogues simulated so far, warm start included
    "epoch",
    "time_s",
    "train_success",
    "train_turns",
    "train_reward",
    "eval_success",
    "eval_turns",
    "eval_reward",
    "loss",
    "mean_q",
    "epsilon",
)
POLICY = "policy.safetensors"
POLICY_RECORD = "policy.json"
"""Beside the policy: its SHA-256, checked before the weights are read."""
DOMAIN_COPY = "domain"
"""A run trained on a schema file keeps a copy of it as ``domain.json`` (or ``.yaml``)."""


class QPolicy:
    """A Q-network as a dialogue agent: the greedy action, among the allowed ones."""

    def __init__(self, q_net: QNetwork, mask: ActionMask | None):
        self.q_net, self.mask = q_net, mask

    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        """Q-values of one state, -inf on ruled-out actions."""
        with torch.no_grad():
            state = torch.as_tensor(obs, dtype=torch.float32)[None]
            device = next(self.q_net.parameters()).device
            q = self.q_net(state.to(device)).cpu()
        if self.mask is not None:
            q = q.masked_fill(self.mask.invalid(state), -math.inf)
        return q[0]

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray, tracker: StateTracker | None = None) -> int:
        return int(self.q_values(obs).argmax())


class DialogueDQN(Trainer):
    """Deep Q-learning of a dialogue policy with replay, a target network and a warm start.

    >>> agent = DialogueDQN(DialogueDQNConfig(epochs=50), run_dir="runs/movie")
    >>> agent.learn()                       # doctest: +SKIP
    """

    def __init__(self, config: DialogueDQNConfig, run_dir: str | Path | None = None) -> None:
        if config.domain not in bundled_domains() and Path(config.domain).is_file():
            # a schema path must still resolve when the run is evaluated or resumed elsewhere
            config = dataclasses.replace(config, domain=str(Path(config.domain).resolve()))
        self.config = cfg = config.validate()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(cfg.device)
        self.env = DialogueEnv(cfg.env_config("train"))
        tracker = self.env.tracker
        widths = [tracker.dim, *cfg.hidden_sizes, len(tracker.actions)]
        check_fits(
            q_learning_bytes(cfg.buffer_size, widths, cfg.batch_size, trees=False),
            f"buffer_size={cfg.buffer_size:,}, batch_size={cfg.batch_size:,} and "
            f"hidden_sizes={list(cfg.hidden_sizes)}",
        )
        # independent streams from one run seed (dqnlm.seeding): adjacent seeds share none
        self.seeds = seed_streams(cfg.seed)
        torch.manual_seed(self.seeds.torch)
        self.q_net = QNetwork(tracker.dim, len(tracker.actions), cfg.hidden_sizes).to(self.device)
        self.target = TargetNetwork(
            self.q_net, cfg.target_update, cfg.target_update_period, cfg.tau
        )
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate)
        self.replay = ReplayBuffer(
            cfg.buffer_size, (tracker.dim,), device=self.device, seed=self.seeds.replay
        )
        self.mask = tracker.mask if cfg.action_mask else None
        self.policy = QPolicy(self.q_net, self.mask)
        self.goals = np.random.default_rng(self.seeds.train)  # training dialogues' seeds
        self.rng = np.random.default_rng(self.seeds.explore)  # exploration
        trained = cfg.epochs * cfg.dialogues_per_epoch
        self.epsilon = linear(
            cfg.exploration_initial_eps,
            cfg.exploration_final_eps,
            max(int(cfg.exploration_fraction * trained), 1),
        )
        # counters, saved in checkpoints
        self.epoch = 0
        self.dialogues = 0  # warm start included
        self.turns = 0  # agent turns simulated for training
        self.num_updates = 0
        self.best_success = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, epsilon: float) -> int:
        """Epsilon-greedy over the allowed actions."""
        allowed = None if self.mask is None else ~self.mask.invalid(obs[None])
        greedy = lambda batch: np.array([self.policy.act(batch[0])])  # noqa: E731
        n_actions = len(self.env.tracker.actions)
        return int(epsilon_greedy(self.rng, greedy, obs[None], epsilon, n_actions, allowed)[0])

    def _play(self, choose) -> tuple[bool, float, int]:
        """One dialogue on a random training goal, every turn into replay; returns
        (success, return, agent turns)."""
        cfg = self.config
        obs, _ = self.env.reset(seed=int(self.goals.integers(2**31)))
        done, total, n, info = False, 0.0, 0, {}
        while not done:
            action = choose(obs)
            next_obs, reward, done, _, info = self.env.step(action)
            scaled = reward * cfg.reward_scale
            self.replay.add(obs[None], [action], [scaled], next_obs[None], [done], [cfg.gamma])
            obs, total, n = next_obs, total + reward, n + 1
        self.dialogues += 1
        return info["success"], total, n

    def evaluate(
        self, split: str = "test", episodes: int | None = None, seed: int | None = None, **noise
    ) -> dict:
        """Greedy dialogues on ``split`` goals (``episodes=None``: every goal once); the
        default seed is the run's test stream, which training never uses."""
        env = DialogueEnv(dataclasses.replace(self.config.env_config(split), **noise))
        seed = self.seeds.test if seed is None else seed
        return evaluate(env, self.policy, seed=seed, episodes=episodes)

    # --------------------------------------------------------------- learning
    def _update(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One TD update on a replay batch; returns (loss, mean Q taken), undetached from
        the device so an epoch syncs once."""
        cfg = self.config
        batch = self.replay.sample(cfg.batch_size)
        invalid = self.mask.invalid if self.mask is not None else None
        loss, q, _ = dqn_loss(self.q_net, self.target, batch, cfg.loss, cfg.double_dqn, invalid)
        gradient_step(self.optimizer, list(self.q_net.parameters()), loss, cfg.max_grad_norm)
        self.num_updates += 1
        self.target.update(self.num_updates)
        return loss.detach(), q.detach().mean()

    def learn(self, progress: bool = True, tensorboard: bool = True) -> dict:
        """Train for the configured epochs; returns the held-out test evaluation."""
        cfg = self.config
        validation = DialogueEnv(cfg.env_config("train"))
        run = Run(
            self, COLUMNS, total=cfg.total_dialogues, unit="dlg", progress=progress,
            desc=f"dialogue {self.env.domain.name}", tensorboard=tensorboard, tb_prefix="dialogue",
        )  # fmt: skip
        with run:
            self._copy_domain()
            if self.dialogues < cfg.warm_start_dialogues:
                rule = RuleAgent(self.env.domain)
                while self.dialogues < cfg.warm_start_dialogues:
                    rule.reset()
                    self._play(lambda obs: rule.act(obs, self.env.tracker))
                    run.advance(1)
                    run.safe_point()
                baseline = evaluate(validation, rule, self.seeds.validation, cfg.eval_episodes)
                run.log(self.dialogues, epoch=0, **_eval_columns(baseline))
            while self.epoch < cfg.epochs:
                outcomes, losses, qs = [], [], []
                for _ in range(cfg.dialogues_per_epoch):
                    eps = self.epsilon(self.dialogues - cfg.warm_start_dialogues)
                    before = self.turns
                    outcomes.append(self._play(lambda obs, eps=eps: self.act(obs, eps)))
                    self.turns += outcomes[-1][2]
                    updates = self.turns // cfg.train_freq - before // cfg.train_freq
                    for _ in range(updates if len(self.replay) >= cfg.batch_size else 0):
                        loss, mean_q = self._update()
                        losses.append(loss)
                        qs.append(mean_q)
                    run.advance(1)
                self.epoch += 1
                success, reward, turns = (float(np.mean(o)) for o in zip(*outcomes))
                row = dict(train_success=success, train_reward=reward, train_turns=turns)
                row["epsilon"] = eps
                if losses:
                    row["loss"], row["mean_q"] = torch.stack(
                        [torch.stack(losses).mean(), torch.stack(qs).mean()]
                    ).tolist()
                    run.check_finite(loss=row["loss"], mean_q=row["mean_q"])
                shown = {"train": f"{success:.2f}", "eps": f"{eps:.2f}"}
                if self.epoch % cfg.eval_interval == 0 or self.epoch == cfg.epochs:
                    result = evaluate(
                        validation, self.policy, self.seeds.validation, cfg.eval_episodes
                    )
                    row.update(_eval_columns(result))
                    shown["val"] = f"{result['success_rate']:.2f}"
                    shown["turns"] = f"{result['avg_turns']:.1f}"
                    if result["success_rate"] > self.best_success:
                        self.best_success = result["success_rate"]
                        self.best_state = {k: v.clone() for k, v in self.q_net.state_dict().items()}
                run.advance(0, **shown)
                run.log(self.dialogues, epoch=self.epoch, **row)
                if self.epoch % cfg.checkpoint_interval == 0 or self.epoch == cfg.epochs:
                    run.checkpoint()
                run.safe_point()
            run.loop_done()
            if cfg.keep_best and self.best_state is not None:
                self.q_net.load_state_dict(self.best_state)
            final = self.evaluate("test", cfg.test_episodes or None)
            final.update(dialogues=self.dialogues, train_seconds=round(run.seconds(), 1))
            final["validation_success"] = self.best_success if cfg.keep_best else None
            if self.run_dir is not None:
                self.save_policy()
            run.finish(final)
        if self.run_dir is not None:
            plot_success(self.run_dir, self.run_dir / "success_rate.png")
        return final

    # ------------------------------------------------------------ persistence
    def _copy_domain(self) -> None:
        copy_domain(self.config.domain, self.run_dir)

    def saved_config(self) -> DialogueDQNConfig:
        return with_domain_copy(self.config, self.run_dir)

    def save_policy(self) -> Path:
        """The policy weights as safetensors, and their SHA-256 in policy.json beside them;
        config.toml says how to rebuild the network."""
        path = self.run_dir / POLICY
        weights = {k: v.detach().cpu().contiguous() for k, v in self.q_net.state_dict().items()}
        data = safetensors.torch.save(weights)
        atomic_write(path, data)
        record = {"file": POLICY, "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_text(self.run_dir / POLICY_RECORD, json.dumps(record, indent=1) + "\n")
        return path

    # ------------------------------------------------------------ checkpoints
    @property
    def step(self) -> int:
        return self.dialogues

    def where(self) -> str:
        return f"epoch {self.epoch} (dialogue {self.dialogues:,})"

    def finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in self.q_net.parameters())

    def state(self):
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        tensors = {f"q_net.{k}": v for k, v in self.q_net.state_dict().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        tensors.update(opt_tensors)
        meta = {
            "epoch": self.epoch,
            "turns": self.turns,
            "num_updates": self.num_updates,
            "best_success": self.best_success,
            "optimizer": opt_meta,
            "rng": generator_states(explore=self.rng, goals=self.goals, replay=self.replay.rng),
        }
        return tensors, meta, self.replay.state_dict()

    def load_state(self, tensors, meta, arrays) -> None:
        self.q_net.load_state_dict(unprefixed(tensors, "q_net."))
        self.target.load_state_dict(unprefixed(tensors, "target."))
        self.best_state = unprefixed(tensors, "best.") or None
        load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        restore_generators(meta["rng"], explore=self.rng, goals=self.goals, replay=self.replay.rng)
        self.replay.load_state_dict(arrays)
        self.dialogues = int(meta["step"])
        for name in ("epoch", "turns", "num_updates"):
            setattr(self, name, int(meta[name]))
        self.best_success = float(meta["best_success"])

    @classmethod
    def config_from_checkpoint(cls, meta, run_dir, source, trust_code) -> DialogueDQNConfig:
        """``trust_code``: let the checkpoint name a schema file outside ``run_dir``."""
        return domain_inside(_config_from(meta["config"], source), run_dir, source, trust_code)


def load_policy(
    run_dir: str | Path, trust_code: bool = False, **overrides
) -> tuple[DialogueDQNConfig, QPolicy]:
    """A trained run's config and greedy policy (``overrides`` replace config fields).

    The weights must match the SHA-256 in policy.json and be finite; the saved config may
    name a schema file outside ``run_dir`` only with ``trust_code``."""
    run_dir = Path(run_dir)
    weights = run_dir / POLICY
    if not (run_dir / "config.toml").is_file() or not weights.is_file():
        raise DQNLMError(
            f"{run_dir} is not a finished dialogue run (it needs config.toml and {POLICY}); "
            "train one with `dqnlm dialogue train`"
        )
    source = str(run_dir / "config.toml")
    config = _config_from(load_toml(run_dir / "config.toml"), source)
    if "domain" not in overrides:  # a --domain given on the command line is the user's own
        config = domain_inside(config, run_dir, source, trust_code)
    config = replace(config, overrides, source="flags").validate()
    tensors = _read_policy(run_dir)
    tracker = DialogueEnv(config.env_config()).tracker
    with torch.device("meta"):  # no memory until the shapes are known to fit
        q_net = QNetwork(tracker.dim, len(tracker.actions), config.hidden_sizes)
    _check_shapes(q_net, tensors, weights, config.domain)
    q_net.load_state_dict(tensors, assign=True)
    q_net.eval()
    return config, QPolicy(q_net, tracker.mask if config.action_mask else None)


def _read_policy(run_dir: Path) -> dict[str, torch.Tensor]:
    """The policy weights, refused in one line unless their hash matches and they are finite."""
    weights, record_path = run_dir / POLICY, run_dir / POLICY_RECORD
    try:
        digest = json.loads(record_path.read_text(encoding="utf-8"))["sha256"]
        data = weights.read_bytes()
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{e.filename} is missing: {weights} cannot be checked against its SHA-256"
        ) from None
    except OSError as e:
        raise CheckpointError(f"cannot read {e.filename}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{record_path} is malformed: it must hold the SHA-256 of {POLICY}"
        ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(
            f"{weights} does not match the SHA-256 in {record_path}: "
            "the file is truncated, corrupted or was tampered with"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own error types on bad headers
        raise CheckpointError(f"{weights} is not valid safetensors: {e}") from None
    for name, value in tensors.items():
        if value.dtype != torch.float32 or not torch.isfinite(value).all():
            raise CheckpointError(
                f"{weights} holds non-finite or non-float32 weights ({name}): "
                "refusing to evaluate a diverged or damaged policy"
            )
    return tensors


def _check_shapes(
    q_net: QNetwork, tensors: dict[str, torch.Tensor], weights: Path, domain: str
) -> None:
    expected = {k: list(v.shape) for k, v in q_net.state_dict().items()}
    found = {k: list(v.shape) for k, v in tensors.items()}
    if expected == found:
        return
    name = next(
        k for k in sorted(expected.keys() | found.keys()) if expected.get(k) != found.get(k)
    )
    raise CheckpointError(
        f"{weights} does not fit domain {domain!r} (another domain's slots or actions, or "
        f"other hidden_sizes?): {name} has shape {found.get(name, 'none')}, the network "
        f"needs {expected.get(name, 'none')}"
    )


def plot_success(run_dir: Path, out: Path) -> Path:
    """Success rate against training dialogues: epsilon-greedy training and greedy validation."""
    columns = ("step", "epoch", "train_success", "eval_success")
    rows = numeric_rows(Path(run_dir) / "metrics.csv", columns)
    learner = lambda row: (row["epoch"] or 0) > 0  # noqa: E731 - epoch 0: the rule agent
    fig, ax = pyplot().subplots(figsize=(7, 4.2), dpi=110)
    train, val = series(rows, "train_success", learner), series(rows, "eval_success", learner)
    ax.plot(*train, color="C0", alpha=0.5, label="training (epsilon-greedy)")
    ax.plot(*val, "o-", color="C1", markersize=3, label="greedy, training goals")
    _, rule = series(rows, "eval_success", lambda row: row["epoch"] == 0)
    if len(rule):
        label = f"rule agent, training goals ({rule[0]:.2f})"
        ax.axhline(rule[0], color="gray", linestyle="--", label=label)
    ax.set(xlabel="training dialogues (warm start included)", ylabel="success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"DQN dialogue policy: {Path(run_dir).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out)


def _eval_columns(result: dict) -> dict[str, float]:
    """An evaluation's values in metrics.csv."""
    return {
        "eval_success": result["success_rate"],
        "eval_turns": result["avg_turns"],
        "eval_reward": result["avg_reward"],
    }


def _config_from(values: dict, source: str) -> DialogueDQNConfig:
    return replace(DialogueDQNConfig(), values, source=source)


def domain_copy(domain: str, run_dir: Path | None) -> Path | None:
    """Where a run keeps its schema file (None for a bundled domain or no run dir)."""
    if domain in bundled_domains() or run_dir is None:
        return None
    return run_dir / (DOMAIN_COPY + Path(domain).suffix.lower())


def copy_domain(domain: str, run_dir: Path | None) -> None:
    """Copy a schema file into the run dir: loading the run then reads nothing outside it."""
    copy = domain_copy(domain, run_dir)
    if copy is not None and Path(domain).resolve() != copy.resolve():
        atomic_write(copy, Path(domain).read_bytes())


def with_domain_copy(config, run_dir: Path | None):
    """The config as the run dir stores it: a schema file is named by its copy there."""
    copy = domain_copy(config.domain, run_dir)
    return config if copy is None else dataclasses.replace(config, domain=copy.name)


def domain_inside(
    config: DialogueDQNConfig, run_dir: Path, source: str, trust_code: bool
) -> DialogueDQNConfig:
    """A saved schema path resolved against ``run_dir``; outside it only with ``trust_code``."""
    if config.domain in bundled_domains():
        return config
    path = check_inside(config.domain, run_dir, "domain", source, trust_code)
    return dataclasses.replace(config, domain=str(path))
