"""A rule NLU: user text -> dialogue act, by inverting the NLG templates, then keywords.

Each user template becomes a regular expression whose ``{value}`` matches the slot's
vocabulary (longest value first) and whose ``{slot}`` matches slot labels. Text no
template covers is then scanned for vocabulary values (those of at least four
characters that belong to one slot only), intent keywords ("thanks", "no", "bye"...)
and questions naming a slot label. The intent is ``request`` when anything was asked,
else the first act phrase found, else ``inform`` when a value was found, else
``unknown``. Any string parses; none raises.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from dqnlm.dialogue.acts import DONT_CARE, UNKNOWN, Act
from dqnlm.dialogue.nlg import user_templates
from dqnlm.dialogue.schema import Domain

MAX_CHARS = 2_000
"""Longer input is cut to this many characters before parsing."""
KEYWORDS = {
    "greeting": r"hello|hi|hey|good (?:morning|afternoon|evening)",
    "thanks": r"thanks|thank you|thx|cheers",
    "closing": r"bye|goodbye|see you",
    "deny": r"no|nope|wrong",
    "confirm_answer": r"yes|yeah|yep|correct",
    "not_sure": r"not sure|maybe|perhaps",
}
"""Intent keywords, tried only on text no template covers (acts the domain lacks are skipped)."""


def normalize(text: str) -> str:
    """Lower case, compatibility-normalised Unicode, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).lower().split())


def _alternation(options) -> str:
    return "|".join(re.escape(o) for o in sorted(set(options), key=lambda o: (-len(o), o)))


def _pattern(template: str, fields: dict[str, str]) -> re.Pattern:
    """A template as a regex: placeholders become named groups, end punctuation is optional."""
    core = normalize(template).rstrip(".!?")
    pieces = re.split(r"\{(\w+)\}", core)
    regex = ""
    for i, piece in enumerate(pieces):
        regex += f"(?P<{piece}>{fields[piece]})" if i % 2 else re.escape(piece)
    return re.compile(rf"(?<!\w){regex}(?!\w)[.!?]?")


class NLU:
    def __init__(self, domain: Domain):
        self.domain = domain
        templates = user_templates(domain)
        self._canonical = {
            s.name: {normalize(v): v for v in s.values} for s in domain.slots if s.values
        }
        labels = {normalize(s.label): s.name for s in domain.slots}
        labels.update({s.name: s.name for s in domain.slots})
        self._labels = labels
        self._informs = [
            (slot, _pattern(t, {"value": _alternation(self._canonical[slot])}))
            for slot, texts in templates["inform"].items()
            if slot in self._canonical
            for t in texts
        ]
        self._dont_care = [
            _pattern(t, {"slot": _alternation(labels)}) for t in templates["dont_care"]
        ]
        self._requests = [
            (slot, _pattern(t, {})) for slot, texts in templates["request"].items() for t in texts
        ]
        self._acts = [
            (act, _pattern(t, {})) for act, texts in templates["acts"].items() for t in texts
        ]
        owners: dict[str, set[str]] = {}
        for slot, values in self._canonical.items():
            for value in values:
                owners.setdefault(value, set()).add(slot)
        unique = {v: next(iter(s)) for v, s in owners.items() if len(s) == 1 and len(v) >= 4}
        self._value_owner = unique
        self._values = re.compile(rf"(?<!\w)(?:{_alternation(unique)})(?!\w)") if unique else None
        self._keywords = [
            (act, re.compile(rf"(?<!\w)(?:{words})(?!\w)"))
            for act, words in KEYWORDS.items()
            if act in domain.acts
        ]
        self._label_words = re.compile(rf"(?<!\w)(?:{_alternation(labels)})(?!\w)")

    def parse(self, text: str) -> Act:
        """The act a user text expresses; ``unknown`` when nothing in it is understood."""
        text = normalize(text)[:MAX_CHARS]
        covered = [False] * len(text)
        inform: dict[str, tuple[int, str]] = {}  # slot -> (position, value)
        requests: dict[str, int] = {}
        intents: list[tuple[int, str]] = []

        def claimed(pattern: re.Pattern) -> Iterator[re.Match]:
            """Matches over text no earlier template covered; each covers its text."""
            for m in pattern.finditer(text):
                if not any(covered[m.start() : m.end()]):
                    covered[m.start() : m.end()] = [True] * (m.end() - m.start())
                    yield m

        for pattern in self._dont_care:
            for m in claimed(pattern):
                inform.setdefault(self._labels[m.group("slot")], (m.start(), DONT_CARE))
        for slot, pattern in self._informs:
            for m in claimed(pattern):
                inform.setdefault(slot, (m.start(), self._canonical[slot][m.group("value")]))
        for slot, pattern in self._requests:
            for m in claimed(pattern):
                requests.setdefault(slot, m.start())
        for act, pattern in self._acts:
            intents += [(m.start(), act) for m in claimed(pattern)]

        rest = "".join(c if not done else " " for c, done in zip(text, covered))
        if self._values is not None:
            for m in self._values.finditer(rest):
                slot = self._value_owner[m.group()]
                inform.setdefault(slot, (m.start(), self._canonical[slot][m.group()]))
        if "?" in rest:
            for m in self._label_words.finditer(rest):
                slot = self._labels[m.group()]
                if self.domain.slot(slot).requestable:
                    requests.setdefault(slot, m.start())
        for act, pattern in self._keywords:
            intents += [(m.start(), act) for m in pattern.finditer(rest)]

        slots = {s: v for s, (_, v) in sorted(inform.items(), key=lambda item: item[1][0])}
        asked = tuple(sorted(requests, key=requests.get))
        if asked:
            intent = "request"
        elif intents:
            intent = min(intents)[1]
        else:
            intent = "inform" if slots else UNKNOWN
        return Act(intent, slots, asked)
