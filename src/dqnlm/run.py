"""The run harness: what every trainer does besides learning.

Each trainer (control :class:`~dqnlm.control.dqn.DQN`, dialogue
:class:`~dqnlm.dialogue.dqn.DialogueDQN`, :class:`~dqnlm.lm.trainer.LMTrainer`) keeps its
algorithm in one ``learn`` function that reads top to bottom, and hands the bookkeeping
to a :class:`Run` opened around its loop::

    with Run(self, COLUMNS, total=..., unit="step", ...) as run:
        while ...:
            ...                                   # collect experience, update
            run.check_finite(loss=loss)           # one divergence rule and message
            run.log(step, loss=loss)              # metrics.csv + TensorBoard
            run.advance(n, ret="...")             # progress bar
            if run.due(before, now, interval):
                run.checkpoint()                  # Trainer.save_checkpoint
            run.safe_point()                      # a held Ctrl-C / SIGTERM stops here
        run.finish(result)                        # eval.json

The :class:`Trainer` base gives every trainer the same atomic checkpoints (safetensors +
JSON + SHA-256, via :mod:`dqnlm.core.checkpoint`) and one ``load(run_dir, device=...,
**budget)``; a trainer supplies only its own state (:meth:`Trainer.state`,
:meth:`Trainer.load_state`) and how a saved config is rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dqnlm.config_io import replace, to_toml
from dqnlm.core.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from dqnlm.core.rng import restore_rng, rng_tensors
from dqnlm.errors import DQNLMError, TrainingDiverged
from dqnlm.metrics import MetricsLogger
from dqnlm.rundir import clear_run, holds_run

CHECKPOINTS = "checkpoints"

State = tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, np.ndarray] | None]
"""A trainer's own state: tensors (safetensors), metadata (JSON) and optional arrays (npz)."""


