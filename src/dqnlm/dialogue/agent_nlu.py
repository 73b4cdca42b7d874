"""The agent-side NLU: agent text -> dialogue act, by inverting the agent's NLG templates.

A language-model agent writes its turns as words; this reads them back into the act the
user simulator answers. It mirrors :class:`dqnlm.dialogue.nlu.NLU` (the user side): each
agent template becomes a regular expression, matched over text no earlier template
covered. A ``{value}`` matches the slot's vocabulary, its placeholder ``<slot>`` (the
agent may write delexicalised text and leave the value to its database, as SimpleTOD and
UBAR do), and for the booking slot any ticket id. Any string parses and none raises;
text no template covers is ``unknown``.

:meth:`AgentNLU.action` maps a parsed act onto the domain's agent action space (one act
per turn, the first one said): that is all a turn can do, since the tracker fills an
inform's value from the knowledge base, as it does for the act-level DQN.
"""

from __future__ import annotations

import re

from dqnlm.dialogue.acts import NO_MATCH, UNKNOWN, Act
from dqnlm.dialogue.nlg import agent_templates
from dqnlm.dialogue.nlu import MAX_CHARS, _alternation, _pattern, normalize
from dqnlm.dialogue.schema import Domain

TICKET = r"t\d{1,9}"
"""A ticket id after normalisation (``T0042`` -> ``t0042``); the simulator checks it names a record."""


def placeholder(slot: str) -> str:
    """The delexicalised value of ``slot`` an agent may write, e.g. ``<theater>``."""
    return f"<{slot}>"


class AgentNLU:
    def __init__(self, domain: Domain):
        self.domain = domain
        templates = agent_templates(domain)
        booking = domain.booking_slot
        self._canonical: dict[str, dict[str, str]] = {}
        for slot in domain.slots:
            values = {normalize(v): v for v in slot.values}
            values[normalize(placeholder(slot.name))] = placeholder(slot.name)
            self._canonical[slot.name] = values
        value_regex = {s: _alternation(v) for s, v in self._canonical.items()}
        value_regex[booking] = f"{TICKET}|{value_regex[booking]}"
        # (kind, slot, template, its value regex); kinds: booking, no_match, inform,
        # no_match_slot, request, act
        specs: list[tuple[str, str | None, str, str | None]] = []
        specs += [("booking", booking, t, value_regex[booking]) for t in templates["booking"]]
        specs += [("no_match", booking, t, None) for t in templates["no_match"]]
        for slot, texts in templates["inform"].items():
            specs += [("inform", slot, t, value_regex[slot]) for t in texts]
        for slot in domain.slot_names:  # NLG's text for inform(slot=no match)
            label = domain.slot(slot).label.replace("{", "{{").replace("}", "}}")
            specs.append(("no_match_slot", slot, f"Sorry, I found no {label} for that.", None))
        for slot, texts in templates["request"].items():
            specs += [("request", slot, t, None) for t in texts]
        for act, texts in templates["acts"].items():
            specs += [("act", act, t, None) for t in texts]
        # longer templates first: "It is in the {value} price range." claims its text
        # before "It is in {value}." can
        specs.sort(key=lambda spec: -len(spec[2]))
        self._rules = [
            (kind, slot, _pattern(text, {} if regex is None else {"value": regex}))
            for kind, slot, text, regex in specs
        ]
        # a booking's details: "(Movie name: zootopia, City: seattle)"
        self._details = [
            (s.name, re.compile(rf"(?<!\w){re.escape(normalize(s.label))}: (?P<value>{value_regex[s.name]})(?!\w)"))
            for s in domain.slots
            if s.name != booking
        ]  # fmt: skip
        self._slot_of = {normalize(s): s for s in domain.slot_names}
        self._placeholders = re.compile(rf"<(?P<slot>{_alternation(self._slot_of)})>")
        actions = domain.agent_actions
        self._index = {(a.intent, a.slot): i for i, a in enumerate(actions)}

    def parse(self, text: str) -> Act:
        """The act an agent text expresses (``unknown`` when no template covers any of it)."""
        text = normalize(text)[:MAX_CHARS]
        covered = [False] * len(text)
        found: list[tuple[int, str, str | None, str | None]] = []  # position, kind, slot, value
        for kind, slot, pattern in self._rules:
            for m in pattern.finditer(text):
                if any(covered[m.start() : m.end()]):
                    continue
                covered[m.start() : m.end()] = [True] * (m.end() - m.start())
                value = m.groupdict().get("value")
                found.append((m.start(), kind, slot, value))
        # a placeholder no template covered still names the slot it informs
        # ("The distance is <zip>." informs zip): delexicalised text says its act that way
        rest = "".join(" " if done else c for c, done in zip(text, covered))
        for m in self._placeholders.finditer(rest):
            slot = self._slot_of[m.group("slot")]
            found.append((m.start(), "inform", slot, placeholder(slot)))
        if not found:
            return Act(UNKNOWN)
        found.sort(key=lambda f: f[0])
        booking = self.domain.booking_slot
        inform: dict[str, str] = {}
        request: list[str] = []
        intent = None
        for _, kind, slot, value in found:
            if kind == "act":
                intent = intent or slot
            elif kind == "request":
                intent = intent or "request"
                if slot not in request:
                    request.append(slot)
            else:
                intent = intent or "inform"
                if kind == "booking":
                    inform.setdefault(slot, self._value(slot, value))
                elif kind == "no_match":
                    inform.setdefault(booking, NO_MATCH)
                elif kind == "no_match_slot":
                    inform.setdefault(slot, NO_MATCH)
                else:
                    inform.setdefault(slot, self._value(slot, value))
        if booking in inform:
            rest = "".join(" " if done else c for c, done in zip(text, covered))
            for slot, pattern in self._details:
                m = pattern.search(rest)
                if m:
                    inform.setdefault(slot, self._value(slot, m.group("value")))
        return Act(intent, inform, tuple(request))

    def _value(self, slot: str, value: str) -> str:
        known = self._canonical[slot].get(value)
        if known is not None:
            return known
        return value.upper() if slot == self.domain.booking_slot else value  # a ticket id

    def action(self, act: Act) -> int | None:
        """The agent action an act performs: the first thing it says that the agent's
        action space holds; None when it holds nothing usable (``unknown``, a request for
        a slot the agent may not ask about, an inform of the ticket itself...)."""
        booking = self.domain.booking_slot
        if act.intent == "inform":
            if booking in act.inform:
                return self._index[("inform", booking)]
            for slot in act.inform:
                if ("inform", slot) in self._index:
                    return self._index[("inform", slot)]
            return None
        if act.intent == "request":
            for slot in act.request:
                if ("request", slot) in self._index:
                    return self._index[("request", slot)]
            return None
        return self._index.get((act.intent, None))
