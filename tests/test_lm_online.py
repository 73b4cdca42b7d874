"""A short online run on a toy reward measurably raises the reward (tiny random GPT-2)."""

import pytest

pytest.importorskip("transformers")

from lm_helpers import save_tiny_lm, toy_config, write_prompts  # noqa: E402

from dqnlm.lm.config import LMConfig  # noqa: E402
from dqnlm.lm.trainer import LMTrainer  # noqa: E402
from dqnlm.metrics import read_metrics  # noqa: E402


@pytest.fixture
def toy(tmp_path):
    """``toy(**overrides)``: an LMConfig on a tiny GPT-2 rewarded for saying ``x``."""
    model = save_tiny_lm(tmp_path / "model")
    prompts = write_prompts(tmp_path / "prompts.jsonl", ["a b", "c d e", "f"])

    def make(**overrides) -> LMConfig:
        return toy_config(model, prompts, **overrides)

    return make


def rewards_and_kls(run_dir):
    rows = read_metrics(run_dir / "metrics.csv")
    return [float(r["reward"]) for r in rows], [float(r["kl"]) for r in rows]


def test_online_q_learning_learns_to_emit_the_rewarded_token(toy, tmp_path):
    trainer = LMTrainer(toy(), tmp_path / "run", progress=False)
    trainer.learn(progress=False, tensorboard=False)
    rewards, kls = rewards_and_kls(tmp_path / "run")
    assert len(rewards) == 25 and trainer.num_updates == 100
    first, last = rewards[0], sum(rewards[-10:]) / 10  # round 0 samples the untrained model
    assert first < 0.3  # a random policy says x about 1 time in 8
    assert last > first + 0.25, rewards
    assert kls[0] == pytest.approx(0.0, abs=1e-5)  # the policy starts as its reference
    assert sum(kls[-5:]) / 5 > 0.1  # and training moved it away
    for name in ("config.toml", "metrics.csv", "reward_kl.png", "model/config.json"):
        assert (tmp_path / "run" / name).is_file(), name
