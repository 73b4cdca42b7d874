"""A person talking to a dialogue agent: one conversation, shared by the terminal
(`dqnlm dialogue chat`) and the web page (`dqnlm dialogue serve`).

Each typed line goes through the NLU (with the slot the agent just asked for as
context); the session says what it understood, the tracker takes it (a later value of a
slot replaces the earlier one, which is how people correct it), and the agent answers.
For a DQN policy every turn also carries the Q-value of every action, the masked ones
marked, so a person can see why the agent said what it said.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np

from dqnlm.dialogue.acts import DONT_CARE, UNKNOWN, Act
from dqnlm.dialogue.kb import Goal, World
from dqnlm.dialogue.nlg import NLG
from dqnlm.dialogue.nlu import MAX_CHARS, NLU
from dqnlm.dialogue.schema import Domain
from dqnlm.dialogue.text_env import clean_text
from dqnlm.dialogue.tracker import StateTracker

REPROMPT = "Sorry, I did not understand that."
"""The start of every answer to a line the NLU cannot read."""


def value_text(domain: Domain, slot: str, value: str) -> str:
    """How a person reads one slot value: "3 people", "start time 7:30 pm", "any city"."""
    label = domain.slot(slot).label
    if value == DONT_CARE:
        return f"any {label}"
    if label.startswith("number of "):
        return f"{value} {label.removeprefix('number of ')}"
    return f"{label} {value}"


def describe(domain: Domain, act: Act) -> str:
    """What the NLU understood, in words: "3 people, start time 7:30 pm; you asked
    about: price"; values no record can have are flagged."""
    parts = []
    for slot, value in act.inform.items():
        text = value_text(domain, slot, value)
        known = domain.slot(slot).values
        if value != DONT_CARE and known and value not in known:
            text += " (not on offer)"
        parts.append(text)
    said = ", ".join(parts)
    if act.request:
        labels = ", ".join(domain.slot(s).label for s in act.request)
        said += ("; " if said else "") + f"you asked about: {labels}"
    if act.intent not in ("inform", "request", UNKNOWN):
        said += ("; " if said else "") + f"({act.intent.replace('_', ' ')})"
    return said or "nothing"


def _foreign(text: str) -> bool:
    """Mostly letters outside Latin script: another language, most likely."""
    letters = [c for c in text if c.isalpha()]
    latin = [c for c in letters if "LATIN" in unicodedata.name(c, "")]
    return len(letters) >= 2 and len(latin) * 2 < len(letters)


@dataclass
class Reply:
    """The answer to one typed line."""

    agent: str
    """What the agent says."""
    understood: str = ""
    """What the NLU read ("" when the line was not understood)."""
    changed: list[str] = field(default_factory=list)
    """Values the line replaced ("number of people 3 -> 4")."""
    note: str = ""
    """A remark about the input itself (cut to length)."""
    action: str | None = None
    """The agent's action ("request(starttime)"); None when no turn was taken."""
    q_values: list[dict] | None = None
    """Per action: ``action``, ``q`` (None when masked), ``allowed``, ``chosen``; None for
    an agent without Q-values (the rule agent)."""
    done: bool = False
    """The conversation is over."""
    ending: str = ""
    """Why it ended."""