class Trainer:
    """The lifecycle every trainer shares: checkpoint save, ``load``, resume bookkeeping.

    A subclass sets ``config``, ``run_dir`` and its counters in ``__init__`` and supplies
    :attr:`step`, :meth:`state`, :meth:`load_state`, :meth:`finite` and
    :meth:`config_from_checkpoint`.
    """

    config: Any
    run_dir: Path | None
    last_checkpoint: Path | None = None
    elapsed: float = 0.0
    """Seconds of training, summed across resumes."""

    # ------------------------------------------------------------ supplied by a trainer
    @property
    def step(self) -> int:
        """Progress in the trainer's own unit (env steps, dialogues, rounds): names
        checkpoints and is the x axis of metrics.csv."""
        raise NotImplementedError

    def state(self) -> State:
        """Everything besides config, elapsed time and torch RNG needed to resume exactly."""
        raise NotImplementedError

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict, arrays: dict | None):
        raise NotImplementedError

    def finite(self) -> bool:
        """Whether the trained weights are all finite (a diverged run is never saved)."""
        raise NotImplementedError

    @classmethod
    def config_from_checkpoint(cls, meta: dict, run_dir: Path, source: str, trust_code: bool):
        """The config a checkpoint's metadata recorded (``meta["config"]``); refuse what it
        may not do without ``trust_code``."""
        raise NotImplementedError

    def saved_config(self) -> Any:
        """The config as config.toml and checkpoints record it."""
        return self.config

    def where(self) -> str:
        """Where training stands, for messages (``env step 1,200``)."""
        return f"step {self.step:,}"

    # ----------------------------------------------------------------- shared lifecycle
    def diverged(self, what: str) -> TrainingDiverged:
        """The error of a run that diverged ``what`` (``at env step 1,200: loss=nan``)."""
        last = self.last_checkpoint or "none yet"
        return TrainingDiverged(f"training diverged {what}; last good checkpoint: {last}")

    def save_checkpoint(self) -> Path:
        """Write the state atomically to ``run_dir/checkpoints`` (refused if not finite)."""
        if self.run_dir is None:
            raise DQNLMError("this trainer has no run directory to save checkpoints in")
        if not self.finite():
            raise self.diverged(f"at {self.where()}: the weights are not finite")
        tensors, meta, arrays = self.state()
        tensors = {**tensors, **rng_tensors()}  # CPU and, on a GPU, every CUDA generator
        meta = {
            "config": dataclasses.asdict(self.saved_config()),
            "step": self.step,
            "elapsed_s": self.elapsed,
            **meta,
        }
        self.last_checkpoint = save_checkpoint(
            self.run_dir / CHECKPOINTS, self.step, tensors, meta, arrays
        )
        return self.last_checkpoint

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        device: str | None = None,
        trust_code: bool = False,
        replay: bool = True,
        **budget: Any,
    ):
        """Rebuild a trainer from the newest checkpoint in ``run_dir``, to evaluate or resume.

        ``budget`` overrides config fields that set the run's length (``total_steps``,
        ``epochs``, ``rounds``); ``replay=False`` skips reading the replay buffer. The
        saved config may not import code or read outside ``run_dir`` unless ``trust_code``.
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"run directory {run_dir} does not exist")
        ckpt = load_checkpoint(run_dir / CHECKPOINTS, with_arrays=replay)
        source = str(ckpt.path)
        if "step" not in ckpt.meta:  # every checkpoint since the run harness records it
            raise CheckpointError(
                f"checkpoint {source} was written by a dqnlm older than its run harness "
                "(no 'step' in its record): continue it with that version, or train anew"
            )
        overrides = {k: v for k, v in {"device": device, **budget}.items() if v is not None}
        try:
            config = cls.config_from_checkpoint(ckpt.meta, run_dir, source, trust_code)
            config = replace(config, overrides, source="arguments")
            trainer = cls.create(config, run_dir, trust_code)
            trainer.load_state(ckpt.tensors, ckpt.meta, ckpt.arrays)
            restore_rng(ckpt.tensors)
            trainer.elapsed = float(ckpt.meta["elapsed_s"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {ckpt.path} does not fit this model: {e}") from None
        if not trainer.finite():
            raise CheckpointError(
                f"checkpoint {ckpt.path} holds non-finite (NaN or infinite) weights"
            )
        trainer.last_checkpoint = ckpt.path
        return trainer

    @classmethod
    def create(cls, config: Any, run_dir: str | Path | None, trust_code: bool = False):
        """A fresh trainer; ``trust_code`` for trainers whose config may name code or
        pickled files (the LM trainer's model and reward)."""
        return cls(config, run_dir)


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...``, without the prefix (one part of a checkpoint)."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def generator_states(**generators: np.random.Generator) -> dict[str, dict]:
    """numpy generators' states by name, for a checkpoint's metadata."""
    return {name: generator.bit_generator.state for name, generator in generators.items()}


def restore_generators(states: dict[str, dict], **generators: np.random.Generator) -> None:
    """Inverse of :func:`generator_states`."""
    for name, generator in generators.items():
        generator.bit_generator.state = states[name]


class HeldSignals:
    """Ctrl-C and SIGTERM, held back to the trainer's next safe point (where a checkpoint
    is consistent). A second signal interrupts at once. Handlers exist only in the main
    thread (and with ``install``); elsewhere interrupts arrive as they would without this."""

    def __init__(self, install: bool = True) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}
        if install and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._hold)

    def _hold(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def deliver(self) -> None:
        """Hand the held signal to the handler it was meant for (which raises); a process
        stopping because another one holds a signal stops as if terminated."""
        self.restore()
        signal.raise_signal(self.signum or signal.SIGTERM)
        raise KeyboardInterrupt  # that handler returned: stop anyway


class Run:
    """The bookkeeping of one ``learn`` call, as a context manager around its loop.

    Entering creates the run directory, writes ``config.toml``, opens metrics.csv (and
    TensorBoard) and the progress bar, and holds Ctrl-C / SIGTERM to safe points. Leaving
    on an interrupt checkpoints a consistent state; a run that fails before its first
    checkpoint leaves no outputs behind. With ``run_dir=None`` nothing is written.
    """

    def __init__(
        self,
        trainer: Trainer,
        columns: Sequence[str],
        *,
        total: int,
        unit: str,
        desc: str,
        progress: bool = True,
        tensorboard: bool = True,
        tb_prefix: str = "dqn",
        write: bool = True,
        agree: Callable[[bool], bool] | None = None,
        hold_signals: bool = True,
    ) -> None:
        """``write=False``: a process that trains beside the one writing the run directory
        (data-parallel ranks but the first) writes nothing. ``agree(held)`` tells whether
        any such process holds a signal, so all stop at the same safe point.
        ``hold_signals=False``: whoever drives several runs in one loop holds Ctrl-C and
        SIGTERM itself (:class:`HeldSignals`) and checkpoints them all."""
        self.trainer, self.columns, self.tensorboard = trainer, columns, tensorboard
        self.tb_prefix = tb_prefix
        self.run_dir = trainer.run_dir if write else None
        self.agree = agree
        self.logger: MetricsLogger | None = None
        self.postfix: dict[str, str] = {}
        self._bar_args = dict(total=total, unit=unit, desc=desc, disable=not progress)
        self._started = 0.0
        self.hold_signals = hold_signals

    def __enter__(self) -> Run:
        trainer = self.trainer
        self._created = self.run_dir is not None and not self.run_dir.exists()
        self._fresh = self.run_dir is not None and not holds_run(self.run_dir)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.toml", to_toml(trainer.saved_config()))
            resumed = trainer.step if trainer.last_checkpoint else None
            self.logger = MetricsLogger(
                self.run_dir, self.columns, self.tensorboard, resumed, self.tb_prefix
            )
        self.bar = tqdm(initial=trainer.step, dynamic_ncols=True, **self._bar_args)
        self._started = time.perf_counter() - trainer.elapsed
        self.signals = HeldSignals(install=self.hold_signals)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.signals.restore()
        self.bar.close()
        trainer = self.trainer
        if isinstance(error, KeyboardInterrupt) and self.signals.signum is None:
            # raised outside a safe point (by code, or in a thread without our handlers):
            # keep the progress if the weights are finite
            self._save_on_interrupt()
        if self.logger is not None:
            self.logger.close()
        if error is not None and self._fresh and trainer.last_checkpoint is None:
            # a failed start leaves nothing half-written behind
            if self._created:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            elif self.run_dir is not None:
                clear_run(self.run_dir)

    def _saved_here(self) -> bool:
        """Whether the newest checkpoint is of the trainer's current step."""
        last = self.trainer.last_checkpoint
        return last is not None and last.name == f"step-{self.trainer.step:010d}.json"

    def _save_on_interrupt(self) -> None:
        trainer = self.trainer
        if self.run_dir is None or trainer.step == 0 or self._saved_here():
            return
        if trainer.finite():
            self.checkpoint()
            print(f"interrupted: saved {trainer.last_checkpoint}", file=sys.stderr)

    # ------------------------------------------------------------------ inside the loop
    def seconds(self) -> float:
        """Training seconds so far, across resumes."""
        return time.perf_counter() - self._started

    def log(self, step: int, **values: float | None) -> None:
        self.trainer.elapsed = self.seconds()
        if self.logger is not None:
            self.logger.log(step, time_s=self.trainer.elapsed, **values)

    def advance(self, n: int, **postfix: str) -> None:
        """Move the progress bar ``n`` units and update its fields."""
        self.postfix.update(postfix)
        if postfix:
            self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(n)

    @staticmethod
    def due(before: int, now: int, interval: int) -> bool:
        """Whether a multiple of ``interval`` lies in ``(before, now]`` (0: never)."""
        return interval > 0 and now // interval > before // interval

    def check_finite(self, **values: float) -> None:
        """Stop with TrainingDiverged, naming where training stands and the last good
        checkpoint, on a NaN or inf (called after every update: the message is built only
        on failure)."""
        if all(math.isfinite(v) for v in values.values()):
            return
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        raise self.trainer.diverged(f"at {self.trainer.where()}: {shown}")

    def checkpoint(self) -> None:
        if self.run_dir is not None:
            self.trainer.elapsed = self.seconds()
            self.trainer.save_checkpoint()

    def safe_point(self) -> None:
        """Where a checkpoint is consistent: a held Ctrl-C / SIGTERM checkpoints here (if
        the weights are finite), then goes through, so ``--resume`` continues from here."""
        held = self.signals.signum is not None
        if self.agree is not None:
            held = self.agree(held)
        if not held:
            return
        if self.run_dir is not None and not self._saved_here() and self.trainer.finite():
            self.checkpoint()
        self.signals.deliver()

    def loop_done(self) -> None:
        """After the training loop: a held signal goes through now (after a checkpoint),
        and later ones interrupt at once (a final evaluation may be long)."""
        self.safe_point()
        self.signals.restore()

    def finish(self, result: dict) -> None:
        """Write ``eval.json`` (atomically): the run is complete."""
        if self.run_dir is not None:
            atomic_write_text(self.run_dir / "eval.json", json.dumps(result, indent=1) + "\n")
