"""The user NLU: what a person (or the simulator) typed -> one dialogue act.

Passes over the text, each claiming what it reads so later passes see only the rest:

1. the NLG templates inverted into regular expressions: the simulator's own text parses
   exactly (values with ``{value}``, slot labels with ``{slot}``);
2. the vocabulary, written a little differently: without an article, with numbers as
   words, and the schema's ``value_aliases`` ("sci-fi"); one-letter values and bare
   numbers ("r", "7") only next to a name of their slot (before times: "midnight at
   marrow lane" is a film);
3. typos and partial names: words within :data:`FUZZY_CUTOFF` of a vocabulary word, two
   thirds of a long name ("glass orchestra"), one rare word of a name ("westfield");
4. clock times ("7:30pm", "half past seven", "the 9 oclock show") mapped to the nearest
   value of the domain's time slot (within :data:`TIME_TOLERANCE`, else the time itself,
   which no record matches);
5. days ("tonight", "tmrw", "fri", "this weekend") for slots whose values are days;
6. how many people ("a party of four", "just me", "me and my wife", "2 adults 3 kids");
7. clause by clause: questions naming a slot (its label, key or ``aliases``) request it,
   asking to be booked requests the ticket slot, indifference naming a slot informs
   ``dont care``;
8. the acts without slots, by their cue words (``language.ACT_CUES``).

The intent follows the precedence in docs/nlu-annotation.md: request, deny, thanks,
closing, inform, then the rest. Any string parses; none raises.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from dqnlm.dialogue import language
from dqnlm.dialogue.acts import DONT_CARE, UNKNOWN, Act
from dqnlm.dialogue.language import normalize
from dqnlm.dialogue.nlg import agent_templates, user_templates
from dqnlm.dialogue.schema import Domain

__all__ = ["NLU", "MAX_CHARS", "normalize"]

MAX_CHARS = 2_000
"""Longer input is cut to this many characters before parsing."""
TIME_TOLERANCE = 30
"""Minutes a typed time may be from a vocabulary time and still mean it."""
FUZZY_CUTOFF = 0.8
"""difflib similarity at which a typed word counts as a misspelt vocabulary word."""
PRECEDENCE = ("deny", "thanks", "closing")
"""Acts that outrank a plain inform (after request); see docs/nlu-annotation.md."""
_MASK = "\x00"  # stands in for claimed text: no pattern reads it as a word
_TOKEN = re.compile(r"[a-z0-9][a-z0-9\-.$]*[a-z0-9$]|[a-z0-9]")
_ARTICLE = re.compile(r"^(?:the|a|an) ")
_NUMERIC = re.compile(rf"\$?\d{{1,2}}(?:\.\d)?|{language.NUMBER}")
_ENGLISH = frozenset([
    "am", "an", "as", "at", "be", "by", "do", "go", "he", "hi", "if", "in", "is", "it", "me",
    "my", "no", "of", "ok", "on", "or", "so", "to", "up", "us", "we",
])  # fmt: skip
"""Two-letter words: a two-letter value spelt like one needs its slot's name beside it."""
_BARE_NUMBER = re.compile(
    rf"^(?:(?:please|just|only|um|uh|ok|okay|hmm|erm|er|so)\W+)*(?P<n>{language.NUMBER})"
    r"(?:\W+(?:please|pls|thanks|thx|thank you))*\W*$"
)


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


def slot_kind(values: tuple[str, ...]) -> str:
    """How a slot's values are written: ``time``, ``count`` (small whole numbers), ``day``
    or ``value`` (anything else)."""
    if values and all(language.parse_clock(v) is not None for v in values):
        return "time"
    if values and all(v.isdigit() and int(v) <= 50 for v in values):
        return "count"
    days = ("today", "tomorrow", *language.WEEKDAYS)
    if values and sum(any(d in v for d in days) for v in values) * 2 >= len(values):
        return "day"
    return "value"


