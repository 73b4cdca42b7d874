"""Reports of dialogue and LM sweeps, each in its trainer's own metrics: success rate and
turns against dialogues, reward, KL and distinct-2 against rounds; no Q overestimation for
them, an LM run without a final evaluation reported as such, a sweep mixing trainers, and
a real tiny dialogue sweep reported end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_experiments import FAKE, REPORT_SWEEP, one_error_line, snapshot
from test_experiments import HEADER as CONTROL_HEADER

from dqnlm.cli import main
from dqnlm.dialogue.dqn import COLUMNS as DIALOGUE_COLUMNS
from dqnlm.errors import DQNLMError
from dqnlm.experiments.report import RESULTS, render_report, write_report
from dqnlm.experiments.sweep import SPEC, load_sweep, runs_of
from dqnlm.lm.trainer import COLUMNS as LM_COLUMNS

DIALOGUE_ENV = '[envs.movie]\ntrainer = "dialogue"\n'
# per (variant, seed): validation success at epochs 2 and 3 (steps 40, 50: 20 warm-start
# dialogues, then 10 a epoch; epoch 1 has no evaluation), and the final (success, turns)
DIALOGUE_RUNS = {
    ("a", 0): ([0.2, 0.6], (0.5, 8.0)),
    ("a", 1): ([0.4, 0.8], (0.7, 10.0)),
    ("b", 0): ([0.1, 0.2], (0.2, 12.0)),
    ("b", 1): ([0.1, 0.3], (0.3, 14.0)),
}
RULE_SUCCESS = 0.9  # the rule agent's evaluation at the end of the warm start (epoch 0)

LM_SWEEP = 'seeds = 2\n[envs.toy]\ntrainer = "lm"\nrounds = 3\n[variants.a]\n[variants.b]\n'
# per (variant, seed): mean reward of rounds 1-3, and the final (reward, kl, distinct_2);
# b skipped its final evaluation (eval_prompts = 0)
LM_RUNS = {
    ("a", 0): ([0.1, 0.3, 0.5], (0.6, 1.0, 0.5)),
    ("a", 1): ([0.3, 0.4, 0.7], (0.8, 3.0, 0.7)),
    ("b", 0): ([0.2, 0.2, 0.2], None),
    ("b", 1): ([0.2, 0.1, 0.3], None),
}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def csv(columns: tuple[str, ...], rows: list[dict]) -> str:
    lines = [",".join(columns)]
    lines += [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def dialogue_run(variant: str, seed: int) -> tuple[str, dict]:
    success, (final, turns) = DIALOGUE_RUNS[(variant, seed)]
    rows = [{"step": 20, "epoch": 0, "eval_success": RULE_SUCCESS, "eval_turns": 6.0}]
    rows.append({"step": 30, "epoch": 1, "train_success": 0.1, "loss": 0.5})
    for epoch, value in zip((2, 3), success):
        rows.append({"step": 20 + 10 * epoch, "epoch": epoch, "eval_success": value})
    record = {"success_rate": final, "avg_turns": turns, "avg_reward": 1.0, "episodes": 5}
    return csv(DIALOGUE_COLUMNS, rows), record


def lm_run(variant: str, seed: int) -> tuple[str, dict]:
    rewards, final = LM_RUNS[(variant, seed)]
    rows = [
        {"step": r, "reward": v, "kl": 0.1 * r, "td_loss": 0.01} for r, v in enumerate(rewards, 1)
    ]
    if final is None:
        return csv(LM_COLUMNS, rows), {"evaluated": False, "rounds": 3}
    reward, kl, distinct_2 = final
    record = {"reward": reward, "kl": kl, "distinct_1": 0.3, "distinct_2": distinct_2}
    record.update(ref_perplexity=9.0, n=3, samples=[{"prompt": "a", "text": "b", "reward": 0}])
    return csv(LM_COLUMNS, rows), record


def control_run(variant: str, seed: int) -> tuple[str, dict]:
    """tests/test_experiments.py's fake control run."""
    returns, (final, q_over) = FAKE[(variant, seed)]
    rows = [CONTROL_HEADER]
    for step, value in zip((100, 200, 300), returns):
        rows.append(f"{step},0.1,,{value},,,,{q_over}")
    return "\n".join(rows) + "\n", {"mean_return": final, "q_overestimation": q_over, "step": 300}


WRITERS = {"control": control_run, "dialogue": dialogue_run, "lm": lm_run}


def fake_sweep(root: Path, sweep_file: str) -> Path:
    """A sweep directory of ``sweep_file`` whose runs' outputs are written by hand."""
    out = root / "sweep"
    out.mkdir()
    spec = load_sweep(write(root / "s.toml", sweep_file))
    (out / SPEC).write_text(json.dumps(spec))
    for run in runs_of(spec):
        metrics, record = WRITERS[run.trainer](run.variant, run.seed)
        run_dir = run.directory(out)
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.csv").write_text(metrics)
        (run_dir / "eval.json").write_text(json.dumps(record))
    return out


