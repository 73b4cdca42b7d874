"""The dialogue state tracker: turns agent action indices into filled acts, and the
dialogue so far into a fixed-size state vector for a Q-network.

The tracker knows what the user stated (``known``: constraint slot -> value, ``dont
care`` included), what the agent has told, and the standing booking. An agent
``inform(slot)`` takes its value from the booked record when a booking stands, else
from the first KB record matching what was agreed, the user's statements over the
agent's (``no match`` when none does); ``inform(taskcomplete)`` proposes that
record's ticket and states every agreed slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, Act
from dqnlm.dialogue.kb import KnowledgeBase
from dqnlm.dialogue.schema import Domain

MATCH_BUCKETS = (0, 1, 2, 6, 21, 101)
"""Lower edges of the buckets for the number of records matching the known constraints."""


class StateTracker:
    def __init__(self, domain: Domain, kb: KnowledgeBase, max_turns: int):
        self.domain, self.kb, self.max_turns = domain, kb, max_turns
        self.actions = domain.agent_actions
        self._slot = {s: i for i, s in enumerate(domain.slot_names)}
        self._act = {a: i for i, a in enumerate(domain.acts)}
        self._slot_masks = {  # records matching each (slot, value) alone
            (s, v): kb.mask({s: v})
            for s in domain.informable
            if s in kb.slots
            for v in domain.slot(s).values
        }
        n_acts, n_slots = len(domain.acts) + 1, len(domain.slot_names)
        self._turn_slots = max_turns // 2 + 1
        self.dim = 2 * n_acts + 7 * n_slots + 1 + len(MATCH_BUCKETS) + 1 + self._turn_slots + 1
        known = 2 * (n_acts + 2 * n_slots)  # state layout: see state()
        no_match = 2 * n_acts + 7 * n_slots + 1  # the "0 matching records" bucket
        self.mask = ActionMask(
            np.array(
                [known + self._slot[a.slot] if a.intent == "request" else -1 for a in self.actions]
            ),
            np.array([self._act["deny"], no_match]),
        )
        """The action mask, read off state vectors (see :class:`ActionMask`)."""

    def reset(self, opening: Act) -> None:
        """Start a dialogue from the user's opening act."""
        self.known: dict[str, str] = {}
        self.told: dict[str, str] = {}
        self.booking: str | None = None
        self.agent_act: Act | None = None
        self.turn = 0
        self.observe_user(opening)

    # ------------------------------------------------------------------------- acts
    def act(self, index: int) -> Act:
        """The agent's action ``index`` as a concrete act, values filled from the KB."""
        action = self.actions[index]
        slot = action.slot
        if slot is None:
            return Act(action.intent)
        if action.intent == "request":
            return Act("request", {}, (slot,))
        first = self._first_match()
        if slot == self.domain.booking_slot:
            agreed = {s: v for s, v in self._agreed().items() if v != DONT_CARE}
            if first is None:  # "nothing matches X, Y": the user may correct a misheard value
                return Act("inform", {slot: NO_MATCH, **agreed})
            record = self.kb.records[first]
            details = {s: record.get(s, v) for s, v in agreed.items()}
            return Act("inform", {slot: self.kb.ticket(first), **details})
        record = self.kb.record(self.booking) if self.booking else None
        if record is None and first is not None:
            record = self.kb.records[first]
        return Act("inform", {slot: record[slot] if record else NO_MATCH})

    def _agreed(self) -> dict[str, str]:
        """The constraints both sides stand by: what the agent told of the informable slots
        (the user let it pass), overridden by what the user stated (as in TC-Bot, the
        agent's informs join the dialogue's slots and the booking states them all)."""
        told = {s: v for s, v in self.told.items() if self.domain.slot(s).informable}
        return {**told, **self.known}

    def _first_match(self) -> int | None:
        """The first record fitting everything agreed, else the user's own constraints."""
        first = self.kb.first_match(self._agreed())
        return first if first is not None else self.kb.first_match(self.known)

    def observe_agent(self, act: Act) -> None:
        self.agent_act = act
        self.turn += 1
        for slot, value in act.inform.items():
            if slot == self.domain.booking_slot:
                self.booking = None if value == NO_MATCH else value
            elif value != NO_MATCH:
                self.told[slot] = value

    def observe_user(self, act: Act) -> None:
        self.user_act = act
        self.turn += 1
        for slot, value in act.inform.items():
            if slot in self._slot and self.domain.slot(slot).informable:
                self.known[slot] = value
        if act.intent == "deny":
            self.booking = None

    def matches(self) -> int:
        """How many KB records satisfy the known constraints."""
        return int(self.kb.mask(self.known).sum())

    def action_mask(self) -> np.ndarray:
        """Which actions make sense now (bool per action); see :class:`ActionMask`."""
        return ~self.mask.invalid(self.state()[None])[0]

    # ------------------------------------------------------------------------- state
    def state(self) -> np.ndarray:
        """The state vector, every entry in [0, 1]:
        user intent (one-hot, last entry: none/unknown), user informed and requested slots,
        agent intent, agent informed and requested slots, slots the user has stated, slots
        the agent has told, a booking stands, for each informable KB slot the fraction of
        records matching its stated value alone, the number of records matching all
        stated constraints (bucket one-hot and log-scaled), the agent turn (one-hot) and
        the utterance count / max_turns."""
        n_kb = len(self.kb)
        matches = self.matches()
        per_slot = np.zeros(len(self._slot))
        for slot, value in self.known.items():
            mask = self._slot_masks.get((slot, value))
            if mask is not None:
                per_slot[self._slot[slot]] = mask.mean()
        bucket = np.zeros(len(MATCH_BUCKETS))
        bucket[np.searchsorted(MATCH_BUCKETS, matches, side="right") - 1] = 1.0
        turn = np.zeros(self._turn_slots)
        turn[min(self.turn // 2, self._turn_slots - 1)] = 1.0
        parts = [
            *self._act_features(self.user_act),
            *self._act_features(self.agent_act),
            self._slots(self.known),
            self._slots(self.told),
            [float(self.booking is not None)],
            per_slot,
            bucket,
            [np.log1p(matches) / np.log1p(n_kb)],
            turn,
            [min(self.turn / self.max_turns, 1.0)],
        ]
        return np.concatenate(parts).astype(np.float32)

    def _act_features(self, act: Act | None) -> list[np.ndarray]:
        intent = np.zeros(len(self._act) + 1)
        intent[self._act.get(act.intent, len(self._act)) if act else len(self._act)] = 1.0
        if act is None:
            return [intent, self._slots(()), self._slots(())]
        return [intent, self._slots(act.inform), self._slots(act.request)]

    def _slots(self, slots) -> np.ndarray:
        hot = np.zeros(len(self._slot))
        hot[[self._slot[s] for s in slots if s in self._slot]] = 1.0
        return hot


@dataclass(frozen=True)
class ActionMask:
    """Rules out asking for a slot the user has already stated, unless something went
    wrong: the user just denied a booking, or no record fits what it stated. Then
    re-asking is how a misheard value (simulator noise) gets repaired.

    The mask is read off state vectors alone, so replayed next states carry their own
    masks; :meth:`invalid` works on numpy arrays and torch tensors alike."""

    features: np.ndarray
    """For each action, the state entry that rules it out when set (-1: never)."""
    unlock: np.ndarray
    """State entries any of which lifts every rule (user intent deny, zero matches)."""

    def invalid(self, states):
        """Ruled-out actions per state: a bool batch x actions array (or tensor)."""
        features, unlock = self.features, self.unlock
        if not isinstance(states, np.ndarray):
            import torch

            # on the states' device: indexing a CUDA tensor with CPU indices fails
            features = torch.as_tensor(features, device=states.device)
            unlock = torch.as_tensor(unlock, device=states.device)
        ruled = (states[:, features.clip(min=0)] > 0.5) & (features >= 0)
        lifted = states[:, unlock].sum(1) > 0.5
        return ruled & ~lifted[:, None]
