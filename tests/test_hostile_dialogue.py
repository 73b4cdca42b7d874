"""Hostile input to `dqnlm dialogue`: damaged or tampered run directories, schema files
built to exhaust memory or time, template and YAML tricks, bad seeds. Every case ends
in one `dqnlm: error:` line naming what was refused, exit 1, no traceback, and nothing
half-written."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

from dqnlm.cli import main
from dqnlm.core.checkpoint import record_digest

TINY = [
    "--set",
    "epochs=1",
    "--set",
    "dialogues_per_epoch=10",
    "--set",
    "warm_start_dialogues=10",
    "--set",
    "eval_episodes=10",
    "--set",
    "test_episodes=5",
    "--set",
    "hidden_sizes=[16]",
    "--no-progress",
    "--no-tensorboard",
]


def refused(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 1 and one error line holding every needle."""
    capsys.readouterr()
    assert main(argv) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dqnlm: error: ") and "Traceback" not in out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def movie_schema() -> dict:
    source = resources.files("dqnlm.dialogue") / "domains" / "movie.json"
    return json.loads(source.read_text(encoding="utf-8"))


def write_schema(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished run on a schema file of the user's (20 dialogues)."""
    folder = tmp_path_factory.mktemp("hostile")
    schema = write_schema(folder / "cinema.json", movie_schema())
    run = folder / "run"
    argv = ["dialogue", "train", *TINY, "--domain", str(schema), "--run-dir", str(run)]
    assert main(argv) == 0
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def rehash(run: Path) -> None:
    """Record the policy's current SHA-256, as a careful tamperer would."""
    digest = hashlib.sha256((run / "policy.safetensors").read_bytes()).hexdigest()
    (run / "policy.json").write_text(json.dumps({"file": "policy.safetensors", "sha256": digest}))


# ------------------------------------------------------------------ policy weights (D3)
def test_run_keeps_its_schema_and_its_policy_hash(trained, capsys):
    assert (trained / "domain.json").is_file()
    assert 'domain = "domain.json"' in (trained / "config.toml").read_text()
    record = json.loads((trained / "policy.json").read_text())
    data = (trained / "policy.safetensors").read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert main(["dialogue", "eval", str(trained), "--episodes", "2"]) == 0


def test_truncated_policy_is_refused(run, capsys):
    data = (run / "policy.safetensors").read_bytes()
    (run / "policy.safetensors").write_bytes(data[: len(data) // 2])
    for command in ("eval", "show", "chat"):
        refused(capsys, ["dialogue", command, str(run)], "policy.safetensors", "SHA-256")


def test_policy_without_its_hash_is_refused(run, capsys):
    (run / "policy.json").unlink()
    refused(capsys, ["dialogue", "eval", str(run)], "policy.json is missing")
    (run / "policy.json").write_text("{not json")
    refused(capsys, ["dialogue", "eval", str(run)], "policy.json is malformed")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_policy_is_refused_even_with_a_matching_hash(run, capsys, bad):
    weights = load_file(run / "policy.safetensors")
    weights = {k: torch.full_like(v, bad) for k, v in weights.items()}
    (run / "policy.safetensors").write_bytes(save(weights))
    rehash(run)
    refused(capsys, ["dialogue", "eval", str(run)], "non-finite")


def test_garbage_policy_with_a_matching_hash_is_refused(run, capsys):
    (run / "policy.safetensors").write_bytes(b"\xff" * 64)
    rehash(run)
    refused(capsys, ["dialogue", "eval", str(run)], "not valid safetensors")


def test_policy_of_another_shape_is_refused_before_allocating(run, capsys):
    toml = run / "config.toml"
    toml.write_text(
        toml.read_text().replace(
            "hidden_sizes = [\n    16,\n]", "hidden_sizes = [\n    100000,\n    100000,\n]"
        )
    )
    assert "100000" in toml.read_text()
    refused(capsys, ["dialogue", "eval", str(run)], "does not fit", "has shape")


# ----------------------------------------------------- files outside the run dir (D1)
def test_saved_schema_path_outside_the_run_needs_trust_code(run, tmp_path, capsys):
    outside = write_schema(tmp_path / "elsewhere.json", movie_schema())
    toml = run / "config.toml"
    toml.write_text(toml.read_text().replace('"domain.json"', json.dumps(str(outside))))
    refused(capsys, ["dialogue", "eval", str(run)], "domain", str(outside), "--trust-code")
    assert main(["dialogue", "eval", str(run), "--episodes", "2", "--trust-code"]) == 0


def test_saved_schema_path_escaping_by_dotdot_is_refused(run, capsys):
    toml = run / "config.toml"
    toml.write_text(toml.read_text().replace('"domain.json"', '"../../cinema.json"'))
    refused(capsys, ["dialogue", "show", str(run)], "../../cinema.json", "--trust-code")


def test_checkpoint_naming_a_schema_outside_the_run_is_refused_on_resume(run, tmp_path, capsys):
    ckpt = run / "checkpoints"
    latest = json.loads((ckpt / "latest.json").read_text())["checkpoint"]
    record = json.loads((ckpt / latest).read_text())
    record["meta"]["config"]["domain"] = "/etc/passwd"
    record["sha256"] = record_digest(record)  # a careful tamperer re-signs the record
    (ckpt / latest).write_text(json.dumps(record))
    before = sorted(p.name for p in run.rglob("*"))
    argv = ["dialogue", "train", "--resume", str(run), "--epochs", "2", "--no-progress"]
    refused(capsys, argv, "/etc/passwd", "--trust-code")
    assert sorted(p.name for p in run.rglob("*")) == before


def test_run_still_works_once_its_schema_file_is_gone(tmp_path, capsys):
    schema = write_schema(tmp_path / "mine.json", movie_schema())
    run = tmp_path / "run"
    assert main(["dialogue", "train", *TINY, "--domain", str(schema), "--run-dir", str(run)]) == 0
    schema.unlink()
    assert main(["dialogue", "eval", str(run), "--episodes", "2"]) == 0


# ------------------------------------------------------------- schema templates (D9)
@pytest.mark.parametrize(
    "template",
    [
        "The movie is {value:>200000000}.",
        "The movie is {value!r}.",
        "The movie is {value.__class__}.",
        "The movie is {value[0]}.",
        "The movie is {value:{value}}.",
        "The movie is {0}.",
        "The movie is {}.",
    ],
)
def test_templates_allow_only_bare_placeholders(tmp_path, capsys, template):
    data = movie_schema()
    data["templates"]["agent"]["inform"]["moviename"] = [template]
    schema = write_schema(tmp_path / "evil.json", data)
    run = tmp_path / "run"
    for argv in (
        ["dialogue", "show", "rule", "--domain", str(schema)],
        ["dialogue", "train", *TINY, "--domain", str(schema), "--run-dir", str(run)],
    ):
        refused(capsys, argv, str(schema), "templates.agent.inform.moviename", template[:20])
    assert not run.exists()


# -------------------------------------------------------------- resource blow-ups (D8)
@pytest.mark.parametrize("key", ["kb_size", "num_goals"])
def test_absurd_generation_sizes_are_capped(tmp_path, capsys, key):
    data = movie_schema()
    data["generation"][key] = 10**9
    schema = write_schema(tmp_path / "huge.json", data)
    refused(capsys, ["dialogue", "eval", "rule", "--domain", str(schema)], f"generation.{key}")


def test_world_too_large_for_memory_is_refused_with_its_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dqnlm.resources.available_bytes", lambda: 10 * 2**20)
    data = movie_schema()
    data["slots"]["moviename"]["values"] = [f"film {i}" for i in range(20_000)]
    data["generation"]["kb_size"] = 100_000
    schema = write_schema(tmp_path / "big.json", data)
    line = refused(capsys, ["dialogue", "eval", "rule", "--domain", str(schema)], "kb_size=100,000")
    assert "GiB" in line and "available" in line


@pytest.mark.parametrize(
    "setting",
    ["hidden_sizes=[100000, 100000]", "buffer_size=100000000000", "batch_size=10000000000"],
)
def test_network_or_replay_too_large_is_refused_before_allocating(tmp_path, capsys, setting):
    run = tmp_path / "run"
    argv = ["dialogue", "train", *TINY, "--set", setting, "--run-dir", str(run)]
    refused(capsys, argv, setting.split("=")[0], "needs about")
    assert not run.exists()


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("epochs=1000000000", "10,000,000,010 training dialogues (about"),
        ("test_episodes=1000000000", "test_episodes must be <= 1,000,000"),
        ("eval_episodes=1000000000", "eval_episodes must be <= 1,000,000"),
    ],
)
def test_runs_that_would_never_end_are_refused(tmp_path, capsys, setting, needle):
    run = tmp_path / "run"
    argv = ["dialogue", "train", *TINY, "--set", setting, "--run-dir", str(run)]
    refused(capsys, argv, needle)
    assert not run.exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["eval", "rule", "--episodes", "1000000000"], "--episodes"),
        (["show", "rule", "--episodes", "100000"], "--episodes"),
        (["eval", "rule", "--episodes", "-5"], "--episodes"),
    ],
)
def test_absurd_episode_counts_are_refused(capsys, argv, needle):
    refused(capsys, ["dialogue", *argv], needle)


