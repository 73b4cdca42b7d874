"""``dqnlm sweep --backend ray``: each run of a sweep is one Ray task.

Tasks, not Ray Tune trials: a sweep already owns its grid, its resume rule (a run with
``eval.json`` is done, a run with a checkpoint continues) and its run directories, and
Tune would keep a second copy of all three. A task is the smallest thing Ray schedules
with declared resources (``num_cpus``, ``num_gpus``) and reruns when its worker process
or its node dies; the rerun finds the run's last checkpoint in the run directory and
continues from it (:mod:`dqnlm.experiments.worker`), so a node lost mid-sweep costs the
steps since its runs' last checkpoints and nothing else.

Every node must see the sweep directory at the same path with working ``flock`` (one
machine, or a shared filesystem such as NFS mounted at the same place everywhere), and
run the same Python with the same dqnlm installed. Ray is imported only here, only when
a sweep asks for it (the ``[ray]`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dqnlm.errors import DQNLMError
from dqnlm.experiments.worker import Run, execute
from dqnlm.rundir import RunDirInUse

MAX_RETRIES = 5
"""Times Ray reruns a run whose worker process or node died. A run's own error (a bad
config, a diverged run) is not retried: it would fail the same way again."""
LOCK_WAIT_S = 120.0
"""How long a rerun waits for its run directory's lock: a dead node's lock can outlive it
for a while on a network filesystem (an NFSv4 lease lasts 90 s)."""
CONNECT_TIMEOUT_S = 5.0
"""How long ``--address`` gets to accept a TCP connection before the sweep gives up."""


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    """A running cluster (``ray start --head`` prints it; ``auto`` finds one on this
    machine). None starts a local Ray instance with room for ``--workers`` runs."""
    cpus_per_run: float = 1.0
    """CPUs Ray reserves for each run; its torch threads are this, rounded down (at least 1)."""
    gpus_per_run: float = 0.0
    """GPUs (or a fraction of one) Ray reserves for each run."""

    def __post_init__(self) -> None:
        for name in ("cpus_per_run", "gpus_per_run"):
            value = getattr(self, name)
            lowest = 0.0 if name == "gpus_per_run" else 0.01
            if not (math.isfinite(value) and value >= lowest):
                flag = "--" + name.replace("_", "-")
                raise DQNLMError(f"{flag} must be a number >= {lowest:g}, got {value!r}")


def import_ray():
    try:
        import ray
    except ImportError:
        raise DQNLMError("--backend ray needs Ray: pip install 'dqnlm[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """One line, quickly, for an address nothing listens on (``ray.init`` would retry for
    a minute and then raise with a page of log)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DQNLMError(f"--address {address!r} is not HOST:PORT (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise DQNLMError(
            f"cannot reach a Ray cluster at --address {address}: {e.strerror or e}"
        ) from None


def _fits(ray, options: RayOptions) -> bool:
    """Whether one node of the cluster can hold one run."""
    for node in ray.nodes():
        have = node.get("Resources", {}) if node.get("Alive") else {}
        if have.get("CPU", 0) >= options.cpus_per_run and have.get("GPU", 0) >= (
            options.gpus_per_run
        ):
            return True
    return False


@contextlib.contextmanager
def connected(options: RayOptions, workers: int) -> Iterator[None]:
    """Ray, connected for the ``with`` block: a local instance sized for ``workers`` runs,
    or the cluster at ``options.address``; a cluster where no node can hold one run is
    refused before the sweep writes anything."""
    ray = import_ray()
    if ray.is_initialized():
        raise DQNLMError("Ray is already initialised in this process; run the sweep alone")
    settings = {
        "include_dashboard": False,
        "log_to_driver": False,  # a run's output stays in its run directory
        "logging_level": logging.ERROR,
    }
    if options.address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private, local instance
        # the GPUs are the machine's own (Ray detects them), never assumed
        settings.update(
            num_cpus=math.ceil(workers * options.cpus_per_run),
            num_gpus=None if options.gpus_per_run else 0,
        )
    elif options.address != "auto":
        _check_reachable(options.address)
    # ray.init installs its own SIGTERM handler (exit at once); keep dqnlm's, which stops
    # the sweep the way Ctrl-C does: every task cancelled, running runs checkpointed
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        # "local": a private instance even when a cluster already runs on this machine
        # (plain ray.init() would join it, and refuse the num_cpus given here)
        ray.init(address=options.address or "local", **settings)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as e:
        where = f"at --address {options.address}" if options.address else "locally"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DQNLMError(f"cannot start or join Ray {where}: {first}") from None
    finally:
        if threading.current_thread() is threading.main_thread() and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    try:
        if not _fits(ray, options):
            total = ray.cluster_resources()
            raise DQNLMError(
                f"no node of the Ray cluster can hold one run: a run asks for "
                f"{options.cpus_per_run:g} CPUs and {options.gpus_per_run:g} GPUs "
                f"(--cpus-per-run, --gpus-per-run); the cluster has "
                f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs in all"
            )
        yield
    finally:
        ray.shutdown()


def _execute_when_free(run: Run, run_dir: str, trust_code: bool, threads: int, cwd: str) -> dict:
    """:func:`execute` in a Ray worker. A rerun after a node died may find the dead
    node's lock still held for a while (network filesystems): it waits for it."""
    if os.path.isdir(cwd):
        os.chdir(cwd)  # paths in configs mean what they meant to the driver
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return execute(run, Path(run_dir), trust_code, threads)
        except RunDirInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def results(
    todo: list[Run], out: Path, options: RayOptions, trust_code: bool
) -> Iterator[tuple[Run, dict]]:
    """Each run of ``todo`` trained as a Ray task, as it finishes. Stopped early (Ctrl-C,
    SIGTERM), every unfinished task is cancelled: a running one gets a KeyboardInterrupt,
    saves a checkpoint and stops, as in the local pool."""
    ray = import_ray()
    task = ray.remote(_execute_when_free).options(
        num_cpus=options.cpus_per_run,
        num_gpus=options.gpus_per_run,
        max_retries=MAX_RETRIES,
        retry_exceptions=False,
    )
    threads, cwd = max(1, int(options.cpus_per_run)), os.getcwd()
    pending = {
        task.remote(run, str(run.directory(out).resolve()), trust_code, threads, cwd): run
        for run in todo
    }
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                run = pending.pop(ref)
                yield run, _get(ray, ref)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        if pending:  # let cancelled runs finish their checkpoints before Ray shuts down
            ray.wait(list(pending), num_returns=len(pending), timeout=LOCK_WAIT_S)
        raise


def _get(ray, ref) -> dict:
    """A task's result; a run's own dqnlm error comes back as that error (one line)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, DQNLMError):
            raise e.cause from None
        raise
