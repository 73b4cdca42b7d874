"""Token-level Q-learning for a causal LM, with a target network from the core.

One online round: sample prompts, generate completions with the LM as the policy, score
them, push the sequences into a replay buffer, then make several TD updates on replayed
batches, each followed by a target-network update. Offline training replays a fixed
JSONL dataset instead of generating (and still samples a few texts per round to log).

``Q(s, a) = beta * (logits(s, a) - ref_logits(s, a))`` where ``ref`` is the frozen model
training started from; see :mod:`dqnlm.lm.config` for why.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from dqnlm.core.checkpoint import atomic_dir, load_optimizer_state, optimizer_state
from dqnlm.core.precision import MasterWeights
from dqnlm.core.rng import fork_rng
from dqnlm.core.target import TargetNetwork
from dqnlm.device import resolve_device
from dqnlm.errors import DQNLMError
from dqnlm.lm import parallel, stargraph
from dqnlm.lm.config import LMConfig
from dqnlm.lm.data import load_prompts, read_jsonl
from dqnlm.lm.generation import (
    NonFiniteLogits,
    TokenBatch,
    assemble,
    decode_completions,
    encode_prompts,
    format_prompts,
    forward_logits,
    keeps_logits,
    sample_with,
)
from dqnlm.lm.models import (
    NAMED_MODELS,
    add_lora,
    context_length,
    fits_on,
    is_adapter,
    load_checked,
    reference_of,
)
from dqnlm.lm.qlearning import (
    needs_reference_logits,
    reference_stats,
    sequence_kl,
    update_loss,
)
from dqnlm.lm.quiet import quiet_transformers
from dqnlm.lm.rewards import check_reward_module, parse_reward, reward_path, score_texts
from dqnlm.metrics import numeric_rows, pyplot, save_figure, series
from dqnlm.resources import check_fits
from dqnlm.run import Run, Trainer, generator_states, restore_generators, unprefixed
from dqnlm.seeding import seed_streams
from dqnlm.trust import check_inside

COLUMNS = (
    "step",
    "time_s",
    "tokens",
    "updates",
    "reward",
    "kl",
    "td_loss",
    "cql_loss",
    "mean_q",
    "tokens_per_s",
)


class SequenceReplay:
    """Fixed-width token sequences with their action masks, per-token rewards and the
    frozen reference's two numbers per position (:func:`reference_stats`), so a soft TD
    update needs no reference forward."""

    FIELDS = ("tokens", "attention", "actions", "rewards", "reference")

    def __init__(self, capacity: int, width: int, seed: int = 0) -> None:
        self.tokens = torch.zeros(capacity, width, dtype=torch.long)
        self.attention = torch.zeros(capacity, width, dtype=torch.long)
        self.actions = torch.zeros(capacity, width)
        self.rewards = torch.zeros(capacity, width)
        self.reference = torch.zeros(capacity, width, 2)
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, batch: TokenBatch, rewards: torch.Tensor, reference: torch.Tensor) -> None:
        n = len(batch.tokens)
        slots = torch.from_numpy((self.pos + np.arange(n)) % self.capacity)
        self.tokens[slots], self.attention[slots] = batch.tokens.cpu(), batch.attention.cpu()
        self.actions[slots], self.rewards[slots] = batch.actions.cpu(), rewards.cpu()
        self.reference[slots] = reference.cpu()
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        idx = torch.from_numpy(self.rng.integers(0, self.size, size=n))
        return tuple(getattr(self, k)[idx] for k in self.FIELDS)

    def state_dict(self) -> dict[str, np.ndarray]:
        arrays = {k: getattr(self, k).numpy() for k in self.FIELDS}
        return {**arrays, "counters": np.array([self.pos, self.size])}

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        for key in self.FIELDS:
            getattr(self, key).copy_(torch.from_numpy(arrays[key]))
        self.pos, self.size = (int(v) for v in arrays["counters"])


def sequence_rewards(batch: TokenBatch, scores: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: each text's score on its last generated token, 0 elsewhere."""
    rewards = torch.zeros_like(batch.actions)
    rewards[torch.arange(len(scores)), batch.last_action()] = scores.to(rewards)
    return rewards


BUILT_IN_PROMPTS = ("imdb", "imdb-held-out", "general")