def figures(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "figures").iterdir())}


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory) -> Path:
    """A hand-made dialogue sweep with its report (do not modify: copy it)."""
    root = tmp_path_factory.mktemp("dialogue")
    out = fake_sweep(root, "seeds = 2\n" + DIALOGUE_ENV + "[variants.a]\n[variants.b]\n")
    write_report(out)
    return out


def test_a_dialogue_report_shows_success_rate_and_turns_against_dialogues(dialogue):
    text = (dialogue / "report.md").read_text()
    assert "Normalised score = (success rate - low) / (high - low):" in text
    assert "* movie (`domain movie`): low 0.00, high 1.00" in text
    assert "dialogues simulated (warm start included)" in text
    header = (
        "| env | variant | runs | final success rate IQM [95% CI] "
        "| final success rate mean [95% CI] | AUC IQM [95% CI] | turns IQM [95% CI] |"
    )
    assert header + "\n|---|---|---|---|---|---|---|\n" in text
    # a: finals 0.5, 0.7; turns 8, 10; AUC of [0.2, 0.6] and [0.4, 0.8] = 0.4 and 0.6
    assert "| movie | a | 2 | 0.60 [0.50, 0.70] | 0.60 [0.50, 0.70] | 0.50 [0.40, 0.60] " in text
    assert "| 9.0 [8.0, 10.0] |" in text
    assert "| movie | b | 2 | 0.25 [0.20, 0.30] | " in text and "| 13.0 [12.0, 14.0] |" in text
    assert "Q overestimation" not in text and "collapsed" not in text
    assert not (dialogue / "figures" / "q_overestimation.png").exists()
    assert "## Across environments (movie; 2 runs each)" in text

    results = json.loads((dialogue / RESULTS).read_text())
    assert results["trainers"] == {"movie": "dialogue"}
    a = results["envs"]["movie"]["a"]
    # the rule agent's evaluation (epoch 0, step 20) is not part of the learner's curve
    assert [row[0] for row in a["return_curve"]] == [40.0, 50.0]
    assert a["auc"] == pytest.approx([0.4, 0.6])
    assert a["q_overestimation"] is None and a["q_curve"] is None
    assert a["extras"]["avg_turns"]["seeds"] == [8.0, 10.0]


def test_a_dialogue_report_renders_again_identically_without_its_runs(dialogue, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dialogue, out)
    report = (dialogue / "report.md").read_text().replace(str(dialogue), str(out))
    drawn = figures(out)
    shutil.rmtree(out / "runs")
    shutil.rmtree(out / "figures")
    (out / "report.md").unlink()
    assert main(["report", str(out), "--render-only"]) == 0
    assert (out / "report.md").read_text() == report
    assert figures(out) == drawn


def test_an_lm_report_shows_reward_kl_and_distinct_2_and_runs_not_evaluated(tmp_path):
    out = fake_sweep(tmp_path, LM_SWEEP + "eval_prompts = 0\n")
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Normalised score = (reward - low) / (high - low):" in text
    # low: the mean first-round reward (0.1, 0.3, 0.2, 0.2); high: the largest seen (a's 0.8)
    assert "* toy (`reward vader`): low 0.200, high 0.800" in text
    assert "against rounds" in text
    header = (
        "| env | variant | runs | final reward IQM [95% CI] | final reward mean [95% CI] "
        "| AUC IQM [95% CI] | KL IQM [95% CI] | distinct-2 IQM [95% CI] |"
    )
    assert header in text
    assert "| toy | a | 2 | 0.700 [0.600, 0.800] | 0.700 [0.600, 0.800] | " in text
    assert "| 2.00 [1.00, 3.00] | 0.600 [0.500, 0.700] |" in text
    b = "| toy | b | 2 | not evaluated | not evaluated | "
    assert b in text and text.split(b)[1].split("\n")[0].endswith(
        "| not evaluated | not evaluated |"
    )
    assert text.count("Not evaluated: toy x b (2 of 2 runs).") == 1
    assert "Q overestimation" not in text
    assert "Across environments" not in text  # its only env has runs without a final score

    results = json.loads((out / RESULTS).read_text())
    b = results["envs"]["toy"]["b"]
    assert b["final_return"] == [None, None] and b["final_iqm"] is None
    assert b["extras"]["kl"] == {"seeds": [None, None], "iqm": None}
    assert b["auc_iqm"] is not None  # its curves still count
    assert results["across"] == {}


