"""Token-level Q-learning for a causal LM, with a target network from the core.

One online round: sample prompts, generate completions with the LM as the policy, score
them, push the sequences into a replay buffer, then make several TD updates on replayed
batches, each followed by a target-network update. Offline training replays a fixed
JSONL dataset instead of generating (and still samples a few texts per round to log).

``Q(s, a) = beta * (logits(s, a) - ref_logits(s, a))`` where ``ref`` is the frozen model
training started from; see :mod:`dqnlm.lm.config` for why.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dqnlm.config_io import to_toml
from dqnlm.core.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    load_optimizer_state,
    optimizer_state,
    save_checkpoint,
)
from dqnlm.core.target import TargetNetwork
from dqnlm.device import resolve_device
from dqnlm.errors import DQNLMError, TrainingDiverged
from dqnlm.lm.config import LMConfig
from dqnlm.lm.data import load_prompts, read_jsonl
from dqnlm.lm.generation import (
    TokenBatch,
    assemble,
    decode_completions,
    encode_prompts,
    forward_logits,
    sample,
)
from dqnlm.lm.models import (
    add_lora,
    context_length,
    is_adapter,
    load_model,
    load_tokenizer,
    quiet_transformers,
    reference_of,
    resolve_model_source,
)
from dqnlm.lm.pretrain import replace_dir
from dqnlm.lm.qlearning import anchored_q, update_loss  # noqa: F401 (anchored_q: re-exported)
from dqnlm.lm.rewards import parse_reward
from dqnlm.metrics import MetricsLogger, save_figure

CHECKPOINTS = "checkpoints"
COLUMNS = (
    "step",
    "time_s",
    "updates",
    "reward",
    "kl",
    "td_loss",
    "cql_loss",
    "mean_q",
    "tokens_per_s",
)


class SequenceReplay:
    """Fixed-width token sequences with their action masks and per-token rewards."""

    def __init__(self, capacity: int, width: int, seed: int = 0) -> None:
        self.tokens = torch.zeros(capacity, width, dtype=torch.long)
        self.attention = torch.zeros(capacity, width, dtype=torch.long)
        self.actions = torch.zeros(capacity, width)
        self.rewards = torch.zeros(capacity, width)
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, batch: TokenBatch, rewards: torch.Tensor) -> None:
        n = len(batch.tokens)
        slots = torch.from_numpy((self.pos + np.arange(n)) % self.capacity)
        self.tokens[slots], self.attention[slots] = batch.tokens.cpu(), batch.attention.cpu()
        self.actions[slots], self.rewards[slots] = batch.actions.cpu(), rewards.cpu()
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        idx = torch.from_numpy(self.rng.integers(0, self.size, size=n))
        return self.tokens[idx], self.attention[idx], self.actions[idx], self.rewards[idx]

    def state_dict(self) -> dict[str, np.ndarray]:
        arrays = {
            k: getattr(self, k).numpy() for k in ("tokens", "attention", "actions", "rewards")
        }
        arrays["counters"] = np.array([self.pos, self.size])
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        for key in ("tokens", "attention", "actions", "rewards"):
            getattr(self, key).copy_(torch.from_numpy(arrays[key]))
        self.pos, self.size = (int(v) for v in arrays["counters"])


def sequence_rewards(batch: TokenBatch, scores: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: each text's score on its last generated token, 0 elsewhere."""
    rewards = torch.zeros_like(batch.actions)
    rewards[torch.arange(len(scores)), batch.last_action()] = scores.to(rewards)
    return rewards


def sequence_kl(logits, ref_logits, batch: TokenBatch, temperature: float = 1.0) -> torch.Tensor:
    """Per-text sum over generated tokens of log pi(a|s) - log pi_ref(a|s): a sample of the
    sequence KL(pi || pi_ref) in nats."""
    taken = batch.tokens[:, 1:, None]
    logp = torch.log_softmax(logits[:, :-1] / temperature, -1).gather(-1, taken)
    ref_logp = torch.log_softmax(ref_logits[:, :-1], -1).gather(-1, taken)
    generated = batch.actions[:, 1:].bool()  # select, not multiply: padding may hold -inf - -inf
    return torch.where(generated, (logp - ref_logp).squeeze(-1), 0.0).sum(1)


