"""Sweeps and reports: a tiny sweep end to end, resuming a killed sweep without repeating a
run, one-line spec errors, and the report's helpers on hand-computed data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dqnlm.cli import main
from dqnlm.control.metrics import COLUMNS
from dqnlm.errors import ConfigError
from dqnlm.experiments import report
from dqnlm.experiments.report import Cell, auc, bounds, collapses, write_report
from dqnlm.experiments.sweep import SPEC, execute, is_finished, load_sweep, runs_of, sweep

FIGURES = (
    "learning_curves.png",
    "final_iqm.png",
    "auc_iqm.png",
    "performance_profiles.png",
    "improvement.png",
)
HEADER = ",".join(COLUMNS)

# Every run: CartPole, a 16-unit MLP on the CPU, one-episode evaluations.
TINY_BASE = """\
[base]
learning_starts = 100
batch_size = 16
hidden_sizes = [16]
device = "cpu"
eval_episodes = 1
final_eval_episodes = 1
"""
ENV = """\
[envs.cartpole]
env_id = "CartPole-v1"
threshold = 100
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dqnlm: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: (mtime_ns, content)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def metric_steps(run_dir: Path) -> tuple[list[int], list[int]]:
    """(training-row steps, evaluation-row steps) of a run's metrics.csv, each strictly
    increasing (no row logged twice), under exactly one header."""
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0] == HEADER
    assert lines.count(HEADER) == 1, "metrics.csv holds a second header"
    rows = [dict(zip(COLUMNS, line.split(","))) for line in lines[1:]]
    train = [int(float(r["step"])) for r in rows if not r["eval_return"]]
    evals = [int(float(r["step"])) for r in rows if r["eval_return"]]
    for steps in (train, evals):
        assert all(a < b for a, b in zip(steps, steps[1:])), f"{run_dir}: steps {steps}"
    return train, evals


def rows_up_to(run_dir: Path, step: int) -> list[str]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    return [line for line in lines if int(float(line.split(",")[0])) <= step]


def checkpoint_step(run_dir: Path) -> int:
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    return int(latest["checkpoint"].removeprefix("step-").removesuffix(".json"))


