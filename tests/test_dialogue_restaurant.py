"""The bundled restaurant domain, the schema's ``rule_agent_slots``, and ``evaluate``'s
episode count and keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dqnlm.dialogue import DialogueConfig, DialogueEnv, RuleAgent, build_world, evaluate
from dqnlm.dialogue.schema import bundled_domains, load_domain, parse_domain
from dqnlm.errors import ConfigError

EVALUATE_KEYS = {"success_rate", "avg_turns", "avg_reward", "episodes"}


@pytest.fixture(scope="module")
def domain():
    return load_domain("restaurant")


@pytest.fixture(scope="module")
def raw(domain):
    return json.loads(Path(domain.source).read_text())


@pytest.fixture(scope="module")
def env():
    return DialogueEnv(DialogueConfig(domain="restaurant", split="test"))


# ----------------------------------------------------------------------------- the domain
def test_restaurant_domain_is_bundled_and_complete(domain):
    assert "restaurant" in bundled_domains()
    assert domain.name == "restaurant"
    assert domain.ticket_slot == "reservation" and domain.booking_slot == "taskcomplete"
    for slot in ("restaurantname", "cuisine", "area", "pricerange", "date", "time"):
        assert domain.slot(slot).informable and domain.slot(slot).in_kb
    assert domain.slot("numberofpeople").informable and not domain.slot("numberofpeople").in_kb
    for slot in ("address", "phone"):  # requestable only
        assert domain.slot(slot).requestable and not domain.slot(slot).informable
    assert domain.rule_agent_slots == ("cuisine", "date", "time", "numberofpeople")
    assert all(len(domain.slot(s).values) >= 4 for s in domain.informable)


def test_world_has_the_configured_sizes_and_split(domain):
    world = build_world(domain)
    spec = domain.generation
    assert len(world.kb) == spec.kb_size == 900
    assert len(world.train) + len(world.test) == spec.num_goals == 300
    assert len(world.test) == 60
    lo, hi = spec.extra_constraints
    for goal in world.train + world.test:
        assert {"cuisine", "numberofpeople"} <= set(goal.constraints)
        assert lo <= len(goal.constraints) - 2 <= hi
        assert goal.requests[-1] == "reservation" and len(goal.requests) <= 4
        assert world.kb.first_match(goal.constraints) is not None  # every goal is satisfiable

    def key(goal):
        return (tuple(goal.constraints.items()), goal.requests)

    assert not {key(g) for g in world.train} & {key(g) for g in world.test}
    assert build_world(domain).test == world.test  # seeded


def test_env_builds_and_steps(env):
    assert env.action_space.n == len(env.domain.agent_actions) == 32
    obs, info = env.reset(seed=1, options={"goal": 1})
    assert env.observation_space.contains(obs) and info["turns"][0].speaker == "user"
    obs, reward, terminated, truncated, info = env.step(env.action_space.n - 1)  # book at once
    assert env.observation_space.contains(obs) and truncated is False
    assert "reservation number" in info["turns"][1].text
    check_env(
        DialogueEnv(DialogueConfig(domain="restaurant", slot_error_rate=0.1)),
        skip_render_check=True,
    )


def test_rule_agent_on_the_test_goals(env):
    result = evaluate(env, RuleAgent(env.domain), seed=0)
    assert set(result) == EVALUATE_KEYS and result["episodes"] == 60
    assert result["success_rate"] == pytest.approx(0.5, abs=0.01)  # measured: 30 / 60
    assert 0.2 < result["success_rate"] < 0.7
    thorough = evaluate(env, RuleAgent(env.domain, env.domain.informable))
    assert thorough["success_rate"] == 1.0  # asking every slot always succeeds without noise
    assert thorough["avg_turns"] > result["avg_turns"]


# ----------------------------------------------------------------------------- rule_agent_slots
def test_rule_agent_slots_default_to_the_required_constraints(raw):
    data = copy.deepcopy(raw)
    del data["rule_agent_slots"]
    domain = parse_domain(data, source="inline")
    assert domain.rule_agent_slots == domain.generation.required_constraints
    assert RuleAgent(domain).key_slots == ("cuisine", "numberofpeople")
    assert RuleAgent(load_domain("restaurant")).key_slots == (
        "cuisine",
        "date",
        "time",
        "numberofpeople",
    )
    assert RuleAgent(domain, ("area",)).key_slots == ("area",)  # the override still wins


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (["cuisine", "phone"], "rule_agent_slots: unknown informable slot 'phone'"),
        (
            ["cusine"],
            "rule_agent_slots: unknown informable slot 'cusine' (did you mean 'cuisine'?)",
        ),
        (["date", "date"], "rule_agent_slots: lists 'date' twice"),
        ("cuisine", "rule_agent_slots: must be a list of non-empty strings"),
    ],
)
def test_rule_agent_slots_are_validated(raw, value, needle):
    data = copy.deepcopy(raw)
    data["rule_agent_slots"] = value
    with pytest.raises(ConfigError) as info:
        parse_domain(data, source="my_domain.json")
    assert str(info.value).startswith("invalid domain file my_domain.json: ")
    assert needle in str(info.value)


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_episodes_cycle_the_goals_with_consecutive_seeds(monkeypatch):
    env = DialogueEnv(DialogueConfig(domain="restaurant", split="test"))
    calls = []
    reset = env.reset

    def spy(*, seed=None, options=None):
        calls.append((seed, options["goal"]))
        return reset(seed=seed, options=options)

    monkeypatch.setattr(env, "reset", spy)
    result = evaluate(env, RuleAgent(env.domain), seed=7, episodes=63)
    assert set(result) == EVALUATE_KEYS and result["episodes"] == 63
    assert calls == [(7 + i, i % 60) for i in range(63)]


def test_evaluate_none_plays_each_goal_once_and_n_is_a_prefix(env):
    agent = RuleAgent(env.domain)
    every = evaluate(env, agent, seed=3)
    assert every == evaluate(env, agent, seed=3, episodes=60)
    three = evaluate(env, agent, seed=3, episodes=3)
    assert three["episodes"] == 3

    turns, returns, successes = [], [], []
    for i in range(3):  # the same three dialogues by hand
        obs, info = env.reset(seed=3 + i, options={"goal": i})
        agent.reset()
        total, n, done = 0.0, 0, False
        while not done:
            obs, reward, done, _, info = env.step(agent.act(obs, env.tracker))
            total, n = total + reward, n + 1
        turns.append(n)
        returns.append(total)
        successes.append(info["success"])
    assert three == {
        "success_rate": float(np.mean(successes)),
        "avg_turns": float(np.mean(turns)),
        "avg_reward": float(np.mean(returns)),
        "episodes": 3,
    }


@pytest.mark.parametrize("episodes", [0, -1, 2.5, True, "3"])
def test_evaluate_rejects_a_bad_episode_count(env, episodes):
    with pytest.raises(ConfigError, match="episodes must be an integer >= 1"):
        evaluate(env, RuleAgent(env.domain), episodes=episodes)
