"""Whole dialogues played by a language model, many at once.

Each dialogue keeps its token ids as one growing sequence: environment segments (user
turn, state line, ``agent:`` cue) and the agent's sampled tokens. Every agent turn, the
live dialogues' sequences are left-padded into one batch and the model samples the next
turn for all of them; each text goes to its own :class:`TextDialogueEnv`. A turn ends at
end-of-text or after ``new_tokens`` tokens; one cut at the limit gets an end-of-text as
an environment token, so every agent turn in a sequence ends the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dqnlm.dialogue.text_env import TextDialogueEnv
from dqnlm.lm.generation import sample_ids
from dqnlm.lmdialogue.speaker import encode_segment


@dataclass
class Played:
    """One dialogue as the learner stores it."""

    ids: list[int] = field(default_factory=list)
    agent: list[int] = field(default_factory=list)
    """1 on tokens the agent generated (the actions), 0 on what the environment said."""
    rewards: list[float] = field(default_factory=list)
    """The reward paid for each token: a turn's reward sits on its last agent token."""
    success: bool = False
    turns: int = 0
    """Agent turns."""
    total: float = 0.0
    """The dialogue's return."""
    parsed: int = 0
    """Agent turns the agent NLU read into an action."""

    def add(self, ids: list[int], agent: int) -> None:
        self.ids += ids
        self.agent += [agent] * len(ids)
        self.rewards += [0.0] * len(ids)


def left_padded(rows: list[list[int]], pad: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``width`` ids of each row, left-padded, and the attention mask."""
    width = min(width, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        row = row[-width:]
        ids[i, width - len(row) :] = torch.tensor(row)
        attention[i, width - len(row) :] = 1
    return ids, attention


@torch.no_grad()
def play(
    model,
    tokenizer,
    envs: list[TextDialogueEnv],
    starts: list[tuple[int, int]],
    new_tokens: int,
    temperature: float = 1.0,
    greedy: bool = False,
    context: int = 1024,
) -> list[Played]:
    """Play one dialogue per ``(goal, seed)`` in ``starts`` on ``envs`` (one env each);
    ``greedy`` takes the most likely token at every step. A prompt keeps the last
    ``context - new_tokens`` tokens of its dialogue (the model's context)."""
    eos = tokenizer.eos_token_id
    played = [Played() for _ in starts]
    for env, (goal, seed), record in zip(envs, starts, played):
        record.add(encode_segment(tokenizer, env.reset(seed=seed, goal=goal), False), 0)
    live = list(range(len(starts)))
    while live:
        turns = next_turns(
            model, tokenizer, [played[i].ids for i in live], new_tokens, temperature, greedy,
            context,
        )  # fmt: skip
        still = []
        for tokens, i in zip(turns, live):
            ended = tokens[-1] == eos
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            observation, reward, done, info = envs[i].step(text)
            record = played[i]
            record.add(tokens, 1)
            record.rewards[-1] = reward
            if not ended:
                record.add([eos], 0)
            record.turns += 1
            record.total += reward
            record.parsed += info["agent_turn"].action is not None
            if done:
                record.success = bool(info["success"])
            else:
                record.add(encode_segment(tokenizer, observation, False), 0)
                still.append(i)
        live = still
    return played


@torch.no_grad()
def next_turns(
    model,
    tokenizer,
    dialogues: list[list[int]],
    new_tokens: int,
    temperature: float = 1.0,
    greedy: bool = False,
    context: int = 1024,
) -> list[list[int]]:
    """The agent's next turn in each dialogue (ids so far, ending in the agent cue): its
    tokens up to and including end-of-text, or ``new_tokens`` tokens when it has none."""
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    prompt, attention = left_padded(dialogues, eos, context - new_tokens)
    completion, _ = sample_ids(
        model, prompt.to(device), attention.to(device), new_tokens, eos, eos,
        temperature=1.0 if greedy else temperature, top_k=1 if greedy else 0,
    )  # fmt: skip
    turns = []
    for row in completion.tolist():
        turns.append(row[: row.index(eos) + 1] if eos in row else row)
    return turns


def summary(played: list[Played]) -> dict[str, float]:
    """``success_rate``, ``avg_turns``, ``avg_reward``, ``parse_rate`` (agent turns read
    into an action) and ``episodes``: the dialogue evaluation's keys, plus the parse rate."""
    turns = sum(p.turns for p in played)
    return {
        "success_rate": float(np.mean([p.success for p in played])),
        "avg_turns": float(np.mean([p.turns for p in played])),
        "avg_reward": float(np.mean([p.total for p in played])),
        "parse_rate": sum(p.parsed for p in played) / max(turns, 1),
        "episodes": len(played),
    }


def evaluate(
    model,
    tokenizer,
    envs: list[TextDialogueEnv],
    episodes: int,
    seed: int,
    new_tokens: int,
    context: int = 1024,
) -> dict[str, float]:
    """Greedy dialogues: dialogue ``i`` plays goal ``i % len(goals)`` seeded ``seed + i``,
    ``len(envs)`` at a time (the envs' split is the one evaluated)."""
    goals = len(envs[0].goals)
    played: list[Played] = []
    for start in range(0, episodes, len(envs)):
        chunk = [(i % goals, seed + i) for i in range(start, min(start + len(envs), episodes))]
        played += play(
            model, tokenizer, envs[: len(chunk)], chunk, new_tokens, greedy=True, context=context
        )
    return summary(played)
