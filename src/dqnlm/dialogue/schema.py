"""Domain schemas: one JSON (or YAML) file names a task-oriented dialogue domain.

The file lists the dialogue acts, the slots (informable: a user constraint the agent
may ask for; requestable: something the user may ask the agent), the slot the user
finally asks for (``ticket``) and the one the agent informs to propose a booking
(``taskcomplete``), the slots the rule baseline agent asks for, how the knowledge base
and user goals are generated, and optional NLG templates. A slot may also list
``aliases`` (other names people use for it, question phrasings) and ``value_aliases``
(other spellings of its values), which the user NLU reads. ``load_domain("movie")``
reads the bundled movie-ticket domain, ``load_domain("restaurant")`` the table-booking one.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import stat
import string
from dataclasses import dataclass, fields
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from dqnlm.errors import ConfigError

CORE_ACTS = ("request", "inform", "thanks", "deny", "closing")
"""Acts the user simulator speaks; every domain must list them."""
MAX_KB_SIZE = 100_000
"""Records at most: the state sees match counts on a log scale, so a larger synthesised KB
adds only memory and build time (about 0.1 ms and 1 KiB per record)."""
MAX_GOALS = 100_000
"""User goals at most: more cost build time, and a full test evaluation plays every one."""
MAX_FILE_BYTES = 16 * 2**20
"""Schema files larger than this are refused unread (the bundled ones are about 10 KiB)."""
MAX_YAML_NODES = 1_000_000
"""Values a YAML file may expand to through its aliases (a "billion laughs" file expands
nine nodes into 9**9 and more; validation and error messages walk the expanded data)."""


@dataclass(frozen=True)
class Slot:
    name: str
    """The slot's key, e.g. ``starttime``."""
    label: str
    """How the slot reads in text, e.g. ``start time``."""
    informable: bool
    """A user goal may constrain it, and the agent may ask for it."""
    requestable: bool
    """A user goal may ask for it, and the agent may inform it."""
    in_kb: bool
    """Knowledge-base records carry it (``numberofpeople`` is a booking detail instead)."""
    values: tuple[str, ...]
    """The value vocabulary: KB records and goals draw from it; the NLU matches it."""
    determined_by: str | None
    """Another KB slot whose value fixes this one (a theater fixes its city)."""
    aliases: tuple[str, ...] = ()
    """Other words people use to name the slot, or to ask for it ("film", "showtime",
    "what time"); the NLU reads them in questions and "don't care" phrasings."""
    value_aliases: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Other ways people write a value ("sci-fi" for science fiction); the NLU maps them
    to the value."""


@dataclass(frozen=True)
class Generation:
    seed: int
    """Seeds the knowledge base, the goals and the train/test split."""
    kb_size: int
    """Knowledge-base records (one record is one bookable showing)."""
    num_goals: int
    """User goals, train and test together."""
    test_fraction: float
    """Fraction of the goals held out for testing, in (0, 1)."""
    required_constraints: tuple[str, ...]
    """Slots every goal constrains."""
    extra_constraints: tuple[int, int]
    """Inclusive range of further constrained slots per goal."""
    requests: tuple[int, int]
    """Inclusive range of requested slots per goal, besides the ticket."""


@dataclass(frozen=True)
class AgentAction:
    intent: str
    """The agent's dialogue act."""
    slot: str | None
    """The slot it asks for or informs; None for acts without a slot."""

    def __str__(self) -> str:
        return f"{self.intent}({self.slot or ''})"


