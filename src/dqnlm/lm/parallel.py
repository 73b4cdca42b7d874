"""Data-parallel LM training: N processes, a whole model each, on HF accelerate's process
group (gloo on CPU, NCCL on GPUs).

Every rank holds the same model, reference, target network and replay buffer, and keeps
them identical, so nothing but the round's new texts and the gradients ever travels:

* a round's prompts are picked by the RNG every rank shares; rank r samples, scores and
  runs the reference over its contiguous share, drawing from a seed of (run seed, round,
  rank), and the shares are all-gathered in rank order: every replay adds the same rows;
* an update draws the global batch with the shared replay RNG and rank r takes its rows;
  its loss is divided by the *global* number of generated tokens and the gradients are
  summed over ranks, so every rank holds the single-process gradient of the global batch
  (up to float rounding), clips and steps it identically, and updates its target the same;
* rank 0 alone writes (metrics, checkpoints, the model, eval.json); a Ctrl-C or SIGTERM
  held by any rank stops every rank at the same safe point, after rank 0's checkpoint.

``dqnlm lm train --processes N`` starts the processes with torch's elastic launcher (the
engine of ``torchrun`` and of ``accelerate launch --multi_gpu``); those two launch
``-m dqnlm lm train`` as well.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from dqnlm.errors import DQNLMError

WORKER_ENV = "DQNLM_WORKER"
"""Set in the processes ``--processes`` starts: they stop when their launcher dies."""

_BUCKET = 1 << 24  # float32 elements summed per all-reduce: 64 MiB at most in flight
_TIMEOUT = datetime.timedelta(hours=2)  # rank 0 may pretrain the embedded model first


class PeerLost(DQNLMError):
    """A collective failed: another process stopped (its own message says why)."""


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    device: torch.device = torch.device("cpu")  # where collectives run (cuda:local_rank)

    @property
    def main(self) -> bool:
        """Whether this process writes the run's outputs."""
        return self.rank == 0

    def check_divides(self, **sizes: int) -> None:
        """Each of ``sizes`` (batch sizes) must split evenly over the processes."""
        for name, value in sizes.items():
            if value % self.size:
                raise DQNLMError(
                    f"{name}={value} does not split over {self.size} processes: "
                    f"make it a multiple of {self.size}"
                )

    def share(self, n: int) -> slice:
        """This rank's contiguous rows of ``n`` (a multiple of ``size``)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's rows, concatenated in rank order (on ``tensor``'s device)."""
        if self.size == 1:
            return tensor
        from accelerate.utils import gather

        with self._collective():
            return gather(tensor.to(self.device)).to(tensor.device)

    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum every tensor over the ranks, in place: flat float32 buckets, one all-reduce
        each (one round trip for a LoRA's adapters, bounded memory for a whole model)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        bucket: list[torch.Tensor] = []
        for tensor in [*tensors, None]:
            full = bucket and (tensor is None or sum(t.numel() for t in bucket) >= _BUCKET)
            if full:
                flat = torch.cat([t.reshape(-1).float().to(self.device) for t in bucket])
                with self._collective():
                    dist.all_reduce(flat)
                for t, part in zip(bucket, flat.split([t.numel() for t in bucket])):
                    t.copy_(part.view_as(t))
                bucket = []
            if tensor is not None:
                bucket.append(tensor)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank."""
        if self.size == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([float(flag)], device=self.device)
        with self._collective():
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast_json(self, value=None):
        """Rank 0's ``value`` (JSON-serialisable) on every rank: JSON bytes, never pickle."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        data = json.dumps(value).encode() if self.main else b""
        length = torch.tensor([len(data)], device=self.device)
        with self._collective():
            dist.broadcast(length, 0)
            buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=self.device)
            if self.main:
                buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            dist.broadcast(buffer, 0)
        return json.loads(bytes(buffer.cpu().tolist()).decode())

    @contextlib.contextmanager
    def _collective(self):
        """Turns a failed collective (a peer died or was stopped) into :class:`PeerLost`."""
        try:
            yield
        except RuntimeError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise PeerLost(
                f"process {self.rank} of {self.size} lost contact with the others ({first})"
            ) from None