def _local_model(spec: str) -> str | None:
    """The local path a model spec reads, or None for the embedded model and hub names."""
    from dqnlm.lm.pretrain import cache_root, default_model_dir

    if not spec or Path(spec).resolve() == default_model_dir().resolve():
        return None
    if Path(spec).resolve().is_relative_to((cache_root() / "stargraph").resolve()):
        return None  # a task's own pretrained model, like the embedded one
    looks_local = spec.startswith((".", "/", "~")) or Path(spec).suffix == ".gguf"
    return spec if looks_local or Path(spec).exists() else None


def check_run_config(config: LMConfig, run_dir: Path, source: str, trust_code: bool) -> None:
    """Refuse what a config saved in ``run_dir`` could make dqnlm do beyond that folder:
    import a reward module, or read a model, prompts, data or classifier outside it (the
    embedded model and hub names excepted), unless the user passed ``--trust-code``."""
    if trust_code:
        return
    check_reward_module(config.reward, source, trust_code)
    paths = {
        "model": _local_model(config.model),
        "reward": reward_path(config.reward),
        "prompts": None if config.prompts in BUILT_IN_PROMPTS else config.prompts,
        "eval_set": None
        if config.eval_set in BUILT_IN_PROMPTS or not config.eval_prompts
        else config.eval_set,
        "offline_data": config.offline_data or None,
    }
    for what, path in paths.items():
        if path:  # relative paths are read from the working directory, so check them there
            check_inside(Path(path).expanduser().absolute(), run_dir, what, source, False)


