"""Checkpoint I/O that never unpickles.

A checkpoint is three files sharing a stem, ``step-0000001234``:

* ``.safetensors``: every tensor (weights, optimizer moments, torch RNG state);
* ``.npz`` (optional): numeric arrays such as the replay buffer, read with
  ``allow_pickle=False``;
* ``.json``: counters, config, non-tensor state, and the SHA-256 of the other files.

``latest.json`` names the newest checkpoint. Every file is written to a temporary
name, flushed and renamed into place, and ``latest.json`` is replaced last, so a
process killed at any instant leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

FORMAT_VERSION = 1
LATEST = "latest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, or does not match its recorded hash."""


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] | None
    path: Path  # the checkpoint's .json file


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(
    directory: Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint for ``step``, point ``latest.json`` at it, keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:010d}"
    blobs = {
        ".safetensors": safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()})
    }
    if arrays is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        blobs[".npz"] = buffer.getvalue()
    files = {}
    for suffix, data in blobs.items():
        atomic_write(directory / (stem + suffix), data)
        files[suffix] = {"name": stem + suffix, "sha256": _sha256(data)}
    record = {"format": FORMAT_VERSION, "step": step, "files": files, "meta": meta}
    json_path = directory / f"{stem}.json"
    atomic_write_text(json_path, json.dumps(record, indent=1))
    atomic_write_text(directory / LATEST, json.dumps({"checkpoint": json_path.name}))
    _prune(directory, keep)
    return json_path


def _prune(directory: Path, keep: int) -> None:
    stems = sorted(p.stem for p in directory.glob("step-*.json"))
    for stem in stems[:-keep]:
        for suffix in (".json", ".safetensors", ".npz"):
            (directory / (stem + suffix)).unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e.strerror}") from None


def load_checkpoint(directory: Path, with_arrays: bool = True) -> Checkpoint:
    """Load the checkpoint that ``directory/latest.json`` names, verifying every hash."""
    directory = Path(directory)
    latest = directory / LATEST
    if not latest.exists():
        raise CheckpointError(f"no checkpoint found in {directory} (missing {LATEST})")
    try:
        json_path = directory / Path(json.loads(_read(latest))["checkpoint"]).name
        record = json.loads(_read(json_path))
        files, meta = record["files"], record["meta"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint index in {directory} is malformed: {e}") from None
    if record.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{json_path} has unsupported format {record.get('format')!r}")

    def verified(suffix: str) -> bytes:
        entry = files[suffix]
        data = _read(directory / Path(entry["name"]).name)
        if _sha256(data) != entry["sha256"]:
            raise CheckpointError(
                f"{directory / entry['name']} does not match its recorded SHA-256: "
                "the checkpoint is corrupted or was tampered with"
            )
        return data

    try:
        tensors = safetensors.torch.load(verified(".safetensors"))
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types on bad headers
        raise CheckpointError(
            f"{json_path.with_suffix('.safetensors')} is not valid safetensors: {e}"
        ) from None
    arrays = None
    if with_arrays and ".npz" in files:
        try:
            with np.load(io.BytesIO(verified(".npz")), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(
                f"{json_path.with_suffix('.npz')} is not a valid array file: {e}"
            ) from None
    return Checkpoint(tensors=tensors, meta=meta, arrays=arrays, path=json_path)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state into tensors (for safetensors) and JSON-able metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
