"""A short online run on a toy reward measurably raises the reward (tiny random GPT-2)."""

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: E402

from dqnlm.lm.online import OnlineConfig, train_online  # noqa: E402

WORDS = ["<eos>", "a", "b", "c", "d", "e", "f", "x"]


def tiny_lm():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")  # no pad token
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(WORDS),
        n_positions=32,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config), tokenizer


def share_of_x(texts: list[str]) -> list[float]:
    return [sum(w == "x" for w in t.split()) / max(1, len(t.split())) for t in texts]


def test_online_q_learning_learns_to_emit_the_rewarded_token():
    torch.set_num_threads(1)
    model, tokenizer = tiny_lm()
    config = OnlineConfig(
        iterations=25,
        prompts_per_iteration=16,
        new_tokens=8,
        prompt_tokens=4,
        updates_per_iteration=4,
        batch_size=16,
        learning_rate=3e-3,
        tau=0.1,
        temperature=0.1,
        lam=0.9,
    )
    history = train_online(model, tokenizer, ["a b", "c d e", "f"], share_of_x, config)
    rewards = [h["reward"] for h in history]
    assert len(history) == 25 and all(h["td_loss"] >= 0 for h in history)
    first, last = rewards[0], sum(rewards[-10:]) / 10  # round 0 samples the untrained model
    assert first < 0.3  # a random policy says x about 1 time in 8
    assert last > first + 0.2, rewards


def test_kl_to_an_identical_reference_starts_at_zero():
    import copy

    torch.set_num_threads(1)
    model, tokenizer = tiny_lm()
    reference = copy.deepcopy(model).requires_grad_(False)
    config = OnlineConfig(
        iterations=3,
        prompts_per_iteration=4,
        new_tokens=4,
        prompt_tokens=4,
        batch_size=4,
        learning_rate=1e-2,
        kl_coef=0.1,
    )
    history = train_online(model, tokenizer, ["a b"], share_of_x, config, ref_model=reference)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # same weights, temperature 1
    assert history[-1]["kl"] != pytest.approx(0.0, abs=1e-5)  # training moved the policy
