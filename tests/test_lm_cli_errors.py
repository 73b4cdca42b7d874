"""`dqnlm lm ...` user errors: exit code 1, one `dqnlm: error:` line, nothing left behind."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from lm_helpers import one_error, save_tiny_lm, write_prompts  # noqa: E402

from dqnlm.cli import main  # noqa: E402
from dqnlm.lm.config import LMConfig  # noqa: E402
from dqnlm.lm.trainer import LMTrainer  # noqa: E402

PROMPTS = ["a b", "c d e", "f"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    model = save_tiny_lm(root / "model")
    short = save_tiny_lm(root / "short", n_positions=8)  # too short for 4 + 6 tokens
    prompts = write_prompts(root / "prompts.jsonl", PROMPTS)
    bad = root / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "a b"}),
                json.dumps({"prompt": 3}),  # 2: not a string
                "",  # 3: blank, skipped
                "not json",  # 4
                json.dumps({"prompt": "f"}),
                json.dumps({"text": "c"}),  # 6: no prompt
            ]
        )
        + "\n"
    )
    run = root / "run"
    config = LMConfig(
        model=str(model),
        prompts=str(prompts),
        reward="python:lm_helpers:share_of_x",
        device="cpu",
        prompt_tokens=4,
        new_tokens=6,
        eval_prompts=0,
    )
    LMTrainer(config, run, progress=False).save_checkpoint()  # an untrained run
    return {
        "model": model,
        "short": short,
        "prompts": prompts,
        "bad": bad,
        "run": run,
        "root": root,
    }


def train_args(files, run_dir, *extra: str) -> list[str]:
    """A `dqnlm lm train` command line that would succeed in a second without ``extra``."""
    return [
        "lm",
        "train",
        "--model",
        str(files["model"]),
        "--reward",
        "python:lm_helpers:share_of_x",
        "--set",
        f"prompts={files['prompts']}",
        "--set",
        "device=cpu",
        "--set",
        "prompt_tokens=4",
        "--set",
        "new_tokens=6",
        "--set",
        "prompts_per_round=4",
        "--set",
        "batch_size=4",
        "--set",
        "eval_prompts=0",
        "--rounds",
        "1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--no-tensorboard",
        *extra,
    ]


def test_the_base_command_line_trains(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(files, run)) == 0
    assert (run / "checkpoints" / "latest.json").is_file()
    assert f"run directory: {run}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--model", "/nonexistent/path"], ["/nonexistent/path"]),
        (["--reward", "nosuchreward"], ["unknown reward 'nosuchreward'", "vader"]),
        (["--reward", "nosuchmodule:fn"], ["cannot import module 'nosuchmodule'"]),
        (["--reward", "lm_helpers:nosuchfn"], ["no function 'nosuchfn'"]),
        (["--preset", "nosuchpreset"], ["unknown preset 'nosuchpreset'", "sentiment"]),
        (["--set", "betta=0.2"], ["unknown config key 'betta'", "did you mean 'beta'"]),
        (["--set", "beta=-1"], ["beta must be > 0", "-1"]),
        (["--set", "kind=maximum"], ["kind must be one of", "'maximum'"]),
        (["--set", "rounds=many"], ["rounds must be int", "'many'"]),
        (["--set", "beta"], ["--set expects key=value"]),
        (["--rounds", "0"], ["rounds must be >= 1"]),
        (["--config", "/nonexistent/c.toml"], ["/nonexistent/c.toml", "does not exist"]),
        (["--set", "offline_data=/nonexistent/o.jsonl"], ["/nonexistent/o.jsonl"]),
    ],
)
def test_train_user_errors(files, tmp_path, capsys, extra, needles):
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, *extra))
    for needle in needles:
        assert needle in line, line
    assert not run.exists()


def test_bad_prompt_lines_are_named(files, tmp_path, capsys):
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, "--set", f"prompts={files['bad']}"))
    assert f"{files['bad']}: lines 2, 4, 6 " in line and "prompt (str)" in line
    assert not run.exists()


def test_prompt_plus_completion_longer_than_the_context(files, tmp_path, capsys):
    run = tmp_path / "run"
    line = one_error(capsys, train_args(files, run, "--model", str(files["short"])))
    assert "prompt_tokens + new_tokens = 10" in line and "context of 8 tokens" in line
    assert not run.exists()


def test_a_run_directory_that_holds_a_run_is_not_overwritten(files, capsys):
    line = one_error(capsys, train_args(files, files["run"]))
    assert "already holds a run" in line and f"--resume {files['run']}" in line


def test_resume_errors(files, tmp_path, capsys):
    line = one_error(capsys, ["lm", "train", "--resume", str(tmp_path / "nope")])
    assert "does not exist" in line
    args = ["lm", "train", "--resume", str(files["run"]), "--model", str(files["model"])]
    assert "(got model)" in one_error(capsys, args)


@pytest.mark.parametrize("command", ["eval", "generate", "explain"])
def test_commands_on_a_directory_that_is_not_a_run(files, tmp_path, capsys, command):
    args = {
        "eval": ["--prompts", str(files["prompts"])],
        "generate": ["--prompt", "a b"],
        "explain": ["--prompt", "a b", "--out", str(tmp_path / "x.html")],
    }[command]
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error(capsys, ["lm", command, str(empty), *args])
    assert "no checkpoint found" in line and str(empty) in line
    line = one_error(capsys, ["lm", command, str(tmp_path / "missing"), *args])
    assert str(tmp_path / "missing") in line and "does not exist" in line
    assert not (tmp_path / "x.html").exists()


def test_eval_errors(files, capsys):
    run = str(files["run"])
    assert "--n must be >= 1" in one_error(capsys, ["lm", "eval", run, "--n", "0"])
    line = one_error(capsys, ["lm", "eval", run, "--prompts", str(files["bad"])])
    assert "lines 2, 4, 6 " in line


def test_explain_errors(files, tmp_path, capsys):
    run = str(files["run"])
    for out in ("x.txt", "x"):
        args = ["lm", "explain", run, "--prompt", "a b", "--out", str(tmp_path / out)]
        assert "--out must be an .html file" in one_error(capsys, args)
        assert not (tmp_path / out).exists()
    args = ["lm", "explain", run, "--prompt", "a b", "--out", str(tmp_path / "no" / "x.html")]
    assert "does not exist" in one_error(capsys, args)
    args = ["lm", "explain", run, "--prompt", "  ", "--out", str(tmp_path / "x.html")]
    assert "--prompt must not be empty" in one_error(capsys, args)
    assert not (tmp_path / "x.html").exists()


def test_generate_errors(files, capsys):
    run = str(files["run"])
    for n in ("0", "100000000"):
        args = ["lm", "generate", run, "--prompt", "a b", "--n", n]
        assert f"--n must be in [1, 10000], got {n}" in one_error(capsys, args)
    args = ["lm", "generate", run, "--prompt", "a b", "--threads", "0"]
    assert "--threads must be >= 1" in one_error(capsys, args)


def test_an_over_long_prompt_is_cut_with_a_note_not_an_error(files, capsys):
    prompt = "a b c d e f a b"  # 8 tokens; the run keeps prompt_tokens = 4
    assert (
        main(["lm", "generate", str(files["run"]), "--trust-code", "--prompt", prompt, "--n", "2"])
        == 0
    )
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert all(line.split("] ", 1)[1].startswith(prompt) for line in captured.out.splitlines())
    note = captured.err.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("note: ") and "error" not in note[0]
    assert "8 tokens" in note[0] and "last 4" in note[0]
