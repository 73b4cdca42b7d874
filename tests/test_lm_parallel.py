"""`dqnlm lm train --processes N`: data-parallel LM training on gloo, CPU only.

Two processes must compute what one computes on the same global batch (up to float
rounding), stop together on a signal with one checkpoint, and resume after SIGKILL to
exactly the weights of a run that was never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from lm_helpers import one_error, save_tiny_lm, write_prompts  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

WORDS = ["a", "b", "c", "d", "e", "f", "x"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    model = save_tiny_lm(root / "model")
    prompts = write_prompts(root / "prompts.jsonl", ["a b", "c d e", "f", "x a", "b b c", "d"])
    rows = []
    for i in range(32):  # a fixed offline dataset: both runs replay the same batches
        completion = " ".join(WORDS[(i * 3 + j) % 7] for j in range(1 + i % 5))
        prompt = f"{WORDS[i % 7]} {WORDS[(i + 2) % 7]}"
        rows.append({"prompt": prompt, "completion": completion, "reward": completion.count("x")})
    offline = root / "offline.jsonl"
    offline.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "model": model, "prompts": prompts, "offline": offline}


def train_args(files, run_dir: Path, *extra: str, rounds: int = 4) -> list[str]:
    sets = {
        "prompts": files["prompts"],
        "device": "cpu",
        "prompt_tokens": 4,
        "new_tokens": 6,
        "prompts_per_round": 8,
        "batch_size": 8,
        "updates_per_round": 2,
        "eval_prompts": 0,
        "checkpoint_every": 1000,  # only the last round and signals checkpoint
    }
    args = ["lm", "train", "--model", str(files["model"]), "--reward", "keyword:x"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    args += ["--rounds", str(rounds), "--run-dir", str(run_dir)]
    return [*args, "--no-progress", "--no-tensorboard", "--trust-code", *extra]


def dqnlm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dqnlm", *args], capture_output=True, text=True, timeout=timeout
    )


def weights(run_dir: Path) -> dict:
    return load_file(run_dir / "model" / "model.safetensors")


def column(run_dir: Path, name: str) -> list[float]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    index = lines[0].split(",").index(name)
    return [float(line.split(",")[index]) for line in lines[1:]]


def test_two_processes_match_one_on_the_same_global_batch(files, tmp_path):
    """Offline data: every round replays the same global batches in both runs, so the
    summed per-rank gradients must equal the one-process gradient up to rounding."""
    offline = ["--set", f"offline_data={files['offline']}", "--set", "prompts_per_round=4"]
    one, two = tmp_path / "one", tmp_path / "two"
    done = dqnlm(*train_args(files, one, *offline, "--threads", "1"))
    assert done.returncode == 0, done.stderr
    done = dqnlm(*train_args(files, two, *offline, "--processes", "2"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run directory:") == 1  # the first process alone reports
    assert column(two, "td_loss") == pytest.approx(column(one, "td_loss"), rel=1e-5)
    assert column(two, "mean_q") == pytest.approx(column(one, "mean_q"), rel=1e-4, abs=1e-8)
    a, b = weights(one), weights(two)
    initial = load_file(files["model"] / "model.safetensors")
    moved = max(float((a[k] - initial[k]).abs().max()) for k in a)
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-4  # training changed the weights ...
    assert gap < 1e-6  # ... and both runs changed them alike
    record = json.loads(sorted((two / "checkpoints").glob("step-*.json"))[-1].read_text())
    assert record["meta"]["processes"] == 2


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory):
    """A 2-process online run that nothing stops: what every resumed run must equal."""
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = dqnlm(*train_args(files, run, "--processes", "2", rounds=60))
    assert done.returncode == 0, done.stderr
    return run


def start(files, run_dir: Path, *extra: str) -> subprocess.Popen:
    """A 2-process run in its own session, returned once it has logged a few rounds."""
    args = train_args(files, run_dir, "--processes", "2", *extra, rounds=60)
    process = subprocess.Popen(
        [sys.executable, "-m", "dqnlm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    metrics, deadline = run_dir / "metrics.csv", time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > 4):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never logged a round"
        time.sleep(0.02)
    return process


def processes_of(launcher: subprocess.Popen) -> list[int]:
    """The launcher and its training processes (which run in sessions of their own)."""
    import psutil

    return [launcher.pid, *(p.pid for p in psutil.Process(launcher.pid).children(recursive=True))]


def resume_to_the_end(files, run_dir: Path) -> None:
    done = dqnlm(
        "lm", "train", "--resume", str(run_dir), "--processes", "2", "--no-progress",
        "--no-tensorboard", "--trust-code",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout


def test_resume_after_sigkill_gives_the_uninterrupted_weights(files, tmp_path, uninterrupted):
    run = tmp_path / "run"
    process = start(files, run, "--set", "checkpoint_every=5")  # checkpoints don't change a run
    deadline = time.monotonic() + 60  # wait for a checkpoint, then kill every process
    while not (run / "checkpoints" / "latest.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for pid in processes_of(process):
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (run / "eval.json").exists()
    assert not (run / "checkpoints" / "step-0000000060.json").exists()
    resume_to_the_end(files, run)
    a, b = weights(uninterrupted), weights(run)
    assert all(bool((a[k] == b[k]).all()) for k in a)  # bit-identical on CPU
    assert column(run, "reward") == column(uninterrupted, "reward")


@pytest.mark.parametrize("how", ["sigterm", "launcher-sigkill"])
def test_a_stopped_launcher_checkpoints_once_and_resumes_exactly(
    files, tmp_path, uninterrupted, how
):
    """SIGTERM reaches every process through the launcher; a launcher killed outright is
    noticed by its processes. Either way they stop at the same round, the first one
    checkpoints off-schedule (checkpoint_every is 1000), and none trains on as an orphan."""
    run = tmp_path / "run"
    process = start(files, run)
    workers = processes_of(process)[1:]
    os.kill(process.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    if how == "sigterm":
        assert process.returncode == 128 + signal.SIGTERM, err
        assert f"continue with --resume {run}" in err and "Traceback" not in err
    import psutil

    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in workers):
        assert time.monotonic() < deadline, "a training process outlived its launcher"
        time.sleep(0.1)
    checkpoints = list((run / "checkpoints").glob("step-*.json"))
    assert len(checkpoints) == 1 and not (run / "eval.json").exists()
    assert 0 < int(checkpoints[0].stem.removeprefix("step-")) < 60
    resume_to_the_end(files, run)
    a, b = weights(uninterrupted), weights(run)
    assert all(bool((a[k] == b[k]).all()) for k in a)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--processes", "0"], "--processes must be >= 1, got 0"),
        (["--processes", "2", "--set", "prompts_per_round=5"], "prompts_per_round=5 does not"),
        (["--processes", "100000"], "--processes 100000 exceeds this machine's"),
        (["--processes", "2", "--set", "batch_size=5"], "batch_size=5 does not split over 2"),
    ],
)
def test_bad_process_counts_fail_before_anything_starts(files, tmp_path, capsys, extra, needle):
    run = tmp_path / "run"
    assert needle in one_error(capsys, train_args(files, run, *extra))
    assert not run.exists()


def test_processes_under_a_launcher_is_refused(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = one_error(capsys, train_args(files, tmp_path / "run", "--processes", "2"))
    assert "leave it out under accelerate launch or torchrun" in line


def test_a_failing_process_reports_one_line_and_writes_nothing(files, tmp_path):
    """The model cannot load: the first process says so; the other stops quietly."""
    run = tmp_path / "run"
    args = train_args(files, run, "--processes", "2")
    args[args.index(str(files["model"]))] = str(tmp_path / "no-such-model")
    done = dqnlm(*args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dqnlm: error: "), done.stderr
    assert "no-such-model" in lines[0]
    assert not run.exists()


def test_a_time_budget_stops_every_process_at_the_same_round(files, tmp_path):
    """Each process reads its own clock: they must still agree on when to stop."""
    run = tmp_path / "run"
    args = train_args(files, run, "--processes", "2", "--set", "max_seconds=2", rounds=100000)
    done = dqnlm(*args)
    assert done.returncode == 0, done.stderr
    result = json.loads((run / "eval.json").read_text())
    assert 0 < result["rounds"] < 100000
    assert len(column(run, "reward")) == result["rounds"]
