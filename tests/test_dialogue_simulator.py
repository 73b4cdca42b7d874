"""The rule user simulator, one rule at a time, on hand-made goals."""

from __future__ import annotations

import numpy as np
import pytest

from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, Act
from dqnlm.dialogue.kb import Goal, build_world
from dqnlm.dialogue.schema import load_domain
from dqnlm.dialogue.simulator import UserSimulator
from dqnlm.errors import DQNLMError


@pytest.fixture(scope="module")
def domain():
    return load_domain("movie")


@pytest.fixture(scope="module")
def kb(domain):
    return build_world(domain).kb


@pytest.fixture
def record(kb):
    return kb.records[0]


@pytest.fixture
def goal(record):
    """Constrains movie, people and theater (all true of record T0000); asks the start time."""
    constraints = {
        "moviename": record["moviename"],
        "numberofpeople": "2",
        "theater": record["theater"],
    }
    return Goal(constraints, ("starttime", "ticket"))


def start(domain, kb, goal, seed=0, **kwargs) -> tuple[UserSimulator, Act]:
    user = UserSimulator(domain, kb, **kwargs)
    return user, user.reset(goal, np.random.default_rng(seed))


def booking(goal, ticket="T0000", **override):
    return Act("inform", {"taskcomplete": ticket, **goal.constraints, **override})


def test_opening_requests_one_want_and_states_the_movie_and_one_constraint(domain, kb, goal):
    extras = set()
    for seed in range(20):
        _, opening = start(domain, kb, goal, seed)
        assert opening.intent == "request" and opening.request == ("starttime",)
        assert opening.inform["moviename"] == goal.constraints["moviename"]
        assert len(opening.inform) == 2
        extras |= opening.inform.keys() - {"moviename"}
    assert extras == {"numberofpeople", "theater"}
    _, opening = start(domain, kb, Goal(goal.constraints, ("ticket",)))
    assert opening.request == ("ticket",)


def test_informs_a_constraint_when_asked(domain, kb, goal):
    user, _ = start(domain, kb, goal)
    for slot, value in goal.constraints.items():
        assert user.step(Act("request", {}, (slot,))) == Act("inform", {slot: value})
    assert user.untold == []


def test_does_not_care_about_slots_outside_its_goal(domain, kb, goal):
    user, _ = start(domain, kb, goal)
    assert user.step(Act("request", {}, ("genre",))) == Act("inform", {"genre": DONT_CARE})


def test_requests_its_own_open_request_back_and_states_the_rest(domain, kb, goal):
    user, opening = start(domain, kb, goal)
    untold = {s: v for s, v in goal.constraints.items() if s not in opening.inform}
    reply = user.step(Act("request", {}, ("starttime",)))
    assert reply == Act("request", untold, ("starttime",))
    assert user.untold == []


def test_records_answers_corrects_wrong_values_and_moves_on(domain, kb, goal, record):
    user, opening = start(domain, kb, goal)
    (untold,) = [s for s in goal.constraints if s not in opening.inform]
    # a value contradicting a constraint is corrected
    assert user.step(Act("inform", {"theater": "nowhere"})) == Act(
        "inform", {"theater": record["theater"]}
    )
    # an answer to its request is recorded; with nothing left it asks for the ticket
    reply = user.step(Act("inform", {"starttime": record["starttime"]}))
    assert user.answers == {"starttime": record["starttime"]} and user.unanswered == []
    if untold != "theater":
        assert reply == Act("inform", {untold: goal.constraints[untold]})
        reply = user.step(Act("greeting"))
    assert reply == Act("request", {}, ("ticket",))
    # asked about what it was told, it repeats the answer
    assert user.step(Act("request", {}, ("starttime",))) == Act(
        "inform", {"starttime": record["starttime"]}
    )
    # "no match" answers nothing
    user.answers.clear()
    user.unanswered = ["starttime"]
    assert user.step(Act("inform", {"starttime": NO_MATCH})) == Act("request", {}, ("starttime",))


