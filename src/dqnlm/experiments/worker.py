"""One run of a sweep, in whatever process trains it: a local pool's worker or a Ray task.

A run is finished when its ``eval.json`` exists, and is then never trained again; a run
with a checkpoint continues from it; a run killed before its first checkpoint starts
over. So a run handed out twice (a retried Ray task, a sweep started again) costs at
most the steps since its last checkpoint.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqnlm.experiments.trainers import TRAINERS
from dqnlm.rundir import claim_run_dir, clear_run, has_checkpoint


@dataclass(frozen=True)
class Run:
    """One run of a sweep's grid: env x variant x seed."""

    env: str
    variant: str
    seed: int
    config: dict[str, Any]
    """The trainer's config fields, as plain values."""
    trainer: str = "control"

    def directory(self, out: Path) -> Path:
        return out / "runs" / self.env / self.variant / f"s{self.seed}"


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "eval.json").is_file()


_state = "idle"
"""A worker's state: idle, training, or stopping (see _on_signal)."""


def execute(run: Run, run_dir: Path, trust_code: bool = False, threads: int = 1) -> dict:
    """Train one run to the end with ``threads`` torch threads, resuming a killed one;
    a finished run is only read back."""
    import torch

    kind = TRAINERS[run.trainer]
    if is_finished(run_dir):  # e.g. a retried task whose first try finished
        return {"run": str(run_dir), "summary": kind.summary(_read_eval(run_dir))}
    # small networks run fastest on one thread per run; a run given more cores uses them
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as the CLI: denormals take the CPU's slow path
    global _state
    if _state == "stopping":  # a signal stopped this worker's last run: start no other
        raise KeyboardInterrupt
    _state = "training"
    try:
        with claim_run_dir(run_dir):
            if has_checkpoint(run_dir):
                trainer = kind.load(run_dir, trust_code)
            else:
                clear_run(run_dir, everything=True)  # killed before its first checkpoint
                trainer = kind.trainer(kind.config(run.config, str(run_dir)), run_dir, trust_code)
            result = trainer.learn(progress=False, tensorboard=False)
        if result is None:  # an LM run that skips evaluation: its eval.json says so
            result = _read_eval(run_dir)
    finally:
        if _state == "training":  # "stopping" stays: the pool may hand this worker more runs
            _state = "idle"
    return {"run": str(run_dir), "summary": kind.summary(result)}


def execute_lockstep(runs: list[Run], out: Path, trust_code: bool = False) -> list[dict]:
    """Control runs that differ only in their seed, trained together in one process
    (:mod:`dqnlm.control.lockstep`), each in its own ordinary run directory; finished runs
    are only read back, killed ones resume. Runs whose checkpoints stand at different steps
    cannot step together: each then trains on its own."""
    import contextlib

    import torch

    from dqnlm.control.dqn import DQN
    from dqnlm.control.lockstep import Lockstep

    kind = TRAINERS["control"]
    todo = [r for r in runs if not is_finished(r.directory(out))]
    global _state
    if todo:
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        if _state == "stopping":
            raise KeyboardInterrupt
        _state = "training"
        try:
            with contextlib.ExitStack() as stack:
                agents = []
                for run in todo:
                    run_dir = stack.enter_context(claim_run_dir(run.directory(out)))
                    if has_checkpoint(run_dir):
                        agents.append(DQN.load(run_dir, trust_code=trust_code))
                    else:
                        clear_run(run_dir, everything=True)
                        config = kind.config(run.config, str(run_dir))
                        agents.append(DQN(config, run_dir))
                steps = {(a.global_step, a.num_updates) for a in agents}
                if len(steps) == 1:
                    Lockstep(agents).learn(progress=False, tensorboard=False)
                else:  # resumed from checkpoints at different steps
                    for agent in agents:
                        agent.learn(progress=False, tensorboard=False)
        finally:
            if _state == "training":
                _state = "idle"
    return [
        {"run": str(r.directory(out)), "summary": kind.summary(_read_eval(r.directory(out)))}
        for r in runs
    ]


def _read_eval(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


def _on_signal(signum, frame) -> None:
    """A worker's SIGINT or SIGTERM: inside a run, one KeyboardInterrupt (the trainer saves a
    checkpoint and stops; a second signal must not cut that save short); between runs, a
    quiet exit."""
    global _state
    if _state == "training":
        _state = "stopping"
        raise KeyboardInterrupt
    if _state == "idle":
        raise SystemExit(128 + signum)


def init_pool_worker() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
