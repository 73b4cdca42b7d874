"""Evaluating, generating and explaining with a tuned LM (tiny random GPT-2)."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch

pytest.importorskip("transformers")

from lm_helpers import save_tiny_lm, toy_config, write_prompts  # noqa: E402

from dqnlm.cli import main  # noqa: E402
from dqnlm.lm.config import LMConfig  # noqa: E402
from dqnlm.lm.evaluate import (  # noqa: E402
    EVAL_KEYS,
    distinct_n,
    evaluate,
    explain_html,
    generate_texts,
)
from dqnlm.lm.trainer import LMTrainer  # noqa: E402
from dqnlm.seeding import seed_streams

PROMPTS = ["a b", "c d e", "f"]
SPAN = re.compile(
    r'<span class="tok"[^>]*data-advantage="([-0-9.]+)" title="([^"]*)">([^<]*)</span>'
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return save_tiny_lm(root / "model"), write_prompts(root / "prompts.jsonl", PROMPTS)


def config(files, **overrides) -> LMConfig:
    model, prompts = files
    values = {"model": model, "prompts": prompts, "rounds": 20, "checkpoint_every": 100}
    values.update(overrides)
    return toy_config(**values)


@pytest.fixture(scope="module")
def untrained_run(files, tmp_path_factory):
    """A run directory whose checkpoint is the untrained model (policy == reference)."""
    run = tmp_path_factory.mktemp("untrained") / "run"
    LMTrainer(config(files), run, progress=False).save_checkpoint()
    return run


@pytest.fixture(scope="module")
def trained_run(files, tmp_path_factory):
    """20 rounds on the share-of-x reward (about a second)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    LMTrainer(config(files), run, progress=False).learn(progress=False, tensorboard=False)
    return run


def spans(page: str) -> list[tuple[float, str, str]]:
    return [(float(a), title, token) for a, title, token in SPAN.findall(page)]


