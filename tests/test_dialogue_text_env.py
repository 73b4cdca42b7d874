"""The multi-turn text environment: the rule agent speaking words plays exactly as it does
with act indices, in every bundled domain and an unshipped schema file; unreadable,
empty, endless and non-UTF-8 turns cost a turn and never crash; the state line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dqnlm.dialogue import DialogueConfig, DialogueEnv, RuleAgent
from dqnlm.dialogue.acts import UNKNOWN
from dqnlm.dialogue.agents import evaluate
from dqnlm.dialogue.text_env import AGENT, STATE, USER, TextDialogueEnv, match_bucket

HOTEL = str(Path(__file__).resolve().parents[1] / "examples" / "domains" / "hotel.json")


def play_rule(env: TextDialogueEnv, episodes: int, seed: int) -> tuple[float, float]:
    agent = RuleAgent(env.domain)
    wins, turns = 0, 0
    for i in range(episodes):
        env.reset(seed=seed + i, goal=i % len(env.goals))
        agent.reset()
        done = False
        while not done:
            _, _, done, info = env.step(env.say(agent.act(None, env.env.tracker)))
        wins += info["success"]
        turns += len(env.agent_turns)
    return wins / episodes, turns / episodes


@pytest.mark.parametrize("domain", ["movie", "restaurant", HOTEL])
def test_the_rule_agent_in_words_plays_as_it_does_in_acts(domain):
    config = DialogueConfig(domain=domain, split="test")
    success, turns = play_rule(TextDialogueEnv(config), 40, seed=7)
    act_env = DialogueEnv(dataclasses.replace(config, text_level=True))
    acts = evaluate(act_env, RuleAgent(act_env.domain), 7, 40)
    assert (success, turns) == (acts["success_rate"], acts["avg_turns"])
    assert 0.1 < success < 0.9


def test_observation_format_and_state_line():
    env = TextDialogueEnv(DialogueConfig(split="test"))
    obs = env.reset(seed=0, goal=0)
    lines = obs.split("\n")
    assert lines[0].startswith(USER + " ") and lines[1].startswith(STATE + " known ")
    assert lines[-1] == AGENT
    assert "booked no" in lines[1]
    bare = TextDialogueEnv(DialogueConfig(split="test"), state_line=False).reset(seed=0, goal=0)
    assert STATE not in bare and bare.endswith(AGENT)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "blah " * 10_000, b"\xff\xfe\xfd not utf-8", "\x00\x1b[2J", "Which ticket?"],
)
def test_unusable_turns_cost_a_turn_and_the_dialogue_goes_on(text):
    env = TextDialogueEnv(DialogueConfig(split="test"))
    env.reset(seed=0, goal=0)
    known = dict(env.env.tracker.known)
    obs, reward, done, info = env.step(text)
    turn = info["agent_turn"]
    assert turn.action is None and reward == -1.0 and not done and obs.endswith(AGENT)
    assert turn.act.intent == UNKNOWN or turn.act.request == ("ticket",)
    assert env.env.tracker.agent_act.intent == UNKNOWN
    assert set(known) <= set(env.env.tracker.known)  # the user may move on; nothing is lost


def test_wasting_every_turn_fails_at_the_turn_limit():
    env = TextDialogueEnv(DialogueConfig(split="test", max_turns=10))
    env.reset(seed=0, goal=0)
    done, steps = False, 0
    while not done:
        _, reward, done, info = env.step("hmm")
        steps += 1
    assert not info["success"] and reward == -10.0 and steps <= 5


def test_words_reach_the_user_with_the_databases_values():
    env = TextDialogueEnv(DialogueConfig(split="test"))
    env.reset(seed=0, goal=0)
    _, _, _, info = env.step("Great, you are booked. Your ticket number is <taskcomplete>.")
    turn = info["agent_turn"]
    assert turn.written.endswith("<taskcomplete>.") and "<" not in turn.spoken
    assert "T0" in turn.spoken or "no showing" in turn.spoken.lower()
    assert "heard as" in env.transcript()


def test_every_action_said_in_words_performs_that_action():
    env = TextDialogueEnv(DialogueConfig(split="test"))
    for action in range(len(env.domain.agent_actions)):
        env.reset(seed=0, goal=0)
        _, _, _, info = env.step(env.say(action))
        assert info["agent_turn"].action == action


def test_match_buckets():
    assert [match_bucket(n) for n in (0, 1, 2, 5, 6, 20, 21, 100, 101, 5000)] == [
        "0", "1", "2-5", "2-5", "6-20", "6-20", "21-100", "21-100", "101+", "101+",
    ]  # fmt: skip
