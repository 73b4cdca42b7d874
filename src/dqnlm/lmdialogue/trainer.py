"""A language model that speaks every agent turn, learning by multi-turn Q-learning.

``LMDialogueTrainer.learn`` is the whole loop, top to bottom. Each round it plays
``dialogues_per_round`` dialogues on training goals (the LM samples every agent turn;
:mod:`dqnlm.lmdialogue.rollout`), stores them whole in replay with the reference model's
statistics at every agent token, and makes ``updates_per_round`` TD updates on replayed
dialogues. An update runs the online and target models over whole dialogues, gathers
the logits at the agent's decisions (:func:`dqnlm.lm.multiturn.pack_decisions`) and
applies the single-turn soft update (:func:`dqnlm.lm.qlearning.update_loss`): Q =
beta (logits - reference logits), the reference as prior, Q(lambda) across tokens and
turns, bootstraps from the target network. Greedy validation dialogues on training goals
keep the best policy; held-out test goals are played once, at the end. The bookkeeping
(run dir, metrics, checkpoints, resume, SIGTERM) is :mod:`dqnlm.run`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from dqnlm.config_io import load_toml, replace
from dqnlm.core.checkpoint import (
    CheckpointError,
    atomic_dir,
    atomic_write,
    load_optimizer_state,
    optimizer_state,
)
from dqnlm.core.target import TargetNetwork
from dqnlm.device import resolve_device
from dqnlm.dialogue.dqn import copy_domain, domain_inside, with_domain_copy
from dqnlm.dialogue.schema import bundled_domains
from dqnlm.dialogue.text_env import TextDialogueEnv
from dqnlm.errors import DQNLMError
from dqnlm.lm.generation import keeps_logits, positions
from dqnlm.lm.models import add_lora, context_length, is_adapter, load_checked, load_model
from dqnlm.lm.multiturn import pack_decisions
from dqnlm.lm.qlearning import update_loss
from dqnlm.lm.quiet import quiet_transformers
from dqnlm.lmdialogue import rollout
from dqnlm.lmdialogue.config import LMDialogueConfig
from dqnlm.lmdialogue.speaker import resolve_imitation, resolve_speaker
from dqnlm.run import Run, Trainer, generator_states, restore_generators, unprefixed
from dqnlm.seeding import seed_streams

COLUMNS = (
    "step",  # dialogues played for training
    "round",
    "time_s",
    "train_success",
    "train_turns",
    "train_reward",
    "train_parse_rate",
    "eval_success",
    "eval_turns",
    "eval_reward",
    "eval_parse_rate",
    "loss",
    "mean_q",
    "tokens",
)
POLICY = "policy"
"""The trained model's folder in a run directory (safetensors + tokenizer)."""
POLICY_RECORD = "policy.json"
"""Beside it: the SHA-256 of every file in it, checked before loading."""
UPDATE_CHUNKS = 4
"""A TD update's batch runs as this many length-sorted chunks (less padding)."""


def decision_logits(model, head, tokens, attention, index, keep: bool) -> torch.Tensor:
    """Logits ``[B, T + 1, V]`` at the positions ``index`` only: the output layer runs on
    the agent's decisions, not on every position (a large vocabulary stays affordable).
    ``keep``: the model takes ``logits_to_keep``, so its own head runs on one position."""
    extra = {"logits_to_keep": 1} if keep else {}
    out = model(
        input_ids=tokens,
        attention_mask=attention,
        position_ids=positions(attention),
        output_hidden_states=True,
        **extra,
    )
    hidden = out.hidden_states[-1]
    picked = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
    return head(picked).float()


