"""LMTrainer: checkpoints and resume, divergence stops, offline data, LoRA, target modes."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from lm_helpers import SMALL_RUN, save_tiny_lm, toy_config, write_prompts  # noqa: E402

from dqnlm.cli import main  # noqa: E402
from dqnlm.errors import DQNLMError, TrainingDiverged  # noqa: E402
from dqnlm.lm.config import LMConfig  # noqa: E402
from dqnlm.lm.evaluate import evaluate  # noqa: E402
from dqnlm.lm.trainer import LMTrainer  # noqa: E402
from dqnlm.metrics import read_metrics  # noqa: E402
from dqnlm.run import CHECKPOINTS  # noqa: E402

# peft and transformers warn about GPT-2's Conv1D layers and a deprecated name on every LoRA model
pytestmark = [
    pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to False:UserWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

PROMPTS = ["a b", "c d e", "f"]
WORDS = ["a", "b", "c", "d", "e", "f", "x"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny random GPT-2 and a prompts file, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("lm")
    return save_tiny_lm(root / "model"), write_prompts(root / "prompts.jsonl", PROMPTS)


@pytest.fixture
def toy(files):
    """``toy(**overrides)``: a small LMConfig rewarded for saying ``x``; rounds take ~0.1 s."""
    model, prompts = files

    def make(**overrides) -> LMConfig:
        return toy_config(model, prompts, **{**SMALL_RUN, **overrides})

    return make


def train(config: LMConfig, run_dir) -> LMTrainer:
    trainer = LMTrainer(config, run_dir, progress=False)
    trainer.learn(progress=False, tensorboard=False)
    return trainer


def steps(run_dir) -> list[int]:
    return [int(r["step"]) for r in read_metrics(run_dir / "metrics.csv")]


def latest(run_dir) -> str:
    return json.loads((run_dir / CHECKPOINTS / "latest.json").read_text())["checkpoint"]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_same_replay(a, b) -> None:
    assert (a.pos, a.size, a.capacity) == (b.pos, b.size, b.capacity)
    for key in ("tokens", "attention", "actions", "rewards"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def adapters(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------ checkpoints and resume
def test_checkpoint_round_trip_restores_weights_target_counters_and_replay(toy, tmp_path):
    run = tmp_path / "run"
    trainer = train(toy(rounds=4, checkpoint_every=2), run)
    assert latest(run) == "step-0000000004.json"
    loaded = LMTrainer.load(run, trust_code=True)
    assert (loaded.round, loaded.num_updates) == (4, 8) == (trainer.round, trainer.num_updates)
    assert loaded.elapsed == pytest.approx(trainer.elapsed)
    assert loaded.last_checkpoint == run / CHECKPOINTS / "step-0000000004.json"
    assert_same_tensors(trainer._trained_tensors(), loaded._trained_tensors())
    assert_same_tensors(trainer.target.state_dict(), loaded.target.state_dict())
    # the target lags: it is not simply the online network again
    online, target = trainer._trained_tensors(), trainer.target.state_dict()
    assert any(not torch.equal(online[n], target[n]) for n in online)
    assert_same_replay(trainer.replay, loaded.replay)
    assert trainer.replay.size == 32  # 4 rounds x 8 texts
    assert trainer.rng.bit_generator.state == loaded.rng.bit_generator.state
    assert loaded.config == trainer.config


def test_resume_continues_to_more_rounds_and_matches_an_uninterrupted_run(toy, tmp_path):
    run, full = tmp_path / "run", tmp_path / "full"
    train(toy(rounds=4, checkpoint_every=2), run)
    resumed = LMTrainer.load(run, rounds=6, trust_code=True)
    assert (resumed.round, resumed.config.rounds) == (4, 6)
    resumed.learn(progress=False, tensorboard=False)
    assert (resumed.round, resumed.num_updates) == (6, 12)
    assert steps(run) == [1, 2, 3, 4, 5, 6]
    assert latest(run) == "step-0000000006.json"

    # the torch, prompt and replay RNGs are restored too, so a resume is bit-exact
    uninterrupted = train(toy(rounds=6, checkpoint_every=2), full)
    assert_same_tensors(uninterrupted._trained_tensors(), resumed._trained_tensors())
    assert_same_tensors(uninterrupted.target.state_dict(), resumed.target.state_dict())
    a, b = read_metrics(run / "metrics.csv"), read_metrics(full / "metrics.csv")
    for column in ("reward", "kl", "td_loss", "mean_q", "updates"):
        assert [r[column] for r in a] == [r[column] for r in b], column


def test_resume_after_a_crash_drops_rows_logged_after_the_checkpoint(toy, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = LMTrainer(toy(rounds=6, checkpoint_every=2), run, progress=False)
    collect, calls = trainer._collect, []

    class Crash(Exception):
        pass

    def crash_in_round_4():
        calls.append(1)
        if len(calls) == 4:
            raise Crash
        return collect()

    monkeypatch.setattr(trainer, "_collect", crash_in_round_4)
    with pytest.raises(Crash):
        trainer.learn(progress=False, tensorboard=False)
    assert steps(run) == [1, 2, 3] and latest(run) == "step-0000000002.json"

    resumed = LMTrainer.load(run, trust_code=True)
    assert resumed.round == 2
    resumed.learn(progress=False, tensorboard=False)
    assert steps(run) == [1, 2, 3, 4, 5, 6]  # round 3 logged once, not twice


def test_resume_via_cli(toy, tmp_path, capsys):
    run = tmp_path / "run"
    train(toy(rounds=4, checkpoint_every=2), run)
    capsys.readouterr()
    args = ["lm", "train", "--resume", str(run), "--rounds", "6", "--trust-code"]
    assert main([*args, "--no-progress", "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run} at round 4 of 6" in out
    assert steps(run) == [1, 2, 3, 4, 5, 6]

    for extra in (["--seed", "3"], ["--set", "beta=0.2"]):
        assert main([*args, *extra, "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("dqnlm: error: --resume")
        assert "Traceback" not in err
    assert main([*args, "--seed", "3"]) == 1
    assert "(got seed)" in capsys.readouterr().err
    assert steps(run) == [1, 2, 3, 4, 5, 6]  # refused resumes touch nothing


# ------------------------------------------------------------------------ divergence stops
@pytest.fixture
def nan_reward(tmp_path, monkeypatch):
    """The spec of a user reward that returns NaN for every text."""
    name = "dqnlm_test_nan_reward_mod"
    (tmp_path / f"{name}.py").write_text(
        "def nan_reward(texts):\n    return [float('nan')] * len(texts)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"python:{name}:nan_reward"
    sys.modules.pop(name, None)


def test_nan_reward_is_a_one_line_error_naming_the_reward(toy, tmp_path, nan_reward):
    trainer = LMTrainer(toy(reward=nan_reward), tmp_path / "run", progress=False)
    with pytest.raises(DQNLMError) as error:
        trainer.learn(progress=False, tensorboard=False)
    message = str(error.value)
    assert nan_reward in message and "NaN" in message and "\n" not in message
    assert not isinstance(error.value, TrainingDiverged)
    assert not (tmp_path / "run" / CHECKPOINTS).exists()

    # a reward callable set directly (not a spec) is checked by the trainer as well
    trainer.reward = lambda texts: [math.nan] * len(texts)
    with pytest.raises(DQNLMError, match="one finite float per text") as error:
        trainer.score(["a", "b"])
    assert nan_reward in str(error.value) and "\n" not in str(error.value)


def test_non_finite_weights_refuse_to_checkpoint_and_keep_the_last_good_one(toy, tmp_path):
    run = tmp_path / "run"
    trainer = train(toy(rounds=2, checkpoint_every=2), run)
    good = trainer.last_checkpoint
    assert latest(run) == good.name == "step-0000000002.json"
    with torch.no_grad():
        next(iter(trainer.model.parameters()))[0].fill_(math.nan)
    trainer.round += 1
    with pytest.raises(TrainingDiverged, match="not finite") as error:
        trainer.save_checkpoint()
    assert str(good) in str(error.value) and "\n" not in str(error.value)
    assert latest(run) == good.name
    assert not (run / CHECKPOINTS / "step-0000000003.json").exists()
    assert LMTrainer.load(run, trust_code=True).round == 2  # still loadable


def test_non_finite_loss_raises_training_diverged_and_keeps_the_checkpoint(toy, tmp_path):
    run = tmp_path / "run"
    train(toy(rounds=2, checkpoint_every=2), run)
    trainer = LMTrainer.load(run, rounds=6, trust_code=True)
    trainer.replay.rewards.fill_(math.nan)  # every replayed target becomes NaN
    with pytest.raises(TrainingDiverged) as error:
        trainer.learn(progress=False, tensorboard=False)
    message = str(error.value)
    assert "round 3" in message and "td_loss=nan" in message and "\n" not in message
    assert "step-0000000002.json" in message
    assert latest(run) == "step-0000000002.json"
    assert steps(run) == [1, 2]  # the diverged round is not logged
    assert LMTrainer.load(run, trust_code=True).round == 2


# --------------------------------------------------------------------------- offline data
def write_offline(path, n: int = 200, seed: int = 0):
    """Random completions; those that contain the word x earn 1, the rest 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        completion = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 7))))
        reward = 1.0 if "x" in completion.split() else 0.0
        rows.append({"prompt": PROMPTS[i % 3], "completion": completion, "reward": reward})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_offline_cql_training_raises_the_share_of_x(toy, tmp_path):
    data = write_offline(tmp_path / "offline.jsonl")
    config = toy(
        offline_data=str(data),
        cql_alpha=0.5,
        rounds=30,
        updates_per_round=4,
        batch_size=16,
        checkpoint_every=100,
    )
    trainer = LMTrainer(config, tmp_path / "run", progress=False)
    assert trainer.replay.size == trainer.replay.capacity == 200  # the dataset, whole
    replay_before = trainer.replay.tokens.clone()
    eval_prompts = PROMPTS * 32
    before = evaluate(trainer, eval_prompts, len(eval_prompts))["reward"]
    trainer.learn(progress=False, tensorboard=False)
    after = evaluate(trainer, eval_prompts, len(eval_prompts))["reward"]
    # seeds 0-14 all gave before in [0.10, 0.17] and after in [0.31, 0.46]
    assert before < 0.2 and after > before + 0.1, (before, after)
    assert torch.equal(trainer.replay.tokens, replay_before)  # offline: nothing is added

    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 30
    for row in rows:
        assert math.isfinite(float(row["td_loss"]))
        assert row["cql_loss"] != "" and math.isfinite(float(row["cql_loss"]))