# ------------------------------------------------------------------ 1. tiny sweep, end to end
def test_tiny_sweep_end_to_end_cli(tmp_path, capsys):
    config = write(
        tmp_path / "tiny.toml",
        "seeds = 2\n"
        + TINY_BASE
        + "total_steps = 400\neval_interval = 200\nlog_interval = 200\n"
        + "checkpoint_interval = 200\n"
        + ENV
        + '[variants.none]\ntarget_update = "none"\n'
        + '[variants.hard-10]\ntarget_update = "hard"\ntarget_update_period = 10\n',
    )
    out = tmp_path / "out"
    code = main(["sweep", "--config", str(config), "--out", str(out), "--workers", "2"])
    assert code == 0
    assert "4 runs finished" in capsys.readouterr().out

    spec = json.loads((out / SPEC).read_text())
    assert spec == load_sweep(config)
    for run in runs_of(spec):
        run_dir = out / "runs" / "cartpole" / run.variant / f"s{run.seed}"
        assert run.directory(out) == run_dir and is_finished(run_dir)
        assert json.loads((run_dir / "eval.json").read_text())["step"] == 400
        assert metric_steps(run_dir) == ([200, 400], [200, 400])

    text = (out / "report.md").read_text()
    for variant in ("none", "hard-10"):
        assert f"| cartpole | {variant} | 2 | " in text  # per-environment table
        assert f"\n| {variant} | " in text  # across-environment table
    assert "P(variant > none)" in text
    for name in FIGURES:
        png = out / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"(figures/{name})" in text

    # the report again, against the other baseline
    assert main(["report", str(out), "--baseline", "hard-10"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    assert "P(variant > hard-10)" in (out / "report.md").read_text()


# ---------------------------------------------------------- 2. resuming a killed sweep
KILL_SWEEP = (
    "seeds = [0]\n"
    + TINY_BASE
    + "log_interval = 100\neval_interval = 1000\ncheckpoint_interval = 1000\n"
    + ENV
    + "[variants.first]\ntotal_steps = 300\n"
    + "[variants.long]\ntotal_steps = 4000\n"
    + "[variants.last]\ntotal_steps = 300\n"
)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"sweep exited ({proc.returncode}) before {path} appeared:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout} s:\n{log.read_text()}")
        time.sleep(0.02)


def test_killed_sweep_resumes_without_repeating_a_run(tmp_path, capsys):
    config = write(tmp_path / "kill.toml", KILL_SWEEP)
    out = tmp_path / "out"
    first, long, last = (out / "runs" / "cartpole" / v / "s0" for v in ("first", "long", "last"))
    log = tmp_path / "sweep.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dqnlm", "sweep", "--config", str(config), "--out", str(out)]
            + ["--workers", "1", "--no-progress", "--no-report"],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers die with it
        )
    try:
        wait_for(first / "eval.json", proc, log)
        wait_for(long / "checkpoints" / "latest.json", proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, log.read_text()

    assert is_finished(first)
    assert not is_finished(long), "the long run finished before the kill; lengthen it"
    assert not is_finished(last)
    finished_before = snapshot(first)
    kept = checkpoint_step(long)
    assert kept >= 1000
    rows_at_checkpoint = rows_up_to(long, kept)

    assert main(["sweep", "--config", str(config), "--out", str(out), "--workers", "1"]) == 0
    assert "3 runs finished" in capsys.readouterr().out
    # the run finished before the kill was not repeated
    assert snapshot(first) == finished_before
    # the killed run resumed from its checkpoint: rows up to it kept, none logged twice
    assert is_finished(long)
    assert rows_up_to(long, kept) == rows_at_checkpoint
    assert metric_steps(long) == (list(range(100, 4001, 100)), [1000, 2000, 3000, 4000])
    assert json.loads((long / "eval.json").read_text())["step"] == 4000
    assert is_finished(last)
    assert metric_steps(last) == ([100, 200, 300], [300])
    assert (out / "report.md").is_file()

    # a finished sweep started again does no work
    runs = snapshot(out / "runs")
    code = main(["sweep", "--config", str(config), "--out", str(out), "--no-report"])
    assert code == 0
    assert "3 runs finished" in capsys.readouterr().out
    assert snapshot(out / "runs") == runs


DETERMINISTIC_SWEEP = (
    "seeds = [0]\n"
    + TINY_BASE
    + "total_steps = 400\nlog_interval = 100\neval_interval = 200\ncheckpoint_interval = 200\n"
    + ENV
    + "[variants.done]\n[variants.half-written]\n[variants.mid-way]\n"
)


def test_sweep_resumes_simulated_kills(tmp_path, capsys):
    """The states a kill leaves, made by hand: a finished run, a run directory killed before
    its first checkpoint (only config.toml), and a run killed between two checkpoints."""
    spec = load_sweep(write(tmp_path / "det.toml", DETERMINISTIC_SWEEP))
    out = tmp_path / "out"
    for run in runs_of(spec):
        execute(run, run.directory(out))
    done, half, mid = (run.directory(out) for run in runs_of(spec))
    assert all(is_finished(d) for d in (done, half, mid))

    for path in half.iterdir():
        if path.name != "config.toml":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    # roll mid-way back to its step-200 checkpoint; its metrics still hold rows after it
    ckpts = mid / "checkpoints"
    for path in ckpts.glob("step-0000000400.*"):
        path.unlink()
    (ckpts / "latest.json").write_text(json.dumps({"checkpoint": "step-0000000200.json"}))
    (mid / "eval.json").unlink()
    (mid / "learning_curve.png").unlink()
    assert rows_up_to(mid, 400) != rows_up_to(mid, 200)
    rows_at_checkpoint = rows_up_to(mid, 200)
    finished = snapshot(done)

    assert len(sweep(spec, out, workers=2, progress=False)) == 3
    assert snapshot(done) == finished
    for run_dir in (half, mid):
        assert is_finished(run_dir)
        assert metric_steps(run_dir) == ([100, 200, 300, 400], [200, 400])
    assert rows_up_to(mid, 200) == rows_at_checkpoint  # resumed, not restarted

    runs = snapshot(out / "runs")
    config = str(tmp_path / "det.toml")
    assert main(["sweep", "--config", config, "--out", str(out), "--no-report"]) == 0
    assert "3 runs finished" in capsys.readouterr().out
    assert snapshot(out / "runs") == runs


GROWN_SWEEP = (
    TINY_BASE
    + "total_steps = 200\nlog_interval = 100\neval_interval = 100\n"
    + ENV
    + "[variants.a]\n"
)


def test_a_sweep_grows_by_variants_and_seeds_without_rerunning(tmp_path):
    """A sweep file that only adds variants and seeds continues the sweep: the runs both
    share are kept as they are, and only the new ones train."""
    out = tmp_path / "out"
    first = load_sweep(write(tmp_path / "first.toml", "seeds = [0]\n" + GROWN_SWEEP))
    sweep(first, out, workers=1, progress=False)
    kept = snapshot(out / "runs" / "cartpole" / "a" / "s0")
    grown_text = "seeds = [0, 1]\n" + GROWN_SWEEP + "[variants.b]\ngamma = 0.9\n"
    grown = load_sweep(write(tmp_path / "grown.toml", grown_text))
    dirs = sweep(grown, out, workers=1, progress=False)
    assert len(dirs) == 4 and all(is_finished(d) for d in dirs)
    assert snapshot(out / "runs" / "cartpole" / "a" / "s0") == kept
    assert json.loads((out / SPEC).read_text()) == grown


@pytest.mark.parametrize(
    "env, variants, names",
    [
        (ENV, "[variants.a]\nlearning_rate = 1e-3\n", ("cartpole x a", "learning_rate")),
        (ENV.replace("100", "50"), "[variants.a]\n", ("[envs.cartpole]", "100", "50")),
    ],
    ids=["variant-config", "env-threshold"],
)
def test_a_sweep_refuses_changes_to_runs_it_holds(tmp_path, capsys, env, variants, names):
    out = tmp_path / "out"
    out.mkdir()
    old = load_sweep(write(tmp_path / "old.toml", "seeds = 1\n" + VALID_TAIL))
    (out / SPEC).write_text(json.dumps(old))
    started = runs_of(old)[0].directory(out)
    started.mkdir(parents=True)
    (started / "config.toml").write_text("")  # a run under way (killed, say)
    config = write(tmp_path / "new.toml", "seeds = 1\n" + env + variants)
    code = main(["sweep", "--config", str(config), "--out", str(out), "--no-progress"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and "different sweep" in line
    for name in names:
        assert name in line
    assert json.loads((out / SPEC).read_text()) == old  # nothing rewritten


# ------------------------------------------------------- 6. execute() restarts a bare run
def test_execute_restarts_a_run_killed_before_its_first_checkpoint(tmp_path):
    spec = load_sweep(write(tmp_path / "det.toml", DETERMINISTIC_SWEEP))
    run = runs_of(spec)[0]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("stale = true\n")
    (run_dir / "metrics.csv").write_text(f"{HEADER}\n100,0.1,9,,0.5,0.1,0.05,\n150,0.2,9,,,,,\n")
    (run_dir / "stray.txt").write_text("left by the killed run")

    result = execute(run, run_dir)
    assert result["run"] == str(run_dir)
    assert is_finished(run_dir)
    assert not (run_dir / "stray.txt").exists()
    assert "stale" not in (run_dir / "config.toml").read_text()
    assert metric_steps(run_dir) == ([100, 200, 300, 400], [200, 400])


def test_a_kill_at_the_final_checkpoint_leaves_a_finished_run(tmp_path, monkeypatch):
    """eval.json is written before the final checkpoint: a run killed between the two
    counts as finished, and resuming it from its previous checkpoint logs no row twice."""
    from dqnlm.control import DQN

    spec = load_sweep(write(tmp_path / "det.toml", DETERMINISTIC_SWEEP))
    run = runs_of(spec)[0]
    run_dir = tmp_path / "run"
    calls = []
    real_save = DQN.save_checkpoint

    def killed_at_the_end(self):
        if self.global_step >= self.config.total_steps:
            calls.append(self.global_step)
            raise KeyboardInterrupt  # stands in for SIGKILL during the final checkpoint
        return real_save(self)

    monkeypatch.setattr(DQN, "save_checkpoint", killed_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        execute(run, run_dir)
    assert calls and is_finished(run_dir)
    monkeypatch.setattr(DQN, "save_checkpoint", real_save)
    (run_dir / "eval.json").unlink()  # force the resume: from the previous checkpoint
    execute(run, run_dir)
    assert metric_steps(run_dir) == ([100, 200, 300, 400], [200, 400])


# --------------------------------------------------------------- 3. sweep file errors
VALID_TAIL = ENV + "[variants.a]\n"
SPEC_ERRORS = [
    pytest.param(
        "seedz = 2\n" + VALID_TAIL, ("bad.toml", "seedz", "top-level"), id="unknown-top-level-key"
    ),
    pytest.param('seeds = "x"\n' + VALID_TAIL, ("bad.toml", "seeds"), id="seeds-not-int"),
    pytest.param("seeds = []\n" + VALID_TAIL, ("bad.toml", "seeds"), id="seeds-empty"),
    pytest.param("seeds = 0\n" + VALID_TAIL, ("bad.toml", "seeds"), id="seeds-zero"),
    pytest.param("seeds = true\n" + VALID_TAIL, ("bad.toml", "seeds"), id="seeds-bool"),
    pytest.param('seeds = [0, "1"]\n' + VALID_TAIL, ("bad.toml", "seeds"), id="seeds-list-of-str"),
    pytest.param("seeds = 1\n[variants.a]\n", ("bad.toml", "[envs.NAME]"), id="missing-envs"),
    pytest.param("seeds = 1\n" + ENV, ("bad.toml", "[variants.NAME]"), id="missing-variants"),
    pytest.param(
        "seeds = 1\n" + ENV + "[variants.a]\n[variants.fast]\nlearning_rat = 1e-3\n",
        ("bad.toml", "[variants.fast]", "learning_rat", "did you mean 'learning_rate'"),
        id="unknown-variant-field",
    ),
    pytest.param(
        "seeds = 1\n" + ENV + "[variants.a]\ngamma = 2\n",
        ("bad.toml", "[variants.a]", "gamma"),
        id="invalid-variant-value",
    ),
    pytest.param(
        "seeds = 1\nenvs = {c = 3}\n[variants.a]\n",
        ("bad.toml", "[envs.c]", "table"),
        id="env-not-a-table",
    ),
    pytest.param("seeds = \n", ("bad.toml", "not valid TOML"), id="bad-toml"),
    pytest.param(
        'seeds = 1\n[envs."../x"]\nenv_id = "CartPole-v1"\n[variants.a]\n',
        ("bad.toml", "[envs.../x]", "directory names"),
        id="name-escapes-the-sweep-dir",
    ),
    pytest.param("seeds = [0, 0]\n" + VALID_TAIL, ("bad.toml", "seeds repeat"), id="seeds-repeat"),
    pytest.param(
        'seeds = 1\n[envs.c]\npreset = "cartpol"\n[variants.a]\n',
        ("bad.toml", "[envs.c]", "cartpol"),
        id="unknown-preset-names-env",
    ),
    pytest.param(
        "seeds = 1\n" + ENV + '[variants.slow]\nlearning_rate = "x"\n',
        ("bad.toml", "[variants.slow]", "learning_rate"),
        id="wrong-type-variant-field",
    ),
    pytest.param(
        "seeds = 1\nvariants = {a = 3}\n" + ENV,
        ("bad.toml", "variants.a"),
        id="variant-not-a-table",
    ),
    pytest.param(
        "seeds = 1\nvariants = 3\n" + ENV,
        ("bad.toml", "variants"),
        id="variants-not-a-table",
    ),
]


@pytest.mark.parametrize("text, names", SPEC_ERRORS)
def test_sweep_file_errors_are_one_line(tmp_path, capsys, text, names):
    config = write(tmp_path / "bad.toml", text)
    out = tmp_path / "out"
    code = main(["sweep", "--config", str(config), "--out", str(out), "--no-progress"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    for name in names:
        assert name in line
    assert not out.exists()


def test_duplicate_seeds_are_an_error(tmp_path):
    # load_sweep only: were it accepted, a sweep would train two full-size runs
    with pytest.raises(ConfigError, match="seeds"):
        load_sweep(write(tmp_path / "s.toml", "seeds = [0, 0]\n" + VALID_TAIL))


def test_sweep_refuses_a_directory_holding_another_sweep(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    other = load_sweep(write(tmp_path / "a.toml", "seeds = 2\n" + VALID_TAIL))
    (out / SPEC).write_text(json.dumps(other))
    started = runs_of(other)[1].directory(out)
    started.mkdir(parents=True)
    (started / "metrics.csv").write_text(HEADER + "\n")
    before = snapshot(out)
    config = write(tmp_path / "b.toml", "seeds = 3\n" + VALID_TAIL + "gamma = 0.9\n")
    code = main(["sweep", "--config", str(config), "--out", str(out), "--no-progress"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert "different sweep" in line and str(out) in line
    assert snapshot(out) == before


def test_sweep_workers_must_be_positive(tmp_path, capsys):
    config = write(tmp_path / "a.toml", "seeds = 1\n" + VALID_TAIL)
    code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "o"), "--workers", "0"])
    assert code == 1
    assert "--workers" in one_error_line(capsys.readouterr().err)


def test_load_sweep_layers_preset_base_env_and_variant(tmp_path):
    spec = load_sweep(
        write(
            tmp_path / "s.toml",
            "seeds = [3, 5]\n[base]\ntotal_steps = 1000\nbatch_size = 32\nlearning_rate = 1e-3\n"
            '[envs.cp]\npreset = "cartpole"\ntotal_steps = 2000\n'
            '[envs.acro]\nenv_id = "Acrobot-v1"\nlow = -500\nhigh = -80\n'
            "[variants.base]\n[variants.small-batch]\nbatch_size = 16\n",
        )
    )
    assert spec["seeds"] == [3, 5]
    cp, acro = spec["envs"]["cp"], spec["envs"]["acro"]
    assert (cp["env_id"], cp["low"], cp["high"], cp["threshold"]) == ("CartPole-v1", None, 475, 475)
    assert (acro["env_id"], acro["low"], acro["high"], acro["threshold"]) == (
        "Acrobot-v1",
        -500,
        -80,
        None,
    )
    base = cp["configs"]["base"]
    assert base["total_steps"] == 2000  # env over base
    assert base["batch_size"] == 32 and base["learning_rate"] == 1e-3  # base over preset
    assert base["n_step"] == 3 and base["hidden_sizes"] == [64, 64]  # the preset
    assert base["stop_at_return"] is None  # sweeps never stop early
    assert cp["configs"]["small-batch"]["batch_size"] == 16  # variant over base
    assert acro["configs"]["base"]["total_steps"] == 1000

    runs = runs_of(spec)
    assert len(runs) == 2 * 2 * 2
    assert [(r.env, r.variant, r.seed) for r in runs[:3]] == [
        ("cp", "base", 3),
        ("cp", "base", 5),
        ("cp", "small-batch", 3),
    ]
    assert all(r.config["seed"] == r.seed for r in runs)
    assert runs[0].directory(tmp_path) == tmp_path / "runs" / "cp" / "base" / "s3"


def test_load_sweep_error_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown top-level keys"):
        load_sweep(write(tmp_path / "s.toml", "sweeps = 1\n" + VALID_TAIL))


# ------------------------------------------------------------ 4. report helpers by hand
def cell(curves, steps=(0, 50, 100), final=None, q_over=None) -> Cell:
    curves = np.array(curves, dtype=float)
    return Cell(
        steps=np.array(steps, dtype=float),
        curves=curves,
        final=np.array(final if final is not None else curves[:, -1], dtype=float),
        q_over=np.array(q_over if q_over is not None else np.zeros(len(curves)), dtype=float),
        q_curves=np.zeros_like(curves),
        seeds=list(range(len(curves))),
    )


def test_auc_is_the_normalised_trapezoid_over_steps():
    assert auc(cell([[0, 10, 10]]), 0, 10) == pytest.approx([0.75])
    # uneven steps, several seeds, a non-zero low: (x - 10) / 10 = [0, 1, 0.5] and [1, 1, 1];
    # trapezoid over steps 0, 20, 100: (20 * 0.5 + 80 * 0.75) / 100 = 0.7
    got = auc(cell([[10, 20, 15], [20, 20, 20]], steps=(0, 20, 100)), 10, 20)
    assert got == pytest.approx([0.7, 1.0])
    assert auc(cell([[5.0]], steps=(100,)), 0, 10) == pytest.approx([0.5])  # one evaluation


def test_collapses_count_drops_below_halfway_after_reaching_the_threshold():
    # threshold 100, low 0: halfway is 50
    curves = [
        [0, 100, 40],  # reached, then fell below halfway: a collapse
        [0, 90, 10],  # never reached: no collapse
        [10, 40, 100],  # dropped before reaching: no collapse
        [100, 60, 50],  # reached, stayed at halfway (not below)
        [0, 120, 49.9],  # overshot, then fell just below halfway
    ]
    assert collapses(cell(curves), 100, 0) == (4, 2)
    assert collapses(cell([[10, 40, 100]]), 100, 0) == (1, 0)
    assert collapses(cell([[60, 10, 100]]), 100, 0) == (1, 0)
    # halfway between a negative low and the threshold: -500 + 0.5 * 400 = -300
    assert collapses(cell([[-100, -290], [-100, -310]], steps=(0, 1)), -100, -500) == (2, 1)
    assert collapses(cell(curves), None, 0) == (0, 0)


def test_bounds_use_the_spec_then_random_play_then_the_best_final(monkeypatch):
    def random_return(env_id, *args, **kwargs):
        assert env_id == "Acrobot-v1"
        return -499.0

    monkeypatch.setattr(report, "random_return", random_return)
    spec = {
        "envs": {
            "given": {"env_id": "CartPole-v1", "low": 5, "high": 400, "threshold": 300},
            "random-low": {"env_id": "Acrobot-v1", "low": None, "high": -100, "threshold": -100},
            "best-final": {"env_id": "CartPole-v1", "low": 0, "high": None, "threshold": None},
            "nothing-yet": {"env_id": "CartPole-v1", "low": 3, "high": None, "threshold": None},
        }
    }
    cells = {
        "best-final": {
            "a": cell([[1, 2, 3]], final=[30]),
            "b": cell([[1, 2, 3], [1, 2, 3]], final=[10, 70]),
        }
    }
    assert bounds(spec, cells) == {
        "given": (5.0, 400.0),
        "random-low": (-499.0, -100.0),
        "best-final": (0.0, 70.0),
        "nothing-yet": (3.0, 4.0),
    }


# ------------------------------------------------- 5. reports of fabricated sweep directories
REPORT_SWEEP = (
    "seeds = 2\n[envs.c]\nenv_id = 'CartPole-v1'\nlow = 0\nhigh = 100\nthreshold = 100\n"
    "[variants.a]\n[variants.b]\n"
)
# evaluation returns at steps 100, 200, 300, and (final return, Q overestimation)
FAKE = {
    ("a", 0): ([0, 100, 40], (40, 3.0)),  # reached, collapsed
    ("a", 1): ([0, 50, 100], (100, 5.0)),  # reached
    ("b", 0): ([10, 20, 30], (30, 1.0)),
    ("b", 1): ([10, 20, 30], (30, 2.0)),
}


def fake_sweep(tmp_path: Path) -> Path:
    """A sweep directory whose runs' outputs are written by hand (no training)."""
    out = tmp_path / "sweep"
    out.mkdir()
    spec = load_sweep(write(tmp_path / "r.toml", REPORT_SWEEP))
    (out / SPEC).write_text(json.dumps(spec))
    for run in runs_of(spec):
        returns, (final, q_over) = FAKE[(run.variant, run.seed)]
        run_dir = run.directory(out)
        run_dir.mkdir(parents=True)
        rows = [HEADER]
        for step, value in zip((100, 200, 300), returns):
            rows.append(f"{step},0.1,9,,0.5,0.1,0.05,")  # a training row: no eval_return
            rows.append(f"{step},0.1,,{value},,,,{q_over}")
        (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
        eval_json = {"mean_return": final, "q_overestimation": q_over, "step": 300}
        (run_dir / "eval.json").write_text(json.dumps(eval_json))
    return out


def test_report_of_hand_made_runs(tmp_path, capsys):
    out = fake_sweep(tmp_path)
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "* c (`CartPole-v1`): low 0.0, high 100.0" in text
    # b: finals 30, 30; AUC of [0.1, 0.2, 0.3] over 100..300 = 0.2; median Q over 1.5
    row_b = (
        "| c | b | 2 | 30.0 [30.0, 30.0] | 30.0 [30.0, 30.0] | 0.20 [0.20, 0.20] | 1.50 | 0 / 0 |"
    )
    assert row_b in text
    assert "| c | a | 2 | " in text and text.count("| 4.00 | 1 / 2 |") == 1
    assert "## Across environments (c; 2 runs each)" in text
    for name in FIGURES:
        assert (out / "figures" / name).is_file()
    # the per-seed numbers behind the tables
    results = json.loads((out / "results.json").read_text())
    assert results["bounds"] == {"c": [0.0, 100.0]}
    b = results["envs"]["c"]["b"]
    assert b["seeds"] == [0, 1] and b["final_return"] == [30.0, 30.0]
    assert b["auc"] == pytest.approx([0.2, 0.2]) and b["q_overestimation"] == [1.0, 2.0]
    assert (b["reached"], b["collapsed"]) == (0, 0)
    assert results["envs"]["c"]["a"]["collapsed"] == 1
    assert results["across"]["b"]["final_iqm"]["point"] == pytest.approx(0.3)
    assert results["across"]["b"]["p_improvement_over_a"] is not None
    assert results["across"]["a"]["p_improvement_over_a"] is None


def test_report_of_a_partial_sweep(tmp_path):
    out = fake_sweep(tmp_path)
    for seed in (0, 1):
        (out / "runs" / "c" / "b" / f"s{seed}" / "eval.json").unlink()  # b not finished
    write_report(out)
    text = (out / "report.md").read_text()
    assert "| c | a | 2 | " in text
    assert "| c | b | 0 | | | | | |" in text
    assert "Across environments" not in text
    assert (out / "figures" / "learning_curves.png").is_file()
    assert not (out / "figures" / "improvement.png").exists()


def test_report_errors_are_one_line(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert main(["report", str(plain)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(plain) in line and "not a sweep directory" in line

    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "not a sweep directory" in one_error_line(capsys.readouterr().err)

    out = fake_sweep(tmp_path)
    assert main(["report", str(out), "--baseline", "c"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "'c'" in line and "['a', 'b']" in line
    assert not (out / "report.md").exists()

    for run in runs_of(json.loads((out / SPEC).read_text())):
        (run.directory(out) / "eval.json").unlink()
    assert main(["report", str(out)]) == 1
    assert "no finished run" in one_error_line(capsys.readouterr().err)