class LMTrainer:
    """Owns the LM Q-network, its reference, its target network, replay and run directory."""

    def __init__(self, config: LMConfig, run_dir: str | Path | None = None, progress: bool = True):
        self.config = cfg = config.validate()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(cfg.device)
        # cheap checks first, so bad input fails before any pretraining or loading
        self.reward = parse_reward(cfg.reward)
        self.prompts = load_prompts(cfg.prompts)
        if cfg.eval_prompts:
            load_prompts(cfg.eval_set)  # a bad file fails now, not after training
        offline = (
            read_jsonl(cfg.offline_data, {"prompt": str, "completion": str, "reward": (int, float)})
            if cfg.offline_data
            else None
        )
        self.model_source = resolve_model_source(cfg.model, progress)
        self.tokenizer = load_tokenizer(self.model_source)
        torch.manual_seed(cfg.seed)
        model = load_model(self.model_source, cfg.dtype, self.device)
        width = cfg.prompt_tokens + cfg.new_tokens
        limit = context_length(model)
        if limit is not None and width > limit:
            raise DQNLMError(
                f"prompt_tokens + new_tokens = {width} exceeds the model's context of {limit} tokens"
            )
        lora = cfg.lora_rank > 0
        self.model = add_lora(model, cfg.lora_rank, cfg.lora_alpha) if lora else model
        self.reference = reference_of(self.model, lora)
        self.target = TargetNetwork(
            self.model, cfg.target, cfg.target_period, cfg.tau, only=is_adapter if lora else None
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=cfg.learning_rate
        )
        self.rng = np.random.default_rng(cfg.seed)
        capacity = len(offline) if offline else cfg.replay_capacity
        self.replay = SequenceReplay(capacity, width, cfg.seed)
        if offline:
            self._fill_offline(offline)
        self._empty_score = float(self.score([""])[0]) if cfg.shaping else 0.0
        self.round = self.num_updates = 0
        self.elapsed = 0.0
        self.last_checkpoint: Path | None = None

    # ------------------------------------------------------------------ data
    def _fill_offline(self, rows: list[dict]) -> None:
        cfg, tok = self.config, self.tokenizer
        prompt, prompt_attention, _ = encode_prompts(
            tok, [r["prompt"] for r in rows], cfg.prompt_tokens
        )
        completion = torch.full((len(rows), cfg.new_tokens), tok.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids = tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = ids[: cfg.new_tokens]
            completion[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        batch = assemble(prompt, prompt_attention, completion, tok.eos_token_id)
        scores = torch.tensor([float(r["reward"]) for r in rows])
        self.replay.add(batch, sequence_rewards(batch, scores))

    def score(self, texts: list[str]) -> torch.Tensor:
        scores = torch.tensor(self.reward(texts), dtype=torch.float32)
        if scores.shape != (len(texts),) or not torch.isfinite(scores).all():
            raise DQNLMError(
                f"reward {self.config.reward!r} must return one finite float per text, "
                f"got {scores.tolist()[:8]}"
            )
        return scores

    def generate(self, prompts: list[str]) -> TokenBatch:
        cfg = self.config
        return sample(
            self.model,
            self.tokenizer,
            prompts,
            cfg.prompt_tokens,
            cfg.new_tokens,
            cfg.min_new_tokens,
            cfg.temperature,
            cfg.top_k,
            cfg.top_p,
        )

    # -------------------------------------------------------------- learning
    def _update(self) -> tuple[float, float, float]:
        """One TD update on a replayed batch; returns (td_loss, cql_loss, mean Q taken)."""
        cfg = self.config
        tokens, attention, actions, rewards = (
            t.to(self.device) for t in self.replay.sample(cfg.batch_size)
        )
        # reference and target first: a LoRA target swaps its lagged adapters into the
        # model in place, which must not happen between the online forward and backward
        with torch.no_grad():
            ref_logits = forward_logits(self.reference, tokens, attention)
            if cfg.target != "none":
                target_logits = forward_logits(self.target, tokens, attention)
        logits = forward_logits(self.model, tokens, attention)
        if cfg.target == "none":
            target_logits = logits.detach()
        loss, cql, mean_q = update_loss(
            logits, ref_logits, target_logits, tokens, actions, rewards, cfg
        )
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged at round {self.round + 1}, TD update {self.num_updates + 1}: "
                f"the loss is {loss.item()}; last good checkpoint: {self.last_checkpoint or 'none yet'}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm
            )
        self.optimizer.step()
        self.num_updates += 1
        self.target.update(self.num_updates)
        return loss.item(), cql.item(), mean_q.item()

    @torch.no_grad()
    def _collect(self) -> tuple[TokenBatch, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generate and score one round of texts; returns (batch, per-token rewards, scores,
        per-text KL)."""
        cfg = self.config
        picks = self.rng.integers(0, len(self.prompts), cfg.prompts_per_round)
        batch = self.generate([self.prompts[i] for i in picks])
        if cfg.shaping:
            rewards = self.shaped_rewards(batch)
            scores = rewards.sum(1) + self._empty_score
        else:
            scores = self.score(decode_completions(self.tokenizer, batch))
            rewards = sequence_rewards(batch, scores)
        logits = forward_logits(self.model, batch.tokens, batch.attention)
        ref_logits = forward_logits(self.reference, batch.tokens, batch.attention)
        kl = sequence_kl(logits, ref_logits, batch, cfg.temperature)
        return batch, rewards, scores, kl

    def shaped_rewards(self, batch: TokenBatch) -> torch.Tensor:
        """Per-token rewards ``R(prefix up to t) - R(prefix up to t - 1)`` (potential-based
        shaping, Ng et al. 1999). They sum to ``R(text) - R("")`` on every text, so returns
        and the optimal policy are unchanged, but each token is credited with its own effect.
        """
        start = batch.prompt_tokens
        completion, actions = batch.completion.cpu(), batch.actions[:, start:].cpu()
        prefixes, places = [], []
        for row in range(len(completion)):
            ids = completion[row][actions[row].bool()].tolist()
            prefixes += [ids[: t + 1] for t in range(len(ids))]
            places += [(row, start + t) for t in range(len(ids))]
        potential = self.score(self.tokenizer.batch_decode(prefixes, skip_special_tokens=True))
        before = torch.cat([torch.tensor([self._empty_score]), potential[:-1]])
        first = torch.tensor([p[1] == start for p in places])
        before[first] = self._empty_score  # each text starts from the empty prefix
        rewards = torch.zeros_like(batch.actions, device="cpu")
        rows, cols = (torch.tensor(c) for c in zip(*places))
        rewards[rows, cols] = potential - before
        return rewards

    def learn(self, progress: bool = True, tensorboard: bool = True) -> dict | None:
        """Train to ``config.rounds``; returns the final evaluation (or None when skipped)."""
        cfg = self.config
        if self.run_dir is None:
            raise DQNLMError("LMTrainer.learn needs a run directory")
        resumed = self.round if self.round > 0 else None
        fresh = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.toml", to_toml(cfg))
        logger = MetricsLogger(self.run_dir, COLUMNS, tensorboard, resumed, tb_prefix="lm")
        bar = tqdm(
            total=cfg.rounds,
            initial=self.round,
            desc="lm q-learning",
            unit="round",
            disable=not progress,
        )
        try:
            while self.round < cfg.rounds:
                started = time.perf_counter()
                batch, rewards, scores, kl = self._collect()
                if not cfg.offline_data:
                    self.replay.add(batch, rewards)
                results = [self._update() for _ in range(cfg.updates_per_round)]
                td, cql, mean_q = (float(np.mean(r)) for r in zip(*results))
                seconds = time.perf_counter() - started
                self.elapsed += seconds
                self.round += 1
                tokens_per_s = float(batch.actions.sum()) / seconds
                values = {
                    "time_s": self.elapsed,
                    "updates": self.num_updates,
                    "reward": float(scores.mean()),
                    "kl": float(kl.mean()),
                    "td_loss": td,
                    "cql_loss": cql if cfg.cql_alpha > 0 else None,
                    "mean_q": mean_q,
                    "tokens_per_s": tokens_per_s,
                }
                logger.log(self.round, **values)
                bar.update(1)
                bar.set_postfix(
                    reward=f"{values['reward']:.3f}",
                    kl=f"{values['kl']:.2f}",
                    td=f"{td:.4f}",
                    tok_s=f"{tokens_per_s:.0f}",
                )
                self._check_weights()
                if self.round % cfg.checkpoint_every == 0 or self.round == cfg.rounds:
                    self.save_checkpoint()
        except BaseException:
            if fresh and self.last_checkpoint is None:  # leave nothing half-written behind
                logger.close()
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        finally:
            bar.close()
            logger.close()
        plot_lm_run(self.run_dir)
        self.save_model(self.run_dir / "model")
        if cfg.eval_prompts == 0:
            return None
        from dqnlm.lm.evaluate import evaluate

        result = evaluate(self, load_prompts(cfg.eval_set), cfg.eval_prompts, progress=progress)
        atomic_write_text(self.run_dir / "eval.json", json.dumps(result, indent=1))
        return result

    def _check_weights(self) -> None:
        if not all(torch.isfinite(t).all() for t in self._trained_tensors().values()):
            raise TrainingDiverged(
                f"training diverged in round {self.round}: the weights are not finite; "
                f"last good checkpoint: {self.last_checkpoint or 'none yet'}"
            )

    # ----------------------------------------------------------- checkpoints
    def _trained_tensors(self) -> dict[str, torch.Tensor]:
        """The weights training changes: all parameters, or the LoRA adapters only."""
        named = self.model.named_parameters()  # shared (tied) weights appear once
        return {n: p.detach() for n, p in named if p.requires_grad}

    def _target_tensors(self) -> dict[str, torch.Tensor]:
        if self.config.target == "none":
            return {}
        if self.config.lora_rank > 0:
            return self.target.state_dict()
        return {n: p.detach() for n, p in self.target.module.named_parameters()}

    def save_checkpoint(self) -> Path:
        """Trained weights, target, optimizer, replay, RNG states and counters, atomically."""
        self._check_weights()
        trained = self._trained_tensors()
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        tensors = {f"model.{k}": v for k, v in trained.items()}
        tensors.update({f"target.{k}": v for k, v in self._target_tensors().items()})
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "config": dataclasses.asdict(self.config),
            "model_source": self.model_source,
            "round": self.round,
            "num_updates": self.num_updates,
            "elapsed_s": self.elapsed,
            "optimizer": opt_meta,
            "rng": {
                "prompts": self.rng.bit_generator.state,
                "replay": self.replay.rng.bit_generator.state,
            },
        }
        self.last_checkpoint = save_checkpoint(
            self.run_dir / CHECKPOINTS, self.round, tensors, meta, self.replay.state_dict()
        )
        return self.last_checkpoint

    @classmethod
    def load(
        cls, run_dir: str | Path, rounds: int | None = None, device: str | None = None
    ) -> LMTrainer:
        """Rebuild a trainer from the newest checkpoint in ``run_dir`` (to evaluate or resume)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"run directory {run_dir} does not exist")
        ckpt = load_checkpoint(run_dir / CHECKPOINTS)
        try:
            values = dict(ckpt.meta["config"], model=ckpt.meta["model_source"])
            if rounds is not None:
                values["rounds"] = rounds
            if device is not None:
                values["device"] = device
            trainer = cls(LMConfig(**values), run_dir, progress=False)
            tensors = ckpt.tensors
            params = dict(trainer.model.named_parameters())
            with torch.no_grad():
                for name in trainer._trained_tensors():
                    params[name].copy_(tensors[f"model.{name}"])
                # the lagged tensors themselves (a full copy, or LoRA's adapter shadows)
                for name, value in trainer._target_tensors().items():
                    value.copy_(tensors[f"target.{name}"])
            load_optimizer_state(trainer.optimizer, tensors, ckpt.meta["optimizer"])
            torch.set_rng_state(tensors["rng.torch"])
            trainer.rng.bit_generator.state = ckpt.meta["rng"]["prompts"]
            trainer.replay.rng.bit_generator.state = ckpt.meta["rng"]["replay"]
            if ckpt.arrays is not None:
                trainer.replay.load_state_dict(ckpt.arrays)
            trainer.round = int(ckpt.meta["round"])
            trainer.num_updates = int(ckpt.meta["num_updates"])
            trainer.elapsed = float(ckpt.meta["elapsed_s"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {ckpt.path} does not fit this model: {e}") from None
        trainer.last_checkpoint = ckpt.path
        return trainer

    def save_model(self, out: Path) -> Path:
        """The tuned model as a Hugging Face directory (LoRA: the adapter), written atomically."""
        out = Path(out)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            with quiet_transformers():
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
            replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def plot_lm_run(run_dir: Path, out: Path | None = None) -> Path:
    """Reward and KL per round, one panel each, from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dqnlm.metrics import read_metrics

    rows = read_metrics(Path(run_dir) / "metrics.csv")
    rounds = np.array([float(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for ax, key, label in zip(axes, ("reward", "kl"), ("mean reward", "KL to reference (nats)")):
        values = np.array([float(r[key]) for r in rows])
        ax.plot(rounds, values, color="C0", alpha=0.35, linewidth=1)
        if len(values) >= 5:
            window = max(5, len(values) // 20)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(rounds[window - 1 :], smooth, color="C0", linewidth=2)
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(run_dir).name}")
    fig.tight_layout()
    out = Path(out) if out is not None else Path(run_dir) / "reward_kl.png"
    return save_figure(fig, out)
