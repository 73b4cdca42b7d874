"""An agenda-based rule user simulator, after TC-Bot's ``usersim_rule`` (Li et al. 2017).

The user holds a goal (constraints, requests, the ticket) and an agenda: the
constraints it has not told yet and the requests not yet answered. Its rules:

* It opens with ``request``: one of its requested slots (the ticket when it asks
  nothing else), stating the ``first_turn_slots`` (the movie) and one other constraint.
* Asked for a constraint, it informs the goal's value; asked for a slot outside its
  goal, it informs ``dont care``; asked for a slot it wants to know itself, it
  requests it back and states all its untold constraints at once.
* Told a value, it records it as the answer to its request, or corrects the agent
  when the value contradicts a constraint; then it moves on: asks an open request,
  else tells an untold constraint, else asks for the ticket.
* Offered a booking (``inform(taskcomplete=T0042, moviename=..., ...)``), it accepts
  only when the ticket names a KB record, the booking states every one of the goal's
  constraints with the goal's value (TC-Bot's rule: a constraint the agent never
  confirmed counts as violated), and the record itself holds each KB constraint.
  Otherwise it ``deny``s, correcting any stated value that contradicts its goal, as
  it does for any other inform (a constraint the booking leaves out is not
  volunteered). "Nothing matches" offers state the agent's slots too. Once it accepts, it asks again any request whose answer
  differs from the booked record, and says ``thanks`` when nothing is open.
* The agent's ``thanks`` or ``closing`` ends the dialogue, and so does any
  utterance past ``max_turns`` (a failure). Other agent acts make it move on.

**Success**: when the dialogue ends, a booking is accepted (it states every goal
constraint with the goal's value, and its KB record satisfies each) and, for every
slot the goal requests besides the ticket, the agent's last answer equals the
booked record's value; all within ``max_turns`` utterances (both sides, the
opening included).

Noise, as TC-Bot's: each stated slot value is swapped for another value of its
vocabulary with probability ``slot_error_rate``, and the intent for another act
with probability ``intent_error_rate``. Noise changes only what the agent hears.
"""

from __future__ import annotations

import numpy as np

from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, Act
from dqnlm.dialogue.kb import Goal, KnowledgeBase
from dqnlm.dialogue.schema import Domain
from dqnlm.errors import DQNLMError


