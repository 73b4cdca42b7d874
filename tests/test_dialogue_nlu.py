"""Template NLG and rule NLU: a round trip over every user template and every user turn of
whole dialogues (in every bundled domain), agent text for every action, and any input
string parses."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqnlm.dialogue import NLG, NLU, Act, DialogueConfig, DialogueEnv, RuleAgent, load_domain
from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, UNKNOWN
from dqnlm.dialogue.nlg import user_templates
from dqnlm.dialogue.schema import bundled_domains


@pytest.fixture(scope="module")
def domain():
    return load_domain("movie")


@pytest.fixture(scope="module")
def nlg(domain):
    return NLG(domain)


@pytest.fixture(scope="module")
def nlu(domain):
    return NLU(domain)


@pytest.fixture(scope="module", params=bundled_domains())
def bundled(request):
    """Each bundled domain (movie, restaurant) with its NLG and NLU."""
    domain = load_domain(request.param)
    return domain, NLG(domain), NLU(domain)


def single_slot_acts(domain):
    """One act per (template, value): every user template, every value of its slot."""
    templates = user_templates(domain)
    for slot, texts in templates["inform"].items():
        for variant in range(len(texts)):
            for value in domain.slot(slot).values:
                yield Act("inform", {slot: value}), variant
    for slot, texts in templates["request"].items():
        for variant in range(len(texts)):
            yield Act("request", {}, (slot,)), variant
    for variant in range(len(templates["dont_care"])):
        for slot in domain.informable:
            yield Act("inform", {slot: DONT_CARE}), variant
    for intent, texts in templates["acts"].items():
        for variant in range(len(texts)):
            yield Act(intent), variant


def test_round_trip_over_every_user_template(bundled):
    domain, nlg, nlu = bundled
    failures = [
        (text, act, nlu.parse(text))
        for act, variant in single_slot_acts(domain)
        for text in [nlg.user(act, variant)]
        if nlu.parse(text) != act
    ]
    assert failures == []


def test_round_trip_over_whole_dialogues(bundled):
    domain, _, nlu = bundled
    env = DialogueEnv(DialogueConfig(domain=domain.name, split="test"))
    checked = 0
    for agent in (RuleAgent(domain), RuleAgent(domain, domain.informable)):
        for goal in range(len(env.goals)):
            obs, info = env.reset(seed=goal, options={"goal": goal})
            agent.reset()
            done = False
            while not done:
                obs, _, done, _, info = env.step(agent.act(obs, env.tracker))
            for turn in info["turns"]:
                if turn.speaker == "user":
                    assert nlu.parse(turn.text) == turn.act, turn.text
                    checked += 1
    assert checked > 1000


def test_user_text_reads_naturally(nlg):
    act = Act("request", {"moviename": "paper comets", "numberofpeople": "3"}, ("theater",))
    assert nlg.user(act) == "I want to see paper comets. 3 tickets, please. Which theater is it at?"
    assert nlg.user(Act("inform", {"genre": DONT_CARE}), 1) == "Any genre is fine."
    assert nlg.user(Act("inform")) == "Okay."


def test_agent_text_for_every_action(domain, nlg):
    env = DialogueEnv(DialogueConfig(split="test"))
    env.reset(seed=0, options={"goal": 0})
    for index, action in enumerate(domain.agent_actions):
        text = nlg.agent(env.tracker.act(index))
        assert text and "{" not in text, action
    booking = Act(
        "inform", {"taskcomplete": "T0042", "moviename": "paper comets", "numberofpeople": "2"}
    )
    assert nlg.agent(booking) == (
        "Great, you are booked. Your ticket number is T0042. (movie: paper comets, number of people: 2)"
    )
    assert nlg.agent(Act("inform", {"taskcomplete": NO_MATCH})).startswith("Sorry")
    assert nlg.agent(Act("inform", {"zip": NO_MATCH})) == "Sorry, I found no zip code for that."
    assert nlg.agent(Act("inform", {"zip": "20114"})) == "The zip code is 20114."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanks!!", Act("thanks")),
        ("hey", Act("greeting")),
        ("no", Act("deny")),
        ("Is PAPER COMETS playing tomorrow in IMAX 3D?", None),
        ("what's the price?", Act("request", {}, ("price",))),
        ("any   Start Time is fine", Act("inform", {"starttime": DONT_CARE})),
        (
            "tin soldiers of tomorrowland",
            Act("inform", {"moviename": "tin soldiers of tomorrowland"}),
        ),
    ],
)
def test_keywords_and_loose_text(nlu, text, expected):
    got = nlu.parse(text)
    if expected is None:
        assert got == Act(
            "inform", {"moviename": "paper comets", "date": "tomorrow", "video_format": "imax 3d"}
        )
    else:
        assert got == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\x00\x01\x7f",
        "日本語のテキストです",
        "(((*+?[",
        "asdf qwer zxcv",
        "🎬🍿" * 50,
        "ﬁlm",
    ],
)
def test_nonsense_parses_to_unknown(nlu, text):
    assert nlu.parse(text) == Act(UNKNOWN)


def test_very_long_input_is_fast(nlu):
    start = time.perf_counter()
    act = nlu.parse("I want to see paper comets. " + "blah " * 200_000)
    assert time.perf_counter() - start < 1.0
    assert act == Act("inform", {"moviename": "paper comets"})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_string_parses(nlu, text):
    act = nlu.parse(text)
    assert isinstance(act, Act) and isinstance(act.intent, str)
