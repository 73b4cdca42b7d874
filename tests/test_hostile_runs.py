"""Hostile run directories, checkpoints, sweeps and reports (issue 11, C and D1/D4/D5/D7/D8/
D10/D12): every mistake is exit code 1 and one ``dqnlm: error:`` line naming the offending
value, no traceback, and nothing half-written."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dqnlm.cli import main
from dqnlm.core.checkpoint import LATEST, load_checkpoint, record_digest
from dqnlm.experiments.sweep import SPEC, load_sweep, runs_of
from dqnlm.rundir import LOCK, claim_run_dir

HAS_LM = importlib.util.find_spec("transformers") is not None

CONTROL = [
    "train",
    "--env",
    "CartPole-v1",
    "--total-steps",
    "300",
    *("--set", "learning_starts=50", "--set", "batch_size=16", "--set", "hidden_sizes=[16]"),
    *("--set", "eval_interval=0", "--set", "final_eval_episodes=1", "--set", "device=cpu"),
    *("--set", "log_interval=100", "--no-progress", "--no-tensorboard"),
]
DIALOGUE = [
    *("dialogue", "train", "--set", "epochs=1", "--set", "dialogues_per_epoch=10"),
    *("--set", "warm_start_dialogues=10", "--set", "eval_episodes=10"),
    *("--no-progress", "--no-tensorboard"),
]
SWEEP = """\
seeds = 1
[base]
learning_starts = 50
batch_size = 16
hidden_sizes = [16]
eval_interval = 100
eval_episodes = 1
final_eval_episodes = 1
log_interval = 100
total_steps = 200
device = "cpu"
[envs.cartpole]
env_id = "CartPole-v1"
threshold = 100
[variants.a]
"""


def one_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI: exit code 1, a single ``dqnlm: error:`` line holding every needle."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dqnlm: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def killed_run(run_dir: Path, config: str) -> Path:
    """A run killed before its first checkpoint: its config.toml and a metrics row."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text(config)
    (run_dir / "metrics.csv").write_text("step,time_s\n100,0.5\n")
    return run_dir


@pytest.fixture(scope="module")
def control_run(tmp_path_factory) -> Path:
    """A finished tiny control run with checkpoints (every 100 steps)."""
    run = tmp_path_factory.mktemp("control") / "run"
    assert main([*CONTROL, "--set", "checkpoint_interval=100", "--run-dir", str(run)]) == 0
    return run


def latest_record(run: Path) -> Path:
    ckpt = run / "checkpoints"
    return ckpt / json.loads((ckpt / LATEST).read_text())["checkpoint"]


