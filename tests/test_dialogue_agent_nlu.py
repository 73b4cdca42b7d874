"""The agent-side NLU: a round trip over every agent template of every bundled domain
(values, placeholders, "no match"), over every agent turn of whole rule-agent dialogues,
the mapping onto agent actions, and hostile text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqnlm.dialogue import NLG, Act, DialogueConfig, DialogueEnv, RuleAgent, load_domain
from dqnlm.dialogue.acts import NO_MATCH, UNKNOWN
from dqnlm.dialogue.agent_nlu import AgentNLU, placeholder
from dqnlm.dialogue.nlg import agent_templates
from dqnlm.dialogue.schema import bundled_domains


@pytest.fixture(scope="module", params=bundled_domains())
def bundled(request):
    domain = load_domain(request.param)
    return domain, NLG(domain), AgentNLU(domain)


def variants(options) -> range:
    return range(len(options))


def test_every_request_template_round_trips(bundled):
    domain, nlg, nlu = bundled
    for slot, texts in agent_templates(domain)["request"].items():
        for v in variants(texts):
            act = Act("request", {}, (slot,))
            assert nlu.parse(nlg.agent(act, v)) == act, nlg.agent(act, v)


def test_every_inform_template_round_trips_with_every_value_and_its_placeholder(bundled):
    domain, nlg, nlu = bundled
    for slot, texts in agent_templates(domain)["inform"].items():
        values = [*domain.slot(slot).values, placeholder(slot), NO_MATCH]
        for v in variants(texts):
            for value in values:
                act = Act("inform", {slot: value})
                assert nlu.parse(nlg.agent(act, v)) == act, nlg.agent(act, v)


def test_every_slotless_act_template_round_trips(bundled):
    domain, nlg, nlu = bundled
    for intent, texts in agent_templates(domain)["acts"].items():
        for v in variants(texts):
            assert nlu.parse(nlg.agent(Act(intent), v)) == Act(intent)


def test_bookings_round_trip_with_their_details(bundled):
    domain, nlg, nlu = bundled
    booking = domain.booking_slot
    details = {s: domain.slot(s).values[-1] for s in domain.informable if domain.slot(s).values}
    templates = agent_templates(domain)
    for ticket in ("T0000", "T0042", placeholder(booking), NO_MATCH):
        key = "no_match" if ticket == NO_MATCH else "booking"
        for v in variants(templates[key]):
            for stated in ({}, details):
                act = Act("inform", {booking: ticket, **stated})
                assert nlu.parse(nlg.agent(act, v)) == act, nlg.agent(act, v)


def test_every_agent_turn_of_rule_dialogues_round_trips(bundled):
    """What the environment's agent actually says (KB values, bookings with details)."""
    domain, nlg, nlu = bundled
    env = DialogueEnv(DialogueConfig(domain=domain.name, split="test"))
    agent = RuleAgent(env.domain)
    said = 0
    for i in range(30):
        obs, info = env.reset(seed=i, options={"goal": i})
        agent.reset()
        done = False
        while not done:
            obs, _, done, _, info = env.step(agent.act(obs, env.tracker))
        for turn in info["turns"]:
            if turn.speaker == "agent":
                assert nlu.parse(turn.text) == turn.act, turn.text
                said += 1
    assert said > 60


def test_every_agent_action_is_reachable_through_words(bundled):
    """Each action's delexicalised text maps back to that action."""
    domain, nlg, nlu = bundled
    for index, action in enumerate(domain.agent_actions):
        if action.slot is None:
            act = Act(action.intent)
        elif action.intent == "request":
            act = Act("request", {}, (action.slot,))
        else:
            act = Act("inform", {action.slot: placeholder(action.slot)})
        assert nlu.action(nlu.parse(nlg.agent(act))) == index, (action, nlg.agent(act))


def test_first_act_said_is_the_action():
    domain = load_domain("movie")
    nlu = AgentNLU(domain)
    act = nlu.parse("Which city are you in? Hello, what can I do for you?")
    assert act == Act("request", {}, ("city",))
    assert domain.agent_actions[nlu.action(act)].intent == "request"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "blah blah", "It is showing at nowhere-in-particular.", "\x00\x1b[31m", "é" * 50],
)
def test_unreadable_text_is_unknown_and_no_action(text):
    nlu = AgentNLU(load_domain("movie"))
    assert nlu.parse(text) == Act(UNKNOWN)
    assert nlu.action(Act(UNKNOWN)) is None


def test_a_request_for_a_slot_outside_the_action_space_is_no_action():
    domain = load_domain("movie")
    nlu = AgentNLU(domain)
    ticket = domain.ticket_slot
    assert nlu.action(Act("request", {}, (ticket,))) is None
    assert nlu.action(Act("inform", {ticket: "x"})) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_string_parses(text):
    nlu = AgentNLU(load_domain("restaurant"))
    act = nlu.parse(text)
    assert isinstance(act, Act)
    action = nlu.action(act)
    assert action is None or 0 <= action < len(nlu.domain.agent_actions)


def test_a_megabyte_of_text_parses_quickly():
    nlu = AgentNLU(load_domain("movie"))
    assert nlu.parse("Which city are you in? " * 50_000).request == ("city",)


def test_a_placeholder_outside_any_template_names_the_slot_it_informs():
    domain = load_domain("movie")
    nlu = AgentNLU(domain)
    act = nlu.parse("The distance is <zip>.")
    assert act == Act("inform", {"zip": placeholder("zip")})
    assert domain.agent_actions[nlu.action(act)].slot == "zip"
    assert nlu.parse("<no_such_slot>") == Act(UNKNOWN)