@dataclass
class _Reading:
    """One parse in progress: the text, what is claimed, and what was read."""

    text: str
    covered: bytearray
    inform: dict[str, tuple[int, str]]  # slot -> (position, value); the first mention wins
    requests: dict[str, int]
    acts: list[tuple[int, str]]
    later: list[tuple[int, str, str]] = field(default_factory=list)  # further mentions
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # "not X"

    def rest(self) -> str:
        """The text with claimed characters masked."""
        return "".join(_MASK if done else c for c, done in zip(self.text, self.covered))

    def take(self, pattern: re.Pattern):
        """Matches over unclaimed text only; each claims its span."""
        for m in pattern.finditer(self.rest()):
            if _MASK not in m.group():
                self.covered[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
                yield m

    def claim(self, start: int, end: int) -> None:
        self.covered[start:end] = b"\x01" * (end - start)

    def set(self, slot: str, position: int, value: str) -> None:
        if _NEGATED.search(self.text, max(0, position - 20), position):
            self.refused.append((position, slot, value))  # "not the majestic"
            return
        if slot in self.inform:
            self.later.append((position, slot, value))
        else:
            self.inform[slot] = (position, value)

    def corrected(self) -> None:
        """A value given after a correction ("no wait", "i said") replaces the slot's earlier one."""
        for position, slot, value in sorted(self.later):
            first = self.inform[slot][0]
            if first < position and language.SELF_CORRECTION.search(self.text, first, position):
                self.inform[slot] = (position, value)


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
        self._template_acts = [
            (act, _pattern(t, {})) for act, texts in templates["acts"].items() for t in texts
        ]

        informable = [s for s in domain.slots if s.informable and s.values]
        kind = {s.name: slot_kind(s.values) for s in informable}
        self._clocks = {
            s.name: [(language.parse_clock(v), v) for v in s.values]
            for s in informable
            if kind[s.name] == "time"
        }
        self._count_slots = [s.name for s in informable if kind[s.name] == "count"]
        self._day_slots = [s.name for s in informable if kind[s.name] == "day"]

        # names of slots: labels, keys, aliases -> slots (first owner wins an alias)
        names: dict[str, str] = {}
        for s in domain.slots:
            for name in (s.label, s.name, *s.aliases):
                names.setdefault(normalize(name), s.name)
        for s in domain.slots:  # general English, after every schema's own names
            for word in normalize(s.label).split():
                for cue in language.LABEL_CUES.get(word, ()):
                    names.setdefault(cue, s.name)
        for name, slot in list(names.items()):  # plurals: "cities", "times", "reviews"
            names.setdefault(name + "s", slot)  # also "city's" without its apostrophe
            if re.search(r"[^aeiou]y$", name):
                names.setdefault(name[:-1] + "ies", slot)
        self._slot_of_name = names
        self._names = re.compile(rf"(?<!\w)(?:{_alternation(names)})(?!\w)")
        self._any_name = re.compile(
            rf"\bany(?:thing| other| particular| old)? (?:{_alternation(names)})(?!\w)"
        )

        # the vocabulary as people write it: form -> {(slot, value)}
        forms: dict[str, set[tuple[str, str]]] = {}
        for s in informable:
            if kind[s.name] in ("time", "count"):
                continue
            for value in s.values:
                for form in self._forms(value, s.value_aliases.get(value, ())):
                    forms.setdefault(form, set()).add((s.name, value))
        self._form_owner = forms
        self._short = {
            f
            for f in forms
            if len(f) == 1 or (len(f) == 2 and f in _ENGLISH) or _NUMERIC.fullmatch(f)
        }  # "r", "7", "seven": values only beside a name of their slot
        self._vocabulary = re.compile(rf"(?<![\w:$.])(?:{_alternation(forms)})(?![\w:])")

        # typos: content words of the vocabulary; words people use anyway are never "typos"
        self._form_words = {
            form: [w for w in form.split() if w not in language.STOPWORDS] for form in forms
        }
        self._forms_with: dict[str, set[str]] = {}
        for form, words in self._form_words.items():
            for word in words:
                self._forms_with.setdefault(word, set()).add(form)
        ordinary = set(language.STOPWORDS)
        for side in (templates, agent_templates(domain)):
            for text in _strings(side):
                ordinary.update(_TOKEN.findall(normalize(text)))
        ordinary.update(w for name in names for w in name.split())
        self._ordinary = ordinary - set(self._forms_with)
        self._close: dict[str, list[str]] = {}
        self._name_words = sorted({w for name in names for w in name.split() if len(w) >= 5})
        self._shared_words: dict[str, set[str]] = {}  # slot -> words of 2+ of its values
        for s in informable:
            counts: dict[str, int] = {}
            for value in s.values:
                for word in set(normalize(value).split()):
                    counts[word] = counts.get(word, 0) + 1
            self._shared_words[s.name] = {w for w, n in counts.items() if n >= 2}
        self._acts = [
            (act, re.compile(cue)) for act, cue in language.ACT_CUES.items() if act in domain.acts
        ]

    @staticmethod
    def _forms(value: str, aliases) -> set[str]:
        """A value's written forms: itself, without an article, hyphens as spaces or
        nothing, numbers as words, and the schema's aliases."""
        forms = set()
        for base in (value, *aliases):
            base = normalize(base)
            forms.update(language.number_forms(base))
            bare = _ARTICLE.sub("", base)
            if bare != base and len(bare) >= 4 and bare not in language.STOPWORDS:
                forms.add(bare)
        for form in list(forms):
            if "-" in form:
                forms |= {form.replace("-", " "), form.replace("-", "")}
        return {f for f in forms if f.strip()}

    # ------------------------------------------------------------------------ parsing
    def parse(self, text: str, asked: str | None = None) -> Act:
        """The act a user text expresses; ``unknown`` when nothing in it is understood.

        ``asked``: the slot the agent just asked for, if any. An answer that names no
        slot ("3", "any is fine") is then read as being about it.
        """
        text = normalize(text)[:MAX_CHARS]
        r = _Reading(text, bytearray(len(text)), {}, {}, [])
        self._read_templates(r)
        spoken = r.rest()  # what no template covers, values included
        self._read_vocabulary(r)  # before times: "midnight at marrow lane" is a film
        self._read_typos(r)
        self._read_times(r)
        self._read_days(r)
        self._read_counts(r, asked)
        self._read_clauses(r, spoken, asked)
        rest = r.rest()
        r.acts += [(m.start(), act) for act, cue in self._acts for m in cue.finditer(rest)]
        for position, _, _ in r.refused:  # "not the majestic, the rialto": a correction
            if "deny" in self.domain.acts and _CLAUSE_NOT.search(text, 0, position):
                r.acts.append((position, "deny"))
        if "deny" in self.domain.acts and not {"closing", "thanks"} & {a for _, a in r.acts}:
            r.acts += [(m.start(), "deny") for m in language.BARE_NO.finditer(rest)]
        r.corrected()
        return self._act(r)

    def _read_templates(self, r: _Reading) -> None:
        for pattern in self._dont_care:
            for m in r.take(pattern):
                r.set(self._labels[m.group("slot")], m.start(), DONT_CARE)
        for slot, pattern in self._informs:
            for m in r.take(pattern):
                r.set(slot, m.start(), self._canonical[slot][m.group("value")])
        for slot, pattern in self._requests:
            for m in r.take(pattern):
                r.requests.setdefault(slot, m.start())
        for act, pattern in self._template_acts:
            r.acts += [(m.start(), act) for m in r.take(pattern)]

    def _read_times(self, r: _Reading) -> None:
        if not self._clocks:
            return
        slot = next(iter(self._clocks))
        for pattern in _TIME_PATTERNS:
            for m in r.take(pattern):
                context = r.text[max(0, m.start() - 40) : m.end() + 40]
                readings = language.clock_minutes(m, context)
                if readings:
                    r.set(slot, m.start(), self._time_value(slot, readings))

    def _time_value(self, slot: str, readings: list[int]) -> str:
        """The vocabulary time nearest to a reading, or the reading itself (a time no
        record has) when none is within TIME_TOLERANCE."""
        day = 24 * 60

        def gap(a: int, b: int) -> int:
            return min(abs(a - b), day - abs(a - b))

        distance, value, reading = min(
            (gap(minutes, clock), value, minutes)
            for minutes in readings
            for clock, value in self._clocks[slot]
        )
        return value if distance <= TIME_TOLERANCE else language.clock_text(reading)

    def _read_vocabulary(self, r: _Reading) -> None:
        rest = r.rest()
        for m in self._vocabulary.finditer(rest):
            form = m.group()
            if form in self._short and not self._named_near(rest, m, form):
                continue
            owners = sorted(self._form_owner[form])
            slot, value = self._pick(owners, self._clause(r.text, m.start()), r)
            if slot is not None:
                r.claim(m.start(), m.end())
                r.set(slot, m.start(), value)

    def _named_near(self, rest: str, m: re.Match, form: str) -> bool:
        """A one-letter value or a bare number counts only beside a name of its slot
        ("rated r", "critics gave it at least an 8"), and never as a count or a time."""
        if _NUMERIC.fullmatch(form) and _COUNTED.match(rest, m.end()):
            return False  # "7 of us", "8 pm"
        window = rest[max(0, m.start() - 48) : m.end() + 32]
        owners = {slot for slot, _ in self._form_owner[form]}
        return any(self._slot_of_name[n.group()] in owners for n in self._names.finditer(window))

    def _pick(self, owners, clause: str, r: _Reading) -> tuple[str | None, str]:
        """Which (slot, value) a form shared by several means: the one whose slot the
        clause names, else the first slot not yet filled."""
        if len(owners) == 1:
            return owners[0]
        named = {self._slot_of_name[n.group()] for n in self._names.finditer(clause)}
        for slot, value in owners:
            if slot in named:
                return slot, value
        free = [(s, v) for s, v in owners if s not in r.inform]
        return free[0] if len({s for s, _ in free}) == 1 else (None, "")

    def _read_days(self, r: _Reading) -> None:
        for slot in self._day_slots[:1]:
            values = self.domain.slot(slot).values
            for m in r.take(language.DAY):
                value = language.day_value(m, values)
                if value is not None:
                    r.set(slot, m.start(), value)

    def _read_counts(self, r: _Reading, asked: str | None) -> None:
        slots = self._count_slots
        if asked in slots:
            slots = [asked]
        if not slots:
            return
        for pattern, count in _COUNT_PATTERNS:
            for m in r.take(pattern):
                groups = m.groupdict()
                parts = [language.number(groups[g]) for g in ("a", "n") if groups.get(g)]
                total = (count or 0) + sum(parts) if parts else count
                if total and total > 0:
                    r.set(slots[0], m.start(), str(total))
        m = _BARE_NUMBER.match(r.rest())
        if m:
            r.claim(*m.span("n"))
            r.set(slots[0], m.start("n"), str(language.number(m.group("n"))))

    def _read_typos(self, r: _Reading) -> None:
        """Vocabulary values written with typos or in part ("glided fork", "glass orchestra")."""
        tokens = [
            (m.start(), m.end(), self._meanings(m.group())) for m in _TOKEN.finditer(r.rest())
        ]
        tokens = [t for t in tokens if t[2]]
        candidates = {
            f for _, _, means in tokens for w in means for f in self._forms_with[w]
        } - self._short
        found = []
        for form in candidates:
            words = self._form_words[form]
            run, start, end, matched = _longest_run(r.text, tokens, words)
            typed = r.text[start:end]
            if run == len(words) == 1 < len(form.split()) and typed == words[0]:
                continue  # "budget" alone is not "on a budget"; exact forms were read before
            if run == len(words) == 1 and typed != words[0] and _similarity(typed, words[0]) < 0.89:
                continue  # one misspelt word alone must be close: "situation" is not "station"
            whole = run == len(words)
            distinctive = any(len(w) >= 5 and w not in self._ordinary for w in matched)
            if (
                whole
                or (run >= 2 and run * 3 >= len(words) * 2 and distinctive)
                or (run == 1 and typed == matched[0] and self._names_value(typed, words))
            ):
                found.append((-run / len(words), -run, start, end, form))
        for _, _, start, end, form in sorted(found):
            if any(r.covered[start:end]):
                continue
            owners = sorted(self._form_owner[form])
            slot, value = self._pick(owners, self._clause(r.text, start), r)
            if slot is not None:
                r.claim(start, end)
                r.set(slot, start, value)

    def _names_value(self, word: str, words: list[str]) -> bool:
        """Whether one word alone names a value: "westfield" for "westfield cinema" (a rare
        word of one value only, the rest words many values of the slot share)."""
        values = {owner for f in self._forms_with[word] for owner in self._form_owner[f]}
        if len(values) != 1 or len(word) < 5 or word in self._ordinary or _NUMERIC.fullmatch(word):
            return False
        slot = next(iter(values))[0]
        shared = self._shared_words.get(slot, set())
        return all(w == word or w in shared or w in self._ordinary for w in words)

    def _meanings(self, token: str) -> set[str]:
        """Vocabulary words a typed word may be: itself, or close misspellings."""
        if token in self._forms_with:
            return {token} if len(token) >= 3 else set()
        if len(token) < 5 or token in self._ordinary or not token.isalpha():
            return set()
        if token not in self._close:
            # a misspelt slot name ("adress") is not a misspelt value ("dressy")
            name_like = difflib.get_close_matches(token, self._name_words, n=1, cutoff=0.85)
            self._close[token] = (
                []
                if name_like
                else difflib.get_close_matches(token, self._forms_with, n=3, cutoff=FUZZY_CUTOFF)
            )
        return set(self._close[token])

    @staticmethod
    def _clause(text: str, position: int) -> str:
        """The clause around a position."""
        starts = [m.end() for m in language.CLAUSE_BREAK.finditer(text, 0, position)]
        end = language.CLAUSE_BREAK.search(text, position)
        return text[starts[-1] if starts else 0 : end.start() if end else len(text)]

    def _read_clauses(self, r: _Reading, spoken: str, asked: str | None) -> None:
        """Questions, bookings and indifference, clause by clause."""
        rest = r.rest()
        ticket = self.domain.ticket_slot
        bounds = [0]
        for m in language.CLAUSE_BREAK.finditer(r.text):
            bounds += [m.start(), m.end()]
        bounds.append(len(r.text))
        earlier: list[str] = []  # slots the previous clause named without a value
        was_question = False
        for start, end in zip(bounds[::2], bounds[1::2]):
            clause, masked = r.text[start:end].strip(), rest[start:end]
            if not clause:
                continue
            joined = r.text[max(0, start - 6) : start]  # what joins it to the clause before
            indifferent = language.INDIFFERENT.search(masked) or (
                self._any_name.search(masked) if not language.QUESTION_START.match(clause) else None
            )
            question = not indifferent and (
                bool(language.QUESTION_START.match(clause))
                or r.text[end : end + 2].lstrip(" .!,;").startswith("?")
                or r.text[end : end + 1] == "?"
                or (was_question and not _STATEMENT.match(clause) and _AND.search(joined))
            )
            was_question = question
            valued = {s for s, (pos, _) in r.inform.items() if start <= pos < end}
            named = [
                (m.start() + start, self._slot_of_name[m.group()], m.start())
                for m in self._names.finditer(masked)
            ]
            named = [(p, s, i) for p, s, i in named if s not in valued and s != ticket]
            booking = language.BOOKING.search(spoken[start:end])
            if (
                booking
                and ticket in self.domain.slot_names
                and not (question and (_WH.match(clause) or _WH.match(_sentence(r.text, end))))
            ):  # "what time did you book us for?" asks; it does not book
                r.requests.setdefault(ticket, start + booking.start())
            if question:
                asked_here = [
                    (p, s, i, masked[i:].split(" ")[0])
                    for p, s, i in named
                    if self.domain.slot(s).requestable
                ]
                if len(asked_here) > 1:  # "which chain runs that theater": a reference
                    asked_here = [a for a in asked_here if a[3] not in _WEAK_NAMES] or asked_here
                    asked_here = [
                        a for a in asked_here if not _REFERENCE.search(masked[: a[2]])
                    ] or asked_here
                asked_here = [(p, s) for p, s, _, _ in asked_here]
                for slot in list(valued):
                    position = r.inform[slot][0]
                    alternatives = [m for m in r.later if m[1] == slot and start <= m[0] < end]
                    value_end = position + len(r.inform[slot][1])
                    if _HOW.search(r.text, max(0, position - 5), position) or (
                        " or " in clause
                        and (alternatives or " or " in r.text[max(0, position - 4) : value_end + 4])
                    ):  # "how pricey?", "3d or regular?", "inside or out?": asks about it
                        del r.inform[slot]
                        r.later = [m for m in r.later if m not in alternatives]
                        asked_here.append((position, slot))
                        valued.discard(slot)
                for position, slot in asked_here:
                    r.requests.setdefault(slot, position)
                if _YES_NO.match(clause):  # "is it pricey?": asks about a property
                    for slot in list(valued):
                        if self.domain.slot(slot).determined_by:
                            position, _ = r.inform.pop(slot)
                            r.requests.setdefault(slot, position)
                earlier = []
                continue
            for position, slot, i in named:  # "phone number and address for X": only askable
                if (
                    not self.domain.slot(slot).informable
                    and not indifferent
                    and _LEADING.fullmatch(masked[:i])
                    and masked[i:].split(" ")[0] not in _WEAK_NAMES
                ):
                    r.requests.setdefault(slot, position)
            slots = [(p, s) for p, s, _ in named if self.domain.slot(s).informable]
            if indifferent:
                if not slots and earlier:
                    slots = [(start, s) for s in earlier]
                if not slots and asked and self.domain.slot(asked).informable:
                    slots = [(start, asked)]
                for position, slot in slots:
                    r.set(slot, position, DONT_CARE)
                r.claim(start + indifferent.start(), start + indifferent.end())
                earlier = []
            else:
                earlier = [s for _, s in slots]

    def _act(self, r: _Reading) -> Act:
        slots = {s: v for s, (_, v) in sorted(r.inform.items(), key=lambda item: item[1][0])}
        asked = tuple(sorted(r.requests, key=r.requests.get))
        found = [act for _, act in sorted(r.acts)]
        if asked:
            intent = "request"
        elif any(act in found for act in PRECEDENCE):
            intent = next(act for act in PRECEDENCE if act in found)
        elif slots:
            intent = "inform"
        else:
            intent = found[0] if found else UNKNOWN
        return Act(intent, slots, asked)


def _longest_run(text: str, tokens, words: list[str]) -> tuple[int, int, int, list[str]]:
    """(length, start, end, words matched) of the longest run of consecutive typed tokens
    that read as consecutive words of a name; tokens may be apart by a space, a hyphen or up to two
    short words ("glass orchestra mars" reads "the glass orchestra of mars")."""
    best = (0, 0, 0, [])
    for i in range(len(tokens)):
        for k in range(len(words)):
            run, j = 0, i
            while (
                j < len(tokens)
                and k + run < len(words)
                and words[k + run] in tokens[j][2]
                and (j == i or _joined(text, tokens[j - 1][1], tokens[j][0]))
            ):
                run, j = run + 1, j + 1
            if run > best[0]:
                best = (run, tokens[i][0], tokens[j - 1][1], words[k : k + run])
    return best


def _sentence(text: str, end: int) -> str:
    """The sentence that ends at ``end``."""
    return re.split(r"[.!?]\s", text[:end])[-1].strip()


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _joined(text: str, end: int, start: int) -> bool:
    """Whether two tokens may belong to one name: only spaces, hyphens and at most two
    stop words between them."""
    between = text[end:start].replace("-", " ").split()
    return len(between) <= 2 and all(w in language.STOPWORDS for w in between)


def _strings(tree) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _strings(v)]
    return [s for v in tree for s in _strings(v)]


