"""The Gymnasium dialogue environment, its reward bookkeeping, and the rule baseline agent."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dqnlm.dialogue import DialogueConfig, DialogueEnv, RuleAgent, evaluate
from dqnlm.errors import ConfigError, DQNLMError

L = 40


@pytest.fixture(scope="module")
def env():
    return DialogueEnv(DialogueConfig(split="test"))


def play(env, agent, goal: int, seed: int = 0):
    obs, info = env.reset(seed=seed, options={"goal": goal})
    agent.reset()
    rewards, done = [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, env.tracker))
        assert env.observation_space.contains(obs) and truncated is False
        rewards.append(reward)
        done = terminated
    return rewards, info


def test_passes_gymnasium_env_checker():
    check_env(
        DialogueEnv(DialogueConfig(slot_error_rate=0.1, intent_error_rate=0.1)),
        skip_render_check=True,
    )


def test_spaces_and_seeded_resets(env):
    assert env.action_space.n == len(env.domain.agent_actions) == 37
    obs, info = env.reset(seed=3)
    again, info_again = env.reset(seed=3)
    assert np.array_equal(obs, again) and info["goal"] == info_again["goal"]
    assert info["outcome"] is None and info["success"] is False
    assert len(info["turns"]) == 1 and info["turns"][0].speaker == "user"
    goals = {tuple(env.reset(seed=s)[1]["goal"].constraints.items()) for s in range(20)}
    assert len(goals) > 10
    with pytest.raises(DQNLMError, match="goal must be an index below 60"):
        env.reset(options={"goal": 60})


def test_reward_bookkeeping_success(env):
    agent = RuleAgent(env.domain, env.domain.informable)  # asks everything: always succeeds
    rewards, info = play(env, agent, goal=0)
    assert info["success"] and info["outcome"] == "success"
    assert rewards[:-1] == [-1.0] * (len(rewards) - 1) and rewards[-1] == 2 * L
    assert len(info["turns"]) == 2 * len(rewards) + 1
    assert info["turns"][-1].act.intent == "thanks"


def test_reward_bookkeeping_failure_and_timeout(env):
    thanks = env.domain.agent_actions.index(
        next(a for a in env.domain.agent_actions if a.intent == "thanks")
    )
    env.reset(seed=0, options={"goal": 0})
    _, reward, terminated, truncated, info = env.step(thanks)
    assert (reward, terminated, truncated, info["outcome"]) == (-L, True, False, "failure")
    with pytest.raises(DQNLMError, match="over"):
        env.step(thanks)

    greeting = 0
    env.reset(seed=0, options={"goal": 0})
    rewards = []
    for _ in range(L):
        _, reward, terminated, _, info = env.step(greeting)
        rewards.append(reward)
        if terminated:
            break
    # the opening is utterance 1; the agent's 20th act is utterance 40, and the reply would be 41
    assert len(rewards) == L // 2 and rewards[-1] == -L and set(rewards[:-1]) == {-1.0}
    assert not info["success"]


def test_render_shows_the_dialogue():
    env = DialogueEnv(DialogueConfig(split="test"), render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.n - 1)
    text = env.render()
    assert text.count("\n") == 3 and "agent: " in text and "[inform(taskcomplete=" in text


def test_config_errors_are_named():
    with pytest.raises(
        ConfigError,
        match="split must be one of train, test.*max_turns must be in \\[3, 1000\\], got 2.*slot_error_rate",
    ):
        DialogueEnv(DialogueConfig(split="dev", max_turns=2, slot_error_rate=1.5))
    with pytest.raises(ConfigError, match="key_slots"):
        RuleAgent(DialogueEnv().domain, ("price",))


def test_rule_agent_success_rate_on_test_goals(env):
    result = evaluate(env, RuleAgent(env.domain), seed=0)
    assert set(result) == {"success_rate", "avg_turns", "avg_reward", "episodes"}
    assert result["episodes"] == 60
    assert result["success_rate"] == pytest.approx(0.533, abs=0.01)  # measured: 32 / 60
    assert 0.3 < result["success_rate"] < 0.75  # TC-Bot reports about 0.4 for its rule agent
    assert result == evaluate(env, RuleAgent(env.domain), seed=0)
    thorough = evaluate(env, RuleAgent(env.domain, env.domain.informable))
    assert thorough["success_rate"] == 1.0  # asking every slot always succeeds without noise


def test_noise_hurts_the_rule_agent():
    noisy = DialogueEnv(DialogueConfig(split="test", slot_error_rate=0.1, intent_error_rate=0.1))
    assert evaluate(noisy, RuleAgent(noisy.domain))["success_rate"] < 0.45


def test_registered_env_trains_with_the_control_dqn(tmp_path):
    """`dqnlm train --env dqnlm.dialogue:Dialogue-v0` works end to end (a tiny run)."""
    from dqnlm.cli import main

    run = tmp_path / "run"
    code = main(
        ["train", "--env", "dqnlm.dialogue:Dialogue-v0", "--total-steps", "300"]
        + ["--set", "learning_starts=100", "--set", "eval_interval=0"]
        + [
            "--set",
            "final_eval_episodes=2",
            "--run-dir",
            str(run),
            "--no-progress",
            "--no-tensorboard",
        ]
    )
    assert code == 0 and (run / "eval.json").is_file()


@pytest.mark.parametrize("domain", ["movie", "restaurant"])
def test_text_level_hears_what_was_said(domain):
    """At text level every user act goes NLG -> text -> NLU; on simulator text the NLU
    recovers each act exactly, so states, rewards and outcomes match the act level."""
    acts = DialogueEnv(DialogueConfig(domain=domain, slot_error_rate=0.1))
    text = DialogueEnv(DialogueConfig(domain=domain, slot_error_rate=0.1, text_level=True))
    rng = np.random.default_rng(0)
    for goal in range(40):
        obs_a, _ = acts.reset(seed=goal, options={"goal": goal})
        obs_t, _ = text.reset(seed=goal, options={"goal": goal})
        done = False
        while not done:
            assert np.array_equal(obs_a, obs_t)
            action = int(rng.integers(acts.action_space.n))
            obs_a, reward_a, done, _, info_a = acts.step(action)
            obs_t, reward_t, _, _, info_t = text.step(action)
            assert reward_a == reward_t
        assert [t.act for t in info_a["turns"]] == [t.act for t in info_t["turns"]]
        assert [t.text for t in info_a["turns"]] == [t.text for t in info_t["turns"]]


def test_text_level_parses_the_words_not_the_act(monkeypatch):
    """What the tracker sees comes from the NLU reading the text."""
    env = DialogueEnv(DialogueConfig(text_level=True))
    monkeypatch.setattr(env.nlg, "user", lambda act, variant=0: "thanks")
    env.reset(seed=0, options={"goal": 0})
    assert env.tracker.user_act.intent == "thanks"
    assert env.turns[0].text == "thanks" and env.turns[0].act.intent == "thanks"