class UserSimulator:
    def __init__(
        self,
        domain: Domain,
        kb: KnowledgeBase,
        max_turns: int = 40,
        slot_error_rate: float = 0.0,
        intent_error_rate: float = 0.0,
    ):
        self.domain, self.kb, self.max_turns = domain, kb, max_turns
        self.slot_error_rate, self.intent_error_rate = slot_error_rate, intent_error_rate
        self.outcome: str | None = None

    # ------------------------------------------------------------------------- episode
    def reset(self, goal: Goal, rng: np.random.Generator) -> Act:
        """Start a dialogue on ``goal``; returns the user's opening act (as the agent hears it)."""
        self.goal, self.rng = goal, rng
        self.turn = 1
        self.outcome = None
        self.booking: str | None = None  # the accepted ticket
        self.answers: dict[str, str] = {}  # requested slot -> what the agent said
        self.wants = [s for s in goal.requests if s != self.domain.ticket_slot]
        self.unanswered = list(self.wants)
        said = {
            s: goal.constraints[s] for s in self.domain.first_turn_slots if s in goal.constraints
        }
        rest = [s for s in goal.constraints if s not in said]
        if rest:
            extra = self._pick(rest)
            said[extra] = goal.constraints[extra]
        self.untold = [s for s in goal.constraints if s not in said]
        asked = self._pick(self.wants) if self.wants else self.domain.ticket_slot
        opening = {s: v for s, v in goal.constraints.items() if s in said}
        return self._noisy(Act("request", opening, (asked,)))

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def step(self, agent: Act) -> Act:
        """The user's reply to the agent's act; sets ``outcome`` when the dialogue ends."""
        if self.done:
            raise DQNLMError("the dialogue is over; call reset() first")
        self.turn += 1  # the agent's utterance
        if self.turn > self.max_turns:
            return self._end(False)
        if agent.intent in ("thanks", "closing"):
            return self._end(self.booking is not None and not self.unanswered)
        self.turn += 1  # the user's reply
        if self.turn > self.max_turns:
            return self._end(False)
        if agent.intent == "request" and agent.request:
            reply = self._answer(agent.request[0])
        elif agent.intent == "inform" and self.domain.booking_slot in agent.inform:
            reply = self._judge_booking(agent.inform)
        elif agent.intent == "inform":
            reply = self._hear(agent.inform)
        else:
            reply = self._move_on()
        return self._noisy(reply)

    def _end(self, success: bool) -> Act:
        self.outcome = "success" if success else "failure"
        return Act("thanks" if success else "closing")

    # ------------------------------------------------------------------------- rules
    def _answer(self, slot: str) -> Act:
        constraints = self.goal.constraints
        if slot in constraints:
            self._told(slot)
            return Act("inform", {slot: constraints[slot]})
        if slot in self.unanswered:  # the agent asks what the user wants to know
            told = {s: constraints[s] for s in self.untold}
            self.untold.clear()
            return Act("request", told, (slot,))
        if slot in self.answers:
            return Act("inform", {slot: self.answers[slot]})
        return Act("inform", {slot: DONT_CARE})

    def _hear(self, inform: dict[str, str]) -> Act:
        booked = self.kb.record(self.booking) if self.booking else None
        for slot, value in inform.items():
            if slot in self.wants and value != NO_MATCH:
                self.answers[slot] = value
                self._reopen(slot, booked)
            self._told(slot)
        correction = self._corrections(inform)
        return Act("inform", correction) if correction else self._move_on()

    def _corrections(self, inform: dict[str, str]) -> dict[str, str]:
        """The goal's value for every stated slot that contradicts a constraint."""
        fixes = {}
        for slot, value in inform.items():
            wanted = self.goal.constraints.get(slot)
            if wanted is not None and value != wanted:
                self._told(slot)
                fixes[slot] = wanted
        return fixes

    def _judge_booking(self, inform: dict[str, str]) -> Act:
        record = self.kb.record(inform[self.domain.booking_slot])
        fits = record is not None and all(
            inform.get(slot) == value and record.get(slot, value) == value
            for slot, value in self.goal.constraints.items()
        )
        if not fits:
            self.booking = None
            return Act("deny", self._corrections(inform))
        self.booking = inform[self.domain.booking_slot]
        for slot in self.answers:
            self._reopen(slot, record)
        return self._move_on()

    def _move_on(self) -> Act:
        if self.booking is not None and not self.unanswered:
            return Act("thanks")
        if self.unanswered:
            return Act("request", {}, (self._pick(self.unanswered),))
        if self.untold:
            slot = self._pick(self.untold)
            self._told(slot)
            return Act("inform", {slot: self.goal.constraints[slot]})
        return Act("request", {}, (self.domain.ticket_slot,))

    def _reopen(self, slot: str, booked: dict[str, str] | None) -> None:
        """A request is answered while the answer agrees with the booked record, if any."""
        agrees = booked is None or booked[slot] == self.answers[slot]
        if agrees and slot in self.unanswered:
            self.unanswered.remove(slot)
        elif not agrees and slot not in self.unanswered:
            self.unanswered = [s for s in self.wants if s in self.unanswered or s == slot]

    def _told(self, slot: str) -> None:
        if slot in self.untold:
            self.untold.remove(slot)

    def _pick(self, items: list[str]) -> str:
        return items[int(self.rng.integers(len(items)))]

    # ------------------------------------------------------------------------- noise
    def _noisy(self, act: Act) -> Act:
        inform = dict(act.inform)
        if self.slot_error_rate > 0:
            for slot, value in inform.items():
                others = [v for v in self.domain.slot(slot).values if v != value]
                if others and self.rng.random() < self.slot_error_rate:
                    inform[slot] = self._pick(others)
        intent = act.intent
        if self.intent_error_rate > 0 and self.rng.random() < self.intent_error_rate:
            intent = self._pick([a for a in self.domain.acts if a != act.intent])
        return Act(intent, inform, act.request)