def generated_tokens(trainer: LMTrainer, prompt: str, seed: int) -> int:
    """How many tokens explain/generate sample for ``prompt`` with ``seed`` (EOS included)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        batch = trainer.generate([prompt])
    return int(batch.actions.sum())


# ------------------------------------------------------------------------------- evaluate
def test_evaluate_returns_every_key_with_sensible_values(untrained_run):
    trainer = LMTrainer.load(untrained_run, trust_code=True)
    prompts = PROMPTS * 4
    rng_before = torch.get_rng_state()
    result = evaluate(trainer, prompts, 10, batch_size=4)
    assert torch.equal(torch.get_rng_state(), rng_before)  # sampling uses its own seed
    assert set(EVAL_KEYS) <= result.keys()
    assert result["n"] == 10 and isinstance(result["n"], int)
    for key in ("reward", "kl", "distinct_1", "distinct_2", "ref_perplexity"):
        assert isinstance(result[key], float) and math.isfinite(result[key]), key
    assert 0 <= result["reward"] <= 1  # a share of words
    assert 0 < result["distinct_1"] <= 1 and 0 < result["distinct_2"] <= 1
    assert 1 < result["ref_perplexity"] < 50  # 8 words in the vocabulary
    assert result["kl"] == pytest.approx(0.0, abs=1e-5)  # the policy is its reference
    assert result["truncated_prompts"] == 0
    assert len(result["samples"]) == 5
    assert [s["prompt"] for s in result["samples"]] == prompts[:5]
    assert evaluate(trainer, prompts, 10, batch_size=4) == result  # deterministic


def test_evaluate_n_is_the_number_of_prompts_used(untrained_run):
    trainer = LMTrainer.load(untrained_run, trust_code=True)
    assert evaluate(trainer, PROMPTS, 2)["n"] == 2
    assert evaluate(trainer, PROMPTS, 100)["n"] == 3
    long = evaluate(trainer, ["a b c d e f a b"], 1)
    assert long["truncated_prompts"] == 1


def test_evaluate_after_training_moves_reward_and_kl(trained_run, untrained_run):
    prompts = PROMPTS * 10
    before = evaluate(LMTrainer.load(untrained_run, trust_code=True), prompts, 30)
    after = evaluate(LMTrainer.load(trained_run, trust_code=True), prompts, 30)
    assert after["reward"] > before["reward"] + 0.1
    assert after["kl"] > 0.1


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        (["a a a a"], 1, 1 / 4),
        (["a a a a"], 2, 1 / 3),
        (["a b", "a b"], 1, 2 / 4),
        (["a b", "a b"], 2, 1 / 2),
        (["a b", "b a"], 2, 2 / 2),  # n-grams never span two texts
        (["a b c", "c a b"], 2, 3 / 4),  # (a,b) twice, (b,c), (c,a)
        (["the  cat\tsat"], 1, 1.0),  # any whitespace separates words
        (["a"], 2, 0.0),  # no bigrams at all
        ([], 1, 0.0),
        ([""], 1, 0.0),
    ],
)
def test_distinct_n_by_hand(texts, n, expected):
    assert distinct_n(texts, n) == pytest.approx(expected)


def test_cli_eval_json_prints_one_object_with_exactly_the_eval_keys(untrained_run, files, capsys):
    args = [
        "lm",
        "eval",
        str(untrained_run),
        "--trust-code",
        "--json",
        "--n",
        "4",
        "--prompts",
        str(files[1]),
    ]
    assert main([*args, "--no-progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, captured.out
    result = json.loads(lines[0])
    assert set(result) == {"reward", "kl", "distinct_1", "distinct_2", "ref_perplexity", "n"}
    assert set(result) == set(EVAL_KEYS)
    assert result["n"] == 3  # the file holds 3 prompts
    assert captured.err == ""


def test_cli_eval_text_output(untrained_run, files, capsys):
    args = [
        "lm",
        "eval",
        str(untrained_run),
        "--trust-code",
        "--n",
        "2",
        "--prompts",
        str(files[1]),
    ]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("reward ") and out[0].endswith("n=2")
    assert len(out) == 3 and out[1].lstrip().startswith("[") and " a b | " in out[1]


# -------------------------------------------------------------------------------- explain
def test_explain_has_one_span_per_generated_token_with_zero_advantage_untrained(
    untrained_run, tmp_path, capsys
):
    out = tmp_path / "x.html"
    args = [
        "lm",
        "explain",
        str(untrained_run),
        "--trust-code",
        "--prompt",
        "a b",
        "--out",
        str(out),
    ]
    assert main([*args, "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    found = spans(page)
    trainer = LMTrainer.load(untrained_run, trust_code=True)
    assert len(found) == page.count('<span class="tok"') == generated_tokens(trainer, "a b", 3)
    for advantage, title, _ in found:
        assert abs(advantage) < 1e-5  # Q = 0 and V = 0 while the policy is its reference
        assert "top alternatives:" in title and "Q(s,a)=" in title and "V(s)=" in title
        assert title.count("p=") == 5  # the top 5 alternatives
    assert '<span class="prompt">a b</span>' in page


def test_explain_without_seed_uses_the_evaluation_seed(untrained_run):
    trainer = LMTrainer.load(untrained_run, trust_code=True)
    page = explain_html(trainer, "c d")
    seed = seed_streams(trainer.config.seed).test
    assert page == explain_html(trainer, "c d", seed=seed)
    assert len(spans(page)) == generated_tokens(trainer, "c d", seed)


def test_explain_after_training_gives_x_a_positive_advantage(trained_run):
    trainer = LMTrainer.load(trained_run, trust_code=True)
    x_advantages, other = [], []
    for seed in range(4):
        for advantage, _, token in spans(explain_html(trainer, "a b", seed=seed)):
            (x_advantages if token == "x" else other).append(advantage)
    # seeds 0-5 of training all gave a mean in [0.09, 0.13] for x and < 0 for the rest
    assert len(x_advantages) >= 3
    assert sum(x_advantages) / len(x_advantages) > 0.02
    assert sum(x_advantages) / len(x_advantages) > sum(other) / max(len(other), 1)


def save_html_lm(directory):
    """A tiny GPT-2 whose vocabulary holds HTML: ``<script>`` and ``&`` are whole words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<eos>", "a", "b", "x", "<script>", "&", '"q"']
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="a"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(words),
            n_positions=32,
            n_embd=16,
            n_layer=1,
            n_head=2,
            bos_token_id=0,
            eos_token_id=0,
        )
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_explain_escapes_html(files, tmp_path):
    model = save_html_lm(tmp_path / "html-model")
    run = tmp_path / "run"
    cfg = config(files, model=str(model), reward="keyword:<script>", new_tokens=12)
    LMTrainer(cfg, run, progress=False).save_checkpoint()
    out = tmp_path / "x.html"
    prompt = '<script> & "q"'
    assert (
        main(["lm", "explain", str(run), "--trust-code", "--prompt", prompt, "--out", str(out)])
        == 0
    )
    page = out.read_text()
    assert "<script>" not in page and '"q"' not in page
    assert "&lt;script&gt; &amp; &quot;q&quot;" in page  # the prompt, escaped
    assert "keyword:&lt;script&gt;" in page  # the reward spec, escaped
    found = spans(page)
    assert found and page.count('<span class="tok"') == len(found)  # no markup broke a span
    generated = [token for _, _, token in found]
    assert "&lt;script&gt;" in generated or "&amp;" in generated, generated


