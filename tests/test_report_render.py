"""The report in two steps: compute (results.json), then render (report.md and figures) from
results.json alone, so a report re-renders without its runs; a malformed results.json is
one error line, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_experiments import fake_sweep, one_error_line, snapshot

from dqnlm.cli import main
from dqnlm.errors import DQNLMError
from dqnlm.experiments.report import RESULTS, compute_results, render_report, write_report


@pytest.fixture(scope="module")
def computed(tmp_path_factory) -> Path:
    """A hand-made sweep with its report (computed once: the bootstraps take a while)."""
    out = fake_sweep(tmp_path_factory.mktemp("computed"))
    write_report(out)
    return out


def copy_of(computed: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the computed sweep, and the report.md it should render: the original's
    but for the directory it names."""
    out = tmp_path / "sweep"
    shutil.copytree(computed, out)
    return out, (computed / "report.md").read_text().replace(str(computed), str(out))


def figures(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "figures").iterdir())}


def test_render_only_redraws_the_same_report_without_the_runs(computed, tmp_path):
    out, report = copy_of(computed, tmp_path)
    drawn = figures(out)
    shutil.rmtree(out / "runs")  # no metrics.csv nor eval.json to read any more
    shutil.rmtree(out / "figures")
    (out / "report.md").unlink()
    assert render_report(out) == out / "report.md"
    assert (out / "report.md").read_text() == report
    assert figures(out) == drawn

    # results.json alone, handed over into another directory, is all render needs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(out / RESULTS, elsewhere)
    render_report(elsewhere)
    assert (elsewhere / "report.md").read_text() == report.replace(str(out), str(elsewhere))
    assert figures(elsewhere) == drawn


def test_compute_returns_what_it_writes(computed, tmp_path):
    out, _ = copy_of(computed, tmp_path)
    (out / RESULTS).unlink()
    results = compute_results(out, baseline="b")
    assert json.loads((out / RESULTS).read_text()) == results
    assert results["baseline"] == "b" and results["variants"] == ["a", "b"]
    cell = results["envs"]["c"]["a"]
    # the learning-curve band: [step, IQM, lower, upper] per evaluation
    assert [row[0] for row in cell["return_curve"]] == [100.0, 200.0, 300.0]
    assert all(lower <= iqm <= upper for _, iqm, lower, upper in cell["return_curve"])
    assert results["across"]["a"]["p_improvement_over_b"] is not None
    assert "P(variant > b)" not in (out / "report.md").read_text()  # not rendered yet


# case: (the file's text, or how to break a valid one; what the error line says)
MALFORMED = {
    "not JSON": ("{", "is not valid JSON"),
    "a non-finite number": ('{"seeds_planned": NaN}', "non-finite number NaN"),
    "a list": ("[]", "results must be an object"),
    "no envs": (lambda r: r.pop("envs"), "results has no 'envs'"),
    "a string for a number": (
        lambda r: r["envs"]["c"]["a"]["final_iqm"].update(point="1"),
        "results.envs.c.a.final_iqm.point must be a number",
    ),
    "a number too large to draw": (
        lambda r: r["envs"]["c"]["a"]["q_curve"][2].__setitem__(3, 1e305),
        "results.envs.c.a.q_curve[2][3] must be a number of size <= 1e+300",
    ),
    "a number too large": (
        lambda r: r["bounds"].update(c=[0, 10**400]),
        "results.bounds.c[1] must be a number",
    ),
    "a short band row": (
        lambda r: r["envs"]["c"]["b"]["return_curve"][1].pop(),
        "results.envs.c.b.return_curve[1] must hold 4 values",
    ),
    "no runs": (
        lambda r: r["envs"]["c"]["b"].update(final_return=[]),
        "results.envs.c.b.final_return must be a non-empty list",
    ),
    "a boolean count": (
        lambda r: r["envs"]["c"]["a"].update(reached=True),
        "results.envs.c.a.reached must be a count",
    ),
    "a name to parse": (
        lambda r: r.update(variants=["a", "$\\frac$"]),
        "results.variants[1] must be a name",
    ),
    "a stray baseline": (
        lambda r: r.update(baseline="z"),
        "the baseline is not one of the variants",
    ),
    "env lists that differ": (
        lambda r: r["env_ids"].update(d="CartPole-v1"),
        "envs, trainers, env_ids and bounds must name the same environments",
    ),
    "no improvement entry": (
        lambda r: r["across"]["b"].pop("p_improvement_over_a"),
        "results.across.b.p_improvement_over_a must be an object",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_results_file_is_one_line_and_writes_nothing(computed, tmp_path, case):
    breaks, message = MALFORMED[case]
    if callable(breaks):
        results = json.loads((computed / RESULTS).read_text())
        breaks(results)
        breaks = json.dumps(results)
    (tmp_path / RESULTS).write_text(breaks)
    before = snapshot(tmp_path)
    with pytest.raises(DQNLMError) as error:
        render_report(tmp_path)
    text = str(error.value)
    assert "\n" not in text and str(tmp_path / RESULTS) in text and message in text, text
    assert snapshot(tmp_path) == before  # no figure, no report


def test_cli_render_only(computed, tmp_path, capsys):
    out, report = copy_of(computed, tmp_path)
    (out / "report.md").unlink()
    assert main(["report", str(out), "--render-only"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    assert (out / "report.md").read_text() == report

    # --baseline asks for a recomputation
    assert main(["report", str(out), "--render-only", "--baseline", "b"]) == 1
    assert "--baseline" in one_error_line(capsys.readouterr().err)

    (out / RESULTS).write_text('{"variants": []}')
    assert main(["report", str(out), "--render-only"]) == 1
    assert "not a valid report results file" in one_error_line(capsys.readouterr().err)

    (out / RESULTS).unlink()
    assert main(["report", str(out), "--render-only"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(out / RESULTS) in line and "does not exist" in line
