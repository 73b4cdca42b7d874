"""``dqnlm sweep --backend ray``: the same results as the local pool, a sweep that loses a
node mid-way and still finishes every run once, and one line for each bad input."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from test_experiments import ENV, TINY_BASE, metric_steps, one_error_line, snapshot, write

from dqnlm.cli import main
from dqnlm.experiments.ray_backend import RayOptions
from dqnlm.experiments.sweep import is_finished, load_sweep, runs_of, sweep
from dqnlm.rundir import LOCK, has_checkpoint

ray = pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def private_ray(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield
    if ray.is_initialized():
        ray.shutdown()


def results(out: Path, spec: dict) -> dict[str, tuple[list[list[str]], dict]]:
    """Each run's metrics rows without the wall-clock column, and its eval.json without
    timings: what must not depend on where or how a run was trained."""
    found = {}
    for run in runs_of(spec):
        run_dir = run.directory(out)
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        rows = [line.split(",") for line in lines]
        time_col = rows[0].index("time_s")
        rows = [row[:time_col] + row[time_col + 1 :] for row in rows]
        evaluation = json.loads((run_dir / "eval.json").read_text())
        evaluation = {k: v for k, v in evaluation.items() if "second" not in k}
        found[str(run_dir.relative_to(out))] = (rows, evaluation)
    return found


SMALL = (
    TINY_BASE
    + "total_steps = 400\nlog_interval = 100\neval_interval = 200\ncheckpoint_interval = 200\n"
    + ENV
    + '[variants.polyak]\n[variants.none]\ntarget_update = "none"\n'
)


def test_a_local_ray_instance_gives_the_local_pools_results(tmp_path, capsys):
    config = write(tmp_path / "small.toml", "seeds = 2\n" + SMALL)
    spec = load_sweep(config)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    sweep(spec, local, workers=2, progress=False)
    code = main(
        ["sweep", "--config", str(config), "--out", str(on_ray), "--backend", "ray"]
        + ["--workers", "2", "--no-progress", "--no-report"]
    )
    assert code == 0 and "4 runs finished" in capsys.readouterr().out
    assert not ray.is_initialized()  # the sweep shut its instance down
    assert results(on_ray, spec) == results(local, spec)  # bit-identical on CPU

    # a finished sweep started again on Ray trains nothing
    before = snapshot(on_ray / "runs")
    sweep(spec, on_ray, workers=1, progress=False, ray=RayOptions())
    assert snapshot(on_ray / "runs") == before


LONG = (
    "seeds = [0, 1, 2]\n"
    + TINY_BASE
    + "total_steps = 3000\nlog_interval = 100\neval_interval = 1000\n"
    + "checkpoint_interval = 300\n"
    + ENV
    + "[variants.polyak]\n"
)


def in_flight(out: Path, spec: dict) -> list[Path]:
    """Runs being trained now, past their first checkpoint."""
    dirs = (run.directory(out) for run in runs_of(spec))
    return [d for d in dirs if (d / LOCK).exists() and has_checkpoint(d) and not is_finished(d)]


def test_a_sweep_survives_losing_a_node(tmp_path):
    """Two one-CPU nodes each train a run; one node is removed while both are past their
    first checkpoint. Ray reruns the lost run on the other node, which continues it from its
    checkpoint: every run finishes, none logs a step twice, and every other run's results
    equal those of an undisturbed sweep."""
    from ray.cluster_utils import Cluster

    spec = load_sweep(write(tmp_path / "long.toml", LONG))
    reference = tmp_path / "reference"
    sweep(spec, reference, workers=2, progress=False)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=1)
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out, failure = tmp_path / "out", []

        def run_sweep():
            try:
                sweep(spec, out, progress=False, ray=RayOptions(address=cluster.address))
            except BaseException as e:  # reported below, in the test's thread
                failure.append(e)

        thread = threading.Thread(target=run_sweep)
        thread.start()
        deadline = time.monotonic() + 120
        while len(in_flight(out, spec)) < 2:
            assert time.monotonic() < deadline and thread.is_alive(), failure
            time.sleep(0.1)
        cluster.remove_node(doomed)
        thread.join(timeout=300)
        assert not thread.is_alive() and not failure, failure
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()

    got, want = results(out, spec), results(reference, spec)
    for run in runs_of(spec):
        assert is_finished(run.directory(out))
        metric_steps(run.directory(out))  # each step logged once
    # the lost run continued from a checkpoint (>= step 300): everything up to there is the
    # undisturbed run's; after it a control run starts new episodes, so only it may differ
    differing = [name for name in want if got[name] != want[name]]
    assert len(differing) <= 1, differing
    for name in want:
        assert [r for r in got[name][0][1:] if int(r[0]) <= 300] == [
            r for r in want[name][0][1:] if int(r[0]) <= 300
        ]


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--backend", "ray", "--address", "127.0.0.1:9"], "127.0.0.1:9"),
        (["--backend", "ray", "--address", "no-port"], "no-port"),
        (["--backend", "ray", "--gpus-per-run", "1"], "--gpus-per-run"),
        (["--backend", "ray", "--cpus-per-run", "0"], "--cpus-per-run"),
        (["--backend", "ray", "--cpus-per-run", "nan"], "--cpus-per-run"),
        (["--backend", "ray", "--address", "127.0.0.1:9", "--workers", "2"], "--workers"),
        (["--address", "127.0.0.1:9"], "--backend ray"),
        (["--cpus-per-run", "2"], "--backend ray"),
    ],
    ids=[
        "unreachable",
        "not-host-port",
        "no-gpu",
        "zero-cpus",
        "nan-cpus",
        "workers-with-address",
        "address-without-ray",
        "cpus-without-ray",
    ],
)
def test_bad_ray_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, named):
    config = write(tmp_path / "small.toml", "seeds = 1\n" + SMALL)
    out = tmp_path / "out"
    code = main(["sweep", "--config", str(config), "--out", str(out), "--no-progress", *extra])
    assert code != 0
    assert named in one_error_line(capsys.readouterr().err)
    assert not out.exists()
    assert not ray.is_initialized()


def test_ray_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray fails
    config = write(tmp_path / "small.toml", "seeds = 1\n" + SMALL)
    out = tmp_path / "out"
    code = main(["sweep", "--config", str(config), "--out", str(out), "--backend", "ray"])
    assert code != 0
    assert "pip install 'dqnlm[ray]'" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_terminated_ray_sweep_checkpoints_its_runs_and_resumes(tmp_path, capsys):
    """SIGTERM to the driver cancels every task: the running one saves a checkpoint where it
    stands and stops; the same sweep started again (here on the local pool) continues it."""
    import os
    import signal
    import subprocess
    import sys

    from test_experiments import KILL_SWEEP, checkpoint_step, rows_up_to, wait_for

    config = write(tmp_path / "kill.toml", KILL_SWEEP)
    out = tmp_path / "out"
    first, long = (out / "runs" / "cartpole" / v / "s0" for v in ("first", "long"))
    log = tmp_path / "sweep.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dqnlm", "sweep", "--config", str(config), "--out", str(out)]
            + ["--backend", "ray", "--workers", "1", "--no-progress", "--no-report"],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )
    try:
        wait_for(first / "eval.json", proc, log, timeout=120)
        wait_for(long / "checkpoints" / "latest.json", proc, log, timeout=120)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # Ray's driver turns SIGTERM into a KeyboardInterrupt of its own: Ctrl-C's exit status
    assert proc.returncode in (128 + signal.SIGTERM, 128 + signal.SIGINT), log.read_text()
    assert not is_finished(long), "the long run finished before the signal; lengthen it"
    assert not (long / LOCK).exists()  # its task let go of the run directory
    kept = checkpoint_step(long)
    assert kept % 1000 != 0  # saved where the signal found it, not only every 1,000 steps
    rows_at_checkpoint = rows_up_to(long, kept)

    assert main(["sweep", "--config", str(config), "--out", str(out), "--workers", "1"]) == 0
    assert "3 runs finished" in capsys.readouterr().out
    assert rows_up_to(long, kept) == rows_at_checkpoint
    assert metric_steps(long)[0] == list(range(100, 4001, 100))
