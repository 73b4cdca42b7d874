"""Model sources: directories, hub names and .gguf files."""

import pytest

pytest.importorskip("transformers")

from lm_helpers import save_tiny_lm  # noqa: E402

from dqnlm.errors import DQNLMError  # noqa: E402
from dqnlm.lm.models import _location, context_length, load_model, load_tokenizer  # noqa: E402


def test_a_gguf_file_loads_from_its_folder(tmp_path):
    gguf = tmp_path / "m.Q4.gguf"
    gguf.write_bytes(b"")
    assert _location(str(gguf)) == (str(tmp_path), {"gguf_file": "m.Q4.gguf"})
    assert _location(str(tmp_path)) == (str(tmp_path), {})
    assert _location("org/name") == ("org/name", {})


def test_a_tokenizer_without_pad_gets_end_of_text_and_left_padding(tmp_path):
    directory = save_tiny_lm(tmp_path / "m", n_positions=24)
    tokenizer = load_tokenizer(str(directory))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and tokenizer.padding_side == "left"
    model = load_model(str(directory))
    assert context_length(model) == 24 and not model.training


def test_an_unreachable_hub_name_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DQNLMError) as error:
        load_tokenizer("nobody-xyz/not-a-model")
    assert "not a local directory" in str(error.value) and "\n" not in str(error.value)


def test_resolving_the_default_model_says_it_will_pretrain_before_it_starts(
    tmp_path, monkeypatch, capsys
):
    import dqnlm.lm.pretrain as pretrain_module
    from dqnlm.lm.models import resolve_model_source

    events = []
    monkeypatch.setattr(pretrain_module, "default_model_dir", lambda: tmp_path / "model")

    def pretrain(config, out, progress=True):
        events.append(("pretrain", capsys.readouterr().err))

    monkeypatch.setattr(pretrain_module, "pretrain", pretrain)
    assert resolve_model_source("", progress=False) == str(tmp_path / "model")
    ((what, said),) = events
    assert what == "pretrain" and len(said.strip().splitlines()) == 1
    assert "pretraining it first" in said and "minutes" in said
    assert resolve_model_source("some/model") == "some/model" and len(events) == 1
