"""Checkpoint I/O: round trips, pruning, hash checks, refusal to unpickle, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dqnlm.core.checkpoint import (
    LATEST,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    load_optimizer_state,
    optimizer_state,
    record_digest,
    save_checkpoint,
)


def sample_tensors(step: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(step)
    return {
        "w": torch.randn(3, 4),
        "b": torch.arange(5, dtype=torch.int64),
        "rng": torch.get_rng_state(),  # uint8
        "scalar": torch.tensor(7.5),
    }


def save(directory: Path, step: int, **kwargs) -> Path:
    return save_checkpoint(directory, step, sample_tensors(step), {"step": step}, **kwargs)


def test_round_trip_tensors_meta_and_arrays(tmp_path):
    tensors = sample_tensors(1)
    meta = {"global_step": 1234, "config": {"gamma": 0.99, "hidden_sizes": [64, 64]}}
    arrays = {"obs": np.arange(12, dtype=np.float32).reshape(4, 3), "pos": np.array([2, 4])}
    path = save_checkpoint(tmp_path, 1234, tensors, meta, arrays)
    assert path == tmp_path / "step-0000001234.json"

    ckpt = load_checkpoint(tmp_path)
    assert ckpt.path == path and ckpt.meta == meta
    assert ckpt.tensors.keys() == tensors.keys()
    for name, value in tensors.items():
        assert ckpt.tensors[name].dtype == value.dtype
        assert torch.equal(ckpt.tensors[name], value)
    assert ckpt.arrays.keys() == arrays.keys()
    for name, value in arrays.items():
        assert np.array_equal(ckpt.arrays[name], value)
    assert load_checkpoint(tmp_path, with_arrays=False).arrays is None


def test_keep_prunes_old_checkpoints_and_latest_names_the_newest(tmp_path):
    for step in (100, 200, 300):
        save(tmp_path, step, arrays={"x": np.zeros(2)}, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        LATEST,
        "step-0000000200.json",
        "step-0000000200.npz",
        "step-0000000200.safetensors",
        "step-0000000300.json",
        "step-0000000300.npz",
        "step-0000000300.safetensors",
    ]
    assert json.loads((tmp_path / LATEST).read_text()) == {"checkpoint": "step-0000000300.json"}
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.meta == {"step": 300}
    assert torch.equal(ckpt.tensors["w"], sample_tensors(300)["w"])


def test_steps_sort_numerically_across_digit_counts(tmp_path):
    for step in (9, 10, 100_000):
        save(tmp_path, step, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.json") if p.name != LATEST) == [
        "step-0000000010.json",
        "step-0000100000.json",
    ]


def test_missing_directory_raises(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "nope")


def test_latest_naming_a_missing_file_raises(tmp_path):
    save(tmp_path, 5)
    (tmp_path / "step-0000000005.json").unlink()
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path)


def flip_a_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_tampered_file_fails_the_hash_check(tmp_path, suffix):
    save(tmp_path, 7, arrays={"x": np.arange(10.0)})
    flip_a_byte(tmp_path / f"step-0000000007{suffix}")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path)


def edit_record(directory: Path, edit, rehash: bool = False) -> Path:
    """Apply ``edit`` to the newest checkpoint record (fixing up its hash if ``rehash``)."""
    path = directory / json.loads((directory / LATEST).read_text())["checkpoint"]
    record = json.loads(path.read_text())
    edit(record)
    if rehash:
        record["sha256"] = record_digest(record)
    path.write_text(json.dumps(record))
    return path


def test_an_edited_config_fails_the_record_hash(tmp_path):
    save_checkpoint(tmp_path, 5, sample_tensors(), {"config": {"env_id": "CartPole-v1"}})
    edit_record(tmp_path, lambda r: r["meta"]["config"].update(env_id="evil:Env"))
    with pytest.raises(CheckpointError, match="does not match its recorded SHA-256"):
        load_checkpoint(tmp_path)


def test_every_part_of_the_record_is_hashed(tmp_path):
    save(tmp_path, 5)
    for edit in (
        lambda r: r.update(step=6),
        lambda r: r["meta"].update(step=6),
        lambda r: r["files"][".safetensors"].update(name="other.safetensors"),
    ):
        before = (tmp_path / "step-0000000005.json").read_text()
        edit_record(tmp_path, edit)
        with pytest.raises(CheckpointError, match="SHA-256"):
            load_checkpoint(tmp_path)
        (tmp_path / "step-0000000005.json").write_text(before)
    assert load_checkpoint(tmp_path).meta == {"step": 5}


def test_a_missing_hash_field_is_named(tmp_path):
    save(tmp_path, 5)
    edit_record(tmp_path, lambda r: r.pop("sha256"))
    with pytest.raises(CheckpointError, match="has no sha256 field") as info:
        load_checkpoint(tmp_path)
    assert "safetensors" not in str(info.value)


def test_a_format_1_checkpoint_is_refused_in_one_line(tmp_path):
    save(tmp_path, 5)
    edit_record(tmp_path, lambda r: (r.pop("sha256"), r.update(format=1)))
    with pytest.raises(CheckpointError, match="has format 1, this dqnlm reads format 2"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_the_record_are_refused(tmp_path, constant):
    save(tmp_path, 5)
    path = edit_record(tmp_path, lambda r: r["meta"].update(step="MARK"))
    path.write_text(path.read_text().replace('"MARK"', constant))
    with pytest.raises(CheckpointError, match=f"non-finite number {constant}"):
        load_checkpoint(tmp_path)


def test_non_finite_meta_is_not_written(tmp_path):
    save(tmp_path, 5)
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path, 6, sample_tensors(), {"elapsed_s": float("nan")})
    assert load_checkpoint(tmp_path).meta == {"step": 5}
    assert not list(tmp_path.glob("step-0000000006*"))


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.update(files=[]),
        lambda r: r["files"].update({".safetensors": {"name": 3}}),
        lambda r: r["files"].pop(".safetensors"),
        lambda r: r.update(meta="x"),
    ],
)
def test_a_malformed_record_with_a_valid_hash_is_one_error(tmp_path, edit):
    save(tmp_path, 5)
    edit_record(tmp_path, edit, rehash=True)
    with pytest.raises(CheckpointError, match="step-0000000005.json"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, fail_at):
    import dqnlm.core.checkpoint as checkpoint

    save(tmp_path, 5, arrays={"x": np.zeros(2)})
    writes, real = [], checkpoint.atomic_write

    def full_disk(path, data):
        writes.append(path)
        if len(writes) == fail_at:  # safetensors, npz, json, latest.json
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write", full_disk)
    with pytest.raises(CheckpointError) as info:
        save(tmp_path, 6, arrays={"x": np.ones(2)})
    assert str(info.value).startswith("disk full while writing checkpoint ")
    assert "No space left on device; the previous checkpoint is intact" in str(info.value)
    assert load_checkpoint(tmp_path).meta == {"step": 5}
    assert not list(tmp_path.glob("step-0000000006*"))


class PlantMarker:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(directory: Path, suffix: str, data: bytes) -> None:
    """Replace a checkpoint file and fix up its recorded hash, as a careful attacker would."""
    import hashlib

    record_path = directory / "step-0000000003.json"
    (directory / f"step-0000000003{suffix}").write_bytes(data)
    record = json.loads(record_path.read_text())
    record["files"][suffix]["sha256"] = hashlib.sha256(data).hexdigest()
    record["sha256"] = record_digest(record)
    record_path.write_text(json.dumps(record))


def test_planted_pickle_with_matching_hash_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    ckpt_dir = tmp_path / "ckpt"
    save(ckpt_dir, 3)
    plant(ckpt_dir, ".safetensors", pickle.dumps(PlantMarker(marker)))
    pickle.loads(pickle.dumps(PlantMarker(tmp_path / "probe")))  # the payload does work...
    assert (tmp_path / "probe").exists()
    with pytest.raises(CheckpointError, match="not valid safetensors"):
        load_checkpoint(ckpt_dir)
    assert not marker.exists()  # ...but loading never ran it


def test_planted_object_array_in_npz_is_never_unpickled(tmp_path):
    import io

    marker = tmp_path / "pwned"
    ckpt_dir = tmp_path / "ckpt"
    save(ckpt_dir, 3, arrays={"x": np.zeros(3)})
    blob = io.BytesIO()
    np.savez(blob, x=np.array([PlantMarker(marker)], dtype=object))
    plant(ckpt_dir, ".npz", blob.getvalue())
    with pytest.raises(CheckpointError, match="not a valid array file"):
        load_checkpoint(ckpt_dir)
    assert not marker.exists()


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_atomic_write_failure_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_atomic_write_respects_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", b"x")
        (tmp_path / "b").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    torch.manual_seed(42)
    for _ in range(steps):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("fused", [False, True])
def test_adam_state_round_trip_gives_identical_next_step(tmp_path, fused):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    train_steps(model, optimizer, 2)

    opt_tensors, opt_meta = optimizer_state(optimizer)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | opt_tensors
    save_checkpoint(tmp_path, 2, tensors, {"optimizer": opt_meta})  # through JSON and safetensors
    ckpt = load_checkpoint(tmp_path)

    clone = nn.Linear(3, 2)
    clone.load_state_dict({k[6:]: v for k, v in ckpt.tensors.items() if k.startswith("model.")})
    clone_opt = torch.optim.Adam(clone.parameters(), lr=5.0, fused=fused)  # lr restored from meta
    load_optimizer_state(clone_opt, ckpt.tensors, ckpt.meta["optimizer"])
    assert clone_opt.param_groups[0]["lr"] == 1e-2

    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(clone.state_dict())
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2, fused=fused)

    for m, o in ((model, optimizer), (clone, clone_opt), (fresh, fresh_opt)):
        train_steps(m, o, 1)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)
    # the restored moments mattered: a fresh Adam from the same weights steps differently
    assert not torch.equal(model.weight, fresh.weight)
