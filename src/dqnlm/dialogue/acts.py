"""Dialogue acts: an intent with informed slot values and requested slots (as in TC-Bot)."""

from __future__ import annotations

from dataclasses import dataclass, field

DONT_CARE = "dont care"
"""The value a user informs for a slot outside its goal ("I do not care")."""
NO_MATCH = "no match"
"""The value the agent informs when no knowledge-base record fits the known constraints."""
UNKNOWN = "unknown"
"""The intent the NLU gives a text it cannot read."""


@dataclass(frozen=True)
class Act:
    """One utterance in act form: ``inform(theater=the rialto)``, ``request(starttime)``..."""

    intent: str
    """The dialogue act, one of the domain's acts (or ``unknown`` from the NLU)."""
    inform: dict[str, str] = field(default_factory=dict)
    """Slot -> value pairs the speaker states."""
    request: tuple[str, ...] = ()
    """Slots the speaker asks for."""

    def __str__(self) -> str:
        parts = [f"{slot}={value}" for slot, value in self.inform.items()] + list(self.request)
        return f"{self.intent}({', '.join(parts)})"