class ChatSession:
    """One conversation between a person and an agent (``RuleAgent`` or ``QPolicy``)."""

    def __init__(self, domain: Domain, world: World, agent, max_turns: int, goal: Goal):
        self.domain, self.agent, self.goal, self.max_turns = domain, agent, goal, max_turns
        self.nlu, self.nlg = NLU(domain), NLG(domain)
        self.tracker = StateTracker(domain, world.kb, max_turns)
        self.started = self.done = False
        self._variant = 0

    def opening_hint(self) -> str:
        """A way to start, drawn from the goal: "I want to see paper comets. 2 tickets, please."."""
        first = dict(list(self.goal.constraints.items())[:2])
        return self.nlg.user(Act("inform", first), self._variant)

    def say(self, text: str | bytes) -> Reply:
        """The agent's answer to one line a person typed; anything typed gets one."""
        if self.done:
            return Reply("This conversation is over; start a new one.", done=True)
        text = clean_text(text)
        note = ""
        if len(text) > MAX_CHARS:
            note = f"I read only the first {MAX_CHARS:,} of its {len(text):,} characters."
            text = text[:MAX_CHARS]
        agent_act = self.tracker.agent_act if self.started else None
        asked = agent_act.request[0] if agent_act and agent_act.request else None
        act = self.nlu.parse(text, asked=asked)
        if act.intent == UNKNOWN and not act.inform and not act.request:
            if not text:
                hint = "I did not get any text."
            elif _foreign(text):
                hint = "I only understand English, I am afraid."
            else:
                hint = "Tell me what you want in your own words."
            return Reply(f"{REPROMPT} {hint} For example: {self.opening_hint()}", note=note)
        if act.intent == "deny" and act.inform and not (self.started and self.tracker.booking):
            # a correction before any booking was proposed: new values, not a rejected booking
            act = Act("inform", act.inform)
        before = dict(self.tracker.known) if self.started else {}
        if self.started:
            self.tracker.observe_user(act)
        else:
            self.tracker.reset(act)
            self.agent.reset()
            self.started = True
        changed = [
            f"{value_text(self.domain, s, old)} -> {value_text(self.domain, s, self.tracker.known[s])}"
            for s, old in before.items()
            if self.tracker.known.get(s, old) != old
        ]
        state = self.tracker.state()
        q_values = self._q_table(state)
        index = self.agent.act(state, self.tracker)
        performed = self.tracker.act(index)
        self._variant += 1
        said = self.nlg.agent(performed, self._variant)
        self.tracker.observe_agent(performed)
        reply = Reply(
            said,
            understood=describe(self.domain, act),
            changed=changed,
            note=note,
            action=str(self.domain.agent_actions[index]),
            q_values=None if q_values is None else self._mark(q_values, index),
        )
        if performed.intent in ("thanks", "closing"):
            reply.done, reply.ending = True, "the agent ended the dialogue"
        elif self.tracker.turn >= self.max_turns - 1:
            reply.done, reply.ending = (
                True,
                f"the dialogue reached its {self.max_turns}-utterance limit",
            )
        self.done = reply.done
        return reply

    def _q_table(self, state: np.ndarray) -> list[tuple[str, float | None]] | None:
        q_values = getattr(self.agent, "q_values", None)
        if q_values is None:
            return None
        q = q_values(state).numpy()
        return [
            (str(action), float(v) if np.isfinite(v) else None)
            for action, v in zip(self.domain.agent_actions, q)
        ]

    @staticmethod
    def _mark(table, chosen: int) -> list[dict]:
        return [
            {"action": a, "q": q, "allowed": q is not None, "chosen": i == chosen}
            for i, (a, q) in enumerate(table)
        ]

    # ----------------------------------------------------------------- what a page shows
    def goal_status(self) -> list[dict]:
        """Each goal item and where it stands: ``stated`` (the agent has it right),
        ``wrong`` (it has another value), ``todo``; requests ``told`` or ``todo``."""
        known = self.tracker.known if self.started else {}
        told = self.tracker.told if self.started else {}
        items = []
        for slot, value in self.goal.constraints.items():
            status = "todo" if slot not in known else "stated" if known[slot] == value else "wrong"
            items.append({"item": value_text(self.domain, slot, value), "status": status})
        for slot in self.goal.requests:
            booked = self.started and self.tracker.booking is not None
            done = slot in told or (slot == self.domain.ticket_slot and booked)
            items.append(
                {
                    "item": f"ask: {self.domain.slot(slot).label}",
                    "status": "told" if done else "todo",
                }
            )
        return items

    def state_summary(self) -> dict:
        """What the agent knows: the user's constraints, what it told, records matching,
        the booking, and the turn."""
        started = self.started
        return {
            "known": {
                self.domain.slot(s).label: v
                for s, v in (self.tracker.known if started else {}).items()
            },
            "told": {
                self.domain.slot(s).label: v
                for s, v in (self.tracker.told if started else {}).items()
            },
            "matches": self.tracker.matches() if started else len(self.tracker.kb),
            "records": len(self.tracker.kb),
            "booking": self.tracker.booking if started else None,
            "turn": self.tracker.turn if started else 0,
            "max_turns": self.max_turns,
        }
