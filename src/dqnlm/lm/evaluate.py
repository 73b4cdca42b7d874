"""Evaluating a tuned LM on held-out prompts, and explaining its choices token by token."""

from __future__ import annotations

import html
import math
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from dqnlm.core.rng import fork_rng
from dqnlm.lm import stargraph
from dqnlm.lm.config import LMConfig
from dqnlm.lm.generation import TokenBatch, decode_completions, forward_logits, sample_with
from dqnlm.lm.qlearning import anchored_q, sequence_kl
from dqnlm.lm.rewards import score_texts
from dqnlm.seeding import seed_streams


class Policy(Protocol):
    """The parts of a tuned LM that evaluation needs (an LMTrainer has them all)."""

    config: LMConfig
    model: Any  # the tuned causal LM
    reference: Any  # the frozen model it started from
    tokenizer: Any

    def generate(self, prompts: list[str]) -> TokenBatch: ...

    def score(self, texts: list[str], prompts: list[str] | None = None) -> torch.Tensor: ...


class ModelPolicy:
    """A model as it is, with no training, as a :class:`Policy`: its own reference (KL 0
    at temperature 1). The untuned baseline ``dqnlm lm eval --model`` scores with the same
    metrics as a run."""

    def __init__(self, config: LMConfig, trust_code: bool = False, progress: bool = True):
        from dqnlm.device import resolve_device
        from dqnlm.lm.models import load_checked
        from dqnlm.lm.rewards import parse_reward

        self.config = config = stargraph.fit_config(config)
        self.reward = parse_reward(config.reward, trust_code)
        device = resolve_device(config.device)
        _, self.tokenizer, self.model = load_checked(
            stargraph.model_spec(config, progress),
            config.dtype,
            device,
            trust_code=trust_code,
            progress=progress,
        )
        self.reference = torch.no_grad()(self.model)

    def generate(self, prompts: list[str]) -> TokenBatch:
        return sample_with(self.config, self.model, self.tokenizer, prompts)

    def score(self, texts: list[str], prompts: list[str] | None = None) -> torch.Tensor:
        return score_texts(self.reward, self.config.reward, texts, prompts)

    def held_out_prompts(self) -> list[str]:
        return stargraph.evaluation_prompts(self.config)


def _eval_seed(policy: Policy, seed: int | None) -> int:
    """``seed``, or the run's test stream: evaluation never shares a seed with training."""
    return seed_streams(policy.config.seed).test if seed is None else seed


EVAL_KEYS = ("reward", "kl", "distinct_1", "distinct_2", "ref_perplexity", "n")
TASK_KEYS = ("path_accuracy", "first_step_accuracy")
"""A task's own metrics (stargraph), reported beside :data:`EVAL_KEYS`."""


