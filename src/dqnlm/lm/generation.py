"""Turning prompts into fixed-shape token batches, and sampling completions.

Every batch has the same layout: ``prompt_tokens`` left-padded prompt positions, then
``new_tokens`` completion positions. ``actions`` marks the generated tokens up to and
including the first end-of-text; everything after it is padding. One layout for online
samples, offline data and evaluation lets one TD update serve them all.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dqnlm.errors import DQNLMError

if TYPE_CHECKING:
    from dqnlm.lm.config import LMConfig


class NonFiniteLogits(DQNLMError):
    """The policy's logits hold NaN or infinity: its weights are broken."""


@dataclass
class TokenBatch:
    tokens: torch.Tensor  # [B, P + N] token ids
    attention: torch.Tensor  # [B, P + N] 1 on real tokens
    actions: torch.Tensor  # [B, P + N] float, 1 on generated tokens (the actions)
    prompt_tokens: int  # P
    truncated: int = 0  # prompts that lost tokens on the left to fit P
    # [B, P + N] log-prob of each generated token under the distribution it was sampled
    # from (after temperature, top-k, top-p and min_new_tokens); 0 elsewhere. None when
    # the texts were not sampled (offline data).
    logprobs: torch.Tensor | None = None

    @property
    def completion(self) -> torch.Tensor:
        return self.tokens[:, self.prompt_tokens :]

    def last_action(self) -> torch.Tensor:
        """Index of each row's last generated token (where a sequence reward goes)."""
        width = self.actions.shape[1]
        return width - 1 - self.actions.flip(1).argmax(1)