def test_an_lm_report_takes_low_and_high_from_sweep_json(tmp_path):
    out = fake_sweep(tmp_path, LM_SWEEP)
    spec = json.loads((out / SPEC).read_text())
    spec["envs"]["toy"].update(low=0.0, high=1.0)
    (out / SPEC).write_text(json.dumps(spec))
    for seed in (0, 1):  # b evaluated after all
        (out / "runs" / "toy" / "b" / f"s{seed}" / "eval.json").write_text(
            json.dumps({"reward": 0.5, "kl": 0.0, "distinct_2": 0.4})
        )
    write_report(out)
    text = (out / "report.md").read_text()
    assert "* toy (`reward vader`): low 0.000, high 1.000" in text
    assert "## Across environments (toy; 2 runs each)" in text and "Not evaluated" not in text


def test_a_sweep_of_control_and_dialogue_envs_reports_both(tmp_path):
    sweep_file = REPORT_SWEEP.replace("[variants.a]", DIALOGUE_ENV + "[variants.a]")
    out = fake_sweep(tmp_path, sweep_file)
    write_report(out)
    text = (out / "report.md").read_text()
    assert "Normalised score = (return - low) / (high - low):\n\n* c (`CartPole-v1`)" in text
    assert "Normalised score = (success rate - low) / (high - low):\n\n* movie" in text
    # one table per trainer, each in its own columns
    assert (
        "| final IQM [95% CI] | final mean [95% CI] | AUC IQM [95% CI] | Q overestimation" in text
    )
    assert (
        "| c | b | 2 | 30.0 [30.0, 30.0] | 30.0 [30.0, 30.0] | 0.20 [0.20, 0.20] | 1.50 | 0 / 0 |"
        in text
    )
    assert "| final success rate IQM [95% CI] |" in text and "| movie | a | 2 | 0.60 " in text
    # Q overestimation for the control env only
    assert "## Q overestimation during training" in text
    results = json.loads((out / RESULTS).read_text())
    assert results["trainers"] == {"c": "control", "movie": "dialogue"}
    assert results["envs"]["c"]["a"]["q_curve"] is not None
    assert results["envs"]["movie"]["a"]["q_curve"] is None
    assert "## Across environments (c, movie; 2 runs each)" in text
    for name in ("learning_curves.png", "q_overestimation.png", "final_iqm.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"


# case: how to break the dialogue report's results.json; what the error line says
MALFORMED = {
    "no trainers": (lambda r: r.pop("trainers"), "results has no 'trainers'"),
    "an unknown trainer": (
        lambda r: r["trainers"].update(movie="chess"),
        "results.trainers.movie must be one of control, dialogue, lm",
    ),
    "no turns": (
        lambda r: r["envs"]["movie"]["a"]["extras"].pop("avg_turns"),
        "results.envs.movie.a.extras.avg_turns must be an object",
    ),
    "a string for turns": (
        lambda r: r["envs"]["movie"]["b"]["extras"]["avg_turns"]["iqm"].update(lower="x"),
        "results.envs.movie.b.extras.avg_turns.iqm.lower must be a number",
    ),
    "a control env without Q overestimation": (
        lambda r: r["trainers"].update(movie="control"),
        "results.envs.movie.a.q_overestimation must be a non-empty list",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_dialogue_results_file_is_one_line(dialogue, tmp_path, case, capsys):
    breaks, message = MALFORMED[case]
    results = json.loads((dialogue / RESULTS).read_text())
    breaks(results)
    (tmp_path / RESULTS).write_text(json.dumps(results))
    before = snapshot(tmp_path)
    with pytest.raises(DQNLMError) as error:
        render_report(tmp_path)
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)
    assert snapshot(tmp_path) == before
    assert main(["report", str(tmp_path), "--render-only"]) == 1
    assert message in one_error_line(capsys.readouterr().err)


# A real dialogue sweep: tests/test_dialogue_dqn.py's TINY, two seeds (about a second a run)
TINY_DIALOGUE = """\
seeds = 2
[envs.movie]
trainer = "dialogue"
domain = "movie"
warm_start_dialogues = 20
epochs = 2
dialogues_per_epoch = 10
eval_episodes = 10
eval_interval = 1
hidden_sizes = [32]
batch_size = 16
test_episodes = 5
[variants.hard]
"""


def test_a_real_dialogue_sweep_is_reported(tmp_path, capsys):
    config = write(tmp_path / "tiny.toml", TINY_DIALOGUE)
    out = tmp_path / "out"
    args = ["sweep", "--config", str(config), "--out", str(out), "--workers", "1"]
    assert main(args + ["--no-progress", "--no-report"]) == 0
    assert not (out / "report.md").exists()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out / "report.md"))
    text = (out / "report.md").read_text()
    assert "| final success rate IQM [95% CI] |" in text and "| movie | hard | 2 | " in text
    results = json.loads((out / RESULTS).read_text())
    cell = results["envs"]["movie"]["hard"]
    # epochs 1 and 2, after the 20 warm-start dialogues: the rule agent's row is left out
    assert [row[0] for row in cell["return_curve"]] == [30.0, 40.0]
    assert all(0 <= s <= 1 for s in cell["final_return"])
    assert len(cell["extras"]["avg_turns"]["seeds"]) == 2
