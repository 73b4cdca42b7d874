"""`dqnlm dialogue train|eval|show|chat`: tiny runs end to end, custom domain files,
free-text chat on hostile input, and one-line user errors that leave nothing behind."""

from __future__ import annotations

import io
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from dqnlm.cli import main
from dqnlm.dialogue import load_domain
from dqnlm.dialogue.config import DialogueDQNConfig
from dqnlm.seeding import seed_streams

TINY = [
    "--set",
    "epochs=2",
    "--set",
    "dialogues_per_epoch=20",
    "--set",
    "warm_start_dialogues=20",
    "--set",
    "eval_episodes=20",
    "--no-progress",
    "--no-tensorboard",
]
KEYS = {"success_rate", "avg_turns", "avg_reward", "episodes"}
REPROMPT = "Sorry, I did not understand that."


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dqnlm: error: ")
    assert "Traceback" not in out + err
    return lines[0]


def eval_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["dialogue", "eval", *args, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


def train(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["dialogue", "train", *TINY, *args]) == 0
    out, _ = capsys.readouterr()
    assert "test goals: success" in out
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained movie run (60 dialogues), shared read-only by the tests below."""
    path = tmp_path_factory.mktemp("dialogue") / "run"
    assert main(["dialogue", "train", *TINY, "--run-dir", str(path)]) == 0
    return path


@pytest.fixture
def restaurant_copy(tmp_path) -> Path:
    """The bundled restaurant schema saved as a user's own domain file, renamed."""
    source = resources.files("dqnlm.dialogue") / "domains" / "restaurant.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    data["name"] = "bistro"
    path = tmp_path / "bistro.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ help
def test_help(capsys):
    for argv in (["dialogue", "--help"], ["dialogue", "train", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "show", "chat"):
        assert command in out
    target = f"target_update = {DialogueDQNConfig().target_update!r}"  # defaults are shown
    for field in ("config fields", target, "warm_start_dialogues", "tau"):
        assert field in out


# --------------------------------------------------------------------- eval of `rule`
def test_eval_rule_json(capsys):
    result = eval_json(capsys, "rule")
    assert set(result) == KEYS
    assert result["episodes"] == 60 and 0.0 < result["success_rate"] < 1.0
    train_split = eval_json(capsys, "rule", "--split", "train")
    assert set(train_split) == KEYS and train_split["episodes"] == 240
    noisy = eval_json(capsys, "rule", "--noise", "0.1")
    assert noisy["episodes"] == 60 and noisy != result
    assert noisy["success_rate"] < result["success_rate"]  # misheard values break bookings
    five = eval_json(capsys, "rule", "--episodes", "5")
    assert set(five) == KEYS and five["episodes"] == 5


def test_eval_rule_text(capsys):
    assert main(["dialogue", "eval", "rule", "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rule on test goals: success") and "over 3 dialogues" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--noise", "1.5"], "slot_error_rate must be in [0, 1], got 1.5"),
        (["--noise", "nan"], "slot_error_rate must be in [0, 1], got nan"),
        (["--noise", "-0.1"], "slot_error_rate must be in [0, 1], got -0.1"),
        (["--episodes", "0"], "--episodes must be in [1, 1,000,000], got 0"),
        (["--domain", "nowhere.json"], "nowhere.json"),
    ],
)
def test_eval_rule_bad_arguments(capsys, args, needle):
    assert main(["dialogue", "eval", "rule", *args]) == 1
    assert needle in one_error_line(capsys)


# ---------------------------------------------------------------- a tiny trained run
def test_train_writes_a_finished_run(run_dir):
    for name in ("config.toml", "metrics.csv", "policy.safetensors", "eval.json"):
        assert (run_dir / name).is_file()
    assert (run_dir / "success_rate.png").is_file() and not (run_dir / "tb").exists()
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved.keys() >= KEYS and saved["dialogues"] == 60


def test_eval_run_dir(capsys, run_dir):
    result = eval_json(capsys, str(run_dir))
    assert set(result) == KEYS and result["episodes"] == 60
    # seeded as the run's own final evaluation, it reproduces eval.json
    saved = json.loads((run_dir / "eval.json").read_text())
    test_seed = seed_streams(0).test  # the tiny run has the default seed
    same = eval_json(capsys, str(run_dir), "--seed", str(test_seed))
    assert same == {k: saved[k] for k in KEYS}
    assert eval_json(capsys, str(run_dir), "--split", "train", "--episodes", "7")["episodes"] == 7
    noisy = eval_json(capsys, str(run_dir), "--noise", "0.5", "--episodes", "20")
    assert noisy["episodes"] == 20
    assert main(["dialogue", "eval", str(run_dir), "--noise", "2"]) == 1
    assert "slot_error_rate" in one_error_line(capsys)


def test_show_run_dir(capsys, run_dir):
    assert main(["dialogue", "show", str(run_dir), "--episodes", "2"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count("--- dialogue ") == 2 and "--- dialogue 2: test goal 1" in out
    assert " user: " in out and "agent: " in out
    outcomes = [line for line in out.splitlines() if line.strip().startswith("=> ")]
    assert len(outcomes) == 2
    assert all(" success in " in o or " failure in " in o for o in outcomes)


def test_show_rule(capsys):
    assert main(["dialogue", "show", "rule", "--episodes", "1", "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "--- dialogue 1: train goal 0" in out and "constraints:" in out
    assert main(["dialogue", "show", "rule", "--episodes", "0"]) == 1
    assert "--episodes must be in [1, 1,000]" in one_error_line(capsys)


def test_resume_extends_a_run(capsys, run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    capsys.readouterr()
    args = ["dialogue", "train", "--resume", str(run), "--epochs", "3"]
    assert main([*args, "--no-progress", "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run} at epoch 2 of 3" in out
    assert json.loads((run / "eval.json").read_text())["dialogues"] == 80
    epochs = [line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]


# ---------------------------------------------------------------------- user errors
def test_train_unknown_set_key(capsys, tmp_path):
    run = tmp_path / "run"
    argv = ["dialogue", "train", "--set", "nosuchkey=1", "--run-dir", str(run)]
    assert main(argv) == 1
    assert "unknown config key 'nosuchkey'" in one_error_line(capsys)
    assert not run.exists()


def test_train_bad_values_in_one_line(capsys, tmp_path):
    run = tmp_path / "run"
    argv = ["dialogue", "train", "--set", "gamma=2", "--set", "target_update=soft"]
    assert main([*argv, "--set", "epochs=0", "--run-dir", str(run)]) == 1
    line = one_error_line(capsys)
    for needle in ("gamma", "2.0", "target_update", "'soft'", "epochs must be >= 1, got 0"):
        assert needle in line
    assert not run.exists()


def test_train_missing_domain_file(capsys, tmp_path):
    run = tmp_path / "run"
    missing = tmp_path / "no" / "such_domain.json"
    argv = ["dialogue", "train", "--domain", str(missing), "--run-dir", str(run)]
    assert main([*argv, "--no-progress", "--no-tensorboard"]) == 1
    assert str(missing) in one_error_line(capsys)
    assert not run.exists()


def test_resume_refuses_other_settings(capsys, run_dir):
    before = (run_dir / "metrics.csv").read_text()
    assert main(["dialogue", "train", "--resume", str(run_dir), "--seed", "3"]) == 1
    assert "seed" in one_error_line(capsys)
    assert main(["dialogue", "train", "--resume", str(run_dir), "--set", "epochs=9"]) == 1
    assert "--set" in one_error_line(capsys)
    assert (run_dir / "metrics.csv").read_text() == before


def test_resume_without_checkpoints(capsys, tmp_path):
    assert main(["dialogue", "train", "--resume", str(tmp_path), "--no-progress"]) == 1
    assert "no checkpoint found" in one_error_line(capsys)
    assert main(["dialogue", "train", "--resume", str(tmp_path / "absent")]) == 1
    assert "absent" in one_error_line(capsys)


def test_train_refuses_a_directory_with_an_unfinished_run(capsys, tmp_path):
    # killed before its first checkpoint: a new run must not append to its metrics
    (tmp_path / "config.toml").write_text('domain = "movie"\n')
    (tmp_path / "metrics.csv").write_text("step,epoch\n100,1\n")
    assert main(["dialogue", "train", *TINY, "--run-dir", str(tmp_path)]) == 1
    assert "stopped before its first checkpoint" in one_error_line(capsys)
    assert (tmp_path / "metrics.csv").read_text() == "step,epoch\n100,1\n"


def test_eval_default_seed_reproduces_eval_json(capsys, run_dir):
    saved = json.loads((run_dir / "eval.json").read_text())
    assert eval_json(capsys, str(run_dir)) == {k: saved[k] for k in KEYS}


def test_eval_on_another_domain_names_the_mismatch(capsys, run_dir):
    assert main(["dialogue", "eval", str(run_dir), "--domain", "restaurant"]) == 1
    line = one_error_line(capsys)
    assert "does not fit domain 'restaurant'" in line and "has shape" in line


def test_eval_of_a_directory_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for command in ("eval", "show", "chat"):
        assert main(["dialogue", command, str(tmp_path)]) == 1
        assert "is not a finished dialogue run" in one_error_line(capsys)


# ------------------------------------------------------------------- custom domains
def test_custom_domain_file_trains_without_code_changes(capsys, tmp_path, restaurant_copy):
    run = tmp_path / "run"
    train(capsys, "--domain", str(restaurant_copy), "--run-dir", str(run))
    result = eval_json(capsys, str(run), "--episodes", "5")
    assert result["episodes"] == 5
    assert main(["dialogue", "show", str(run), "--episodes", "1"]) == 0
    assert "--- dialogue 1" in capsys.readouterr().out
    rule = eval_json(capsys, "rule", "--domain", str(restaurant_copy), "--episodes", "5")
    assert set(rule) == KEYS


def test_default_run_dir_is_named_after_the_domain_file(capsys, tmp_path, restaurant_copy):
    work = tmp_path / "work"
    work.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        train(capsys, "--domain", str(restaurant_copy), "--seed", "3")
    [run] = (work / "runs").iterdir()
    assert run.name.startswith("dialogue-bistro-s3-")
    assert (run / "eval.json").is_file()


def test_run_trained_with_a_relative_domain_path_works_from_elsewhere(
    capsys, tmp_path, restaurant_copy
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        train(capsys, "--domain", restaurant_copy.name, "--run-dir", "run")
        mp.chdir(elsewhere)
        assert main(["dialogue", "eval", str(tmp_path / "run"), "--episodes", "2"]) == 0


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.update(booking_slot="nonexistent"), "booking_slot"),
        (lambda d: d["slots"]["cuisine"].update(informable="yes"), "slots.cuisine.informable"),
    ],
    ids=["unknown-booking-slot", "non-bool-informable"],
)
def test_bad_domain_file_is_one_line_naming_the_file(capsys, tmp_path, edit, needle):
    source = resources.files("dqnlm.dialogue") / "domains" / "restaurant.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    edit(data)
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    run = tmp_path / "run"
    argv = ["dialogue", "train", "--domain", str(bad), "--run-dir", str(run), "--no-progress"]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert str(bad) in line and needle in line
    assert not run.exists()
    for command in ("eval", "show", "chat"):
        assert main(["dialogue", command, "rule", "--domain", str(bad)]) == 1
        assert str(bad) in one_error_line(capsys)
    bad.write_text("{not json", encoding="utf-8")
    assert main(["dialogue", "eval", "rule", "--domain", str(bad)]) == 1
    assert "is not valid JSON" in one_error_line(capsys)


# ------------------------------------------------------------------------------ chat
def chat_input() -> str:
    movie = load_domain("movie").slot("moviename").values[0]
    lines = [
        "",
        "x" * 10_000,
        "żółć 日本語 🎬",
        "asdf qwer",
        f"I want to see {movie}. 2 tickets, please.",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("agent", ["rule", "run"])
def test_chat_survives_hostile_input(capsys, monkeypatch, run_dir, agent):
    monkeypatch.setattr("sys.stdin", io.StringIO(chat_input()))
    capsys.readouterr()
    assert main(["dialogue", "chat", "rule" if agent == "rule" else str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "Traceback" not in out
    assert "You are the user of a movie booking agent." in out
    replies = [line for line in out.split("agent: ")[1:]]
    assert len(replies) >= 5
    assert all(REPROMPT in reply for reply in replies[:4])  # the four unparseable inputs
    assert REPROMPT not in replies[4]  # the real request gets a real answer
    assert "(chat ended)" in out or "(the agent ended the dialogue)" in out


def test_chat_rule_asks_for_what_is_missing(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(chat_input()))
    assert main(["dialogue", "chat", "rule"]) == 0
    out = capsys.readouterr().out
    last = out.split("agent: ")[-1]
    assert "?" in last and out.rstrip().endswith("(chat ended)")  # asks, then EOF ends


def test_chat_ends_at_once_on_empty_input(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["dialogue", "chat", "rule", "--domain", "restaurant"]) == 0
    out = capsys.readouterr().out
    assert "restaurant booking agent" in out and out.rstrip().endswith("(chat ended)")
    assert "agent: " not in out


def test_eval_text_level(capsys, run_dir):
    # the NLU reads simulator text losslessly, so the words change nothing
    assert eval_json(capsys, "rule", "--text") == eval_json(capsys, "rule")
    assert eval_json(capsys, str(run_dir), "--text") == eval_json(capsys, str(run_dir))
