"""Checkpoint I/O that never unpickles.

A checkpoint is three files sharing a stem, ``step-0000001234``:

* ``.safetensors``: every tensor (weights, optimizer moments, torch RNG state);
* ``.npz`` (optional): numeric arrays such as the replay buffer, read with
  ``allow_pickle=False``;
* ``.json``: counters, config, non-tensor state, the SHA-256 of the other files, and a
  SHA-256 of the record itself (everything in it but that field, serialised canonically),
  so an edit to the config, counters, optimizer or RNG state is caught on load.

``latest.json`` names the newest checkpoint. Every file is written to a temporary
name, flushed and renamed into place, and ``latest.json`` is replaced last, so a
process killed at any instant leaves the previous checkpoint intact and loadable.
A write that fails (a full disk) says so in one line and leaves the previous one intact too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

FORMAT_VERSION = 2  # 2: the record carries its own SHA-256
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


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A new folder to fill in the ``with`` block, which then replaces ``target`` (an older
    one is swapped out, then removed); a failed block leaves ``target`` as it was."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    """One byte string per JSON value (sorted keys, no spaces); refuses NaN and infinities."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def record_digest(record: dict[str, Any]) -> str:
    """The SHA-256 of a checkpoint record without its own ``sha256`` field."""
    return _sha256(_canonical({k: v for k, v in record.items() if k != "sha256"}))


def loads_finite(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and numbers too large for a float."""
    return json.loads(text, parse_constant=_refuse_non_finite, parse_float=_finite_float)


def _refuse_non_finite(text: str) -> None:
    raise ValueError(f"it holds the non-finite number {text}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse_non_finite(text)
    return value


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
    stem = f"step-{step:010d}"
    json_path = directory / f"{stem}.json"
    blobs = {
        ".safetensors": safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()})
    }
    if arrays is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        blobs[".npz"] = buffer.getvalue()
    files = {k: {"name": stem + k, "sha256": _sha256(data)} for k, data in blobs.items()}
    record = {"format": FORMAT_VERSION, "step": step, "files": files, "meta": meta}
    try:
        record["sha256"] = record_digest(record)
    except ValueError:
        raise CheckpointError(
            f"checkpoint {json_path} not written: its metadata holds a non-finite number "
            "(NaN or inf)"
        ) from None
    existed = json_path.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for suffix, data in blobs.items():
            atomic_write(directory / (stem + suffix), data)
        atomic_write_text(json_path, json.dumps(record, indent=1))
        atomic_write_text(directory / LATEST, json.dumps({"checkpoint": json_path.name}))
    except OSError as e:
        if not existed:  # drop this step's partial files; the previous checkpoint is untouched
            for suffix in (".json", ".safetensors", ".npz"):
                with contextlib.suppress(OSError):
                    (directory / (stem + suffix)).unlink(missing_ok=True)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        raise CheckpointError(
            f"{'disk full' if full else 'cannot write'} while writing checkpoint {json_path}: "
            f"{e.strerror or e}; the previous checkpoint is intact"
        ) from None
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
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint index {latest} is malformed: {e}") from None
    record = _load_record(json_path)
    files, meta = record["files"], record["meta"]

    def verified(suffix: str) -> bytes:
        if suffix not in files:
            raise CheckpointError(f"{json_path} lists no {suffix} file")
        entry = files[suffix]
        data = _read(directory / Path(entry["name"]).name)
        if _sha256(data) != entry["sha256"]:
            raise CheckpointError(
                f"{directory / entry['name']} does not match its recorded SHA-256: "
                "the checkpoint is corrupted or was tampered with"
            )
        return data

    data = verified(".safetensors")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own error types on bad headers
        raise CheckpointError(
            f"{json_path.with_suffix('.safetensors')} is not valid safetensors: {e}"
        ) from None
    arrays = None
    if with_arrays and ".npz" in files:
        data = verified(".npz")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as e:
            raise CheckpointError(
                f"{json_path.with_suffix('.npz')} is not a valid array file: {e}"
            ) from None
    return Checkpoint(tensors=tensors, meta=meta, arrays=arrays, path=json_path)


def _load_record(json_path: Path) -> dict[str, Any]:
    """The checkpoint record at ``json_path``, its shape and its own SHA-256 checked."""
    try:
        record = loads_finite(_read(json_path))
    except ValueError as e:
        raise CheckpointError(f"{json_path} is not valid checkpoint JSON: {e}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{json_path} is not a checkpoint record (not a JSON object)")
    if record.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has format {record.get('format')!r}, this dqnlm reads format "
            f"{FORMAT_VERSION} (format 1, from before checkpoints carried their own SHA-256, "
            "is refused: train again or resume with the dqnlm that wrote it)"
        )
    if not isinstance(record.get("sha256"), str):
        raise CheckpointError(
            f"{json_path} has no sha256 field, so its config and counters cannot be verified: "
            "refused"
        )
    if record_digest(record) != record["sha256"]:
        raise CheckpointError(
            f"{json_path} does not match its recorded SHA-256: the checkpoint's config, "
            "counters or state were edited or corrupted"
        )
    files = record.get("files")
    entries_ok = isinstance(files, dict) and all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("sha256"), str)
        for e in files.values()
    )
    if not entries_ok or not isinstance(record.get("meta"), dict):
        raise CheckpointError(f"{json_path} is malformed: bad files or meta entries")
    return record


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