# ------------------------------------------------------------------------------- generate
def test_cli_generate_prints_one_line_per_completion(untrained_run, capsys):
    args = ["lm", "generate", str(untrained_run), "--trust-code", "--prompt", "a b", "--n", "2"]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and captured.err == ""
    trainer = LMTrainer.load(untrained_run, trust_code=True)
    texts, rewards, cut = generate_texts(trainer, "a b", 2)
    assert not cut
    for line, text, reward in zip(lines, texts, rewards):
        assert re.fullmatch(r"\[[+-]\d\.\d{3}\] a b.*", line), line
        assert line == f"[{reward:+.3f}] a b {text}"
    assert main([*args, "--seed", "5"]) == 0
    again = capsys.readouterr().out
    assert main([*args, "--seed", "5"]) == 0
    assert capsys.readouterr().out == again  # a seed fixes the samples


# ------------------------------------------------------------------------------- sampling
def sampled(model_dir, seed: int = 0, **settings):
    """32 texts sampled from the model in ``model_dir`` with ``seed``, and its logits."""
    from dqnlm.lm.generation import forward_logits, sample
    from dqnlm.lm.models import load_model, load_tokenizer

    model, tokenizer = load_model(str(model_dir)), load_tokenizer(str(model_dir))
    torch.manual_seed(seed)
    batch = sample(model, tokenizer, PROMPTS * 11, 4, 8, **settings)
    return batch, forward_logits(model, batch.tokens, batch.attention)


def taken_logprobs(logits: torch.Tensor, batch) -> torch.Tensor:
    """log softmax(logits) of each generated token, flattened."""
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.tokens[:, 1:, None])
    return logp.squeeze(-1)[batch.actions[:, 1:].bool()]


def test_sampling_ignores_the_generation_config_a_model_ships(files, tmp_path):
    """A model whose generation_config sets repetition_penalty = 3 still samples exactly
    from softmax(logits / T): same texts as without it, log-probs of the raw logits."""
    from lm_helpers import tiny_lm

    model, tokenizer = tiny_lm()
    model.generation_config.repetition_penalty = 3.0
    model.generation_config.no_repeat_ngram_size = 1
    model.save_pretrained(tmp_path / "penalised")
    tokenizer.save_pretrained(tmp_path / "penalised")
    plain, _ = sampled(files[0])
    batch, logits = sampled(tmp_path / "penalised")
    assert torch.equal(batch.tokens, plain.tokens)
    recorded = batch.logprobs[:, 1:][batch.actions[:, 1:].bool()]
    assert torch.allclose(recorded, taken_logprobs(logits, batch), atol=1e-5)