class LMTrainer(Trainer):
    """Owns the LM Q-network, its reference, its target network, replay and run directory."""

    def __init__(
        self,
        config: LMConfig,
        run_dir: str | Path | None = None,
        progress: bool = True,
        trust_code: bool = False,
    ):
        """``trust_code`` lets the model (and a classifier reward) load pickled weights."""
        self.config = cfg = stargraph.fit_config(config)  # a task sets its text lengths
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(cfg.device)
        # data-parallel processes (dqnlm.lm.parallel), or this one alone
        self.group = group = parallel.current()
        if group.size > 1:
            group.check_divides(prompts_per_round=cfg.prompts_per_round, batch_size=cfg.batch_size)
            if self.device.type != group.device.type:
                raise DQNLMError(
                    f"device={cfg.device} does not match the processes' {group.device.type} "
                    f"group: launch with --device {cfg.device}"
                )
            self.device = group.device  # on GPUs: cuda:<local rank>
        # cheap checks first, so bad input fails before any pretraining or loading
        self.reward = parse_reward(cfg.reward, trust_code)
        if cfg.shaping and getattr(self.reward, "prompted", False):
            raise DQNLMError(f"shaping scores prefixes alone; reward {cfg.reward} reads prompts")
        # a task's training graphs are drawn on first use (evaluating a run needs none)
        self._prompts = None if cfg.task else load_prompts(cfg.prompts)
        if cfg.eval_prompts and not cfg.task:
            load_prompts(cfg.eval_set)  # a bad file fails now, not after training
        offline = (
            read_jsonl(cfg.offline_data, {"prompt": str, "completion": str, "reward": (int, float)})
            if cfg.offline_data
            else None
        )
        # independent streams from one run seed (dqnlm.seeding): adjacent seeds share none
        self.seeds = seed_streams(cfg.seed)
        torch.manual_seed(self.seeds.torch)
        lora = cfg.lora_rank > 0
        source, self.tokenizer, model = load_checked(
            stargraph.model_spec(cfg, progress), cfg.dtype, self.device, lora, trust_code, progress
        )
        # what a checkpoint names: a named model by its name (found again by its hash on
        # resume, like the embedded default's folder), anything else by what was loaded
        self.model_source = cfg.model if cfg.model in NAMED_MODELS else source
        width = cfg.prompt_tokens + cfg.new_tokens
        limit = context_length(model)
        if limit is not None and width > limit:
            raise DQNLMError(
                f"prompt_tokens + new_tokens = {width} exceeds the model's context of {limit} tokens"
            )
        self._check_memory(model)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        self.model = add_lora(model, cfg.lora_rank, cfg.lora_alpha) if lora else model
        self.reference = reference_of(self.model, lora)
        # updates need logits from the last prompt position on: the state of the first action
        self.window, self.skip_head = cfg.new_tokens + 1, keeps_logits(self.model)
        # AdamW steps float32 masters of bfloat16 weights: its small steps would round away
        trained = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.weights = MasterWeights([p for _, p in trained])
        self.target = TargetNetwork(
            self.model,
            cfg.target_update,
            cfg.target_update_period,
            cfg.tau,
            only=is_adapter if lora else None,
            masters={n: m for (n, p), m in zip(trained, self.weights.master) if m is not p},
        )
        self.optimizer = torch.optim.AdamW(self.weights.master, lr=cfg.learning_rate)
        self.rng = np.random.default_rng(self.seeds.train)  # prompts of each round
        capacity = len(offline) if offline else cfg.replay_capacity
        self.replay = SequenceReplay(capacity, width, self.seeds.replay)
        if offline:
            self._fill_offline(offline)
        self._empty_score = float(self.score([""])[0]) if cfg.shaping else 0.0
        self.round = self.num_updates = self.tokens = 0

    def _check_memory(self, model) -> None:
        """Refuse, before allocating, a round that cannot fit. Its largest tensors are
        float32 logits over the vocabulary at every position of every text: policy,
        reference and target, their log-softmaxes and gradients (about 8 copies)."""
        cfg = self.config
        width = cfg.prompt_tokens + cfg.new_tokens
        vocab = model.get_output_embeddings().weight.shape[0]
        rows = max(cfg.prompts_per_round, cfg.batch_size)
        logits = 8 * 4 * rows * width * vocab
        replay = cfg.replay_capacity * width * 32  # tokens, attention, actions, rewards, ref
        copies = self.group.local_size  # processes on this machine, each with its own
        what = (
            f"prompts_per_round={cfg.prompts_per_round}, batch_size={cfg.batch_size} and "
            f"replay_capacity={cfg.replay_capacity} (texts of {width} tokens, a vocabulary "
            f"of {vocab})" + (f" in each of {copies} processes" if copies > 1 else "")
        )
        if self.device.type == "cuda":  # the logits live on the GPU, the replay in RAM
            fits_on(self.device, logits, what)
            logits = 0
        check_fits(copies * (logits + replay), what)

    # ------------------------------------------------------------------ data
    def _fill_offline(self, rows: list[dict]) -> None:
        cfg, tok = self.config, self.tokenizer
        prompts = format_prompts(tok, [r["prompt"] for r in rows], cfg.chat_template)
        prompt, prompt_attention, _ = encode_prompts(tok, prompts, cfg.prompt_tokens)
        completion = torch.full((len(rows), cfg.new_tokens), tok.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids = tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = ids[: cfg.new_tokens]
            completion[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        batch = assemble(prompt, prompt_attention, completion, tok.eos_token_id)
        scores = torch.tensor([float(r["reward"]) for r in rows])
        self.replay.add(batch, sequence_rewards(batch, scores), self._reference_stats(batch))

    @torch.no_grad()
    def _reference_stats(self, batch: TokenBatch, chunk: int = 64) -> torch.Tensor:
        """:func:`reference_stats` of a batch, ``chunk`` sequences per forward."""
        stats = []
        for start in range(0, len(batch.tokens), chunk):
            rows = slice(start, start + chunk)
            tokens, attention = batch.tokens[rows], batch.attention[rows]
            stats.append(self._reference_pass(tokens.to(self.device), attention.to(self.device))[0])
        return torch.cat(stats).cpu()

    def score(self, texts: list[str], prompts: list[str] | None = None) -> torch.Tensor:
        """One reward per text; ``prompts`` for rewards that check an answer to them."""
        return score_texts(self.reward, self.config.reward, texts, prompts)

    @property
    def prompts(self) -> list[str]:
        """The training prompts."""
        if self._prompts is None:
            self._prompts = stargraph.train_prompts(self.config)
        return self._prompts

    def held_out_prompts(self) -> list[str]:
        """The final evaluation's prompts: the task's held-out set, or ``eval_set``."""
        return stargraph.evaluation_prompts(self.config)

    def generate(self, prompts: list[str]) -> TokenBatch:
        return sample_with(self.config, self.model, self.tokenizer, prompts)

    # -------------------------------------------------------------- learning
    def _update(self) -> tuple[float, float, float]:
        """One TD update on a replayed batch; returns (td_loss, cql_loss, mean Q taken)."""
        cfg, group = self.config, self.group
        sampled = self.replay.sample(cfg.batch_size)  # the same rows on every rank
        # divide by the whole batch's generated tokens: the ranks' gradients then sum to it
        count = None if group.size == 1 else sampled[2][:, -self.window + 1 :].sum()
        rows = group.share(cfg.batch_size)
        tokens, attention, actions, rewards, reference = (t[rows].to(self.device) for t in sampled)
        window = (tokens, attention, self.window, self.skip_head)
        if cfg.gradient_checkpointing:
            self.model.train()  # transformers checkpoints in training mode only (no dropout)
        logits = forward_logits(self.model, *window)
        self.model.eval()
        with torch.no_grad():
            if needs_reference_logits(cfg):  # else the replayed stats serve (no forward)
                reference = forward_logits(self.reference, *window)
            if cfg.target_update == "none":
                target_logits = logits.detach()
            else:
                target_logits = forward_logits(self.target, *window)
        last = slice(-self.window, None)
        loss, cql, mean_q = update_loss(
            logits, reference[:, last], target_logits, tokens[:, last], actions[:, last],
            rewards[:, last], cfg, None if count is None else count.to(self.device),
        )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.weights.grads_to_master()
        logged = torch.stack([loss.detach(), cql.detach(), mean_q.detach()]).float()
        if group.size > 1:  # each rank's share of the whole batch's gradient and losses
            for master in self.weights.master:
                if master.grad is None:
                    master.grad = torch.zeros_like(master)
            group.sum_([*(m.grad for m in self.weights.master), logged])
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.weights.master, cfg.max_grad_norm)
        self.optimizer.step()
        self.weights.master_to_model()
        self.num_updates += 1
        self.target.update(self.num_updates)
        return tuple(logged.tolist())

    @torch.no_grad()
    def _collect(self) -> tuple[TokenBatch, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generate and score one round of texts; returns (batch, per-token rewards, scores,
        reference stats, per-text KL)."""
        cfg, group = self.config, self.group
        picks = self.rng.integers(0, len(self.prompts), cfg.prompts_per_round)
        picks = picks[group.share(cfg.prompts_per_round)]  # every rank draws all, takes its own
        prompts = [self.prompts[i] for i in picks]
        try:
            with self._sampling_seed():
                batch = self.generate(prompts)
        except NonFiniteLogits as e:
            raise self.diverged(f"in round {self.round + 1}: {e}") from None
        if cfg.shaping:
            rewards, scores = self.shaped_rewards(batch)
        else:
            scores = self.score(decode_completions(self.tokenizer, batch), prompts)
            rewards = sequence_rewards(batch, scores)
        reference, kl = self._reference_pass(batch.tokens, batch.attention, batch)
        if group.size == 1:
            return batch, rewards, scores, reference, kl
        # every rank's share, in rank order: all replays add the same rows
        whole = TokenBatch(
            group.gather(batch.tokens), group.gather(batch.attention),
            group.gather(batch.actions), batch.prompt_tokens,
        )  # fmt: skip
        return whole, *(group.gather(t) for t in (rewards, scores, reference, kl))

    @contextlib.contextmanager
    def _sampling_seed(self):
        """Nothing for one process; data-parallel ranks sample from a seed of (run seed,
        round, rank), so resume needs no per-rank RNG state."""
        if self.group.size == 1:
            yield
            return
        with fork_rng():
            torch.manual_seed(parallel.round_seed(self.seeds.torch, self.round, self.group.rank))
            yield

    def _reference_pass(self, tokens, attention, batch: TokenBatch | None = None):
        """The reference's :func:`reference_stats` over a batch's update window (zeros on
        the positions before it), and, given the sampled ``batch``, each text's KL."""
        ref_logits = forward_logits(self.reference, tokens, attention, self.window, self.skip_head)
        stats = torch.zeros(*tokens.shape, 2, device=tokens.device)
        stats[:, -self.window :] = reference_stats(ref_logits, tokens[:, -self.window :])
        return stats, None if batch is None else sequence_kl(ref_logits, batch)

    def shaped_rewards(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token rewards shaped by the potential ``Phi(prefix) = R(prefix)`` (Ng et al.
        1999), and each text's reward ``R(text)``.

        Token t earns ``gamma * Phi(prefix up to t) - Phi(prefix up to t - 1)``; the last
        token, whose next state is terminal (potential 0), earns ``R(text) - Phi(prefix
        before it)``. The discounted sum over a text is ``gamma^(T-1) R(text) - R("")``, the
        unshaped return minus a constant, so the optimal policy is unchanged for any gamma,
        but each token is credited with its own effect.
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
        rows, cols = (torch.tensor(c) for c in zip(*places))
        last = batch.last_action().cpu()
        discount = torch.where(cols == last[rows], 1.0, self.config.gamma)
        rewards = torch.zeros_like(batch.actions, device="cpu")
        rewards[rows, cols] = discount * potential - before
        scores = potential[cols == last[rows]]  # one last token per text, in row order
        return rewards, scores

    def learn(self, progress: bool = True, tensorboard: bool = True) -> dict | None:
        """Train to ``config.rounds``; returns the final evaluation (or None when skipped)."""
        cfg = self.config
        if self.run_dir is None:
            raise DQNLMError("LMTrainer.learn needs a run directory (the tuned model goes there)")
        group = self.group  # ranks but the first train beside it and write nothing
        if not cfg.offline_data:
            _ = self.prompts  # drawn before the clock starts: 200k star graphs take seconds
        run = Run(
            self, COLUMNS, total=cfg.rounds, unit="round", desc="lm q-learning",
            progress=progress and group.main, tensorboard=tensorboard, tb_prefix="lm",
            write=group.main, agree=group.any if group.size > 1 else None,
        )  # fmt: skip
        with run:
            while self.round < cfg.rounds:
                started = time.perf_counter()
                batch, rewards, scores, reference, kl = self._collect()
                if not cfg.offline_data:
                    self.replay.add(batch, rewards, reference)
                results = []
                for _ in range(cfg.updates_per_round):
                    results.append(self._update())
                    run.check_finite(td_loss=results[-1][0])
                td, cql, mean_q = (float(np.mean(r)) for r in zip(*results))
                self.round += 1
                generated = int(batch.actions.sum())
                self.tokens += generated
                tokens_per_s = generated / (time.perf_counter() - started)
                values = {
                    "tokens": self.tokens,
                    "updates": self.num_updates,
                    "reward": float(scores.mean()),
                    "kl": float(kl.mean()),
                    "td_loss": td,
                    "cql_loss": cql if cfg.cql_alpha > 0 else None,
                    "mean_q": mean_q,
                    "tokens_per_s": tokens_per_s,
                }
                run.log(self.round, **values)
                run.advance(
                    1,
                    reward=f"{values['reward']:.3f}",
                    kl=f"{values['kl']:.2f}",
                    td=f"{td:.4f}",
                    tok_s=f"{tokens_per_s:.0f}",
                )
                self._check_logits(batch)
                out_of_time = bool(cfg.max_seconds and run.seconds() >= cfg.max_seconds)
                if group.size > 1:  # clocks differ a little: all stop when the first must
                    out_of_time = group.any(out_of_time)
                if (
                    self.round % cfg.checkpoint_every == 0
                    or self.round == cfg.rounds
                    or out_of_time
                ):
                    run.checkpoint()
                run.safe_point()
                if out_of_time:  # checked after a round: every call trains at least one
                    break
            run.loop_done()
            if not group.main:
                return None
            plot_lm_run(self.run_dir)
            self.save_model(self.run_dir / "model")
            if cfg.eval_prompts == 0:  # eval.json still marks the run finished
                run.finish({"evaluated": False, "rounds": self.round, **peak_memory(self.device)})
                return None
            from dqnlm.lm.evaluate import evaluate

            result = evaluate(self, self.held_out_prompts(), cfg.eval_prompts, progress=progress)
            result.update(rounds=self.round, tokens=self.tokens, train_seconds=run.seconds())
            result.update(peak_memory(self.device))
            run.finish(result)
        return result

    def where(self) -> str:
        return f"round {self.round + 1}, TD update {self.num_updates}"

    @torch.no_grad()
    def _check_logits(self, batch: TokenBatch, rows: int = 4) -> None:
        """Finite weights can still be huge enough to overflow the logits (a learning rate
        of 1e30): probe a few of the round's texts, so no such model is checkpointed."""
        if not self.finite():
            raise self.diverged(f"in round {self.round}: the weights are not finite")
        probe = (batch.tokens[:rows], batch.attention[:rows], self.window, self.skip_head)
        logits = forward_logits(self.model, *probe)
        if not torch.isfinite(logits).all():
            raise self.diverged(f"in round {self.round}: the logits are not finite")

    # ----------------------------------------------------------- checkpoints
    @property
    def step(self) -> int:
        return self.round

    def _trained_tensors(self) -> dict[str, torch.Tensor]:
        """The weights training changes (all parameters, or the LoRA adapters only), as the
        float32 masters the optimizer steps: a bfloat16 run resumes exactly."""
        named = self.model.named_parameters()  # shared (tied) weights appear once
        names = [n for n, p in named if p.requires_grad]
        return {n: m.detach() for n, m in zip(names, self.weights.master, strict=True)}

    def finite(self) -> bool:
        return all(torch.isfinite(t).all() for t in self._trained_tensors().values())

    def state(self):
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        tensors = {f"model.{k}": v for k, v in self._trained_tensors().items()}
        tensors.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        tensors.update(opt_tensors)
        meta = {
            "model_source": self.model_source,
            "num_updates": self.num_updates,
            "tokens": self.tokens,
            "processes": self.group.size,
            "optimizer": opt_meta,
            "rng": generator_states(prompts=self.rng, replay=self.replay.rng),
        }
        return tensors, meta, self.replay.state_dict()

    def load_state(self, tensors, meta, arrays) -> None:
        with torch.no_grad():
            for name, value in self._trained_tensors().items():
                value.copy_(tensors[f"model.{name}"])
        self.weights.master_to_model()
        self.target.load_state_dict(unprefixed(tensors, "target."))
        load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        restore_generators(meta["rng"], prompts=self.rng, replay=self.replay.rng)
        if arrays is not None:
            self.replay.load_state_dict(arrays)
        self.round = int(meta["step"])
        self.num_updates = int(meta["num_updates"])
        self.tokens = int(meta["tokens"])

    @classmethod
    def config_from_checkpoint(cls, meta, run_dir, source, trust_code) -> LMConfig:
        """The saved config with the model it actually loaded (the embedded default's
        folder). Without ``trust_code`` it may not import a reward module or read files
        outside ``run_dir`` (see :func:`check_run_config`), nor load pickled weights."""
        config = LMConfig(**dict(meta["config"], model=meta["model_source"]))
        check_run_config(config, run_dir, source, trust_code)
        return config

    @classmethod
    def create(cls, config: LMConfig, run_dir, trust_code: bool = False) -> LMTrainer:
        return cls(config, run_dir, progress=False, trust_code=trust_code)

    def save_model(self, out: Path) -> Path:
        """The tuned model as a Hugging Face directory (LoRA: the adapter), written atomically."""
        with atomic_dir(Path(out)) as tmp, quiet_transformers():
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return Path(out)


def enable_gradient_checkpointing(model) -> None:
    """Activation checkpointing in transformers runs in training mode only, so every
    dropout is set to 0 first: training mode then changes nothing but memory."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise DQNLMError(f"{type(model).__name__} does not support gradient_checkpointing")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # Llama-style
            module.attention_dropout = 0.0
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def peak_memory(device: torch.device) -> dict[str, float]:
    """This process's peak resident memory (and peak CUDA allocation), in MiB."""
    import resource

    peak = {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def plot_lm_run(run_dir: Path, out: Path | None = None) -> Path:
    """Reward and KL per round, one panel each, from ``metrics.csv``."""
    rows = numeric_rows(Path(run_dir) / "metrics.csv", ("step", "reward", "kl"))
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for ax, key, label in zip(axes, ("reward", "kl"), ("mean reward", "KL to reference (nats)")):
        rounds, values = series(rows, key)
        ax.plot(rounds, values, color="C0", alpha=0.35, linewidth=1)
        if len(values) >= 5:
            window = max(5, len(values) // 20)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(rounds[window - 1 :], smooth, color="C0", linewidth=2)
        ax.set(xlabel="round", ylabel=label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(run_dir).name}")
    out = Path(out) if out is not None else Path(run_dir) / "reward_kl.png"
    return save_figure(fig, out)
