"""Turning prompts into fixed-shape token batches, and sampling completions.

Every batch has the same layout: ``prompt_tokens`` left-padded prompt positions, then
``new_tokens`` completion positions. ``actions`` marks the generated tokens up to and
including the first end-of-text; everything after it is padding. One layout for online
samples, offline data and evaluation lets one TD update serve them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    tokens: torch.Tensor  # [B, P + N] token ids
    attention: torch.Tensor  # [B, P + N] 1 on real tokens
    actions: torch.Tensor  # [B, P + N] float, 1 on generated tokens (the actions)
    prompt_tokens: int  # P
    truncated: int = 0  # prompts that lost tokens on the left to fit P

    @property
    def completion(self) -> torch.Tensor:
        return self.tokens[:, self.prompt_tokens :]

    def last_action(self) -> torch.Tensor:
        """Index of each row's last generated token (where a sequence reward goes)."""
        width = self.actions.shape[1]
        return width - 1 - self.actions.flip(1).argmax(1)


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


def assemble(prompt, prompt_attention, completion, eos: int, truncated: int = 0) -> TokenBatch:
    actions = completion_mask(completion, eos)
    return TokenBatch(
        tokens=torch.cat([prompt, completion], 1),
        attention=torch.cat([prompt_attention, actions.long()], 1),
        actions=torch.cat([torch.zeros_like(prompt, dtype=actions.dtype), actions], 1),
        prompt_tokens=prompt.shape[1],
        truncated=truncated,
    )


def positions(attention: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (what ``generate`` uses too)."""
    return (attention.cumsum(-1) - 1).clamp(min=0)


def forward_logits(model, tokens: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Logits at every position, in float32; position ``j`` scores token ``j + 1``."""
    out = model(input_ids=tokens, attention_mask=attention, position_ids=positions(attention))
    return out.logits.float()


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
    """Sample one completion per prompt with the KV cache; the batch's global RNG is torch's."""
    device = next(model.parameters()).device
    prompt, prompt_attention, truncated = encode_prompts(tokenizer, prompts, prompt_tokens)
    prompt, prompt_attention = prompt.to(device), prompt_attention.to(device)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    out = model.generate(
        input_ids=prompt,
        attention_mask=prompt_attention,
        max_new_tokens=new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        pad_token_id=pad,
        eos_token_id=eos,
    )
    completion = out[:, prompt_tokens:]
    # pad to the fixed width when every text ended early
    completion = torch.nn.functional.pad(
        completion, (0, new_tokens - completion.shape[1]), value=pad
    )
    return assemble(prompt, prompt_attention, completion, eos, truncated)


def decode_completions(tokenizer, batch: TokenBatch) -> list[str]:
    """The generated texts, without prompt, padding or end-of-text."""
    rows = zip(batch.completion.cpu(), batch.actions[:, batch.prompt_tokens :].cpu())
    return [
        tokenizer.decode(row[mask.bool()].tolist(), skip_special_tokens=True) for row, mask in rows
    ]