def generated_nll(logits: torch.Tensor, tokens: torch.Tensor, actions: torch.Tensor) -> float:
    """Summed negative log-likelihood of the generated tokens (``actions`` marks them).

    Selects rather than multiplies by the mask: a pad token the model bans has log-prob
    -inf, and ``-inf * 0`` would make the sum NaN.
    """
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    taken = logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return -float(torch.where(actions[:, 1:].bool(), taken, 0.0).sum())


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams over all n-grams in ``texts`` (Li et al. 2016); 0 when there are none."""
    grams = [
        tuple(words[i : i + n])
        for words in (t.split() for t in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def evaluate(
    trainer: Policy,
    prompts: list[str],
    n: int = 100,
    batch_size: int = 32,
    progress: bool = False,
    samples: int = 5,
) -> dict:
    """Sample one completion for each of the first ``n`` prompts with the run's settings.

    Returns mean reward, mean KL to the reference (nats per completion), distinct-1/2
    over all completions, the reference model's perplexity of the generated tokens, ``n``,
    and a few example completions under ``samples``.
    """
    prompts = list(prompts[:n])
    texts, rewards, kls = [], [], []
    ref_nll, generated, truncated = 0.0, 0.0, 0
    with fork_rng():
        torch.manual_seed(_eval_seed(trainer, None))
        chunks = range(0, len(prompts), batch_size)
        for start in tqdm(chunks, desc="evaluating", unit="batch", disable=not progress):
            batch = trainer.generate(prompts[start : start + batch_size])
            batch_texts = decode_completions(trainer.tokenizer, batch)
            rewards += trainer.score(batch_texts, prompts[start : start + batch_size]).tolist()
            ref_logits = forward_logits(trainer.reference, batch.tokens, batch.attention)
            kls += sequence_kl(ref_logits, batch).tolist()
            ref_nll += generated_nll(ref_logits, batch.tokens, batch.actions)
            generated += float(batch.actions[:, 1:].sum())
            truncated += batch.truncated
            texts += batch_texts
    count = max(len(prompts), 1)
    task = stargraph.task_metrics(trainer, prompts) if trainer.config.task else {}
    return {
        **{k: v for k, v in task.items() if k in TASK_KEYS},
        "reward": sum(rewards) / count,
        "kl": sum(kls) / count,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "ref_perplexity": math.exp(ref_nll / generated) if generated else float("nan"),
        "n": len(prompts),
        "truncated_prompts": truncated,
        "samples": [
            {"prompt": p, "completion": t, "reward": r}
            for p, t, r in list(zip(prompts, texts, rewards))[:samples]
        ],
        **({"greedy_samples": task["greedy_samples"]} if task else {}),
    }


@torch.no_grad()
def generate_texts(
    trainer: Policy, prompt: str, n: int = 1, seed: int | None = None, batch_size: int = 32
):
    """``n`` completions of one prompt with their rewards, and whether the prompt was cut.
    They are sampled ``batch_size`` at a time, so memory does not grow with ``n``."""
    texts, truncated = [], False
    with fork_rng():
        torch.manual_seed(_eval_seed(trainer, seed))
        for start in range(0, n, batch_size):
            batch = trainer.generate([prompt] * min(batch_size, n - start))
            texts += decode_completions(trainer.tokenizer, batch)
            truncated = truncated or bool(batch.truncated)
    return texts, trainer.score(texts, [prompt] * len(texts)).tolist(), truncated


def _colour(advantage: float, scale: float) -> str:
    """Green for tokens the tuned model prefers over its average, red for the reverse."""
    strength = min(abs(advantage) / scale, 1.0) if scale > 0 else 0.0
    hue = 130 if advantage >= 0 else 0
    return f"hsla({hue}, 70%, 45%, {0.08 + 0.72 * strength:.2f})"


@torch.no_grad()
def explain_html(trainer: Policy, prompt: str, top: int = 5, seed: int | None = None) -> str:
    """An HTML page: the prompt, then each generated token coloured by its advantage.

    ``A(s, a) = Q(s, a) - V(s)`` with ``Q = beta * (logits - ref_logits)`` and the soft value
    ``V(s) = beta * log sum_a pi_ref(a|s) exp(Q(s, a) / beta)``. Hovering a token shows
    Q, V, A and the ``top`` alternatives by the policy's probability with their Q-values.
    """
    config = trainer.config
    with fork_rng():
        torch.manual_seed(_eval_seed(trainer, seed))
        batch = trainer.generate([prompt])
    logits = forward_logits(trainer.model, batch.tokens, batch.attention)[0]
    ref_logits = forward_logits(trainer.reference, batch.tokens, batch.attention)[0]
    q = anchored_q(logits, ref_logits, config.beta)
    value = config.beta * torch.logsumexp(q / config.beta + torch.log_softmax(ref_logits, -1), -1)
    probs = torch.softmax(logits / config.temperature, -1)
    tok = trainer.tokenizer
    text = decode_completions(tok, batch)[0]
    reward = trainer.score([text], [prompt])[0].item()
    positions = [j for j in range(1, batch.tokens.shape[1]) if batch.actions[0, j] > 0]
    advantages = [float(q[j - 1, batch.tokens[0, j]] - value[j - 1]) for j in positions]
    scale = max((abs(a) for a in advantages), default=0.0)
    spans = []
    for j, adv in zip(positions, advantages):
        token = int(batch.tokens[0, j])
        state = j - 1  # logits at position j - 1 score the token at j
        best = torch.topk(probs[state], top)
        alternatives = "\n".join(
            f"  {tok.decode([int(i)])!r}: Q={float(q[state, i]):+.3f}  p={float(p):.3f}"
            for p, i in zip(best.values, best.indices)
        )
        tip = (
            f"Q(s,a)={float(q[state, token]):+.3f}  V(s)={float(value[state]):+.3f}  "
            f"A={adv:+.3f}\ntop alternatives:\n{alternatives}"
        )
        shown = tok.decode([token]) if token != tok.eos_token_id else "⏎end"
        spans.append(
            f'<span class="tok" style="background:{_colour(adv, scale)}" '
            f'data-advantage="{adv:.4f}" title="{html.escape(tip)}">{html.escape(shown)}</span>'
        )
    head = slice(0, batch.prompt_tokens)
    shown_prompt = tok.decode(batch.tokens[0, head][batch.attention[0, head] > 0].tolist())
    cut = " (cut to its last tokens to fit prompt_tokens)" if batch.truncated else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dqnlm explain</title>
<style>
body {{ font-family: sans-serif; max-width: 52em; margin: 2em auto; line-height: 2; }}
.prompt {{ color: #666; }}
.tok {{ border-radius: 3px; padding: 1px 0; white-space: pre-wrap; }}
.legend span {{ padding: 2px 6px; border-radius: 3px; }}
</style></head><body>
<h2>Why did it write that?</h2>
<p>Each generated token is coloured by its advantage A(s,a) = Q(s,a) &minus; V(s):
<span style="background:{_colour(1, 1)}">preferred</span> or
<span style="background:{_colour(-1, 1)}">dispreferred</span> relative to the
policy's soft value, with Q = &beta;&middot;(logits &minus; reference logits), &beta; = {config.beta:g}.
Hover a token for Q, V and the top alternatives.</p>
<p>reward ({html.escape(config.reward)}): <b>{reward:+.3f}</b>{html.escape(cut)}</p>
<p><span class="prompt">{html.escape(shown_prompt)}</span>{"".join(spans)}</p>
</body></html>
"""