@dataclass(frozen=True)
class Domain:
    name: str
    """Short name, e.g. ``movie``."""
    description: str
    """One line for humans."""
    acts: tuple[str, ...]
    """Every dialogue act of the domain."""
    agent_acts: tuple[str, ...]
    """Acts without a slot that the agent may choose (thanks and closing end the dialogue)."""
    slots: tuple[Slot, ...]
    """Every slot, in file order (which fixes the state and action layouts)."""
    ticket_slot: str
    """The slot every user goal finally requests (``ticket``)."""
    booking_slot: str
    """The slot the agent informs to propose a booking (``taskcomplete``, TC-Bot's match found)."""
    first_turn_slots: tuple[str, ...]
    """Constraints the user always states in its opening turn (TC-Bot: the movie name)."""
    rule_agent_slots: tuple[str, ...]
    """Informable slots the rule baseline agent asks for, in order (default: the
    generation's ``required_constraints``)."""
    generation: Generation
    """How the knowledge base and user goals are synthesised."""
    templates: dict[str, Any]
    """NLG templates by side (``user``, ``agent``); missing ones fall back to generic text."""
    source: str
    """The file the domain was read from."""

    def slot(self, name: str) -> Slot:
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Slot]:
        return {s.name: s for s in self.slots}

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    @property
    def informable(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots if s.informable)

    @property
    def requestable(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots if s.requestable)

    @property
    def kb_slots(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots if s.in_kb)

    @cached_property
    def agent_actions(self) -> tuple[AgentAction, ...]:
        """The agent's action space, in a fixed order: slotless acts, then a request for
        each informable slot, an inform for each requestable slot but the ticket, and
        the booking proposal."""
        return (
            *(AgentAction(act, None) for act in self.agent_acts),
            *(AgentAction("request", s) for s in self.informable),
            *(AgentAction("inform", s) for s in self.requestable if s != self.ticket_slot),
            AgentAction("inform", self.booking_slot),
        )


# ----------------------------------------------------------------------------- loading
def bundled_domains() -> list[str]:
    folder = resources.files("dqnlm.dialogue") / "domains"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def load_domain(name_or_path: str | Path) -> Domain:
    """A bundled domain by name (``movie``) or a schema file by path (.json, .yaml, .yml)."""
    text = str(name_or_path)
    if not text.strip():
        raise ConfigError(
            f"domain must be a bundled domain ({', '.join(bundled_domains())}) or a schema "
            f"file, got {text!r}"
        )
    if text in bundled_domains():
        path = resources.files("dqnlm.dialogue") / "domains" / f"{text}.json"
        return parse_domain(_read(Path(str(path))), source=str(path))
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(
            f"unknown domain {text!r}: not a bundled domain ({', '.join(bundled_domains())}) "
            "and no such file"
        )
    return parse_domain(_read(path), source=str(path))


class _Object(dict):
    """A parsed mapping that remembers the keys it saw twice (JSON and YAML keep the last)."""

    def __init__(self, pairs):
        pairs = list(pairs)
        super().__init__(pairs)
        seen, twice = set(), set()
        for key, _ in pairs:
            (twice if key in seen else seen).add(key)
        self.duplicates = sorted(twice, key=str)


def _read(path: Path) -> Any:
    try:
        info = path.stat()
        # a FIFO or /dev/zero would block or never end; a huge file is no schema
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"domain file {path} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"domain file {path} holds {info.st_size:,} bytes; a schema file may hold at "
                f"most {MAX_FILE_BYTES:,}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read domain file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"domain file {path} is not UTF-8 text") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return _read_yaml(path, text)
        return json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"domain file {path} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}"
        ) from None
    except RecursionError:
        raise ConfigError(f"domain file {path} nests lists or objects too deeply") from None


def _read_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            f"domain file {path} is YAML, which needs PyYAML (pip install pyyaml); "
            "or write the domain as JSON"
        ) from None

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        return _Object(
            (loader.construct_object(k, deep=True), loader.construct_object(v, deep=True))
            for k, v in node.value
        )

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    loader = Loader(text)  # a SafeLoader subclass: no arbitrary objects
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(path, node)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(
            f"domain file {path} is not valid YAML: {' '.join(str(e).split())}"
        ) from None
    finally:
        loader.dispose()


