"""A Gymnasium environment: the agent talks to the rule user simulator through the tracker.

One step is one agent act and the user's reply. Rewards follow TC-Bot: each step
costs -1, except the last, which pays 2L on success and -L on failure (L =
``max_turns``). The turn limit ends a dialogue as a failure through ``terminated``
(the turn is part of the observation, so the state stays Markov); ``truncated`` is
always False.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from dqnlm.dialogue.acts import Act
from dqnlm.dialogue.config import DialogueConfig
from dqnlm.dialogue.kb import Goal, build_world
from dqnlm.dialogue.nlg import NLG
from dqnlm.dialogue.nlu import NLU
from dqnlm.dialogue.schema import load_domain
from dqnlm.dialogue.simulator import UserSimulator
from dqnlm.dialogue.tracker import StateTracker
from dqnlm.errors import DQNLMError


@dataclass(frozen=True)
class Turn:
    speaker: str
    """user or agent."""
    act: Act
    """What was said, in act form (for the user: as the agent heard it, after noise and,
    at text level, the NLU)."""
    text: str
    """The act through the template NLG."""

    def __str__(self) -> str:
        return f"{self.speaker:>5}: {self.text}  [{self.act}]"


class DialogueEnv(gym.Env):
    """Observations: the tracker's state vector (Box in [0, 1]); actions: the domain's
    agent actions (Discrete). ``reset(options={"goal": i})`` plays goal ``i`` of the
    split; otherwise the goal is drawn from the seeded generator. ``info`` holds
    ``success``, ``outcome`` (None until the end), ``goal`` and ``turns`` (the dialogue so far)."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, config: DialogueConfig | None = None, render_mode: str | None = None):
        self.config = (config or DialogueConfig()).validate()
        if render_mode not in (None, "ansi"):
            raise DQNLMError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.domain = load_domain(self.config.domain)
        self.world = build_world(self.domain)
        self.goals = self.world.goals(self.config.split)
        self.simulator = UserSimulator(
            self.domain,
            self.world.kb,
            self.config.max_turns,
            self.config.slot_error_rate,
            self.config.intent_error_rate,
        )
        self.tracker = StateTracker(self.domain, self.world.kb, self.config.max_turns)
        self.nlg = NLG(self.domain)
        self.nlu = NLU(self.domain) if self.config.text_level else None
        self.action_space = gym.spaces.Discrete(len(self.tracker.actions))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.tracker.dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        index = (options or {}).get("goal")
        if index is None:
            index = int(self.np_random.integers(len(self.goals)))
        elif not (isinstance(index, (int, np.integer)) and 0 <= index < len(self.goals)):
            raise DQNLMError(f"goal must be an index below {len(self.goals)}, got {index!r}")
        self.goal: Goal = self.goals[int(index)]
        opening = self.simulator.reset(self.goal, self.np_random)
        self.turns = []
        self.tracker.reset(self._hear(opening))
        return self.tracker.state(), self._info()

    def step(self, action):
        if self.simulator.done:
            raise DQNLMError("the dialogue is over; call reset() first")
        if not self.action_space.contains(action):
            raise DQNLMError(
                f"action must be an integer in [0, {self.action_space.n}), got {action!r}"
            )
        return self.play(self.tracker.act(int(action)))

    def play(self, act: Act, text: str | None = None):
        """One agent turn given as an act (``step`` fills its action's act from the KB);
        ``text`` is what the agent said, when it spoke words itself (default: the NLG's)."""
        if self.simulator.done:
            raise DQNLMError("the dialogue is over; call reset() first")
        self.tracker.observe_agent(act)
        reply = self.simulator.step(act)
        said = self.nlg.agent(act, len(self.turns)) if text is None else text
        self.turns.append(Turn("agent", act, said))
        self.tracker.observe_user(self._hear(reply))
        limit = self.config.max_turns
        rewards = {None: -1.0, "success": 2.0 * limit, "failure": -1.0 * limit}
        reward = rewards[self.simulator.outcome]
        return self.tracker.state(), reward, self.simulator.done, False, self._info()

    def _hear(self, act: Act) -> Act:
        """Record the user's turn; return what the agent hears (the NLU's reading at text level)."""
        text = self.nlg.user(act, len(self.turns))
        heard = self.nlu.parse(text) if self.nlu is not None else act
        self.turns.append(Turn("user", heard, text))
        return heard

    def _info(self) -> dict:
        return {
            "success": self.simulator.outcome == "success",
            "outcome": self.simulator.outcome,
            "goal": self.goal,
            "turns": list(self.turns),
        }

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(str(turn) for turn in self.turns) + "\n"
        return None