_current = Group()


def current() -> Group:
    """The group this process trains in (rank 0 of 1 unless :func:`join` was called)."""
    return _current


def launched() -> bool:
    """Whether a launcher (``--processes``, torchrun, accelerate) started this process as
    one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str | None) -> Group:
    """Join the launcher's process group with accelerate: gloo when training on the CPU
    (``device`` cpu, or no CUDA), NCCL on GPUs (one per process, by local rank)."""
    global _current
    from accelerate import PartialState

    if os.environ.get(WORKER_ENV):
        _stop_with_launcher()
    cpu = device == "cpu" or not torch.cuda.is_available()
    with warnings.catch_warnings():  # accelerate warns of OMP_NUM_THREADS: dqnlm sets threads
        warnings.filterwarnings("ignore", message="OMP_NUM_THREADS")
        state = PartialState(cpu=cpu, backend="gloo" if cpu else None, timeout=_TIMEOUT)
    _current = Group(
        rank=state.process_index,
        size=state.num_processes,
        local_rank=state.local_process_index,
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes)),
        device=torch.device(state.device),
    )
    return _current


def _stop_with_launcher(poll_s: float = 1.0) -> None:
    """SIGTERM this process once its launcher is gone (even killed by SIGKILL), so it
    checkpoints and stops instead of training on as an orphan. (Linux's parent-death
    signal would reach every thread, and two SIGTERMs mean "stop now".)"""
    launcher = os.getppid()

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="dqnlm-launcher-watch", daemon=True).start()


def leave(finished: bool) -> None:
    """Leave the process group: after a barrier when ``finished`` (the first process may
    still be evaluating), at once after a failure. Left undestroyed, gloo may abort at exit."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        with contextlib.suppress(RuntimeError):  # another process failed: it says why
            dist.barrier()
    dist.destroy_process_group()


def round_seed(seed: int, round_index: int, rank: int) -> int:
    """The sampling seed of ``rank`` in round ``round_index``: resume needs no per-rank
    RNG state, and ranks never share a draw."""
    return int(np.random.SeedSequence([seed, round_index, rank]).generate_state(1)[0])


def _cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def default_threads(processes: int) -> int:
    """Torch threads per process: this machine's cores shared out."""
    return max(1, _cores() // processes)


def check_processes(processes: int, device: str | None) -> None:
    """At most one process per GPU when training on GPUs, per core on the CPU: more only
    copy the model again and slow every one down."""
    on_gpu = device != "cpu" and torch.cuda.is_available()
    limit, what = (torch.cuda.device_count(), "GPUs") if on_gpu else (_cores(), "CPU cores")
    if processes > limit:
        raise DQNLMError(
            f"--processes {processes} exceeds this machine's {limit} {what} (one process each)"
        )


def launch(argv: list[str], processes: int, threads: int) -> int:
    """Run ``python -m dqnlm ARGV`` in ``processes`` processes on this machine with torch's
    elastic launcher; returns the exit code (the first failed process's, or 128 + signal).
    A SIGTERM or Ctrl-C reaching the launcher goes on to every process, which checkpoint."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in list(logging.root.manager.loggerDict):  # dqnlm reports failures itself
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port
        max_restarts=0,  # a failed process fails the run; --resume continues it
        monitor_interval=0.2,
    )
    os.environ.update({"OMP_NUM_THREADS": str(threads), WORKER_ENV: "1"})
    try:
        elastic_launch(config, sys.executable)("-m", "dqnlm", *argv)
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        code = failure.exitcode
        return 128 - code if code < 0 else code  # killed by a signal: 128 + its number
    except SignalException as e:
        return 128 + int(e.sigval)
    return 0