# ---------------------------------------------------------------- D4: one writer per run dir
HOLDER = """
import sys, time
from dqnlm.rundir import claim_run_dir
with claim_run_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_and_a_dead_one_holds_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        one_error(
            capsys,
            [*CONTROL, "--run-dir", str(run)],
            f"run directory {run} is in use by another dqnlm process (pid {holder.pid})",
        )
        assert not (run / "metrics.csv").exists()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the stale lock file stays
        holder.wait()
    assert (run / LOCK).exists()
    assert main([*CONTROL, "--run-dir", str(run)]) == 0
    assert (run / "eval.json").is_file() and not (run / LOCK).exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(lambda run: [*CONTROL, "--run-dir", str(run)], id="train"),
        pytest.param(lambda run: ["train", "--resume", str(run), "--no-progress"], id="resume"),
        pytest.param(lambda run: [*DIALOGUE, "--run-dir", str(run)], id="dialogue"),
        pytest.param(lambda run: ["dialogue", "train", "--resume", str(run)], id="dialogue-resume"),
        pytest.param(
            lambda run: ["lm", "train", "--resume", str(run), "--no-progress"],
            id="lm-resume",
            marks=pytest.mark.skipif(not HAS_LM, reason="needs the lm extra"),
        ),
    ],
)
def test_every_trainer_refuses_a_run_dir_in_use(tmp_path, capsys, argv):
    run = killed_run(tmp_path / "run", 'env_id = "CartPole-v1"\n')
    before = snapshot(run)
    with claim_run_dir(run):
        one_error(capsys, argv(run), f"run directory {run} is in use by another dqnlm process")
        assert snapshot(run) == {**before, LOCK: (run / LOCK).read_bytes()}
    assert snapshot(run) == before


def test_a_sweep_refuses_a_sweep_dir_in_use(tmp_path, capsys):
    config = tmp_path / "s.toml"
    config.write_text(SWEEP)
    out = tmp_path / "out"
    with claim_run_dir(out):
        one_error(
            capsys,
            ["sweep", "--config", str(config), "--out", str(out), "--no-progress"],
            f"run directory {out} is in use by another dqnlm process (pid {os.getpid()})",
        )
    assert list(out.iterdir()) == []


def test_a_sweep_worker_refuses_a_run_dir_in_use(tmp_path):
    from dqnlm.errors import DQNLMError
    from dqnlm.experiments.sweep import execute

    config = tmp_path / "s.toml"
    config.write_text(SWEEP)
    run = runs_of(load_sweep(config))[0]
    with claim_run_dir(tmp_path / "run"), pytest.raises(DQNLMError, match="in use"):
        execute(run, tmp_path / "run")


# ----------------------------------------------- D5: a directory holding a run is not reused
@pytest.mark.parametrize("trainer", ["control", "dialogue"])
def test_training_into_a_killed_run_is_refused_then_overwritten_on_request(
    tmp_path, capsys, trainer
):
    run = killed_run(tmp_path / "run", "stale = true\n")
    (run / "notes.txt").write_text("mine")
    argv = [*(CONTROL if trainer == "control" else DIALOGUE), "--run-dir", str(run)]
    before = snapshot(run)
    one_error(
        capsys, argv, str(run), "stopped before its first checkpoint", "--resume", "--overwrite"
    )
    assert snapshot(run) == before
    assert main([*argv, "--overwrite"]) == 0
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert "100,0.5" not in rows and header.startswith("step,")  # the old row is gone
    assert "stale" not in (run / "config.toml").read_text()
    assert (run / "notes.txt").read_text() == "mine"  # only a run's own outputs are cleared


def test_a_new_run_in_a_folder_holding_no_run_keeps_its_files(tmp_path):
    run = tmp_path / "mine"
    (run / "model").mkdir(parents=True)
    (run / "model" / "weights.bin").write_text("the user's model")
    assert main([*CONTROL, "--run-dir", str(run)]) == 0
    assert (run / "model" / "weights.bin").read_text() == "the user's model"
    assert (run / "eval.json").is_file()


def test_training_into_a_finished_run_is_refused(control_run, capsys):
    before = snapshot(control_run)
    one_error(capsys, [*CONTROL, "--run-dir", str(control_run)], "already holds a run", "--resume")
    assert snapshot(control_run) == before


def test_overwrite_with_a_bad_config_destroys_nothing(tmp_path, capsys):
    run = killed_run(tmp_path / "run", 'env_id = "CartPole-v1"\n')
    before = snapshot(run)
    argv = [*CONTROL, "--run-dir", str(run), "--overwrite", "--env", "NoSuchEnv-v0"]
    one_error(capsys, argv, "NoSuchEnv-v0")
    assert snapshot(run) == before


# ------------------------------------- C: --resume before the first checkpoint restarts the run
def test_control_resume_without_a_checkpoint_restarts_from_config_toml(tmp_path, capsys):
    from dqnlm.config_io import to_toml
    from dqnlm.control import DQNConfig

    config = DQNConfig(
        env_id="CartPole-v1",
        total_steps=200,
        learning_starts=50,
        batch_size=16,
        hidden_sizes=(16,),
        eval_interval=0,
        final_eval_episodes=1,
        log_interval=100,
        device="cpu",
        seed=7,
    )
    run = killed_run(tmp_path / "run", to_toml(config))
    assert main(["train", "--resume", str(run), "--no-progress", "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert f"no checkpoint yet in {run}: restarting from its config.toml" in err
    assert json.loads((run / "eval.json").read_text())["step"] == 200
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["100", "200", "200"]  # the stale row is gone
    assert load_checkpoint(run / "checkpoints").meta["config"]["seed"] == 7


def test_dialogue_resume_without_a_checkpoint_restarts_from_config_toml(tmp_path, capsys):
    text = "epochs = 1\ndialogues_per_epoch = 10\nwarm_start_dialogues = 10\neval_episodes = 10\n"
    run = killed_run(tmp_path / "run", text)
    argv = ["dialogue", "train", "--resume", str(run), "--no-progress", "--no-tensorboard"]
    assert main(argv) == 0
    assert "no checkpoint yet in" in capsys.readouterr().err
    assert (run / "eval.json").is_file() and (run / "checkpoints" / LATEST).is_file()


def test_lm_resume_without_a_checkpoint_restarts_from_config_toml(tmp_path, capsys):
    pytest.importorskip("transformers")
    from lm_helpers import save_tiny_lm, toy_config, write_prompts

    from dqnlm.config_io import to_toml

    model = save_tiny_lm(tmp_path / "model")
    prompts = write_prompts(tmp_path / "prompts.jsonl", ["a b", "c d"])
    config = toy_config(model, prompts, rounds=1, eval_prompts=0)
    run = killed_run(tmp_path / "run", to_toml(config))
    argv = ["lm", "train", "--resume", str(run), "--trust-code", "--no-progress"]
    assert main([*argv, "--no-tensorboard"]) == 0
    assert "no checkpoint yet in" in capsys.readouterr().err
    assert (run / "checkpoints" / LATEST).is_file()


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    one_error(capsys, ["train", "--resume", str(tmp_path)], "no checkpoint found", str(tmp_path))
    one_error(capsys, ["train", "--resume", str(tmp_path / "nope")], "does not exist")
    run = killed_run(tmp_path / "bad", "env_id = [\n")  # config.toml is not TOML
    one_error(capsys, ["train", "--resume", str(run)], str(run / "config.toml"), "TOML")
    assert (run / "metrics.csv").is_file()  # a refused restart clears nothing


# ------------------------------------------------ D1: the checkpoint record is hashed, finite
def test_an_edited_checkpoint_is_refused(control_run, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(control_run, run)
    path = latest_record(run)
    record = json.loads(path.read_text())
    record["meta"]["global_step"] = 10**6
    path.write_text(json.dumps(record))
    one_error(capsys, ["eval", str(run)], str(path), "SHA-256")
    one_error(capsys, ["train", "--resume", str(run)], str(path), "SHA-256")

    record.pop("sha256")
    path.write_text(json.dumps(record))
    line = one_error(capsys, ["eval", str(run)], str(path), "no sha256 field")
    assert "safetensors" not in line


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_checkpoint_are_refused(control_run, capsys, tmp_path, value):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(control_run, run)
    path = latest_record(run)
    record = json.loads(path.read_text())
    record["meta"]["elapsed_s"] = "MARK"
    record["sha256"] = record_digest(record)
    path.write_text(json.dumps(record).replace('"MARK"', value))
    one_error(capsys, ["eval", str(run)], str(path), "non-finite number")


# --------------------------------------------------- D10: unusable run directories, full disks
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(lambda run, tmp: [*CONTROL, "--run-dir", str(run)], id="train"),
        pytest.param(lambda run, tmp: [*DIALOGUE, "--run-dir", str(run)], id="dialogue"),
        pytest.param(
            lambda run, tmp: ["lm", "train", "--run-dir", str(run), "--no-progress"],
            id="lm",
            marks=pytest.mark.skipif(not HAS_LM, reason="needs the lm extra"),
        ),
        pytest.param(
            lambda run, tmp: ["sweep", "--config", str(tmp / "s.toml"), "--out", str(run)],
            id="sweep",
        ),
    ],
)
def test_a_run_dir_that_is_a_file_or_lies_under_one(tmp_path, capsys, argv):
    _write(tmp_path / "s.toml", SWEEP)
    file = _write(tmp_path / "file", "x")
    one_error(capsys, argv(file, tmp_path), f"run directory {file} is a file")
    under = file / "sub" / "run"
    one_error(
        capsys, argv(under, tmp_path), f"run directory {under} lies under {file}, which is a file"
    )
    assert file.read_text() == "x"


def test_a_read_only_run_dir(tmp_path, capsys, monkeypatch):
    import dqnlm.rundir

    parent = tmp_path / "ro"
    parent.mkdir()
    # root ignores permission bits, so make the check see a read-only folder
    real = os.access
    monkeypatch.setattr(dqnlm.rundir.os, "access", lambda p, m: real(p, m) and Path(p) != parent)
    one_error(capsys, [*CONTROL, "--run-dir", str(parent / "run")], "is not writable", str(parent))
    assert list(parent.iterdir()) == []


def test_a_run_dir_on_a_read_only_file_system(capsys):
    if os.access("/proc/1", os.W_OK):
        pytest.skip("no read-only folder here")
    one_error(capsys, [*CONTROL, "--run-dir", "/proc/1/run"], "/proc/1/run")


def test_a_full_disk_anywhere_in_a_run_is_one_line(tmp_path, capsys, monkeypatch):
    import dqnlm.run

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(dqnlm.run, "atomic_write_text", full)
    run = tmp_path / "run"
    one_error(capsys, [*CONTROL, "--run-dir", str(run)], "No space left on device")


def test_a_report_whose_figures_folder_is_a_file(finished_sweep, capsys):
    _write(finished_sweep / "figures", "x")
    one_error(capsys, ["report", str(finished_sweep)], str(finished_sweep / "figures"))


def test_sweep_workers_are_capped(tmp_path, capsys):
    config = _write(tmp_path / "s.toml", SWEEP)
    argv = ["sweep", "--config", str(config), "--out", str(tmp_path / "o")]
    one_error(capsys, [*argv, "--workers", "1000000"], "--workers", "1000000")
    assert not (tmp_path / "o").exists()


def test_a_full_disk_during_a_checkpoint_is_one_line(tmp_path, capsys, monkeypatch):
    import dqnlm.core.checkpoint as checkpoint

    real, run = checkpoint.atomic_write, tmp_path / "run"

    def full_after_step_100(path, data):
        if "step-0000000200" in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write", full_after_step_100)
    argv = [*CONTROL, "--set", "checkpoint_interval=100", "--run-dir", str(run)]
    one_error(
        capsys,
        argv,
        "disk full while writing checkpoint",
        "step-0000000200.json",
        "No space left on device; the previous checkpoint is intact",
    )
    assert load_checkpoint(run / "checkpoints").meta["step"] == 100
    assert not list((run / "checkpoints").glob("step-0000000200*"))


# ------------------------------------------------------ D7, D8: sweeps validated before writing
def test_a_failed_sweep_writes_nothing_and_the_corrected_file_runs(tmp_path, capsys):
    config, out = tmp_path / "s.toml", tmp_path / "out"
    config.write_text(SWEEP.replace("CartPole-v1", "NoSuchEnv-v0"))
    argv = ["sweep", "--config", str(config), "--out", str(out), "--no-progress", "--no-report"]
    one_error(capsys, argv, "NoSuchEnv-v0", "[envs.cartpole]")
    assert not out.exists()
    config.write_text(SWEEP)
    assert main([*argv, "--workers", "1"]) == 0
    assert (out / SPEC).is_file()


def test_a_sweep_whose_runs_never_started_may_change(tmp_path):
    from dqnlm.experiments.sweep import sweep

    out = tmp_path / "out"
    out.mkdir()
    failed = load_sweep(_write(tmp_path / "a.toml", SWEEP + "learning_rate = 1.0\n"))
    (out / SPEC).write_text(json.dumps(failed))  # a sweep whose workers all failed
    fixed = load_sweep(_write(tmp_path / "b.toml", SWEEP))
    sweep(fixed, out, workers=1, progress=False)
    assert json.loads((out / SPEC).read_text()) == fixed


def test_a_sweep_env_id_that_imports_a_module_is_refused(tmp_path, capsys, monkeypatch):
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = SWEEP.replace('env_id = "CartPole-v1"', 'env_id = "evilmod:CartPole-v1"')
    config, out = _write(tmp_path / "s.toml", text), tmp_path / "out"
    argv = ["sweep", "--config", str(config), "--out", str(out)]
    one_error(capsys, argv, "evilmod:CartPole-v1", "--trust-code")
    assert not (tmp_path / "ran").exists() and not out.exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "seeds, needles",
    [
        ("1000000000", ("1,000,000,000", "at most 10,000")),
        ("[0, -1]", ("seeds[1]", "-1")),
        ("[4294967296]", ("seeds[0]", "4294967296")),
        ("[true]", ("seeds[0]", "True")),
    ],
)
def test_sweep_seeds_are_checked_and_capped(tmp_path, capsys, seeds, needles):
    config = _write(tmp_path / "s.toml", SWEEP.replace("seeds = 1", f"seeds = {seeds}"))
    started = time.perf_counter()
    argv = ["sweep", "--config", str(config), "--out", str(tmp_path / "out")]
    one_error(capsys, argv, str(config), *needles)
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "out").exists()


def test_a_grid_over_the_cap_is_refused(tmp_path, capsys):
    variants = "".join(f"[variants.v{i}]\n" for i in range(3))
    text = SWEEP.replace("seeds = 1", "seeds = 4000").replace("[variants.a]\n", variants)
    config = _write(tmp_path / "s.toml", text)
    one_error(capsys, ["sweep", "--config", str(config)], "12,000 runs", "at most 10,000")


# ------------------------------------------------------------- D10: tampered sweep directories
@pytest.fixture
def finished_sweep(tmp_path) -> Path:
    """A sweep directory with one finished run, written by hand (no training)."""
    out = tmp_path / "sweep"
    spec = load_sweep(_write(tmp_path / "s.toml", SWEEP))
    out.mkdir()
    (out / SPEC).write_text(json.dumps(spec))
    run_dir = runs_of(spec)[0].directory(out)
    run_dir.mkdir(parents=True)
    rows = ["step,time_s,episode_return,eval_return,loss,mean_q,epsilon,q_overestimation"]
    rows += ["100,0.1,9,,0.5,0.1,0.05,", "100,0.1,,20,,,,1.5", "200,0.2,,30,,,,1.0"]
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    (run_dir / "eval.json").write_text(json.dumps({"mean_return": 30, "q_overestimation": 1.0}))
    return out


def test_the_hand_made_sweep_reports(finished_sweep):
    assert main(["report", str(finished_sweep)]) == 0


def _edit_spec(out: Path, edit) -> None:
    spec = json.loads((out / SPEC).read_text())
    edit(spec)
    (out / SPEC).write_text(json.dumps(spec))


SPEC_EDITS = {
    "not-json": lambda out: (out / SPEC).write_text("{"),
    "a-list": lambda out: (out / SPEC).write_text("[]"),
    "nan-low": lambda out: (out / SPEC).write_text(
        (out / SPEC).read_text().replace('"low": null', '"low": NaN')
    ),
    "seeds-string": lambda out: _edit_spec(out, lambda s: s.update(seeds="x")),
    "negative-seed": lambda out: _edit_spec(out, lambda s: s.update(seeds=[-5])),
    "env-path": lambda out: _edit_spec(out, lambda s: s["envs"].update({"../..": {}})),
    "env-module": lambda out: _edit_spec(
        out, lambda s: s["envs"]["cartpole"].update(env_id="evil:Env")
    ),
    "no-configs": lambda out: _edit_spec(out, lambda s: s["envs"]["cartpole"].pop("configs")),
    "huge-threshold": lambda out: _edit_spec(
        out, lambda s: s["envs"]["cartpole"].update(threshold=10**400)
    ),
}


@pytest.mark.parametrize("edit", SPEC_EDITS.values(), ids=SPEC_EDITS.keys())
def test_report_of_a_tampered_sweep_json(finished_sweep, capsys, edit):
    edit(finished_sweep)
    one_error(capsys, ["report", str(finished_sweep)], str(finished_sweep / SPEC))
    assert not (finished_sweep / "report.md").exists()


def test_sweep_into_a_tampered_sweep_json(finished_sweep, tmp_path, capsys):
    (finished_sweep / SPEC).write_text("{")
    config = _write(tmp_path / "s.toml", SWEEP)
    argv = ["sweep", "--config", str(config), "--out", str(finished_sweep)]
    one_error(capsys, argv, str(finished_sweep / SPEC))


RUN_EDITS = {
    "eval-not-json": ("eval.json", "{"),
    "eval-nan": ("eval.json", '{"mean_return": NaN, "q_overestimation": 1}'),
    "eval-huge": ("eval.json", '{"mean_return": 1e999, "q_overestimation": 1}'),
    "eval-string": ("eval.json", '{"mean_return": "30", "q_overestimation": 1}'),
    "eval-missing": ("eval.json", '{"q_overestimation": 1}'),
    "eval-list": ("eval.json", "[1]"),
    "csv-word": ("metrics.csv", "step,eval_return,q_overestimation\n100,high,1\n"),
    "csv-nan": ("metrics.csv", "step,eval_return,q_overestimation\n100,nan,1\n"),
    "csv-inf-step": ("metrics.csv", "step,eval_return,q_overestimation\ninf,20,1\n"),
    "csv-no-column": ("metrics.csv", "step,time_s\n100,1\n"),
    "csv-binary": ("metrics.csv", b"\xff\xfe\x00bad"),
    "csv-nul": ("metrics.csv", "step,eval_return\n1\x00,2\n"),
}


@pytest.mark.parametrize("name, content", RUN_EDITS.values(), ids=RUN_EDITS.keys())
def test_report_of_a_tampered_run(finished_sweep, capsys, name, content):
    path = runs_of(json.loads((finished_sweep / SPEC).read_text()))[0].directory(finished_sweep)
    path = path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    one_error(capsys, ["report", str(finished_sweep)], str(path))
    assert not (finished_sweep / "report.md").exists()


@pytest.mark.parametrize("content", list(RUN_EDITS.values())[6:], ids=list(RUN_EDITS)[6:])
def test_plot_of_a_bad_metrics_csv(tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    data = content[1]
    (run / "metrics.csv").write_bytes(data if isinstance(data, bytes) else data.encode())
    one_error(capsys, ["plot", str(run)], str(run / "metrics.csv"))
    assert not (run / "learning_curve.png").exists()


def test_plot_into_a_missing_folder_or_onto_a_folder(control_run, tmp_path, capsys):
    out = tmp_path / "missing" / "curve.png"
    one_error(capsys, ["plot", str(control_run), "--out", str(out)], str(out.parent))
    assert not out.parent.exists()
    one_error(capsys, ["plot", str(control_run), "--out", str(tmp_path)], "it is a folder")
    assert not list(tmp_path.glob("*.png"))


def test_a_lock_file_that_is_a_symlink_is_never_followed(tmp_path, capsys):
    target = _write(tmp_path / "precious.txt", "keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).symlink_to(target)
    one_error(capsys, [*CONTROL, "--run-dir", str(run)], f"run directory {run}")
    assert target.read_text() == "keep me"


def test_resume_of_a_file_says_so(tmp_path, capsys):
    file = _write(tmp_path / "file", "x")
    one_error(capsys, ["train", "--resume", str(file)], f"run directory {file} is a file")


# ---------------------------------------------------------- D12: SIGTERM checkpoints and exits
def test_main_turns_sigterm_into_an_interrupt_and_exits_143(monkeypatch, capsys):
    import dqnlm.cli

    seen = []

    def command(args):
        seen.append(signal.getsignal(signal.SIGTERM))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(dqnlm.cli.COMMANDS, "presets", command)
    assert main(["presets"]) == 143
    assert "dqnlm: terminated" in capsys.readouterr().err
    assert seen[0] is not before and signal.getsignal(signal.SIGTERM) is before

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(dqnlm.cli.COMMANDS, "presets", interrupted)
    assert main(["presets"]) == 130


def test_sigterm_to_a_sweep_checkpoints_its_runs_and_exits_143(tmp_path):
    text = SWEEP.replace("total_steps = 200", "total_steps = 10_000_000")
    config, out = _write(tmp_path / "s.toml", text), tmp_path / "out"
    run = runs_of(load_sweep(config))[0].directory(out)
    argv = ["sweep", "--config", str(config), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqnlm", *argv, "--no-progress"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        wait_for_rows(proc, run / "metrics.csv")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert load_checkpoint(run / "checkpoints").meta["step"] >= 100
    assert not (run / LOCK).exists() and not (out / LOCK).exists()


def wait_for_rows(proc: subprocess.Popen, metrics: Path, rows: int = 3) -> None:
    """Until ``metrics`` holds ``rows`` rows (past learning_starts: real training state)."""
    deadline = time.monotonic() + 60
    while not metrics.is_file() or len(metrics.read_text().splitlines()) < rows:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)


def test_sigterm_during_training_saves_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    argv = [*CONTROL, "--total-steps", "10000000", "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqnlm", *argv], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for_rows(proc, run / "metrics.csv")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    ckpt = load_checkpoint(run / "checkpoints")
    assert ckpt.meta["step"] >= 200
    assert not (run / LOCK).exists()