def test_log_probs_and_kl_come_from_the_truncated_distribution(files, untrained_run):
    """With top_k = 2 the policy samples from the renormalised top two tokens, so even an
    untrained policy (logits == reference logits) has a positive KL to its reference."""
    batch, logits = sampled(files[0], top_k=2)
    top2 = logits[:, :-1] - logits[:, :-1].topk(2, -1).values.logsumexp(-1, keepdim=True)
    mask = batch.actions[:, 1:].bool()
    expected = top2.gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)[mask]
    recorded = batch.logprobs[:, 1:][mask]
    assert torch.allclose(recorded, expected, atol=1e-5)
    assert (recorded > taken_logprobs(logits, batch) + 1e-3).all()  # renormalised, not raw

    trainer = LMTrainer.load(untrained_run, trust_code=True)
    truncated = dataclasses.replace(trainer.config, top_k=2)
    trainer.config = truncated
    result = evaluate(trainer, PROMPTS * 4, 12)
    assert result["kl"] > 0.1  # log q - log pi_ref summed over about 8 tokens


def test_sampling_logprobs_block_eos_and_keep_the_nucleus():
    from dqnlm.lm.generation import sampling_logprobs

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    logp = sampling_logprobs(logits, step=0, eos=0, min_new_tokens=1)
    assert logp[0, 0] == -math.inf and torch.allclose(logp[0, 1:].exp().sum(), torch.tensor(1.0))
    nucleus = sampling_logprobs(logits, step=0, eos=0, top_p=0.7).exp()
    assert torch.allclose(nucleus, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    cold = sampling_logprobs(logits, step=5, eos=0, min_new_tokens=1, temperature=0.5).exp()
    assert torch.allclose(cold, torch.softmax(logits / 0.5, -1))


# ------------------------------------------------------------------------------ RNG state
@pytest.fixture
def two_gpus(monkeypatch):
    """A fake CUDA with two devices whose RNG states are distinct byte tensors."""
    states = {
        0: torch.tensor([1, 2], dtype=torch.uint8),
        1: torch.tensor([3, 4], dtype=torch.uint8),
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: states[device].clone())
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: states.update({device: state})
    )
    return states


def test_rng_tensors_carry_every_cuda_device_and_restore_them(two_gpus):
    from dqnlm.core.rng import restore_rng, rng_tensors

    saved = rng_tensors()
    assert set(saved) == {"rng.torch", "rng.cuda.0", "rng.cuda.1"}
    cpu = torch.get_rng_state()
    torch.rand(3)
    two_gpus[0], two_gpus[1] = torch.tensor([9], dtype=torch.uint8), None
    restore_rng(saved)
    assert torch.equal(torch.get_rng_state(), cpu)
    assert two_gpus[0].tolist() == [1, 2] and two_gpus[1].tolist() == [3, 4]


def test_evaluation_forks_the_cuda_generators_too(two_gpus, monkeypatch):
    from dqnlm.core.rng import fork_rng

    forked = []
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices: forked.append(devices))
    fork_rng()
    assert forked == [[0, 1]]


def test_lm_checkpoints_carry_the_cuda_rng_state(files, tmp_path, two_gpus):
    trainer = LMTrainer(config(files), tmp_path / "run", progress=False)
    trainer.save_checkpoint()
    two_gpus[1] = torch.tensor([0], dtype=torch.uint8)
    LMTrainer.load(tmp_path / "run", trust_code=True)
    assert two_gpus[1].tolist() == [3, 4]


def test_perplexity_ignores_a_banned_token_at_padding():
    """-inf log-prob at a padded position must not turn the NLL into NaN (B3)."""
    from dqnlm.lm.evaluate import generated_nll

    logits = torch.zeros(1, 4, 3)
    tokens = torch.tensor([[0, 1, 2, 2]])  # the last token is padding
    actions = torch.tensor([[0, 1, 1, 0]])  # tokens 1 and 2 were generated
    clean = generated_nll(logits, tokens, actions)
    assert clean == pytest.approx(2 * math.log(3))
    logits[0, 2, 2] = float("-inf")  # the model bans the pad token where it is padding
    assert generated_nll(logits, tokens, actions) == pytest.approx(clean)
