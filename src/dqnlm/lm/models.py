"""Loading the Q-network (any Hugging Face causal LM), its tokenizer and its reference.

The reference model is the frozen model training started from. Without LoRA it is a
frozen copy; with LoRA it is the same model with its adapters disabled, so no second
copy of the weights exists.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import torch

from dqnlm.errors import DQNLMError
from dqnlm.lm.quiet import quiet_transformers

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_model_source(spec: str, progress: bool = True) -> str:
    """The directory or hub name to load; the embedded default is pretrained on first use."""
    from dqnlm.lm.pretrain import SUMMARY, PretrainConfig, default_model_dir, pretrain

    if spec:
        return spec
    default = default_model_dir()
    if not (default / SUMMARY).is_file():
        print(
            f"no embedded model in {default} yet: pretraining it first, once "
            "(about 6-7 minutes on 2 CPU cores; `dqnlm lm pretrain` does it ahead of time)",
            file=sys.stderr,
        )
        pretrain(PretrainConfig(), default, progress=progress)
    return str(default)


def _location(source: str) -> tuple[str, dict]:
    """``from_pretrained`` arguments: a ``.gguf`` file loads from its folder with ``gguf_file``."""
    path = Path(source)
    if path.suffix == ".gguf" and path.is_file():
        return str(path.parent), {"gguf_file": path.name}  # transformers dequantises it
    return source, {}


PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def _check_directory(source: str, allow_pickles: bool) -> None:
    """Clear one-line refusals for a local folder that is empty or holds only pickles."""
    folder = Path(source)
    if not folder.is_dir():
        return
    if not (folder / "config.json").is_file():
        raise DQNLMError(
            f"{source} is not a Hugging Face model directory: it has no config.json "
            "(save one with model.save_pretrained and tokenizer.save_pretrained)"
        )
    pickles = [p.name for pattern in PICKLED for p in folder.glob(pattern)]
    if pickles and not allow_pickles and not any(folder.glob("*.safetensors")):
        raise DQNLMError(
            f"{source} holds only pickled weights ({', '.join(sorted(pickles))}), which can run "
            "code when loaded; refused: convert them to safetensors, or pass --trust-code if "
            "you trust this folder"
        )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all (so an unknown name fails in seconds)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_pretrained(cls, source: str, allow_pickles: bool, **kwargs):
    """``cls.from_pretrained(source)`` with every failure as one DQNLMError line.

    A name that is not a local path is looked up in the hub cache first and fetched only
    when the hub is reachable: offline, it fails at once instead of retrying for a minute.
    """
    where, extra = _location(source)
    if not extra:  # a .gguf file carries its own config and no pickles
        _check_directory(where, allow_pickles)
    try:
        with quiet_transformers():
            if Path(where).exists():
                return cls.from_pretrained(where, **extra, **kwargs)
            try:
                return cls.from_pretrained(where, local_files_only=True, **extra, **kwargs)
            except OSError:
                if not _hub_reachable():
                    raise DQNLMError(_load_error(source, None)) from None
            return cls.from_pretrained(where, **extra, **kwargs)
    except DQNLMError:
        raise
    except Exception as e:  # OSError, ValueError, safetensors' own errors on a truncated file
        raise DQNLMError(_load_error(source, e)) from None


def load_tokenizer(source: str):
    """The tokenizer of ``source``, given a pad token (end-of-text) when it has none."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, source, allow_pickles=True)  # no weights
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise DQNLMError(
                f"the tokenizer of {source} has neither a pad nor an end-of-text token"
            )
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 style: padding is masked anyway
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(
    source: str,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    trust_code: bool = False,
):
    """``AutoModelForCausalLM`` from a directory, hub name or ``.gguf`` file, in eval mode.

    Weights load from safetensors (or GGUF) only: pickled ``pytorch_model.bin`` files can
    run code, so they load only with ``trust_code``. Dropout stays off during training
    too: it would make Q, its targets and the KL noisy.
    """
    from transformers import AutoModelForCausalLM

    safe = {} if trust_code or _location(source)[1] else {"use_safetensors": True}
    model = _from_pretrained(AutoModelForCausalLM, source, trust_code, dtype=DTYPES[dtype], **safe)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return model.to(device).eval()


def _load_error(source: str, error: Exception | None) -> str:
    if error is not None and (Path(source).exists() or "/" not in source and Path(source).suffix):
        detail = " ".join(str(error).split())  # transformers' messages span lines
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
