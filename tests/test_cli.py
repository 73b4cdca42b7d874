"""The dqnlm command line: one-line errors without tracebacks, and a tiny end-to-end run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dqnlm.cli import main

HEADER = "step,time_s,episode_return,eval_return,loss,mean_q,epsilon,q_overestimation"
BAD_HYPERPARAMETERS = [
    "--set",
    "gamma=2",
    "--set",
    "batch_size=10",
    "--set",
    "buffer_size=5",
    "--set",
    "tau=0",
    "--total-steps",
    "-5",
]


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dqnlm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dqnlm: error: ")
    assert "Traceback" not in stderr
    return lines[0]


# ----------------------------------------------------------------------------- user errors
def test_unknown_env_subprocess(tmp_path):
    run_dir = tmp_path / "r"
    result = run_module("train", "--env", "NotAnEnv-v0", "--run-dir", str(run_dir), cwd=tmp_path)
    assert result.returncode == 1
    assert "NotAnEnv-v0" in one_error_line(result.stderr)
    assert not run_dir.exists()


def test_bad_hyperparameters_subprocess(tmp_path):
    run_dir = tmp_path / "r"
    result = run_module(
        "train",
        "--env",
        "CartPole-v1",
        *BAD_HYPERPARAMETERS,
        "--run-dir",
        str(run_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    for needle in (
        "gamma",
        "2.0",
        "batch_size (10)",
        "buffer_size (5)",
        "tau",
        "total_steps",
        "-5",
    ):
        assert needle in line
    assert not run_dir.exists()


def test_unknown_env_in_process(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", "--env", "NotAnEnv-v0", "--run-dir", str(run_dir)]) == 1
    assert "NotAnEnv-v0" in one_error_line(capsys.readouterr().err)
    assert not run_dir.exists()


def test_continuous_actions_are_refused(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", "--env", "Pendulum-v1", "--run-dir", str(run_dir)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "discrete" in line and "Pendulum-v1" in line
    assert not run_dir.exists()


def test_unknown_set_key_suggests_a_fix(tmp_path, capsys):
    assert main(["train", "--set", "learning_rat=1e-3", "--run-dir", str(tmp_path / "r")]) == 1
    assert "'learning_rate'" in one_error_line(capsys.readouterr().err)


def test_eval_missing_run_dir(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "missing" in line and "does not exist" in line


def test_presets_lists_the_tuned_configs(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("cartpole", "acrobot", "mountaincar", "lunarlander"):
        assert name in out


# ----------------------------------------------------------------------------- a tiny run
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "r"
    code = main(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--total-steps",
            "600",
            "--set",
            "learning_starts=100",
            "--set",
            "batch_size=16",
            "--set",
            "eval_interval=300",
            "--set",
            "checkpoint_interval=300",
            "--set",
            "log_interval=100",
            "--set",
            "hidden_sizes=[16]",
            "--set",
            "final_eval_episodes=2",
            "--set",
            "eval_episodes=2",
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ]
    )
    assert code == 0
    return run_dir


def test_train_writes_the_run_directory(trained_run):
    assert "total_steps = 600" in (trained_run / "config.toml").read_text()
    lines = (trained_run / "metrics.csv").read_text().splitlines()
    assert lines[0] == HEADER
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert steps == sorted(steps) and steps[-1] == 600
    assert {100, 300, 600} <= set(steps)
    assert list((trained_run / "tb").glob("events.out.tfevents.*"))
    assert (trained_run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    latest = json.loads((trained_run / "checkpoints" / "latest.json").read_text())
    assert latest == {"checkpoint": "step-0000000600.json"}
    result = json.loads((trained_run / "eval.json").read_text())
    assert result["episodes"] == 2 and len(result["returns"]) == 2


def test_train_refuses_to_overwrite_a_run(trained_run, capsys):
    assert main(["train", "--env", "CartPole-v1", "--run-dir", str(trained_run)]) == 1
    assert "--resume" in one_error_line(capsys.readouterr().err)


def test_eval_json(trained_run, capsys):
    assert main(["eval", str(trained_run), "--json", "--episodes", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    assert result["step"] == 600
    assert result["mean_return"] == pytest.approx(sum(result["returns"]) / 3)
    assert result["std_return"] >= 0.0
    assert all(r >= 1 for r in result["returns"])  # CartPole pays 1 per step


def test_eval_replays_the_final_evaluation(trained_run, capsys):
    # the final evaluation and `dqnlm eval` both default to the run's test seeds
    final = json.loads((trained_run / "eval.json").read_text())
    assert final["step"] == 600 and final["stopped_early"] is False
    assert main(["eval", str(trained_run), "--json", "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["returns"] == final["returns"]


def test_eval_tampered_checkpoint(trained_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    weights = copy / "checkpoints" / "step-0000000600.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["eval", str(copy)]) == 1
    assert "SHA-256" in one_error_line(capsys.readouterr().err)


def test_plot(trained_run, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["plot", str(trained_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_needs_a_run_directory(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 1
    assert "metrics.csv" in one_error_line(capsys.readouterr().err)
