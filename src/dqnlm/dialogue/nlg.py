"""Template NLG: dialogue acts -> English, for the user and the agent.

Templates come from the domain file; any slot or act without one gets generic text
("The {label} should be {value}."), so every act of every domain can be spoken. The
``variant`` argument picks among a slot's templates (modulo their number), which keeps
generation deterministic without touching any random stream.
"""

from __future__ import annotations

from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, Act
from dqnlm.dialogue.schema import Domain

SLOT_ACTS = ("request", "inform")
"""Acts spoken through their slots rather than a template of their own."""


def _label(domain: Domain, slot: str) -> str:
    return domain.slot(slot).label.replace("{", "{{").replace("}", "}}")


def _act_templates(domain: Domain, given: dict) -> dict[str, list[str]]:
    """A side's templates of the acts spoken without a slot; generic text fills the gaps."""
    acts = given.get("acts", {})
    generic = {a: a.replace("_", " ").capitalize() + "." for a in domain.acts}
    return {a: acts.get(a) or [generic[a]] for a in domain.acts if a not in SLOT_ACTS}


def user_templates(domain: Domain) -> dict:
    """Every user template, generic ones filling the gaps, for every slot (the NLU inverts them)."""
    given = domain.templates.get("user", {})
    inform, request = given.get("inform", {}), given.get("request", {})
    return {
        "inform": {
            s: inform.get(s) or [f"The {_label(domain, s)} should be {{value}}."]
            for s in domain.slot_names
        },
        "request": {
            s: request.get(s) or [f"What is the {_label(domain, s)}?"] for s in domain.slot_names
        },
        "dont_care": given.get("dont_care") or ["I do not care about the {slot}."],
        "acts": _act_templates(domain, given),
    }


def agent_templates(domain: Domain) -> dict:
    """Every agent template, generic ones filling the gaps, for every slot."""
    given = domain.templates.get("agent", {})
    request, inform = given.get("request", {}), given.get("inform", {})
    return {
        "request": {
            s: request.get(s) or [f"What {_label(domain, s)} would you like?"]
            for s in domain.slot_names
        },
        "inform": {
            s: inform.get(s) or [f"The {_label(domain, s)} is {{value}}."]
            for s in domain.slot_names
        },
        "booking": given.get("booking") or ["You are booked; your ticket is {value}."],
        "no_match": given.get("no_match") or ["Sorry, nothing matches your request."],
        "acts": _act_templates(domain, given),
    }


def _pick(options: list[str], variant: int) -> str:
    return options[variant % len(options)]


class NLG:
    def __init__(self, domain: Domain):
        self.domain = domain
        self.user_templates = user_templates(domain)
        self.agent_templates = agent_templates(domain)

    def user(self, act: Act, variant: int = 0) -> str:
        """The user's act as text: its act phrase, then its slot values, then its questions."""
        t = self.user_templates
        parts = (
            [] if act.intent in SLOT_ACTS else [_pick(t["acts"].get(act.intent, ["..."]), variant)]
        )
        for slot, value in act.inform.items():
            if value == DONT_CARE:
                parts.append(
                    _pick(t["dont_care"], variant).format(slot=self.domain.slot(slot).label)
                )
            else:
                parts.append(_pick(t["inform"][slot], variant).format(value=value))
        parts += [_pick(t["request"][slot], variant) for slot in act.request]
        return " ".join(parts) or "Okay."

    def agent(self, act: Act, variant: int = 0) -> str:
        """The agent's act as text; a booking lists the details it states."""
        t = self.agent_templates
        booking = act.inform.get(self.domain.booking_slot)
        if booking is not None:
            details = [
                f"{self.domain.slot(s).label}: {v}"
                for s, v in act.inform.items()
                if s != self.domain.booking_slot
            ]
            key = "no_match" if booking == NO_MATCH else "booking"
            text = _pick(t[key], variant).format(value=booking)
            return f"{text} ({', '.join(details)})" if details else text
        parts = (
            [] if act.intent in SLOT_ACTS else [_pick(t["acts"].get(act.intent, ["..."]), variant)]
        )
        for slot, value in act.inform.items():
            if value == NO_MATCH:
                parts.append(f"Sorry, I found no {self.domain.slot(slot).label} for that.")
            else:
                parts.append(_pick(t["inform"][slot], variant).format(value=value))
        parts += [_pick(t["request"][slot], variant) for slot in act.request]
        return " ".join(parts) or "Okay."
