"""A multi-turn text environment: an agent that speaks words, against the user simulator.

The agent sees the dialogue as text and writes its next turn as text. The agent-side NLU
reads the turn into an act (:mod:`dqnlm.dialogue.agent_nlu`); the tracker fills its value
from the knowledge base, so an agent may write delexicalised text ("It starts at
<starttime>.") and leave the lookup to its database, as SimpleTOD and UBAR do. The user
hears that act through the agent NLG, answers through the user NLG, and the agent's
tracker reads the answer back through the user NLU. A turn that says nothing the agent's
action space holds (empty, unreadable, endless, a request for the ticket...) is heard
as ``unknown``: the user moves on and the turn costs -1 like any other. Rewards are
:class:`DialogueEnv`'s: -1 a turn, +2L on success, -L on failure.

The text format, one observation per agent turn::

    user: I would like to see zootopia. Which theater is it at?
    state: known moviename ; matches 6-20 ; booked no ; asks theater
    agent:

The ``state`` line (``state_line=True``, the default) is the agent's own dialogue state
tracking and database lookup, written out as SimpleTOD writes its belief state and DB
result: the slots the user has stated, how many records match them and whether a
booking stands. The agent's reply follows the ``agent:`` cue and ends at the model's
end-of-text token or a length limit.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace

import numpy as np

from dqnlm.dialogue.acts import UNKNOWN, Act
from dqnlm.dialogue.agent_nlu import AgentNLU, placeholder
from dqnlm.dialogue.config import DialogueConfig
from dqnlm.dialogue.env import DialogueEnv
from dqnlm.dialogue.tracker import MATCH_BUCKETS, StateTracker

USER, STATE, AGENT = "user:", "state:", "agent:"


@dataclass(frozen=True)
class AgentTurn:
    written: str
    """What the agent wrote (after decoding; invalid bytes replaced)."""
    act: Act
    """The agent NLU's reading of it (``unknown`` when it says nothing readable)."""
    action: int | None
    """The agent action it performs; None when it performs none (the turn is wasted)."""
    spoken: str
    """What the user heard: the performed act with its values, through the agent NLG."""


def match_bucket(matches: int) -> str:
    """The number of matching records as a coarse word: 0, 1, 2-5, 6-20, 21-100, 101+."""
    edges = MATCH_BUCKETS
    i = int(np.searchsorted(edges, matches, side="right")) - 1
    return f"{edges[i]}+" if i == len(edges) - 1 else (
        str(edges[i]) if edges[i + 1] - edges[i] == 1 else f"{edges[i]}-{edges[i + 1] - 1}"
    )  # fmt: skip


def clean_text(text: str | bytes) -> str:
    """Valid UTF-8 text on one line: undecodable bytes and lone surrogates (what a
    terminal hands over for invalid input) become U+FFFD, control characters and
    whitespace runs one space."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = str(text).encode("utf-8", errors="replace").decode("utf-8")
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    return " ".join(text.split())


def observation_text(user_text: str, tracker: StateTracker | None) -> str:
    """What the agent reads before its turn: the user's words, the state line of
    ``tracker`` (None: no state line) and the agent cue."""
    lines = [f"{USER} {user_text}"]
    if tracker is not None:
        known = " ".join(tracker.known) or "none"
        booked = "yes" if tracker.booking is not None else "no"
        matches = match_bucket(tracker.matches())
        asks = " ".join(tracker.user_act.request) or "none"
        lines.append(f"{STATE} known {known} ; matches {matches} ; booked {booked} ; asks {asks}")
    return "\n".join(lines) + f"\n{AGENT}"


class TextDialogueEnv:
    """``reset`` returns the first observation (text ending in the ``agent:`` cue);
    ``step(text)`` returns ``(observation, reward, done, info)``. ``info`` holds
    DialogueEnv's keys (``success``, ``outcome``, ``goal``, ``turns``) and ``agent_turn``
    (an :class:`AgentTurn`); ``observation`` is "" once the dialogue is over."""

    def __init__(self, config: DialogueConfig | None = None, state_line: bool = True):
        config = config or DialogueConfig()
        self.env = DialogueEnv(replace(config, text_level=True))
        self.config, self.domain = self.env.config, self.env.domain
        self.nlu = AgentNLU(self.domain)
        self.state_line = state_line
        self.agent_turns: list[AgentTurn] = []

    @property
    def goals(self):
        return self.env.goals

    def reset(self, seed: int | None = None, goal: int | None = None) -> str:
        self.env.reset(seed=seed, options=None if goal is None else {"goal": goal})
        self.agent_turns = []
        return self.observation()

    def observation(self) -> str:
        """The user's last turn, the state line and the agent cue."""
        tracker = self.env.tracker if self.state_line else None
        return observation_text(self.env.turns[-1].text, tracker)

    def step(self, text: str | bytes):
        written = clean_text(text)
        act = self.nlu.parse(written)
        action = self.nlu.action(act)
        performed = Act(UNKNOWN) if action is None else self.env.tracker.act(action)
        spoken = written if action is None else None
        _, reward, done, _, info = self.env.play(performed, spoken)
        turn = AgentTurn(written, act, action, info["turns"][-2].text)
        self.agent_turns.append(turn)
        info["agent_turn"] = turn
        return ("" if done else self.observation()), reward, done, info

    def say(self, action: int, variant: int = 0) -> str:
        """The delexicalised words of agent action ``action``: what an agent that knows
        its action writes (the rule agent's turns, rendered for imitation)."""
        spec = self.domain.agent_actions[action]
        if spec.slot is None:
            act = Act(spec.intent)
        elif spec.intent == "request":
            act = Act("request", {}, (spec.slot,))
        else:
            act = Act("inform", {spec.slot: placeholder(spec.slot)})
        return self.env.nlg.agent(act, variant)

    def transcript(self) -> str:
        """The dialogue so far as text: each turn's words, and for the agent what it performed."""
        lines = []
        agent = iter(self.agent_turns)
        for turn in self.env.turns:
            if turn.speaker == "user":
                lines.append(f"{USER} {turn.text}")
            else:
                said = next(agent)
                lines.append(f"{AGENT} {said.written}")
                lines.append(f"       -> {said.act}  heard as: {said.spoken}")
        return "\n".join(lines)
