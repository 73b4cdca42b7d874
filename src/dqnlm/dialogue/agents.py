"""The rule-based baseline agent and an evaluation loop over a split's goals.

An agent has ``reset()`` (a new dialogue) and ``act(obs, tracker) -> action index``;
a learned policy reads ``obs``, the rule agent reads the tracker.
"""

from __future__ import annotations

import numpy as np

from dqnlm.dialogue.env import DialogueEnv
from dqnlm.dialogue.schema import Domain
from dqnlm.dialogue.tracker import StateTracker
from dqnlm.errors import ConfigError


class RuleAgent:
    """TC-Bot's rule baseline, played fairly: ask each key slot the user has not stated,
    in order; then propose the booking; then answer what the user asks about the booked
    record; thank the user once it thanks, and close when it denies the booking.

    ``key_slots`` defaults to the domain's ``rule_agent_slots`` (for movie, the slots of
    TC-Bot's RequestBasicsDialogueAgent, in its order). It never asks for constraints
    outside them, so it fails the goals whose other constraints the user did not
    volunteer (the booking must state every constraint)."""

    def __init__(self, domain: Domain, key_slots: tuple[str, ...] | None = None):
        key_slots = tuple(domain.rule_agent_slots if key_slots is None else key_slots)
        unknown = [s for s in key_slots if s not in domain.informable]
        if unknown:
            raise ConfigError(f"key_slots must be informable slots of {domain.name}, got {unknown}")
        self.key_slots = key_slots
        self._index = {(a.intent, a.slot): i for i, a in enumerate(domain.agent_actions)}
        self._booking = self._index["inform", domain.booking_slot]
        self.reset()

    def reset(self) -> None:
        self.asked: set[str] = set()

    def act(self, obs: np.ndarray, tracker: StateTracker) -> int:
        user = tracker.user_act
        if user.intent == "thanks":
            return self._index["thanks", None]
        if user.intent == "deny":
            return self._index["closing", None]
        if tracker.booking is not None:
            answers = [
                self._index[k] for k in (("inform", s) for s in user.request) if k in self._index
            ]
            return answers[0] if answers else self._index["thanks", None]
        for slot in self.key_slots:
            if slot not in tracker.known and slot not in self.asked:
                self.asked.add(slot)
                return self._index["request", slot]
        return self._booking


def evaluate(
    env: DialogueEnv, agent, seed: int = 0, episodes: int | None = None
) -> dict[str, float]:
    """Play ``episodes`` dialogues on ``env``'s split: dialogue ``i`` plays goal
    ``i % len(goals)`` seeded ``seed + i``; None plays every goal once.

    Returns ``success_rate``, ``avg_turns`` (mean agent turns per dialogue),
    ``avg_reward`` (mean return) and ``episodes`` (dialogues played)."""
    if episodes is None:
        episodes = len(env.goals)
    elif isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ConfigError(
            f"episodes must be an integer >= 1 (or None for every goal), got {episodes!r}"
        )
    successes, returns, steps = [], [], []
    for i in range(int(episodes)):
        obs, info = env.reset(seed=seed + i, options={"goal": i % len(env.goals)})
        agent.reset()
        total, done, n = 0.0, False, 0
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, env.tracker))
            total, n, done = total + reward, n + 1, terminated or truncated
        successes.append(info["success"])
        returns.append(total)
        steps.append(n)
    return {
        "success_rate": float(np.mean(successes)),
        "avg_turns": float(np.mean(steps)),
        "avg_reward": float(np.mean(returns)),
        "episodes": len(successes),
    }
