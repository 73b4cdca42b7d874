"""Run directories: one writer at a time, and never two runs mixed in one directory.

Every command that writes a run directory (the three trainers, their ``--resume``, a
sweep and each of its workers) holds an advisory ``fcntl.flock`` on ``R/.dqnlm.lock``
while it runs. The kernel drops the lock when its process dies, so a killed run never
blocks the next one; a second live writer is refused in one line naming the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from dqnlm.errors import DQNLMError

LOCK = ".dqnlm.lock"
RUN_FILES = ("config.toml", "metrics.csv", "checkpoints", "eval.json")
"""What every trainer leaves in its run directory: any of them means it holds a run."""
OUTPUTS = (
    *RUN_FILES,
    *("tb", "model", "policy.safetensors", "policy.json", "domain.json", "domain.yaml"),
    *("learning_curve.png", "reward_kl.png", "success_rate.png"),
)
"""Everything the trainers write: cleared before a run starts over."""

T = TypeVar("T")


class RunDirError(DQNLMError):
    """A run directory cannot be used: in use, not a folder, not writable, or holds a run."""


class RunDirInUse(RunDirError):
    """Another live process holds the run directory's lock."""


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / "checkpoints" / "latest.json").is_file()


def holds_run(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in RUN_FILES)


def check_usable(run_dir: Path) -> None:
    """Refuse, before anything is written, a run directory that is a file, lies under a
    file, or cannot be written."""
    run_dir = Path(run_dir)
    for folder in (run_dir, *run_dir.parents):
        if folder.exists() or folder.is_symlink():
            break
    if not folder.is_dir():
        where = "is a file" if folder == run_dir else f"lies under {folder}, which is a file"
        raise RunDirError(f"run directory {run_dir} {where}, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunDirError(f"run directory {run_dir} is not writable ({folder} is read-only)")


def _os_error(run_dir: Path, e: OSError) -> RunDirError:
    return RunDirError(f"cannot use run directory {run_dir}: {e.strerror or e}")


def _holder(fd: int) -> str:
    """The pid the lock file names (written by its holder), or ``unknown``."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


def _lock(run_dir: Path) -> int:
    """Take the lock of ``run_dir`` (which exists); returns the open lock file."""
    path = run_dir / LOCK
    while True:
        # O_NOFOLLOW: a lock "file" that is a symlink (a stranger's run directory) must not
        # make us truncate whatever it points at
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirInUse(
                f"run directory {run_dir} is in use by another dqnlm process (pid {holder})"
            ) from None
        # the previous holder unlinks the file as it lets go: then ours is a stale inode
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def claim_run_dir(
    run_dir: Path, must_exist: bool = False, keep_on_failure: bool = False
) -> Iterator[Path]:
    """Hold ``run_dir`` for writing (creating it) for the ``with`` block.

    Unless ``keep_on_failure``, a directory this call created is removed again if the
    block fails before the run's first checkpoint: a failed start leaves nothing behind.
    """
    run_dir = Path(run_dir)
    if must_exist and not run_dir.exists():
        raise RunDirError(f"run directory {run_dir} does not exist")
    check_usable(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _lock(run_dir)
    except OSError as e:
        raise _os_error(run_dir, e) from None
    try:
        yield run_dir
    except BaseException:
        if created and not keep_on_failure and not has_checkpoint(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            (run_dir / LOCK).unlink()  # while still holding it: see _lock
        os.close(fd)


def clear_run(run_dir: Path, everything: bool = False) -> None:
    """Remove a run's outputs from ``run_dir`` (files dqnlm did not write stay), or with
    ``everything`` all but the lock (a directory dqnlm owns, such as a sweep's run)."""
    run_dir = Path(run_dir)
    names = [p.name for p in run_dir.iterdir()] if everything else OUTPUTS
    for entry in (run_dir / name for name in names if name != LOCK):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


@contextlib.contextmanager
def training_run(
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    new: Callable[[], T],
    load: Callable[[], T],
    restart: Callable[[dict[str, Any], str], T],
) -> Iterator[T]:
    """The trainer for ``run_dir``, holding its lock for the ``with`` block.

    * a new run (``resume`` false): ``new()``; a directory already holding a run is
      refused unless ``overwrite``, which clears it once the new trainer is built;
    * ``resume`` with a checkpoint: ``load()``;
    * ``resume`` of a run killed before its first checkpoint: ``restart(values, source)``
      with the values of its ``config.toml``, and the old outputs cleared.

    Each callable validates everything before writing, so a refused start destroys nothing.
    """
    from dqnlm.config_io import load_toml

    with claim_run_dir(run_dir, must_exist=resume):
        if resume and has_checkpoint(run_dir):
            yield load()
            return
        if resume:
            toml = run_dir / "config.toml"
            if not toml.is_file():
                raise RunDirError(
                    f"no checkpoint found in {run_dir}, and no config.toml to restart from"
                )
            trainer = restart(load_toml(toml), str(toml))
            print(
                f"no checkpoint yet in {run_dir}: restarting from its config.toml", file=sys.stderr
            )
        elif holds_run(run_dir) and not overwrite:
            stopped = "holds a run that stopped before its first checkpoint"
            what = "already holds a run" if has_checkpoint(run_dir) else stopped
            raise RunDirError(
                f"run directory {run_dir} {what}; use --resume {run_dir}, --overwrite, "
                "or another --run-dir"
            )
        else:
            trainer = new()
        if resume or holds_run(run_dir):  # a folder holding no run keeps all it holds
            clear_run(run_dir)
        yield trainer
