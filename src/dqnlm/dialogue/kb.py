"""The knowledge base (bookable showings) and user goals, synthesised from the schema's seed.

Every record draws its free slots (those no other slot determines) uniformly from the
vocabularies; a ``determined_by`` slot takes a fixed seeded value per value of its
parent (a theater always has the same city). Each goal copies its constraints from
one record, so every goal is satisfiable, and asks for a few other slots plus the
ticket. The same seed always gives the same records, goals and train/test split.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dqnlm.dialogue.acts import DONT_CARE
from dqnlm.dialogue.schema import Domain
from dqnlm.errors import ConfigError
from dqnlm.resources import check_fits


@dataclass(frozen=True)
class Goal:
    constraints: dict[str, str]
    """Slot -> value the booking must satisfy (informable slots)."""
    requests: tuple[str, ...]
    """Slots the user wants told, ending with the ticket slot."""


class KnowledgeBase:
    """Records (slot -> value over the domain's KB slots); record ``i`` sells ticket ``T{i:04d}``."""

    def __init__(self, domain: Domain, records: list[dict[str, str]]):
        self.domain = domain
        self.records = tuple(records)
        self.slots = domain.kb_slots
        self._columns = {
            slot: np.array([r[slot] for r in records], dtype=object) for slot in self.slots
        }

    def __len__(self) -> int:
        return len(self.records)

    @staticmethod
    def ticket(index: int) -> str:
        return f"T{index:04d}"

    def record(self, ticket: str) -> dict[str, str] | None:
        """The record a ticket id names, or None for anything else."""
        index = int(ticket[1:]) if ticket[1:].isascii() and ticket[1:].isdigit() else -1
        ok = 0 <= index < len(self.records) and ticket == self.ticket(index)
        return self.records[index] if ok else None

    def mask(self, constraints: Mapping[str, str]) -> np.ndarray:
        """Which records satisfy every KB constraint; other slots and dont_care match all."""
        keep = np.ones(len(self.records), dtype=bool)
        for slot, value in constraints.items():
            if slot in self._columns and value != DONT_CARE:
                keep &= self._columns[slot] == value
        return keep

    def first_match(self, constraints: Mapping[str, str]) -> int | None:
        """The lowest-numbered record satisfying the constraints, or None."""
        hits = np.flatnonzero(self.mask(constraints))
        return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class World:
    kb: KnowledgeBase
    """The bookable showings."""
    train: tuple[Goal, ...]
    """Goals for training."""
    test: tuple[Goal, ...]
    """Held-out goals, never seen in training."""

    def goals(self, split: str) -> tuple[Goal, ...]:
        if split not in ("train", "test"):
            raise ConfigError(f"split must be train or test, got {split!r}")
        return self.train if split == "train" else self.test


def estimate_bytes(domain: Domain) -> int:
    """Rough memory of the KB, the goals and a state tracker's per-value match masks."""
    spec = domain.generation
    mask_values = sum(len(domain.slot(s).values) for s in domain.informable if s in domain.kb_slots)
    per_record = 64 * len(domain.kb_slots) + mask_values  # dict entries, one mask byte per value
    per_goal = 64 * (len(domain.informable) + len(domain.requestable))
    return spec.kb_size * per_record + spec.num_goals * per_goal


def build_world(domain: Domain) -> World:
    """The knowledge base and the train/test goals, all from ``domain.generation.seed``."""
    spec = domain.generation
    check_fits(
        estimate_bytes(domain),
        f"domain {domain.name} ({domain.source}) with kb_size={spec.kb_size:,}, "
        f"num_goals={spec.num_goals:,}",
    )
    rng = random.Random(domain.generation.seed)
    kb = KnowledgeBase(domain, _records(domain, rng))
    goals = _goals(domain, kb, rng)
    n_test = max(1, round(len(goals) * domain.generation.test_fraction))
    if n_test >= len(goals):
        raise ConfigError(f"domain {domain.name}: test_fraction leaves no training goals")
    return World(kb, train=tuple(goals[:-n_test]), test=tuple(goals[-n_test:]))


def _records(domain: Domain, rng: random.Random) -> list[dict[str, str]]:
    kb_slots = [domain.slot(s) for s in domain.kb_slots]
    tables = {
        s.name: {v: rng.choice(s.values) for v in domain.slot(s.determined_by).values}
        for s in kb_slots
        if s.determined_by is not None
    }
    free = [s for s in kb_slots if s.determined_by is None]
    size = domain.generation.kb_size
    if math.prod(len(s.values) for s in free) < size:
        raise ConfigError(
            f"domain {domain.name}: kb_size {size} exceeds the distinct records the free slots allow"
        )

    def resolve(record: dict[str, str], slot: str) -> str:
        if slot not in record:
            record[slot] = tables[slot][resolve(record, domain.slot(slot).determined_by)]
        return record[slot]

    seen, records = set(), []
    while len(records) < size:
        record = {s.name: rng.choice(s.values) for s in free}
        key = tuple(record.values())
        if key in seen:
            continue
        seen.add(key)
        for slot in kb_slots:
            resolve(record, slot.name)
        records.append({s.name: record[s.name] for s in kb_slots})
    return records


def _goals(domain: Domain, kb: KnowledgeBase, rng: random.Random) -> list[Goal]:
    spec = domain.generation
    others = [s for s in domain.informable if s not in spec.required_constraints]
    requestable = [s for s in domain.requestable if s != domain.ticket_slot]
    goals: list[Goal] = []
    seen = set()
    for _ in range(100 * spec.num_goals):
        record = rng.choice(kb.records)
        chosen = set(spec.required_constraints) | set(
            rng.sample(others, rng.randint(*spec.extra_constraints))
        )
        constraints = {
            s: record[s] if s in record else rng.choice(domain.slot(s).values)
            for s in domain.informable
            if s in chosen
        }
        pool = [s for s in requestable if s not in constraints]
        asked = set(rng.sample(pool, min(len(pool), rng.randint(*spec.requests))))
        goal = Goal(constraints, (*(s for s in requestable if s in asked), domain.ticket_slot))
        key = (tuple(constraints.items()), goal.requests)
        if key not in seen:
            seen.add(key)
            goals.append(goal)
            if len(goals) == spec.num_goals:
                return goals
    raise ConfigError(f"domain {domain.name}: cannot draw {spec.num_goals} distinct goals")