class DialogueReplay:
    """Whole dialogues (ids, agent flags, rewards, reference statistics), oldest out first."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.rows: list[dict[str, np.ndarray]] = []
        self.next = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, played: rollout.Played, stats: np.ndarray) -> None:
        row = {
            "ids": np.asarray(played.ids, np.int64),
            "agent": np.asarray(played.agent, np.float32),
            "rewards": np.asarray(played.rewards, np.float32),
            "stats": stats.astype(np.float32),
        }
        if len(self.rows) < self.capacity:
            self.rows.append(row)
        else:
            self.rows[self.next] = row
        self.next = (self.next + 1) % self.capacity

    def sample(self, n: int) -> list[dict[str, np.ndarray]]:
        """``n`` dialogues drawn uniformly, with replacement."""
        return [self.rows[i] for i in self.rng.integers(len(self.rows), size=n)]

    def state_dict(self) -> dict[str, np.ndarray]:
        lengths = np.array([len(r["ids"]) for r in self.rows], np.int64)
        joined = {
            k: np.concatenate([r[k] for r in self.rows]) if self.rows else np.zeros(0)
            for k in ("ids", "agent", "rewards", "stats")
        }
        return {**{f"replay.{k}": v for k, v in joined.items()}, "replay.lengths": lengths,
                "replay.next": np.array([self.next])}  # fmt: skip

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        lengths = arrays["replay.lengths"]
        ends = np.cumsum(lengths)
        self.rows = [
            {k: arrays[f"replay.{k}"][end - n : end] for k in ("ids", "agent", "rewards", "stats")}
            for n, end in zip(lengths, ends)
        ]
        self.next = int(arrays["replay.next"][0])


def right_padded(rows: list[dict[str, np.ndarray]], pad: int) -> tuple[torch.Tensor, ...]:
    """``(ids, attention, agent, rewards, stats)`` tensors of dialogues, right-padded."""
    width = max(len(r["ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    agent, rewards = torch.zeros(len(rows), width), torch.zeros(len(rows), width)
    stats = torch.zeros(len(rows), width, 2)
    for i, r in enumerate(rows):
        n = len(r["ids"])
        ids[i, :n] = torch.from_numpy(r["ids"])
        attention[i, :n] = 1
        agent[i, :n] = torch.from_numpy(r["agent"])
        rewards[i, :n] = torch.from_numpy(r["rewards"])
        stats[i, :n] = torch.from_numpy(r["stats"])
    return ids, attention, agent, rewards, stats


class LMDialogueTrainer(Trainer):
    """Owns the speaking LM, its reference and target, the replay and the run directory."""

    def __init__(
        self,
        config: LMDialogueConfig,
        run_dir: str | Path | None = None,
        progress: bool = True,
        trust_code: bool = False,
    ) -> None:
        if config.domain not in bundled_domains() and Path(config.domain).is_file():
            config = dataclasses.replace(config, domain=str(Path(config.domain).resolve()))
        self.config = cfg = config.validate()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(cfg.device)
        self.seeds = seed_streams(cfg.seed)
        train_env = cfg.env_config("train")
        spec = cfg.model or str(resolve_speaker(train_env, cfg.speaker_config(), progress))
        if cfg.model and cfg.imitation_steps:
            adapters = (cfg.lora_rank, cfg.lora_alpha)
            imitation = cfg.imitation_config()
            spec = str(
                resolve_imitation(train_env, spec, imitation, adapters, trust_code, progress)
            )
        torch.manual_seed(self.seeds.torch)
        lora = cfg.lora_rank > 0
        _, self.tokenizer, model = load_checked(
            spec, "float32", self.device, lora, trust_code, progress
        )
        self.context = context_length(model) or 2048
        if self.context <= cfg.new_tokens + 16:
            raise DQNLMError(
                f"new_tokens = {cfg.new_tokens} leaves no room for the dialogue in the "
                f"model's context of {self.context} tokens"
            )
        self.model = add_lora(model, cfg.lora_rank, cfg.lora_alpha) if lora else model
        self.head = self.model.get_output_embeddings()
        self.keep = keeps_logits(self.model)
        self.reference = None if lora else copy.deepcopy(model).requires_grad_(False).eval()
        self.target = TargetNetwork(
            self.model, cfg.target_update, cfg.target_update_period, cfg.tau,
            only=is_adapter if lora else None,
        )  # fmt: skip
        # a full copy has its own (lagged) output layer; LoRA and none use the online one
        self.target_head = self.target.module.get_output_embeddings()
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trained, lr=cfg.learning_rate)
        self.envs = [
            TextDialogueEnv(train_env, cfg.state_line) for _ in range(cfg.dialogues_per_round)
        ]
        self.replay = DialogueReplay(cfg.replay_capacity, self.seeds.replay)
        self.goals = np.random.default_rng(self.seeds.train)
        self.round = self.dialogues = self.num_updates = self.tokens = 0
        self.best_success = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ playing
    def _play(self, envs, starts, greedy: bool) -> list[rollout.Played]:
        cfg = self.config
        return rollout.play(
            self.model, self.tokenizer, envs, starts, cfg.new_tokens, cfg.temperature, greedy,
            self.context,
        )  # fmt: skip

    def evaluate(self, split: str = "test", episodes: int | None = None, seed: int | None = None,
                 **noise) -> dict:  # fmt: skip
        """Greedy dialogues on ``split`` goals (None: every goal once), 32 at a time."""
        env_config = dataclasses.replace(self.config.env_config(split), **noise)
        envs = [TextDialogueEnv(env_config, self.config.state_line) for _ in range(32)]
        episodes = episodes or len(envs[0].goals)
        seed = self.seeds.test if seed is None else seed
        return rollout.evaluate(
            self.model, self.tokenizer, envs, episodes, seed, self.config.new_tokens, self.context
        )

    @torch.no_grad()
    def _reference_stats(self, ids, attention, agent) -> torch.Tensor:
        """``[B, L, 2]``: at each decision the reference's logit of the token chosen and its
        log-normaliser (0 elsewhere): all a soft update needs of the reference."""
        d = pack_decisions(ids, agent, torch.zeros_like(agent))
        if self.reference is None:  # LoRA: the base model is the reference
            with self.model.disable_adapter():
                logits = decision_logits(self.model, self.head, ids, attention, d.index, self.keep)
        else:
            ref_head = self.reference.get_output_embeddings()
            logits = decision_logits(self.reference, ref_head, ids, attention, d.index, self.keep)
        taken = logits[:, :-1].gather(-1, d.tokens[:, 1:, None]).squeeze(-1)
        packed = torch.stack([taken, torch.logsumexp(logits[:, :-1], -1)], -1)
        stats = torch.zeros(*ids.shape, 2)
        rows = torch.arange(len(ids))[:, None].expand_as(d.index[:, :-1])
        valid = d.actions[:, 1:].bool()
        stats[rows[valid], d.index[:, :-1][valid]] = packed[valid]
        return stats

    def _store(self, played: list[rollout.Played]) -> None:
        """Into replay with the reference's statistics, in play order; the reference runs
        on length-sorted chunks, as updates do."""
        played = [self._fit(p) for p in played]
        stats: dict[int, np.ndarray] = {}
        order = sorted(range(len(played)), key=lambda i: len(played[i].ids))
        for chunk in np.array_split(np.array(order), min(UPDATE_CHUNKS, len(order))):
            rows = [
                {"ids": np.asarray(played[i].ids), "agent": np.asarray(played[i].agent, np.float32),
                 "rewards": np.zeros(len(played[i].ids)), "stats": np.zeros((len(played[i].ids), 2))}
                for i in chunk
            ]  # fmt: skip
            ids, attention, agent, _, _ = right_padded(rows, self.tokenizer.eos_token_id)
            chunk_stats = self._reference_stats(ids, attention, agent).numpy()
            for row, i in enumerate(chunk):
                stats[int(i)] = chunk_stats[row, : len(played[i].ids)]
        for i, p in enumerate(played):
            self.replay.add(p, stats[i])
            self.tokens += int(sum(p.agent))

    def _fit(self, played: rollout.Played) -> rollout.Played:
        """A dialogue longer than the model's context, cut to its last tokens (as the
        agent read it when it spoke last); a token whose state was cut off is no action."""
        if len(played.ids) <= self.context:
            return played
        keep = slice(-self.context, None)
        agent = played.agent[keep]
        return dataclasses.replace(
            played, ids=played.ids[keep], agent=[0, *agent[1:]], rewards=played.rewards[keep]
        )

    # ----------------------------------------------------------------- learning
    def _update(self) -> tuple[float, float]:
        """One TD update on replayed dialogues; returns (loss, mean Q taken).

        The batch runs as length-sorted chunks of about equal length, their gradients
        summed (each chunk's means divide by the whole batch's decisions): the same
        gradient as one padded batch, without computing the padding of short dialogues
        out to the longest one."""
        cfg = self.config
        rows = sorted(self.replay.sample(cfg.batch_size), key=lambda r: len(r["ids"]))
        count = torch.tensor(float(sum(r["agent"][1:].sum() for r in rows)))
        self.optimizer.zero_grad(set_to_none=True)
        total_loss = total_q = 0.0
        for chunk in np.array_split(np.arange(len(rows)), min(UPDATE_CHUNKS, len(rows))):
            ids, attention, agent, rewards, stats = right_padded(
                [rows[i] for i in chunk], self.tokenizer.eos_token_id
            )
            d = pack_decisions(ids, agent, rewards * cfg.scale)
            logits = decision_logits(self.model, self.head, ids, attention, d.index, self.keep)
            with torch.no_grad():
                if cfg.target_update == "none":
                    target_logits = logits.detach()
                else:
                    target_logits = decision_logits(
                        self.target, self.target_head, ids, attention, d.index, self.keep
                    )
            loss, _, mean_q = update_loss(
                logits, d.gather(stats), target_logits, d.tokens, d.actions, d.rewards, cfg,
                count,
            )  # fmt: skip
            loss.backward()
            total_loss += loss.item()
            total_q += mean_q.item()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        self.target.update(self.num_updates)
        return total_loss, total_q

    def learn(self, progress: bool = True, tensorboard: bool = True) -> dict:
        """Train for ``rounds`` (or ``max_seconds``); returns the held-out test evaluation."""
        cfg = self.config
        run = Run(
            self, COLUMNS, total=cfg.rounds, unit="round", progress=progress,
            desc=f"LM dialogue {self.envs[0].domain.name}", tensorboard=tensorboard,
            tb_prefix="lm_dialogue",
        )  # fmt: skip
        with run:
            self._copy_domain()
            if self.round == 0:
                start = self.evaluate("train", cfg.eval_episodes, self.seeds.validation)
                run.log(0, round=0, **_eval_columns(start))
                self.best_success = start["success_rate"]
                self.best_state = self._trained_state()
            while self.round < cfg.rounds:
                if cfg.max_seconds and run.seconds() >= cfg.max_seconds:
                    break
                starts = [
                    (int(self.goals.integers(len(self.envs[0].goals))), int(self.goals.integers(2**31)))
                    for _ in self.envs
                ]  # fmt: skip
                played = self._play(self.envs, starts, greedy=False)
                self._store(played)
                self.dialogues += len(played)
                losses, qs = [], []
                for _ in range(cfg.updates_per_round):
                    loss, mean_q = self._update()
                    run.check_finite(loss=loss, mean_q=mean_q)
                    losses.append(loss)
                    qs.append(mean_q)
                self.round += 1
                train = rollout.summary(played)
                row = {
                    "round": self.round, "train_success": train["success_rate"],
                    "train_turns": train["avg_turns"], "train_reward": train["avg_reward"],
                    "train_parse_rate": train["parse_rate"], "loss": float(np.mean(losses)),
                    "mean_q": float(np.mean(qs)), "tokens": self.tokens,
                }  # fmt: skip
                shown = {"train": f"{train['success_rate']:.2f}"}
                if self.round % cfg.eval_interval == 0 or self.round == cfg.rounds:
                    result = self.evaluate("train", cfg.eval_episodes, self.seeds.validation)
                    row.update(_eval_columns(result))
                    shown["val"] = f"{result['success_rate']:.2f}"
                    if result["success_rate"] > self.best_success:
                        self.best_success = result["success_rate"]
                        self.best_state = self._trained_state()
                run.advance(1, **shown)
                run.log(self.dialogues, **row)
                if self.round % cfg.checkpoint_every == 0:
                    run.checkpoint()
                run.safe_point()
            run.checkpoint()  # the last round, resumable with a larger budget
            run.loop_done()
            if cfg.keep_best and self.best_state is not None:
                self.model.load_state_dict(self.best_state, strict=False)
            final = self.evaluate("test", cfg.test_episodes or None)
            final.update(
                dialogues=self.dialogues, rounds=self.round, tokens=self.tokens,
                train_seconds=round(run.seconds(), 1),
                validation_success=self.best_success if cfg.keep_best else None,
            )  # fmt: skip
            if self.run_dir is not None:
                self.save_policy()
            run.finish(final)
        return final

    def _trained_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    # -------------------------------------------------------------- persistence
    def _copy_domain(self) -> None:
        copy_domain(self.config.domain, self.run_dir)

    def saved_config(self) -> LMDialogueConfig:
        return with_domain_copy(self.config, self.run_dir)

    def save_policy(self) -> Path:
        """The model (LoRA merged) and tokenizer as a safetensors folder, and the SHA-256
        of each of its files in policy.json."""
        out = self.run_dir / POLICY
        model = self.model
        if self.config.lora_rank > 0:
            model = copy.deepcopy(self.model).merge_and_unload()
        with atomic_dir(out) as tmp, quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
        digests = {p.name: _sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
        atomic_write(
            (self.run_dir / POLICY_RECORD), (json.dumps(digests, indent=1) + "\n").encode()
        )
        return out

    # -------------------------------------------------------------- checkpoints
    @property
    def step(self) -> int:
        return self.dialogues

    def where(self) -> str:
        return f"round {self.round} (dialogue {self.dialogues:,})"

    def finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in self.model.parameters() if p.requires_grad)

    def state(self):
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        tensors = {f"model.{k}": v for k, v in self._trained_state().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        tensors.update(opt_tensors)
        meta = {
            "round": self.round,
            "num_updates": self.num_updates,
            "tokens": self.tokens,
            "best_success": self.best_success,
            "optimizer": opt_meta,
            "rng": generator_states(goals=self.goals, replay=self.replay.rng),
        }
        return tensors, meta, self.replay.state_dict()

    def load_state(self, tensors, meta, arrays) -> None:
        self.model.load_state_dict(unprefixed(tensors, "model."), strict=False)
        self.target.load_state_dict(unprefixed(tensors, "target."))
        self.best_state = unprefixed(tensors, "best.") or None
        load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        restore_generators(meta["rng"], goals=self.goals, replay=self.replay.rng)
        if arrays is not None:
            self.replay.load_state_dict(arrays)
        self.dialogues = int(meta["step"])
        for name in ("round", "num_updates", "tokens"):
            setattr(self, name, int(meta[name]))
        self.best_success = float(meta["best_success"])

    @classmethod
    def config_from_checkpoint(cls, meta, run_dir, source, trust_code) -> LMDialogueConfig:
        config = replace(LMDialogueConfig(), meta["config"], source=source)
        return domain_inside(config, run_dir, source, trust_code)

    @classmethod
    def create(cls, config, run_dir, trust_code: bool = False) -> LMDialogueTrainer:
        return cls(config, run_dir, trust_code=trust_code)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _eval_columns(result: dict) -> dict[str, float]:
    return {
        "eval_success": result["success_rate"],
        "eval_turns": result["avg_turns"],
        "eval_reward": result["avg_reward"],
        "eval_parse_rate": result["parse_rate"],
    }


def load_agent(run_dir: str | Path, trust_code: bool = False):
    """``(config, model, tokenizer)`` of a finished run: the policy folder's files are
    checked against policy.json, weights load from safetensors only."""
    run_dir = Path(run_dir)
    record_path = run_dir / POLICY_RECORD
    if not record_path.is_file():
        raise CheckpointError(f"{run_dir} holds no trained LM dialogue policy ({POLICY_RECORD})")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{record_path} is not valid JSON: {e}") from None
    folder = run_dir / POLICY
    files = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if not isinstance(record, dict) or sorted(record) != files or not files:
        raise CheckpointError(f"{record_path} does not list exactly the files of {folder}")
    for name, digest in record.items():
        if _sha256(folder / name) != digest:
            raise CheckpointError(f"{folder / name} does not match its SHA-256 in {record_path}")
    config = replace(LMDialogueConfig(), load_toml(run_dir / "config.toml"), source=str(run_dir))
    config = domain_inside(config, run_dir, str(run_dir / "config.toml"), trust_code)
    from dqnlm.lm.models import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    model = load_model(str(folder), "float32", resolve_device(config.device), trust_code=False)
    return config, model, tokenizer