# --------------------------------------------------- one line, not a traceback (D10)
LAUGHS = "\n".join(
    [
        "name: movie",
        "description: [&a [lol, lol, lol, lol, lol, lol, lol, lol, lol],"
        + ", ".join(f"&{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi"))
        + "]",
    ]
)


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("laughs.yaml", LAUGHS, "expand it past"),
        ("loop.yaml", "name: movie\nacts: &a [request, *a]\n", "refers to a node that contains it"),
        ("loop2.yaml", "&top {name: x, templates: *top}\n", "refers to a node that contains it"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "too deeply"),
        ("deep.yaml", "a: " + "[" * 100_000 + "]" * 100_000, "too deeply"),
        ("empty.yaml", "", "must be an object"),
        ("list.json", "[1, 2]", "must be an object"),
        ("bytes.json", "\udcff", "not UTF-8"),
    ],
)
def test_hostile_schema_files_are_one_line(tmp_path, capsys, name, text, needle):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    refused(capsys, ["dialogue", "eval", "rule", "--domain", str(path)], str(path), needle)


def test_schema_that_is_no_regular_file_is_refused_unread(tmp_path, capsys):
    for path in (tmp_path, Path("/dev/zero")):
        refused(capsys, ["dialogue", "eval", "rule", "--domain", str(path)], "not a regular file")


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**30)])
def test_bad_seeds_are_one_line_in_every_command(tmp_path, capsys, seed):
    run = tmp_path / "run"
    for command in ("eval", "show", "chat"):
        refused(capsys, ["dialogue", command, "rule", "--seed", seed], "seed", seed)
    argv = ["dialogue", "train", *TINY, "--seed", seed, "--run-dir", str(run)]
    refused(capsys, argv, "seed", seed)
    argv = ["dialogue", "train", *TINY, "--set", f"seed={seed}", "--run-dir", str(run)]
    refused(capsys, argv, "seed", seed)
    assert not run.exists()