@pytest.mark.parametrize(
    "offer",
    [
        lambda goal, kb: booking(goal, ticket=NO_MATCH),
        lambda goal, kb: booking(goal, ticket="T9999"),
        lambda goal, kb: booking(goal, numberofpeople="3"),
        lambda goal, kb: Act(
            "inform", {"taskcomplete": "T0000", "moviename": goal.constraints["moviename"]}
        ),
        # the booking states the goal's theater, but ticket T0000's record is elsewhere
        lambda goal, kb: booking(
            goal,
            ticket=kb.ticket(
                next(
                    i
                    for i, r in enumerate(kb.records)
                    if r["theater"] != goal.constraints["theater"]
                )
            ),
        ),
    ],
    ids=["no-ticket", "unknown-ticket", "wrong-people", "unstated-constraints", "record-violates"],
)
def test_denies_a_booking_that_violates_a_constraint(domain, kb, goal, offer):
    user, _ = start(domain, kb, goal)
    proposal = offer(goal, kb)
    reply = user.step(proposal)
    assert reply.intent == "deny" and user.booking is None
    # it corrects the values the booking states wrongly, and volunteers nothing else
    wrong = {
        s: v
        for s, v in goal.constraints.items()
        if s in proposal.inform and proposal.inform[s] != v
    }
    assert reply.inform == wrong
    assert reply.inform == (
        {"numberofpeople": "2"} if proposal.inform.get("numberofpeople") == "3" else {}
    )


def test_accepts_a_good_booking_then_asks_its_requests_then_thanks(domain, kb, goal, record):
    user, _ = start(domain, kb, goal)
    assert user.step(booking(goal)) == Act("request", {}, ("starttime",))
    assert user.booking == "T0000"
    assert user.step(Act("inform", {"starttime": record["starttime"]})) == Act("thanks")
    assert user.step(Act("thanks")) == Act("thanks")
    assert user.outcome == "success" and user.done


def test_an_answer_that_contradicts_the_booking_is_asked_again(domain, kb, goal, record):
    user, _ = start(domain, kb, goal)
    other = next(v for v in domain.slot("starttime").values if v != record["starttime"])
    user.step(Act("inform", {"starttime": other}))
    assert user.unanswered == []
    assert user.step(booking(goal)) == Act("request", {}, ("starttime",))
    assert user.step(Act("inform", {"starttime": other})) == Act("request", {}, ("starttime",))
    assert user.step(Act("inform", {"starttime": record["starttime"]})) == Act("thanks")


@pytest.mark.parametrize("ending", ["thanks", "closing"])
def test_ending_before_success_is_a_failure(domain, kb, goal, ending):
    user, _ = start(domain, kb, goal)
    user.step(booking(goal))  # accepted, but the start time was never answered
    assert user.step(Act(ending)) == Act("closing")
    assert user.outcome == "failure"
    with pytest.raises(DQNLMError, match="over"):
        user.step(Act("greeting"))


def test_max_turns_counts_utterances_of_both_sides(domain, kb, goal, record):
    def play(max_turns: int, acts: list[Act]) -> UserSimulator:
        user, _ = start(domain, kb, Goal(goal.constraints, ("ticket",)), max_turns=max_turns)
        for act in acts:
            user.step(act)
        return user

    win = [
        booking(goal),
        Act("thanks"),
    ]  # utterances: opening 1, booking 2, thanks 3, agent thanks 4
    assert play(4, win).outcome == "success"
    assert play(3, win).outcome == "failure"  # the agent's thanks would be utterance 4
    slow = [Act("greeting"), *win]  # now the user's thanks would be utterance 5
    user = play(4, slow[:2])
    assert user.outcome == "failure" and user.turn == 5


def test_noise_changes_what_the_agent_hears_not_what_the_user_wants(domain, kb, goal):
    noisy, opening = start(domain, kb, goal, slot_error_rate=1.0, intent_error_rate=1.0)
    assert opening.intent != "request"
    assert all(opening.inform[s] != goal.constraints[s] for s in opening.inform)
    reply = noisy.step(Act("request", {}, ("numberofpeople",)))
    assert reply.inform["numberofpeople"] != "2" and reply.intent != "inform"
    assert noisy.untold == [
        s for s in goal.constraints if s not in opening.inform and s != "numberofpeople"
    ]
    again, repeat = start(domain, kb, goal, slot_error_rate=1.0, intent_error_rate=1.0)
    assert repeat == opening  # seeded
    rates = [
        start(domain, kb, goal, seed, slot_error_rate=0.3)[1].inform["moviename"]
        != goal.constraints["moviename"]
        for seed in range(400)
    ]
    assert 0.2 < np.mean(rates) < 0.4