def _check_aliases(path: Path, root) -> None:
    """Refuse a YAML node graph that refers to itself or expands past MAX_YAML_NODES.

    An iterative depth-first walk: ``size`` memoises each node's expanded size, and a
    node met again while its own subtree is open is a self-reference."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, closing = stack.pop()
        children = _yaml_children(node)
        if closing:
            open_nodes.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            if size[id(node)] > MAX_YAML_NODES:
                raise ConfigError(
                    f"domain file {path}: its YAML aliases expand it past "
                    f"{MAX_YAML_NODES:,} values (line {node.start_mark.line + 1})"
                )
        elif id(node) in open_nodes:
            raise ConfigError(
                f"domain file {path}: a YAML alias refers to a node that contains it "
                f"(line {node.start_mark.line + 1})"
            )
        elif id(node) not in size:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children)


def _yaml_children(node) -> list:
    if isinstance(node.value, str):  # a scalar
        return []
    return [n for item in node.value for n in (item if isinstance(item, tuple) else (item,))]


# ----------------------------------------------------------------------------- validation
# a file's fields are the dataclasses' (a domain's source is where it was read, a slot's
# name its key in ``slots``)
_TOP_KEYS = tuple(f.name for f in fields(Domain) if f.name != "source")
_SLOT_KEYS = tuple(f.name for f in fields(Slot) if f.name != "name")
_GENERATION_KEYS = tuple(f.name for f in fields(Generation))
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
_TEMPLATE_LAYOUT = {
    "user": {"inform": "slots", "request": "slots", "dont_care": "list", "acts": "acts"},
    "agent": {
        "request": "slots",
        "inform": "slots",
        "booking": "list",
        "no_match": "list",
        "acts": "acts",
    },
}

_LIST_FIELDS = {"dont_care": {"slot"}, "booking": {"value"}, "no_match": set()}
_TEMPLATE_SLOT_KIND = {  # which slots each side may inform or request
    ("user", "inform"): "informable",
    ("user", "request"): "requestable",
    ("agent", "request"): "informable",
    ("agent", "inform"): "requestable",
}


class _Checker:
    """Collects every problem in a domain file, each with the field it is about."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(f"{field}: {message}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(f"invalid domain file {self.source}: " + "; ".join(self.problems))

    def obj(self, value: Any, field: str, keys: tuple[str, ...] | None = None) -> dict:
        if not isinstance(value, dict):
            self.add(field or "(top level)", f"must be an object, got {_show(value)}")
            return {}
        for key in getattr(value, "duplicates", ()):
            self.add(f"{field}.{key}" if field else key, "appears twice")
        for key in value if keys is not None else ():
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(f"{field}.{key}" if field else str(key), f"unknown field{hint}")
        return value

    def scalar(self, data: dict, key: str, field: str, kind: type, default: Any = ...) -> Any:
        if key not in data:
            if default is ...:
                self.add(field, "is missing")
            return None if default is ... else default
        value = data[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.add(field, f"must be {_TYPE_NAMES[kind]}, got {_show(value)}")
            return None
        return value

    def strings(self, data: dict, key: str, field: str, default: Any = ...) -> tuple[str, ...]:
        if key not in data:
            if default is ...:
                self.add(field, "is missing")
            return () if default is ... else default
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.add(field, f"must be a list of non-empty strings, got {_show(value)}")
            return ()
        counts = collections.Counter(value)  # list.count per value is quadratic
        for v in sorted(v for v, n in counts.items() if n > 1):
            self.add(field, f"lists {_brief(v)} twice")
        return tuple(dict.fromkeys(value))

    def names(self, values, known, field: str, what: str) -> None:
        for v in values:
            if v not in known:
                close = difflib.get_close_matches(v, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(field, f"unknown {what} {v!r}{hint}")


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool)) else "null"
    return text if len(text) <= 40 else text[:37] + "..."