def test_offline_rewards_land_on_the_last_generated_token(toy, tmp_path):
    data = tmp_path / "offline.jsonl"
    rows = [
        {"prompt": "a b", "completion": "x x", "reward": 2.5},
        {"prompt": "f", "completion": "c", "reward": -1},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = LMTrainer(toy(offline_data=str(data)), None, progress=False)
    replay, p = trainer.replay, trainer.config.prompt_tokens
    eos = trainer.tokenizer.eos_token_id
    x, c = trainer.tokenizer.convert_tokens_to_ids(["x", "c"])
    # completions end with end-of-text, which is an action and carries the reward
    assert replay.tokens[0, p : p + 3].tolist() == [x, x, eos]
    assert replay.tokens[1, p : p + 2].tolist() == [c, eos]
    assert replay.actions[0].tolist() == [0] * p + [1, 1, 1, 0, 0, 0]
    assert replay.rewards[0, p + 2].item() == 2.5 and replay.rewards[0].sum().item() == 2.5
    assert replay.rewards[1, p + 1].item() == -1.0 and replay.rewards[1].sum().item() == -1.0


def test_bad_offline_lines_are_named(toy, tmp_path):
    data = tmp_path / "offline.jsonl"
    lines = [
        json.dumps({"prompt": "a", "completion": "x", "reward": 1}),
        json.dumps({"prompt": "a", "completion": "x"}),  # 2: missing reward
        json.dumps({"prompt": "a", "completion": "x", "reward": "high"}),  # 3: not a number
        "",  # blank lines are skipped
        "{not json",  # 5
        json.dumps({"prompt": "a", "completion": "x", "reward": True}),  # 6: bool
        json.dumps({"prompt": "a", "completion": "b", "reward": 0.0}),
        '{"prompt": "a", "completion": "x", "reward": NaN}',  # 8: json reads NaN; refused
    ]
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(DQNLMError) as error:
        LMTrainer(toy(offline_data=str(data)), tmp_path / "run", progress=False)
    message = str(error.value)
    assert "lines 2, 3, 5, 6, 8 " in message and str(data) in message
    assert "reward (number)" in message and "\n" not in message
    assert not (tmp_path / "run").exists()

    with pytest.raises(DQNLMError, match="does not exist"):
        LMTrainer(toy(offline_data=str(tmp_path / "missing.jsonl")), None, progress=False)


# ----------------------------------------------------------------------------------- LoRA
@pytest.fixture
def peft():
    return pytest.importorskip("peft")


def base_logits(model_dir, tokens, attention):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return base(input_ids=tokens, attention_mask=attention).logits


def nudge_adapters(model, seed: int = 1, scale: float = 0.3) -> None:
    """Move every adapter as an optimizer step would (lora_B starts at 0: a no-op adapter)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
            p.add_(scale * torch.randn(p.shape, generator=generator))


TOKENS = torch.tensor([[1, 2, 3, 7, 7, 4], [0, 0, 5, 6, 7, 1]])
ATTENTION = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


def test_lora_trains_adapters_only_and_lags_them_only(peft, toy):
    trainer = LMTrainer(toy(lora_rank=2), None, progress=False)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    frozen = [n for n, p in trainer.model.named_parameters() if not p.requires_grad]
    assert frozen and not any("lora_" in n for n in frozen)
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert len(optimized) == len(trainable)
    assert trainer._trained_tensors().keys() == set(trainable)

    shadow = trainer.target.state_dict()
    assert sorted(shadow) == sorted(trainable)
    assert all("lora_" in name for name in shadow)
    assert trainer.target.module is trainer.model  # no second copy of the base model
    # LoRA B starts at zero: the policy starts as its reference
    with torch.no_grad():
        policy = trainer.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
        ref = trainer.reference(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.equal(policy, ref)


def test_lora_polyak_update_by_hand(peft, toy):
    tau = 0.25
    trainer = LMTrainer(toy(lora_rank=2, tau=tau), None, progress=False)
    old = {n: t.clone() for n, t in trainer.target.state_dict().items()}
    nudge_adapters(trainer.model)
    online = adapters(trainer.model)
    assert trainer.target.update(1)
    new = trainer.target.state_dict()
    for name in old:
        expected = (1 - tau) * old[name] + tau * online[name]
        assert torch.allclose(new[name], expected, atol=1e-7), name

    # calling the target swaps the lagged adapters in and the online ones back out
    with torch.no_grad():
        lagged = trainer.target(input_ids=TOKENS, attention_mask=ATTENTION).logits
        params = dict(trainer.model.named_parameters())
        for name, value in new.items():
            params[name].copy_(value)
        by_hand = trainer.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
        for name, value in online.items():
            params[name].copy_(value)
    assert torch.allclose(lagged, by_hand, atol=1e-6)
    assert_same_tensors(adapters(trainer.model), online)


def test_lora_reference_is_the_base_model_with_adapters_disabled(peft, toy, files):
    trainer = LMTrainer(toy(lora_rank=2), None, progress=False)
    nudge_adapters(trainer.model)
    base = base_logits(files[0], TOKENS, ATTENTION)
    with torch.no_grad():
        ref = trainer.reference(input_ids=TOKENS, attention_mask=ATTENTION).logits
        policy = trainer.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.allclose(ref, base, atol=1e-6)
    assert not torch.allclose(policy, base, atol=1e-3)  # the adapters do change the policy
    # and the reference call leaves the adapters enabled
    with torch.no_grad():
        again = trainer.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.equal(again, policy)


def test_lora_checkpoint_round_trip(peft, toy, files, tmp_path):
    run = tmp_path / "run"
    trainer = LMTrainer(toy(lora_rank=2), run, progress=False)
    nudge_adapters(trainer.model, seed=1)
    trainer.target.update(1)
    nudge_adapters(trainer.model, seed=2)  # online and target now differ
    trainer.round, trainer.num_updates = 3, 5
    trainer.save_checkpoint()
    loaded = LMTrainer.load(run, trust_code=True)
    assert (loaded.round, loaded.num_updates) == (3, 5)
    assert_same_tensors(adapters(trainer.model), adapters(loaded.model))
    assert_same_tensors(trainer.target.state_dict(), loaded.target.state_dict())
    assert loaded.config.lora_rank == 2
    with torch.no_grad():
        a = trainer.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
        b = loaded.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
        ref = loaded.reference(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.equal(a, b)
    assert torch.allclose(ref, base_logits(files[0], TOKENS, ATTENTION), atol=1e-6)


def test_lora_training_without_a_target_changes_adapters_not_the_reference(
    peft, toy, files, tmp_path
):
    run = tmp_path / "run"
    config = toy(lora_rank=2, target_update="none", rounds=2, checkpoint_every=1)
    start = adapters(LMTrainer(config, None, progress=False).model)
    trainer = train(config, run)
    trained = adapters(trainer.model)
    assert trained.keys() == start.keys()
    assert any(not torch.equal(start[n], trained[n]) for n in start)
    with torch.no_grad():
        ref = trainer.reference(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.allclose(ref, base_logits(files[0], TOKENS, ATTENTION), atol=1e-6)
    assert trainer.target.state_dict() == {}
    # the checkpoint holds the adapters; the saved model is the adapter alone
    loaded = LMTrainer.load(run, trust_code=True)
    assert loaded.round == 2
    assert_same_tensors(trained, adapters(loaded.model))
    assert (run / "model" / "adapter_config.json").is_file()


@pytest.mark.parametrize("target", ["polyak", "hard"])
def test_lora_training_with_a_target_network(peft, toy, files, tmp_path, target):
    tau = 0.25
    run = tmp_path / "run"
    trainer = LMTrainer(
        toy(lora_rank=2, target_update=target, tau=tau, rounds=2), run, progress=False
    )
    start = adapters(trainer.model)
    trainer.learn(progress=False, tensorboard=False)
    trained = adapters(trainer.model)
    assert any(not torch.equal(start[n], trained[n]) for n in start)
    with torch.no_grad():
        ref = trainer.reference(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.allclose(ref, base_logits(files[0], TOKENS, ATTENTION), atol=1e-6)
    # one more TD update moves the shadow a tau-step toward the new online adapters
    old = {n: t.clone() for n, t in trainer.target.state_dict().items()}
    trainer._update()
    online, new = adapters(trainer.model), trainer.target.state_dict()
    for name in old:
        expected = online[name] if target == "hard" else (1 - tau) * old[name] + tau * online[name]
        assert torch.allclose(new[name], expected, atol=1e-7), name
    loaded = LMTrainer.load(run, trust_code=True)
    assert_same_tensors(trained, adapters(loaded.model))


# --------------------------------------------------------------------------- target modes
@pytest.mark.parametrize("target", ["none", "hard"])
def test_other_target_modes_train(toy, tmp_path, target):
    run = tmp_path / "run"
    trainer = train(toy(target_update=target, target_update_period=3, rounds=2), run)
    assert trainer.num_updates == 4 and steps(run) == [1, 2]
    rows = read_metrics(run / "metrics.csv")
    assert all(math.isfinite(float(r["td_loss"])) and r["cql_loss"] == "" for r in rows)
    online = trainer._trained_tensors()
    if target == "none":
        assert trainer.target.module is trainer.model and trainer.target.state_dict() == {}
    else:
        # hard copies at update 3, then update 4 moved the online network on
        lagged = trainer.target.state_dict()
        assert lagged.keys() == online.keys()
        assert any(not torch.equal(online[n], lagged[n]) for n in online)
    loaded = LMTrainer.load(run, trust_code=True)
    assert loaded.num_updates == 4
    assert_same_tensors(online, loaded._trained_tensors())
    if target == "hard":
        assert_same_tensors(trainer.target.state_dict(), loaded.target.state_dict())


def test_hard_target_with_period_one_tracks_the_online_network(toy, tmp_path):
    trainer = train(toy(target_update="hard", target_update_period=1, rounds=1), tmp_path / "run")
    assert_same_tensors(trainer._trained_tensors(), trainer.target.state_dict())


def test_shaped_rewards_telescope_to_the_text_reward(toy):
    """Potential-based shaping: per-token rewards sum to each text's own reward."""
    trainer = LMTrainer(toy(shaping=True, prompts_per_round=16), None, progress=False)
    batch, rewards, scores, *_ = trainer._collect()
    texts = [
        t
        for t in __import__("dqnlm.lm.generation", fromlist=["x"]).decode_completions(
            trainer.tokenizer, batch
        )
    ]
    assert torch.allclose(rewards.sum(1), trainer.score(texts), atol=1e-6)
    assert torch.allclose(scores, trainer.score(texts), atol=1e-6)
    assert (rewards[batch.actions == 0] == 0).all()  # nothing on prompt or padding
    has_x = [i for i, t in enumerate(texts) if "x" in t.split()]
    assert has_x, texts
    for i in has_x:  # the first x is credited on the token itself
        first_x = texts[i].split().index("x")
        assert rewards[i, batch.prompt_tokens + first_x] > 0


@pytest.mark.parametrize("kind", ["max", "double"])
def test_other_td_kinds_and_bfloat16_train(toy, tmp_path, kind):
    trainer = train(toy(kind=kind, dtype="bfloat16", rounds=2), tmp_path / "run")
    assert next(trainer.model.parameters()).dtype == torch.bfloat16
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 2 and all(math.isfinite(float(r["td_loss"])) for r in rows)
