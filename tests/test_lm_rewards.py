"""Reward specs for ``dqnlm lm train --reward``: built-ins, a tiny local classifier, user callables."""

import math
import sys

import pytest

pytest.importorskip("vaderSentiment")
pytest.importorskip("transformers")

from dqnlm.errors import DQNLMError  # noqa: E402
from dqnlm.lm.rewards import REWARD_NAMES, parse_reward  # noqa: E402

POSITIVE = "What a wonderful, delightful film. I loved every minute of it!"
NEGATIVE = "A terrible, boring, awful movie. I hated it."


def test_vader_scores_sentiment_in_batch_order():
    reward = parse_reward("vader")
    pos, neg, pos_again = reward([POSITIVE, NEGATIVE, POSITIVE])
    assert pos > 0.5 and neg < -0.5 and pos_again == pos
    assert reward([NEGATIVE]) == [neg] and repr(reward) == "vader"
    with pytest.raises(DQNLMError, match="takes no argument"):
        parse_reward("vader:x")


def test_keyword_matches_whole_words_ignoring_case():
    reward = parse_reward("keyword:great, fun")
    texts = ["Great movie.", "the greatest", "so FUN!", "funny", "nothing here"]
    assert reward(texts) == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert parse_reward("keyword:c++")(["I like C++.", "I like c"]) == [1.0, 0.0]
    assert repr(reward) == "keyword:great, fun"
    for spec in ("keyword:", "keyword: , "):
        with pytest.raises(DQNLMError, match="keyword"):
            parse_reward(spec)


def test_regex_search_and_invalid_pattern():
    reward = parse_reward(r"regex:\bend\.$")
    assert reward(["the end.", "the end. Or not", "no"]) == [1.0, 0.0, 0.0]
    assert parse_reward("regex:a:b")(["xa:by", "ab"]) == [1.0, 0.0]  # colons belong to the pattern
    with pytest.raises(DQNLMError, match=r"'\(unclosed'.*missing \)"):
        parse_reward("regex:(unclosed")


def test_length_is_closeness_to_target_word_count():
    reward = parse_reward("length:4")
    texts = ["", "a b", "a b c d", "a b c d e f", "a b c d e f g h", " ".join("x" * 20)]
    assert reward(texts) == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    for bad in ("0", "-3", "abc", "2.5"):
        with pytest.raises(DQNLMError, match=repr(bad)):
            parse_reward(f"length:{bad}")
    with pytest.raises(DQNLMError, match="needs an argument: length:N"):
        parse_reward("length")


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A random 2-label BERT with a word-level tokenizer, saved as a local model directory."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "a",
        "wonderful",
        "terrible",
        "film",
        "movie",
        "i",
        "loved",
        "hated",
        "it",
    ]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", model_max_length=16
    )
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier")
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_classifier_gives_label_probabilities(classifier_dir):
    texts = [POSITIVE.lower(), NEGATIVE.lower(), "a " * 40, ""]  # the third is truncated
    default = parse_reward(f"classifier:{classifier_dir}")(texts)
    pos = parse_reward(f"classifier:{classifier_dir}@POSITIVE")(texts)
    neg = parse_reward(f"classifier:{classifier_dir}@NEGATIVE")(texts)
    assert len(default) == len(texts) and all(0.0 <= p <= 1.0 for p in default)
    assert default == pytest.approx(pos)  # the last label is the default
    assert [p + n for p, n in zip(pos, neg)] == pytest.approx([1.0] * len(texts))
    assert parse_reward(f"classifier:{classifier_dir}")(texts[:1]) == pytest.approx(pos[:1])


def test_classifier_errors_name_the_path_or_label(classifier_dir, tmp_path):
    with pytest.raises(DQNLMError, match="not found: .*nowhere"):
        parse_reward(f"classifier:{tmp_path / 'nowhere'}")
    with pytest.raises(DQNLMError, match="cannot load a text classifier from"):
        parse_reward(f"classifier:{tmp_path}")
    with pytest.raises(DQNLMError, match="'NEUTRAL' is not one of .*NEGATIVE, POSITIVE"):
        parse_reward(f"classifier:{classifier_dir}@NEUTRAL")


MODULE = """
import math

def score(texts):
    return [len(t) / 10 for t in texts]

def short(texts):
    return [0.0]

def nan(texts):
    return [math.nan for _ in texts]

def words(texts):
    return "not a number"

not_callable = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "dqnlm_test_reward_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "dqnlm_test_reward_mod"
    sys.modules.pop("dqnlm_test_reward_mod", None)


def test_user_callable_is_imported_and_checked(user_module):
    for spec in (f"{user_module}:score", f"python:{user_module}:score"):
        reward = parse_reward(spec)
        assert reward(["abcde", "", "abcdefghij"]) == [0.5, 0.0, 1.0] and repr(reward) == spec
    with pytest.raises(DQNLMError, match=r"short.*returned 1 scores for 2 texts"):
        parse_reward(f"{user_module}:short")(["a", "b"])
    with pytest.raises(DQNLMError, match=r"nan'.*NaN"):
        parse_reward(f"{user_module}:nan")(["a"])
    with pytest.raises(DQNLMError, match=r"words'.*list of floats"):
        parse_reward(f"{user_module}:words")(["a"])
    assert math.isfinite(parse_reward(f"{user_module}:score")(["x"])[0])


def test_user_callable_import_errors(user_module):
    with pytest.raises(DQNLMError, match="cannot import module 'no_such_reward_mod'"):
        parse_reward("no_such_reward_mod:score")
    for attr in ("missing", "not_callable"):
        with pytest.raises(DQNLMError, match=f"no function '{attr}'"):
            parse_reward(f"{user_module}:{attr}")
    for spec in (f"{user_module}:", "python:", f"python:{user_module}"):
        with pytest.raises(DQNLMError, match="module:function"):
            parse_reward(spec)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(DQNLMError, match="unknown reward 'vadr'") as error:
        parse_reward("vadr")
    assert all(name in str(error.value) for name in REWARD_NAMES)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------ reward shaping
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
def test_shaping_is_potential_based_for_any_gamma(tmp_path, gamma):
    """sum_t gamma^t r_t over a text's tokens is gamma^(T-1) R(text) - R(""): the unshaped
    discounted return minus a constant, so shaping leaves the optimal policy alone."""
    import torch
    from lm_helpers import save_tiny_lm, toy_config, write_prompts

    from dqnlm.lm.generation import decode_completions
    from dqnlm.lm.trainer import LMTrainer

    model = save_tiny_lm(tmp_path / "model")
    prompts = write_prompts(tmp_path / "prompts.jsonl", ["a b", "c d e", "f"])
    config = toy_config(model, prompts, shaping=True, gamma=gamma, reward="length:3")
    trainer = LMTrainer(config, None, progress=False)
    batch, rewards, scores, *_ = trainer._collect()
    texts = decode_completions(trainer.tokenizer, batch)
    assert torch.allclose(scores, trainer.score(texts))
    empty = trainer.score([""])[0]
    for row in range(len(texts)):
        steps = batch.actions[row].nonzero().squeeze(1)  # positions of the generated tokens
        discounts = gamma ** torch.arange(len(steps), dtype=torch.float32)
        shaped = (discounts * rewards[row, steps]).sum()
        expected = gamma ** (len(steps) - 1) * scores[row] - empty
        assert shaped == pytest.approx(float(expected), abs=1e-5), texts[row]
    assert (rewards[batch.actions == 0] == 0).all()