_TIME_PATTERNS = [re.compile(p) for p in language.TIME_PATTERNS]
_NEGATED = re.compile(
    r"\b(?:not|no|never|anything but|except|dont want|do not want|rather not)\s+$"
)
_CLAUSE_NOT = re.compile(r"^(?:no,? )?not (?:the |a |an )?$")
_COUNTED = re.compile(
    r"\s*(?:people|persons?|ppl|pax|guests?|adults?|kids?|children|tickets?|tix|seats?|of us|"
    r"am|pm|a\.m|p\.m|oclock|o clock|:\d|year|yr|years|hours?|mins?|minutes)\b"
)
_HOW = re.compile(r"(?<!\w)how $")
_LEADING = re.compile(r"\s*(?:(?:and|also|plus|pls|please|the|their|its|then)\s+)*")
"""What may come before a request-only slot's name at the start of a clause."""
_WEAK_NAMES = frozenset({"where", "when"})
"""Question words that name a slot only when the question names no other."""
_STATEMENT = re.compile(r"(?:i|we|my|our|im|ive|id|were|its|there|this|that|please|pls)\b")
_WH = re.compile(r"(?:\W*(?:and|so|oh|also|ok|okay|um)\W+)*(?:what|whats|which|when|where|who)\b")
_YES_NO = re.compile(r"(?:is|are|does|do|did|will|would|has|have)\b")
_AND = re.compile(r"\band\b|&")
_REFERENCE = re.compile(
    r"\b(?:(?:for|of|at|about|from|near|in|on) (?:that|the|this|your|their|its)?|that|this|"
    r"the same|(?:is|are|does|do|was) (?:the|that|this|it)) ?$"
)
_COUNT_PATTERNS = [(re.compile(p), n) for p, n in language.COUNT_PATTERNS]
