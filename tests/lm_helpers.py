"""A tiny word-level GPT-2 and tokenizer, saved as a normal Hugging Face directory."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["<eos>", "a", "b", "c", "d", "e", "f", "x"]


def tiny_lm(n_positions: int = 32):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")  # no pad token
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(WORDS),
        n_positions=n_positions,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config), tokenizer


def save_tiny_lm(directory: Path, n_positions: int = 32) -> Path:
    model, tokenizer = tiny_lm(n_positions)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def share_of_x(texts: list[str]) -> list[float]:
    """Reward: the fraction of words that are ``x``."""
    return [sum(w == "x" for w in t.split()) / max(1, len(t.split())) for t in texts]


SMALL_RUN = dict(
    rounds=4,
    prompts_per_round=8,
    new_tokens=6,
    updates_per_round=2,
    batch_size=8,
    replay_capacity=64,
    checkpoint_every=2,
)
"""A few rounds with a checkpoint every other round: for resume and precision tests."""


def toy_config(model: Path, prompts: Path, **overrides):
    """An LMConfig on the tiny GPT-2, rewarded for saying ``x``; a round takes ~0.1 s."""
    from dqnlm.lm.config import LMConfig

    values = dict(
        model=str(model),
        prompts=str(prompts),
        reward="python:lm_helpers:share_of_x",
        device="cpu",
        rounds=25,
        prompts_per_round=16,
        new_tokens=8,
        prompt_tokens=4,
        updates_per_round=4,
        batch_size=16,
        learning_rate=3e-3,
        tau=0.1,
        eval_prompts=0,
        checkpoint_every=10,
    )
    return LMConfig(**{**values, **overrides})


# ---------------------------------------------------------------- a tiny Llama with a chat
ROLE_MARKERS = ["<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_llama(chat_template: str | None = CHAT_TEMPLATE, seed: int = 0):
    """A random 1-layer ``LlamaForCausalLM`` (hidden 32, 2 heads) on :data:`WORDS` plus the
    role markers (special tokens), its tokenizer given ``chat_template`` (None: none)."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS + ROLE_MARKERS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(m, special=True) for m in ROLE_MARKERS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")  # no pad token
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config), tokenizer


def save_tiny_llama(directory: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    model, tokenizer = tiny_llama(chat_template)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def one_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit code 1 and a single ``dqnlm: error:`` line; return it."""
    from dqnlm.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dqnlm: error: "), err
    return lines[0]
