"""The embedded offline language model: IMDb loading and GPT-2 pretraining (tiny configs)."""

import json

import pytest

pytest.importorskip("transformers")

from dqnlm.cli import main  # noqa: E402
from dqnlm.errors import DQNLMError  # noqa: E402
from dqnlm.lm.data import clean_review, load_reviews, opening_words, split_reviews  # noqa: E402
from dqnlm.lm.pretrain import PretrainConfig, default_model_dir, pretrain  # noqa: E402

TINY = PretrainConfig(
    steps=4,
    batch_size=4,
    context=32,
    vocab_size=300,
    n_layer=1,
    n_embd=32,
    n_head=2,
    eval_every=2,
    max_reviews=150,
)


def test_reviews_are_cleaned_and_split_deterministically():
    assert clean_review("Great.<br /><br />Really  <BR/>great.") == "Great. Really great."
    assert len(load_reviews()) == 25_000  # the IMDb rows only, not the Rotten Tomatoes ones
    reviews = load_reviews(limit=200)
    assert len(reviews) == 200 and not any("<br" in r.lower() for r in reviews)
    train, held = split_reviews(reviews, held_out=0.1, seed=3)
    assert (len(train), len(held)) == (180, 20) and not set(train) & set(held)
    assert split_reviews(reviews, held_out=0.1, seed=3) == (train, held)
    assert opening_words("one two three four five six seven eight nine", 8).split()[-1] == "eight"


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DQNLM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_model_dir() == tmp_path / "xdg" / "dqnlm" / "imdb-gpt2"
    monkeypatch.setenv("DQNLM_CACHE", str(tmp_path / "mine"))
    assert default_model_dir() == tmp_path / "mine" / "imdb-gpt2"


def test_pretrain_writes_a_loadable_model_and_replaces_atomically(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "model"
    assert pretrain(TINY, out, progress=False) == out
    summary = json.loads((out / "pretrain.json").read_text())
    assert [h["step"] for h in summary["history"]] == [2, 4]
    assert summary["reviews"] == {"train": 147, "held_out": 3}
    assert (out / "model.safetensors").is_file()
    prompts = [json.loads(line) for line in (out / "held_out.jsonl").read_text().splitlines()]
    assert len(prompts) == 3 and all(len(p["prompt"].split()) <= 8 for p in prompts)

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.n_positions == TINY.context and len(tokenizer) <= TINY.vocab_size
    ids = tokenizer("This movie was", return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert generated.shape[1] == ids.shape[1] + 5

    pretrain(TINY, out, progress=False)  # a second run replaces the first in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_pretrain_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DQNLMError, match="refusing to overwrite"):
        pretrain(TINY, tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_rejects_bad_steps(capsys):
    assert main(["lm", "pretrain", "--steps", "0"]) == 1
    assert "--steps must be >= 1, got 0" in capsys.readouterr().err
