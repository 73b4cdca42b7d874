"""The synthetic knowledge base and user goals, and the tracker's KB matching and state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, Act
from dqnlm.dialogue.kb import build_world
from dqnlm.dialogue.schema import load_domain
from dqnlm.dialogue.tracker import StateTracker
from dqnlm.errors import ConfigError


@pytest.fixture(scope="module")
def domain():
    return load_domain("movie")


@pytest.fixture(scope="module")
def world(domain):
    return build_world(domain)


def brute_force(kb, constraints):
    return [
        i
        for i, r in enumerate(kb.records)
        if all(r[s] == v for s, v in constraints.items() if s in r and v != DONT_CARE)
    ]


def test_same_seed_same_world_other_seed_other_world(domain, world):
    again = build_world(domain)
    assert again.kb.records == world.kb.records
    assert again.train == world.train and again.test == world.test
    reseeded = dataclasses.replace(
        domain, generation=dataclasses.replace(domain.generation, seed=1)
    )
    assert build_world(reseeded).kb.records != world.kb.records


def test_sizes_and_split(domain, world):
    assert len(world.kb) == 1000
    assert len(set(map(lambda r: tuple(r.values()), world.kb.records))) == 1000
    assert (len(world.train), len(world.test)) == (240, 60)
    keys = {(tuple(g.constraints.items()), g.requests) for g in world.train}
    assert not keys & {(tuple(g.constraints.items()), g.requests) for g in world.test}
    assert world.goals("test") is world.test
    with pytest.raises(ConfigError, match="split"):
        world.goals("dev")


def test_goals_have_the_documented_shape_and_are_satisfiable(domain, world):
    extras, requests = set(), set()
    for goal in world.train + world.test:
        assert {"moviename", "numberofpeople"} <= goal.constraints.keys()
        assert all(domain.slot(s).informable for s in goal.constraints)
        assert goal.requests[-1] == "ticket"
        assert not set(goal.requests) & goal.constraints.keys()
        extras.add(len(goal.constraints) - 2)
        requests.add(len(goal.requests) - 1)
        assert world.kb.mask(goal.constraints).any()
    assert extras == set(range(7)) and requests == set(range(4))


def test_determined_slots_follow_their_parent(world):
    city_of, state_of = {}, {}
    for record in world.kb.records:
        assert city_of.setdefault(record["theater"], record["city"]) == record["city"]
        assert state_of.setdefault(record["city"], record["state"]) == record["state"]


def test_kb_matching_agrees_with_brute_force(world):
    kb = world.kb
    goal = world.test[0]
    for constraints in (
        {},
        goal.constraints,
        {"theater": DONT_CARE, "city": kb.records[5]["city"], "numberofpeople": "3"},
        {"moviename": "no such film"},
    ):
        hits = brute_force(kb, constraints)
        assert np.flatnonzero(kb.mask(constraints)).tolist() == hits
        assert kb.first_match(constraints) == (hits[0] if hits else None)
    assert kb.record(kb.ticket(7)) == kb.records[7]
    assert kb.record("T9999") is None and kb.record("seven") is None


def tracker_for(domain, world, opening: Act) -> StateTracker:
    tracker = StateTracker(domain, world.kb, max_turns=40)
    tracker.reset(opening)
    return tracker


def index(domain, intent, slot=None):
    return [(a.intent, a.slot) for a in domain.agent_actions].index((intent, slot))


def test_tracker_fills_informs_and_bookings_from_the_first_match(domain, world):
    kb = world.kb
    record = kb.records[0]
    opening = Act("request", {"moviename": record["moviename"], "numberofpeople": "2"}, ("ticket",))
    tracker = tracker_for(domain, world, opening)
    hits = brute_force(kb, {"moviename": record["moviename"]})
    assert tracker.matches() == len(hits)
    first = kb.records[hits[0]]

    inform = tracker.act(index(domain, "inform", "theater"))
    assert inform == Act("inform", {"theater": first["theater"]})
    booking = tracker.act(index(domain, "inform", "taskcomplete"))
    assert booking == Act(
        "inform",
        {
            "taskcomplete": kb.ticket(hits[0]),
            "moviename": first["moviename"],
            "numberofpeople": "2",
        },
    )
    tracker.observe_agent(booking)
    assert tracker.booking == kb.ticket(hits[0])

    tracker.observe_user(Act("inform", {"date": DONT_CARE, "theater": "the rialto"}))
    assert tracker.known["date"] == DONT_CARE
    # a standing booking answers from the booked record, whatever the user said since
    assert tracker.act(index(domain, "inform", "theater")).inform["theater"] == first["theater"]
    tracker.observe_user(Act("deny"))
    assert tracker.booking is None
    expected = kb.first_match(tracker.known)
    value = kb.records[expected]["theater"] if expected is not None else NO_MATCH
    assert tracker.act(index(domain, "inform", "theater")).inform["theater"] == value


def test_tracker_reports_no_match(domain, world):
    tracker = tracker_for(domain, world, Act("inform", {"moviename": "no such film"}))
    assert tracker.matches() == 0
    # "nothing matches" states what the agent heard, so the user can correct it
    assert tracker.act(index(domain, "inform", "taskcomplete")) == Act(
        "inform", {"taskcomplete": NO_MATCH, "moviename": "no such film"}
    )
    assert tracker.act(index(domain, "inform", "starttime")).inform == {"starttime": NO_MATCH}
    assert tracker.act(index(domain, "request", "city")) == Act("request", {}, ("city",))
    assert tracker.act(index(domain, "thanks")) == Act("thanks")


def test_state_vector_is_fixed_size_and_bounded(domain, world):
    goal = world.test[0]
    tracker = tracker_for(domain, world, Act("request", goal.constraints, ("ticket",)))
    state = tracker.state()
    assert state.shape == (tracker.dim,) and state.dtype == np.float32
    assert state.min() >= 0.0 and state.max() <= 1.0
    tracker.observe_agent(tracker.act(index(domain, "request", "date")))
    tracker.observe_user(Act("inform", {"date": DONT_CARE}))
    later = tracker.state()
    assert later.shape == state.shape and not np.array_equal(later, state)
    for _ in range(60):  # past the turn limit the turn features saturate
        tracker.observe_agent(Act("thanks"))
    assert tracker.state().max() <= 1.0
