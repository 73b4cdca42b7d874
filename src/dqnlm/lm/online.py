"""Online token-level Q-learning for a causal LM, with a target network from the core.

One iteration: sample prompts, generate with the LM as the policy (softmax of Q /
temperature, top-k), score the finished texts, store the sequences in a replay
buffer, then run several TD updates on replayed batches and update the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dqnlm.core.losses import td_loss
from dqnlm.core.target import TargetNetwork
from dqnlm.lm.qlearning import token_td_targets


@dataclass(frozen=True)
class OnlineConfig:
    iterations: int = 100
    """Generate-then-learn rounds."""
    prompts_per_iteration: int = 16
    """Sequences generated per round."""
    new_tokens: int = 24
    """Most tokens generated after each prompt; an end-of-text token ends a text sooner."""
    prompt_tokens: int = 16
    """Prompts are left-padded (or left-truncated) to this many tokens."""
    updates_per_iteration: int = 4
    """TD updates per round: the off-policy reuse ratio."""
    batch_size: int = 16
    """Sequences per TD update."""
    replay_capacity: int = 512
    """Sequences kept for replay."""
    learning_rate: float = 1e-4
    """AdamW step size."""
    target: str = "polyak"
    """Target-network rule: polyak, hard or none."""
    target_period: int = 1
    """TD updates between target updates."""
    tau: float = 0.01
    """Polyak coefficient."""
    kind: str = "soft"
    """TD target: soft (temperature * logsumexp), max, or double."""
    temperature: float = 1.0
    """Softmax temperature of the policy and of the soft value."""
    top_k: int = 0
    """Sample only among the k best tokens; 0 samples from all."""
    lam: float = 0.9
    """TD(lambda): carries the sparse sequence reward back to early tokens."""
    kl_coef: float = 0.0
    """Per-token penalty beta * (log pi - log pi_ref) against a frozen reference model."""
    seed: int = 0
    """Seeds prompts, sampling and replay."""


class SequenceReplay:
    """Fixed-length token sequences with their masks and per-token rewards."""

    def __init__(self, capacity: int, length: int, seed: int = 0) -> None:
        self.tokens = torch.zeros(capacity, length, dtype=torch.long)
        self.attention = torch.zeros(capacity, length, dtype=torch.long)
        self.actions = torch.zeros(capacity, length)
        self.rewards = torch.zeros(capacity, length)
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, tokens, attention, actions, rewards) -> None:
        slots = torch.from_numpy((self.pos + np.arange(len(tokens))) % self.capacity)
        self.tokens[slots], self.attention[slots] = tokens, attention
        self.actions[slots], self.rewards[slots] = actions, rewards
        self.pos = int((self.pos + len(tokens)) % self.capacity)
        self.size = min(self.size + len(tokens), self.capacity)

    def sample(self, n: int):
        idx = torch.from_numpy(self.rng.integers(0, self.size, size=n))
        return self.tokens[idx], self.attention[idx], self.actions[idx], self.rewards[idx]


def _positions(attention: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding."""
    return (attention.cumsum(-1) - 1).clamp(min=0)


def _logits(model, tokens, attention) -> torch.Tensor:
    return model(
        input_ids=tokens, attention_mask=attention, position_ids=_positions(attention)
    ).logits


def train_online(
    model, tokenizer, prompts: list[str], reward, config: OnlineConfig, ref_model=None
):
    """Fine-tune ``model`` toward ``reward``; returns per-iteration metrics."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if tokenizer.pad_token_id is None:  # GPT-2 style tokenizers have none: reuse end-of-text
        tokenizer.pad_token = tokenizer.eos_token
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    # dropout off everywhere: it would make Q, its targets and the KL noisy (as TRL does)
    model.eval()
    target = TargetNetwork(model, config.target, config.target_period, config.tau)
    if ref_model is not None:
        ref_model.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    replay = SequenceReplay(
        config.replay_capacity, config.prompt_tokens + config.new_tokens, config.seed
    )
    history, updates = [], 0
    for _ in range(config.iterations):
        batch_prompts = [
            prompts[i] for i in rng.integers(0, len(prompts), config.prompts_per_iteration)
        ]
        ids = [
            tokenizer(p, add_special_tokens=False)["input_ids"][-config.prompt_tokens :]
            for p in batch_prompts
        ]
        prompt = torch.full((len(ids), config.prompt_tokens), pad, dtype=torch.long)
        prompt_attention = torch.zeros_like(prompt)
        for row, seq in enumerate(ids):
            if seq:
                prompt[row, -len(seq) :] = torch.tensor(seq)
                prompt_attention[row, -len(seq) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=prompt,
                attention_mask=prompt_attention,
                max_new_tokens=config.new_tokens,
                do_sample=True,
                temperature=config.temperature,
                top_k=config.top_k,
                pad_token_id=pad,
            )
        generated = out[:, config.prompt_tokens :]
        short = config.new_tokens - generated.shape[1]  # every text ended early
        generated = torch.nn.functional.pad(generated, (0, short), value=pad)
        texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
        scores = torch.tensor(reward(texts), dtype=torch.float32)
        # actions: every generated token up to and including the first end-of-text
        ended_before = torch.cumsum((generated == eos).long(), -1) - (generated == eos).long()
        gen_actions = (ended_before == 0).float()
        tokens = torch.cat([prompt, generated], 1)
        attention = torch.cat([prompt_attention, gen_actions.long()], 1)
        actions = torch.cat([torch.zeros_like(prompt, dtype=torch.float32), gen_actions], 1)
        rewards = torch.zeros_like(actions)
        last = actions.shape[1] - 1 - actions.flip(1).argmax(1)  # last action of each row
        rewards[torch.arange(len(tokens)), last] = scores
        kl = torch.zeros(len(tokens))
        if ref_model is not None and config.kl_coef > 0:
            with torch.no_grad():
                logp = torch.log_softmax(_logits(model, tokens, attention) / config.temperature, -1)
                ref_logp = torch.log_softmax(_logits(ref_model, tokens, attention), -1)
                taken = tokens[:, 1:, None]
                per_token = (
                    logp[:, :-1].gather(-1, taken) - ref_logp[:, :-1].gather(-1, taken)
                ).squeeze(-1)
                per_token = per_token * actions[:, 1:]
            rewards[:, 1:] -= config.kl_coef * per_token
            kl = per_token.sum(1)
        replay.add(tokens, attention, actions, rewards)

        losses = []
        for _ in range(config.updates_per_iteration):
            b_tokens, b_attention, b_actions, b_rewards = replay.sample(config.batch_size)
            online_logits = _logits(model, b_tokens, b_attention)
            target_logits = _logits(target, b_tokens, b_attention)
            q, y, mask = token_td_targets(
                online_logits,
                target_logits,
                b_tokens,
                b_actions,
                b_rewards,
                config.kind,
                config.temperature,
                1.0,
                config.lam,
            )
            # the mask as importance weights, renormalised to a mean over generated tokens
            loss, _ = td_loss(q, y, "mse", weights=mask)
            loss = loss * mask.numel() / mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            updates += 1
            target.update(updates)
            losses.append(loss.item())
        history.append(
            {
                "reward": float(scores.mean()),
                "kl": float(kl.mean()),
                "td_loss": float(np.mean(losses)),
            }
        )
    return history
