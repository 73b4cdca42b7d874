"""Torch RNG states as tensors (for safetensors checkpoints), CUDA included.

Exact resume needs every generator a run draws from: the CPU generator and, on a GPU,
one generator per CUDA device (sampling and dropout there never touch the CPU one).
"""

from __future__ import annotations

import contextlib

import torch

_CPU = "rng.torch"
_CUDA = "rng.cuda."


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def rng_tensors() -> dict[str, torch.Tensor]:
    """``{"rng.torch": cpu state, "rng.cuda.0": device 0's state, ...}``."""
    states = {_CPU: torch.get_rng_state()}
    for device in _cuda_devices():
        states[f"{_CUDA}{device}"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_tensors` saved (other keys are ignored). CUDA states are
    restored on the devices present; a run resumed on another machine keeps the rest."""
    torch.set_rng_state(tensors[_CPU])
    present = set(_cuda_devices())
    for key, state in tensors.items():
        if key.startswith(_CUDA) and int(key.removeprefix(_CUDA)) in present:
            torch.cuda.set_rng_state(state, int(key.removeprefix(_CUDA)))


def fork_rng() -> contextlib.AbstractContextManager:
    """``torch.random.fork_rng`` over the CPU and every CUDA device: draws inside leave the
    training streams untouched."""
    return torch.random.fork_rng(devices=_cuda_devices())