# ------------------------------------------------------------------- Ctrl-C, SIGTERM
def test_ctrl_c_leaves_a_checkpoint_that_resume_finishes(tmp_path, capsys, monkeypatch):
    from dqnlm.dialogue.dqn import DialogueDQN

    real_play = DialogueDQN._play

    def play(self, *args, **kwargs):
        if self.dialogues == 15:  # mid epoch 1 (10 warm-start dialogues, 10 per epoch)
            signal.raise_signal(signal.SIGINT)
        return real_play(self, *args, **kwargs)

    monkeypatch.setattr(DialogueDQN, "_play", play)
    run = tmp_path / "run"
    argv = ["dialogue", "train", *TINY, "--set", "epochs=2", "--run-dir", str(run)]
    assert main(argv) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert (run / "checkpoints" / "step-0000000020.json").is_file()  # the end of epoch 1
    monkeypatch.setattr(DialogueDQN, "_play", real_play)
    assert main(["dialogue", "train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "eval.json").is_file()


@pytest.mark.parametrize("flags", [["--domain", ""], ["--domain", " "], ["--set", "domain="]])
def test_empty_domain_is_a_mistake_not_the_default(tmp_path, capsys, flags):
    run = tmp_path / "run"
    refused(capsys, ["dialogue", "train", *TINY, *flags, "--run-dir", str(run)], "domain", "got '")
    assert not run.exists()
    if flags[0] == "--domain":
        refused(capsys, ["dialogue", "eval", "rule", *flags], "domain", "got '")