def _brief(text: str) -> str:
    """A user's text quoted for an error line, cut short (templates can be long)."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_domain(data: Any, source: str = "<domain>") -> Domain:
    """Validate parsed schema data; every problem is reported at once, naming its field."""
    check = _Checker(source)
    top = check.obj(data, "", _TOP_KEYS)
    check.raise_if_any()
    name = check.scalar(top, "name", "name", str)
    description = check.scalar(top, "description", "description", str, default="")
    acts = check.strings(top, "acts", "acts")
    for act in CORE_ACTS:
        if act not in acts:
            check.add("acts", f"must include {act!r} (the user simulator speaks it)")
    agent_acts = check.strings(top, "agent_acts", "agent_acts")
    check.names(agent_acts, acts, "agent_acts", "act")
    for act in ("request", "inform"):
        if act in agent_acts:
            check.add("agent_acts", f"{act!r} takes a slot; the agent gets it for every slot")

    slots = _parse_slots(check, top.get("slots"))
    names = {s.name: s for s in slots}
    ticket = check.scalar(top, "ticket_slot", "ticket_slot", str)
    booking = check.scalar(top, "booking_slot", "booking_slot", str)
    for field, slot, requestable in (
        ("ticket_slot", ticket, True),
        ("booking_slot", booking, False),
    ):
        if slot is None:
            continue
        if slot not in names:
            check.names([slot], names, field, "slot")
        elif names[slot].informable or names[slot].in_kb or names[slot].requestable != requestable:
            need = "requestable" if requestable else "not requestable"
            check.add(field, f"slot {slot!r} must be {need}, not informable and have in_kb false")
    for slot in slots:
        if slot.requestable and not slot.in_kb and slot.name != ticket:
            check.add(
                f"slots.{slot.name}.in_kb", "only the ticket slot may be requestable outside the KB"
            )
    informable = [s.name for s in slots if s.informable]
    first = check.strings(top, "first_turn_slots", "first_turn_slots", default=())
    check.names(first, informable, "first_turn_slots", "informable slot")
    generation = _parse_generation(check, top.get("generation"), slots)
    rule_slots = check.strings(top, "rule_agent_slots", "rule_agent_slots", default=None)
    if rule_slots is None:  # already checked as generation.required_constraints
        rule_slots = generation.required_constraints
    else:
        check.names(rule_slots, informable, "rule_agent_slots", "informable slot")
    templates = _check_templates(check, top.get("templates", {}), names, acts)
    check.raise_if_any()
    return Domain(
        name=name,
        description=description,
        acts=acts,
        agent_acts=agent_acts,
        slots=tuple(slots),
        ticket_slot=ticket,
        booking_slot=booking,
        first_turn_slots=first,
        rule_agent_slots=rule_slots,
        generation=generation,
        templates=templates,
        source=source,
    )


def _parse_slots(check: _Checker, raw: Any) -> list[Slot]:
    if raw is None:
        check.add("slots", "is missing")
        return []
    specs = check.obj(raw, "slots")
    slots = []
    for name, spec in specs.items():
        field = f"slots.{name}"
        spec = check.obj(spec, field, _SLOT_KEYS)
        informable = check.scalar(spec, "informable", f"{field}.informable", bool, default=False)
        in_kb = check.scalar(spec, "in_kb", f"{field}.in_kb", bool, default=True)
        before = len(check.problems)
        values = check.strings(spec, "values", f"{field}.values", default=())
        if (informable or in_kb) and not values and len(check.problems) == before:
            check.add(f"{field}.values", "must list values (informable and KB slots need them)")
        slots.append(
            Slot(
                name=name,
                label=check.scalar(spec, "label", f"{field}.label", str, default=name),
                informable=bool(informable),
                requestable=bool(
                    check.scalar(spec, "requestable", f"{field}.requestable", bool, default=False)
                ),
                in_kb=bool(in_kb),
                values=values,
                determined_by=check.scalar(
                    spec, "determined_by", f"{field}.determined_by", str, default=None
                ),
                aliases=check.strings(spec, "aliases", f"{field}.aliases", default=()),
                value_aliases=_value_aliases(check, spec, field, values),
            )
        )
    by_name = {s.name: s for s in slots}
    for slot in slots:
        field = f"slots.{slot.name}"
        parent = slot.determined_by
        if parent is None:
            continue
        if parent not in by_name:
            check.names([parent], by_name, f"{field}.determined_by", "slot")
        elif not (slot.in_kb and by_name[parent].in_kb):
            check.add(f"{field}.determined_by", "both slots must be in the knowledge base")
        elif _cycle(slot.name, by_name):
            check.add(f"{field}.determined_by", "the determined_by chain loops back to this slot")
    return slots


def _value_aliases(check: _Checker, spec: dict, field: str, values) -> dict:
    """``value_aliases``: an object from values of the slot to lists of other spellings."""
    raw = check.obj(spec.get("value_aliases", {}), f"{field}.value_aliases")
    aliases = {}
    for value in raw:
        if value not in values:
            check.names([value], values, f"{field}.value_aliases", "value")
        aliases[value] = check.strings(raw, value, f"{field}.value_aliases.{value}")
    return aliases


def _cycle(start: str, by_name: dict[str, Slot]) -> bool:
    seen, slot = set(), by_name[start].determined_by
    while slot is not None and slot in by_name and slot not in seen:
        if slot == start:
            return True
        seen.add(slot)
        slot = by_name[slot].determined_by
    return False


def _parse_generation(check: _Checker, raw: Any, slots: list[Slot]) -> Generation:
    if raw is None:
        check.add("generation", "is missing")
        raw = {}
    spec = check.obj(raw, "generation", _GENERATION_KEYS)
    informable = [s.name for s in slots if s.informable]
    requestable = [s.name for s in slots if s.requestable and s.in_kb]
    values = {}
    for key, most in (("seed", None), ("kb_size", MAX_KB_SIZE), ("num_goals", MAX_GOALS)):
        values[key] = check.scalar(spec, key, f"generation.{key}", int)
        if most is not None and values[key] is not None and not 1 <= values[key] <= most:
            check.add(f"generation.{key}", f"must be in [1, {most:,}], got {values[key]:,}")
    fraction = check.scalar(spec, "test_fraction", "generation.test_fraction", float)
    if fraction is not None and not 0.0 < fraction < 1.0:
        check.add("generation.test_fraction", f"must be in (0, 1), got {fraction}")
    required = check.strings(spec, "required_constraints", "generation.required_constraints")
    check.names(required, informable, "generation.required_constraints", "informable slot")
    ranges = {}
    for key, pool in (
        ("extra_constraints", len(informable) - len(required)),
        ("requests", len(requestable)),
    ):
        value = spec.get(key)
        field = f"generation.{key}"
        if value is None:
            check.add(field, "is missing")
        elif not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 0 <= value[0] <= value[1]
        ):
            check.add(field, f"must be [min, max] with 0 <= min <= max, got {_show(value)}")
        elif value[1] > pool:
            check.add(field, f"max {value[1]} exceeds the {pool} slots available")
        else:
            ranges[key] = (value[0], value[1])
    return Generation(
        seed=values["seed"],
        kb_size=values["kb_size"],
        num_goals=values["num_goals"],
        test_fraction=fraction,
        required_constraints=required,
        extra_constraints=ranges.get("extra_constraints", (0, 0)),
        requests=ranges.get("requests", (0, 0)),
    )


def _check_templates(check: _Checker, raw: Any, slots: dict[str, Slot], acts) -> dict[str, Any]:
    templates = check.obj(raw, "templates", tuple(_TEMPLATE_LAYOUT))
    for side, layout in _TEMPLATE_LAYOUT.items():
        part = check.obj(templates.get(side, {}), f"templates.{side}", tuple(layout))
        for key, kind in layout.items():
            field = f"templates.{side}.{key}"
            if key not in part:
                continue
            if kind == "list":
                _check_texts(check, part, key, field, _LIST_FIELDS[key])
                continue
            entries = check.obj(part[key], field)
            for name in entries:
                if kind == "acts":
                    check.names([name], acts, field, "act")
                    fields: set[str] = set()
                elif name not in slots:
                    check.names([name], slots, field, "slot")
                    continue
                else:
                    wanted = _TEMPLATE_SLOT_KIND[side, key]
                    if not getattr(slots[name], wanted):
                        check.add(f"{field}.{name}", f"slot {name!r} is not {wanted}")
                    fields = {"value"} if key == "inform" else set()
                _check_texts(check, entries, name, f"{field}.{name}", fields)
    return templates


def _check_texts(check: _Checker, part: dict, key: str, field: str, fields: set[str]) -> None:
    texts = check.strings(part, key, field)
    for text in texts:
        try:
            parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text)]
        except ValueError as e:
            check.add(field, f"template {_brief(text)} is malformed: {e}")
            continue
        found = [f for f, _, _ in parsed if f is not None]
        if any(spec or conv for _, spec, conv in parsed):
            # a width such as {value:>200000000} would print a 200 MB line
            check.add(
                field,
                f"template {_brief(text)} may only use bare placeholders such as {{value}}: "
                "no format spec (:...) or conversion (!r)",
            )
            continue
        if sorted(found) != sorted(fields):
            want = " and ".join(f"{{{f}}}" for f in sorted(fields)) or "no placeholder"
            check.add(field, f"template {_brief(text)} must contain {want} exactly once")