def format_prompts(tokenizer, prompts: list[str], chat_template: bool) -> list[str]:
    """Each prompt as the user's turn of the tokenizer's chat template, ending where the
    assistant's reply begins, when ``chat_template`` is set and the tokenizer has one;
    otherwise the prompts unchanged (base models continue the text itself)."""
    if not chat_template or not getattr(tokenizer, "chat_template", None):
        return list(prompts)
    try:
        return [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
    except Exception as e:  # jinja2's TemplateError and whatever a template raises
        raise DQNLMError(
            f"the tokenizer's chat template failed ({' '.join(str(e).split())}); "
            "fix it or set chat_template=false"
        ) from None


def encode_prompts(tokenizer, prompts: list[str], prompt_tokens: int):
    """Left-padded ``[B, prompt_tokens]`` ids and mask; longer prompts keep their last tokens."""
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    truncated = sum(len(seq) > prompt_tokens for seq in ids)
    tokens = torch.full((len(ids), prompt_tokens), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(tokens)
    for row, seq in enumerate(ids):
        seq = seq[-prompt_tokens:]
        if seq:
            tokens[row, -len(seq) :] = torch.tensor(seq)
            attention[row, -len(seq) :] = 1
    return tokens, attention, truncated


def completion_mask(completion: torch.Tensor, eos: int) -> torch.Tensor:
    """1 on each token up to and including the first end-of-text, 0 after it."""
    is_eos = (completion == eos).long()
    ended_before = torch.cumsum(is_eos, -1) - is_eos
    return (ended_before == 0).float()


def assemble(
    prompt, prompt_attention, completion, eos: int, truncated: int = 0, logprobs=None
) -> TokenBatch:
    actions = completion_mask(completion, eos)
    before = torch.zeros_like(prompt, dtype=actions.dtype)
    return TokenBatch(
        tokens=torch.cat([prompt, completion], 1),
        attention=torch.cat([prompt_attention, actions.long()], 1),
        actions=torch.cat([before, actions], 1),
        prompt_tokens=prompt.shape[1],
        truncated=truncated,
        logprobs=None if logprobs is None else torch.cat([before, logprobs], 1),
    )


def positions(attention: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (what ``generate`` uses too)."""
    return (attention.cumsum(-1) - 1).clamp(min=0)


def forward_logits(
    model, tokens: torch.Tensor, attention: torch.Tensor, last: int = 0, skip_head: bool = False
) -> torch.Tensor:
    """Logits in float32, at every position or at the ``last`` ones; position ``j`` scores
    token ``j + 1``. ``skip_head``: the model takes ``logits_to_keep`` (see
    :func:`keeps_logits`), so it runs its output layer on those positions only."""
    extra = {"logits_to_keep": last} if last and skip_head else {}
    out = model(
        input_ids=tokens, attention_mask=attention, position_ids=positions(attention), **extra
    )
    return (out.logits[:, -last:] if last else out.logits).float()


def keeps_logits(model) -> bool:
    """Whether ``model`` can skip its output layer at positions whose logits are not needed
    (``logits_to_keep``): on a small model the vocabulary projection is much of the cost."""
    return "logits_to_keep" in _forward_arguments(model)


def sampling_logprobs(
    logits: torch.Tensor,
    step: int,
    eos: int,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """``[B, V]`` log-probs of the distribution token ``step`` is drawn from: softmax of
    ``logits / temperature``, end-of-text blocked before ``min_new_tokens``, truncated to
    the ``top_k`` most likely tokens and the ``top_p`` nucleus, renormalised."""
    scores = logits.float() / temperature
    if step < min_new_tokens:
        scores[:, eos] = -torch.inf
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -torch.inf)
    if top_p < 1.0:
        ordered, order = scores.sort(-1, descending=True)
        probs = ordered.softmax(-1)
        outside = probs.cumsum(-1) - probs >= top_p  # the mass before it already reaches top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(outside, -torch.inf))
    return torch.log_softmax(scores, -1)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    prompt_tokens: int,
    new_tokens: int,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> TokenBatch:
    """Sample one completion per prompt with the KV cache; the batch's global RNG is torch's.

    An explicit loop rather than ``model.generate``: ``generate`` starts from the model's
    own ``generation_config`` (a shipped ``repetition_penalty`` or ``no_repeat_ngram_size``
    would change the policy), and the loop records the log-prob each token was drawn with.
    """
    device = next(model.parameters()).device
    prompt, prompt_attention, truncated = encode_prompts(tokenizer, prompts, prompt_tokens)
    prompt, prompt_attention = prompt.to(device), prompt_attention.to(device)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    completion, logprobs = sample_ids(
        model, prompt, prompt_attention, new_tokens, eos, pad,
        min_new_tokens, temperature, top_k, top_p,
    )  # fmt: skip
    return assemble(prompt, prompt_attention, completion, eos, truncated, logprobs)


@torch.no_grad()
def sample_ids(
    model,
    prompt: torch.Tensor,
    prompt_attention: torch.Tensor,
    new_tokens: int,
    eos: int,
    pad: int,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample` on left-padded prompt ids: ``[B, new_tokens]`` completions (``pad``
    after each row's end-of-text) and the log-prob each token was drawn with (0 after it)."""
    device = prompt.device
    rows = len(prompt)
    completion = torch.full((rows, new_tokens), pad, dtype=torch.long, device=device)
    logprobs = torch.zeros(rows, new_tokens, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    attention, step_input, cache = prompt_attention, prompt, {}
    forward = _forward_arguments(model)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}  # last position only
    cache_name = "cache" if "cache" in forward else "past_key_values"
    for step in range(new_tokens):
        out = model(
            input_ids=step_input,
            attention_mask=attention,
            position_ids=positions(attention)[:, -step_input.shape[1] :],
            use_cache=True,
            **extra,
            **cache,
        )
        cache = {cache_name: out.cache if "cache" in out else out.past_key_values}
        logits = out.logits[:, -1].float()
        if not torch.isfinite(logits[~done]).all():
            raise NonFiniteLogits(
                f"the model's logits are NaN or infinite at generated token {step + 1}: "
                "its weights are broken (did training diverge?)"
            )
        logp = sampling_logprobs(logits, step, eos, min_new_tokens, temperature, top_k, top_p)
        token = torch.multinomial(logp.exp(), 1).squeeze(1)
        token = torch.where(done, pad, token)
        completion[:, step] = token
        logprobs[:, step] = torch.where(done, 0.0, logp.gather(1, token[:, None]).squeeze(1))
        attention = torch.cat([attention, (~done).long()[:, None]], 1)
        done |= token == eos
        if done.all():
            break
        step_input = token[:, None]
    return completion, logprobs


def sample_with(config: LMConfig, model, tokenizer, prompts: list[str]) -> TokenBatch:
    """:func:`sample` with a run's prompt template, lengths and sampling settings."""
    return sample(
        model,
        tokenizer,
        format_prompts(tokenizer, prompts, config.chat_template),
        config.prompt_tokens,
        config.new_tokens,
        config.min_new_tokens,
        config.temperature,
        config.top_k,
        config.top_p,
    )


def _forward_arguments(model) -> set[str]:
    """What the model's forward takes (newer transformers call ``past_key_values`` ``cache``
    and can skip the logits of all but the last ``logits_to_keep`` positions)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    return set(inspect.signature(base.forward).parameters)


def decode_completions(tokenizer, batch: TokenBatch) -> list[str]:
    """The generated texts, without prompt, padding or end-of-text."""
    rows = zip(batch.completion.cpu(), batch.actions[:, batch.prompt_tokens :].cpu())
    return [
        tokenizer.decode(row[mask.bool()].tolist(), skip_special_tokens=True) for row, mask in rows
    ]
