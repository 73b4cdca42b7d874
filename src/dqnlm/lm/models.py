"""Loading the Q-network (any Hugging Face causal LM), its tokenizer and its reference.

The reference model is the frozen model training started from. Without LoRA it is a
frozen copy; with LoRA it is the same model with its adapters disabled, so no second
copy of the weights exists.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path

import torch

from dqnlm.errors import DQNLMError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_model_source(spec: str, progress: bool = True) -> str:
    """The directory or hub name to load; the embedded default is pretrained on first use."""
    from dqnlm.lm.pretrain import SUMMARY, PretrainConfig, default_model_dir, pretrain

    if spec:
        return spec
    default = default_model_dir()
    if not (default / SUMMARY).is_file():
        print(f"no embedded model in {default} yet: pretraining it once (about 5 minutes)")
        pretrain(PretrainConfig(), default, progress=progress)
    return str(default)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load-time chatter (progress bars, hub retries) for one call."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _location(source: str) -> tuple[str, dict]:
    """``from_pretrained`` arguments: a ``.gguf`` file loads from its folder with ``gguf_file``."""
    path = Path(source)
    if path.suffix == ".gguf" and path.is_file():
        return str(path.parent), {"gguf_file": path.name}  # transformers dequantises it
    return source, {}


def load_tokenizer(source: str):
    """The tokenizer of ``source``, given a pad token (end-of-text) when it has none."""
    from transformers import AutoTokenizer

    where, extra = _location(source)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where, **extra)
    except (OSError, ValueError) as e:
        raise DQNLMError(_load_error(source, e)) from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise DQNLMError(
                f"the tokenizer of {source} has neither a pad nor an end-of-text token"
            )
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 style: padding is masked anyway
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(source: str, dtype: str = "float32", device: str | torch.device = "cpu"):
    """``AutoModelForCausalLM`` from a directory, hub name or ``.gguf`` file, in eval mode.

    Dropout stays off during training too: it would make Q, its targets and the KL noisy.
    """
    from transformers import AutoModelForCausalLM

    where, extra = _location(source)
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(where, dtype=DTYPES[dtype], **extra)
    except (OSError, ValueError) as e:
        raise DQNLMError(_load_error(source, e)) from None
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return model.to(device).eval()


def _load_error(source: str, error: Exception) -> str:
    if Path(source).exists() or "/" not in source and Path(source).suffix:
        detail = str(error).splitlines()[0]
        return f"cannot load a causal LM from {source}: {detail}"
    return (
        f"model {source!r} is not a local directory and could not be fetched from the "
        "Hugging Face hub (offline?); give the path of a model directory"
    )


def context_length(model) -> int | None:
    """The most positions the model attends to, when its config says."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def add_lora(model, rank: int, alpha: float):
    """Wrap ``model`` with LoRA adapters on its attention/MLP projections (peft)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise DQNLMError("lora_rank > 0 needs peft: pip install 'dqnlm[lm]'") from None
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear")
    return get_peft_model(model, config).eval()


def is_adapter(name: str) -> bool:
    """LoRA adapter parameters (the only trained ones with LoRA)."""
    return "lora_" in name


def reference_of(model, lora: bool):
    """A callable ``ref(**inputs)`` giving the reference model's outputs, without gradients."""
    if lora:

        @torch.no_grad()
        def reference(**inputs):
            with model.disable_adapter():
                return model(**inputs)

        return reference
    frozen = copy.deepcopy(model).requires_grad_(False).eval()
    return torch.no_grad()(frozen)
