"""``dqnlm report DIR``: a markdown report with figures over a finished (or partial) sweep.

Each env is reported in its trainer's score: control the evaluation return against env
steps, dialogue the validation success rate against dialogues (warm start included), lm
each round's mean reward against rounds. Scores are min-max normalised per environment:
``low`` and ``high`` are the sweep file's values, else for control the mean return of a
uniformly random policy and the env's threshold (its preset mark; else the best final
return), for dialogue 0 and 1, for lm the mean first-round reward and the largest reward
reached. Per environment and across environments the report gives:

* learning curves: IQM over seeds of the score, with 95% bootstrap bands;
* final score: IQM and mean with stratified bootstrap CIs (the final evaluation), with the
  trainer's other final metrics (dialogue: turns; lm: KL and distinct-2; IQM with CIs);
* speed: the area under the normalised learning curve (AUC, 1 = at ``high`` throughout);
* stability (control): Q overestimation at the final evaluation (greedy Q of start states
  minus the discounted return earned), and the fraction of runs that collapse: that fall
  below half the way from ``low`` to the threshold after first reaching the threshold;
* performance profiles and the probability that each variant beats the baseline.

Only finished runs count; the report says how many there are per cell, and which finished
without a final score (an LM run with ``eval_prompts = 0``; its env is then left out
across environments). ``results.json`` holds every number behind the tables and figures
(the per-seed ones too, to re-analyse elsewhere); ``--render-only`` redraws ``report.md``
and the figures from it alone.
"""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dqnlm.core.checkpoint import atomic_write_text, loads_finite
from dqnlm.errors import DQNLMError
from dqnlm.experiments import stats
from dqnlm.experiments.sweep import NAME, SPEC, Run, is_finished, read_spec, runs_of
from dqnlm.experiments.trainers import TRAINERS, TrainerKind, trainer_of
from dqnlm.metrics import numeric_rows, pyplot, save_figure

REPS = 2000  # bootstrap resamples of the tables
BAND_REPS = 500  # and of each point of a curve's band
TAUS = np.linspace(0.0, 1.2, 61)  # performance profile thresholds
RESULTS = "results.json"
CIS = ("final_iqm", "final_mean", "auc_iqm")  # a cell's and a variant's intervals across envs


@dataclass
class Cell:
    """The finished runs of one environment x variant."""

    steps: np.ndarray  # evaluation steps (the trainer's unit: env steps, dialogues, rounds)
    curves: np.ndarray  # seeds x steps: the score at each evaluation
    final: np.ndarray  # seeds: the final evaluation's score (NaN: not evaluated)
    q_over: np.ndarray | None  # seeds: Q overestimation at the final evaluation (control)
    q_curves: np.ndarray | None  # seeds x steps: Q overestimation at each evaluation
    seeds: list[int]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # the kind's extras per seed


@dataclass(frozen=True)
class View:
    """How the report shows one trainer's envs. What it reads of their runs (the curve
    column, the final key and its extras) is the trainer's TrainerKind."""

    score: str  # the score in words
    column: str  # the per-environment table's name for the final score
    x_label: str  # the learning curves' axes
    y_label: str
    title: str  # an env's title: a format over its sweep.json entry and first variant's config
    digits: int  # of scores and bounds in the tables
    low: Callable[[dict, list[Cell]], float]  # low and high unless the sweep file sets them
    high: Callable[[float, list[Cell]], float]  # (args: the env's entry or low, its cells)
    note: str = ""  # what the report says of these envs, under their bounds
    q: str | None = None  # metrics.csv column and eval.json key of Q overestimation
    scripted: str | None = None  # a metrics.csv column that is 0 on a scripted agent's rows


def _best_final(low: float, cells: list[Cell]) -> float:
    return max((c.final.max() for c in cells), default=low + 1)


def _first_round(info: dict, cells: list[Cell]) -> float:
    firsts = [c.curves[:, 0] for c in cells if c.curves.size]
    return float(np.concatenate(firsts).mean()) if firsts else 0.0


def _best_seen(low: float, cells: list[Cell]) -> float:
    seen = [v for c in cells for v in (*c.curves.ravel(), *c.final) if v > low]  # NaN is not
    return float(max(seen)) if seen else low + 1.0


VIEWS = {
    "control": View(
        score="return",
        column="final",
        x_label="environment steps",
        y_label="evaluation return",
        title="{env_id}",
        digits=1,
        low=lambda info, cells: random_return(info["env_id"]),
        high=_best_final,
        q="q_overestimation",
    ),
    "dialogue": View(
        score="success rate",
        column="final success rate",
        x_label="dialogues (warm start included)",
        y_label="validation success rate",
        title="domain {domain}",
        digits=2,
        low=lambda info, cells: 0.0,
        high=lambda low, cells: 1.0,
        note="Dialogue envs: success rate against dialogues simulated (warm start included), "
        "from the first epoch on (the rule agent's evaluation before it is left out); low 0 "
        "and high 1 unless the sweep file sets them; turns: average turns per dialogue.",
        # epoch 0 is the rule agent at the end of the warm start: a scripted agent's score,
        # not the learner's. Kept, it would give every variant the same first point, count
        # the rule agent in the AUC, and be missing where warm_start_dialogues = 0.
        scripted="epoch",
    ),
    "lm": View(
        score="reward",
        column="final reward",
        x_label="rounds",
        y_label="mean reward per round",
        title="reward {reward}",
        digits=3,
        low=_first_round,
        high=_best_seen,
        note="LM envs: the mean reward of each round's samples against rounds; the final "
        "reward, KL (nats per completion) and distinct-2 are the held-out evaluation's. Unless "
        "the sweep file sets them, low is the mean first-round reward of the env's runs (before "
        "any update), high the largest reward they reached (else low + 1).",
    ),
}
"""Each trainer's view, by the name TRAINERS gives it."""
EXTRAS = {"avg_turns": ("turns", 1), "kl": ("KL", 2), "distinct_2": ("distinct-2", 3)}
"""A kind's extras in the tables: (column name, digits), IQM over seeds with 95% CIs."""


# ------------------------------------------------------------------ compute: results.json
def _read_run(run_dir: Path, kind: TrainerKind) -> tuple[list, list, list | None, dict]:
    """(steps, scores, Q overestimation or None, final values by eval.json key)."""
    view = VIEWS[kind.name]
    rows = numeric_rows(
        run_dir / "metrics.csv", [c for c in ("step", kind.curve, view.q, view.scripted) if c]
    )
    rows = [r for r in rows if r[kind.curve] is not None and r.get(view.scripted) != 0]
    if any(r["step"] is None for r in rows):
        raise DQNLMError(f"{run_dir / 'metrics.csv'} has an evaluation row without a step")
    q_over = [np.nan if r[view.q] is None else r[view.q] for r in rows] if view.q else None
    keys = [k for k in (kind.final, *kind.extras, view.q) if k]
    final = _read_eval(run_dir / "eval.json", keys)
    return [r["step"] for r in rows], [r[kind.curve] for r in rows], q_over, final


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past 1e308
        return False


def _read_eval(path: Path, keys: list[str]) -> dict[str, float]:
    """The final evaluation's ``keys``, as finite numbers; NaN for a run finished without
    one (its eval.json says ``"evaluated": false``)."""
    try:
        final = loads_finite(path.read_text())
        if isinstance(final, dict) and final.get("evaluated") is False:
            return dict.fromkeys(keys, math.nan)
        values = [final[key] for key in keys]
        if not all(_is_number(v) for v in values):
            raise ValueError(f"{' and '.join(keys)} must be numbers, got {values}")
    except OSError as e:
        raise DQNLMError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DQNLMError(f"{path} is not a valid evaluation record: {e}") from None
    return {key: float(v) for key, v in zip(keys, values)}


def collect(out: Path, spec: dict) -> dict[str, dict[str, Cell]]:
    cells: dict[str, dict[str, Cell]] = {}
    runs: dict[tuple[str, str], list[Run]] = {}
    for run in runs_of(spec):
        if is_finished(run.directory(out)):
            runs.setdefault((run.env, run.variant), []).append(run)
    for (env, variant), group in runs.items():
        kind = TRAINERS[group[0].trainer]
        read = [_read_run(r.directory(out), kind) for r in group]
        length = min(len(steps) for steps, *_ in read)
        finals = {k: np.array([f[k] for *_, f in read]) for k in read[0][3]}
        q = VIEWS[kind.name].q
        cells.setdefault(env, {})[variant] = Cell(
            steps=np.array(read[0][0][:length]),
            curves=np.array([scores[:length] for _, scores, *_ in read]),
            final=finals[kind.final],
            q_over=finals[q] if q else None,
            q_curves=np.array([r[2][:length] for r in read]) if q else None,
            seeds=[r.seed for r in group],
            extras={k: finals[k] for k in kind.extras},
        )
    return cells


def random_return(env_id: str, episodes: int = 20, seed: int = 0) -> float:
    """Mean return of a uniformly random policy: the ``low`` end of normalised scores
    (the environment preprocessed as its family's defaults have it: MinAtar, Atari)."""
    from dqnlm.control.config import DQNConfig
    from dqnlm.control.envs import make_env, run_episodes

    config = DQNConfig(env_id=env_id)
    space = make_env(config).action_space
    space.seed(seed)
    policy = lambda obs: [space.sample() for _ in obs]  # noqa: E731
    returns, _, _ = run_episodes(lambda: make_env(config, train=False), policy, episodes, seed)
    return float(returns.mean())


def bounds(spec: dict, cells: dict[str, dict[str, Cell]]) -> dict[str, tuple[float, float]]:
    """Per env: (low, high), the sweep file's or else its trainer's defaults (VIEWS)."""
    result = {}
    for env, info in spec["envs"].items():
        view, seen = VIEWS[trainer_of(info).name], list(cells.get(env, {}).values())
        low = info["low"] if info.get("low") is not None else view.low(info, seen)
        high = info["high"] if info.get("high") is not None else view.high(low, seen)
        if not (_is_number(low) and _is_number(high)):
            raise DQNLMError(f"{env}: low and high must be numbers, got {low!r} and {high!r}")
        if high <= low:
            raise DQNLMError(
                f"{env}: the normalising range is empty (low {low:.1f}, high {high:.1f}); "
                "set low and high in the sweep file"
            )
        result[env] = (float(low), float(high))
    return result


def auc(cell: Cell, low: float, high: float) -> np.ndarray:
    """Per seed: the mean normalised score over the run (trapezoid over steps)."""
    curves = (cell.curves - low) / (high - low)
    if len(cell.steps) < 2:
        return curves[:, 0]
    span = cell.steps[-1] - cell.steps[0]
    return np.trapezoid(curves, cell.steps, axis=1) / span


def collapses(cell: Cell, threshold: float | None, low: float) -> tuple[int, int]:
    """(runs that reached the threshold, runs of those that later fell below halfway)."""
    if threshold is None:
        return 0, 0
    floor = low + 0.5 * (threshold - low)
    reached = fell = 0
    for curve in cell.curves:
        hits = np.flatnonzero(curve >= threshold)
        if hits.size:
            reached += 1
            fell += bool((curve[hits[0] + 1 :] < floor).any())
    return reached, fell


def _ci(values: np.ndarray, aggregate: stats.Aggregate, reps: int = REPS) -> dict | None:
    """``aggregate`` of the finite per-seed ``values`` with its 95% bootstrap CI (None
    when there is none: no run was evaluated)."""
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    return stats.stratified_bootstrap_ci({"v": values[:, None]}, aggregate, reps)["v"]._asdict()


def _band(steps: np.ndarray, curves: np.ndarray | None) -> list[list[float]] | None:
    """[step, IQM, lower, upper] per evaluation, IQM over seeds with its 95% CI; None where
    a value is missing (that curve is not drawn)."""
    if curves is None or not np.isfinite(curves).all():
        return None
    points = [_ci(column, stats.iqm, BAND_REPS) for column in curves.T]
    return [[x, p["point"], p["lower"], p["upper"]] for x, p in zip(steps.tolist(), points)]


def _values(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def _cell_results(cell: Cell, low: float, high: float, threshold: float | None) -> dict:
    area = auc(cell, low, high)
    reached, fell = collapses(cell, threshold, low)
    return {
        "seeds": cell.seeds,
        "final_return": _values(cell.final),  # the final score, whatever the trainer's
        "auc": area.tolist(),
        "q_overestimation": None if cell.q_over is None else cell.q_over.tolist(),
        "final_iqm": _ci(cell.final, stats.iqm),
        "final_mean": _ci(cell.final, stats.mean),
        "auc_iqm": _ci(area, stats.iqm),
        "reached": reached,
        "collapsed": fell,
        "return_curve": _band(cell.steps, cell.curves),
        "q_curve": _band(cell.steps, cell.q_curves),
        "extras": {
            k: {"seeds": _values(v), "iqm": _ci(v, stats.iqm)} for k, v in cell.extras.items()
        },
    }


def _across(results: dict, envs: list[str]) -> dict[str, dict]:
    """Per variant: normalised aggregates over ``envs`` (where every variant has runs, all
    with a final score), from the first ``n`` runs of each cell, so every variant weighs
    each env alike."""
    variants, baseline, cells = results["variants"], results["baseline"], results["envs"]
    n = min(len(cells[e][v]["final_return"]) for e in envs for v in variants)

    def scores(key: str, v: str) -> np.ndarray:  # runs x envs
        return np.array([cells[e][v][key][:n] for e in envs]).T

    lows, highs = zip(*(results["bounds"][e] for e in envs))
    normalized = {v: stats.normalize(scores("final_return", v), lows, highs) for v in variants}
    areas = {v: scores("auc", v) for v in variants}
    cis = {
        "final_iqm": stats.stratified_bootstrap_ci(normalized, stats.iqm, REPS),
        "final_mean": stats.stratified_bootstrap_ci(normalized, stats.mean, REPS),
        "auc_iqm": stats.stratified_bootstrap_ci(areas, stats.iqm, REPS),
    }
    profiles = stats.performance_profile(normalized, TAUS, reps=BAND_REPS)
    across = {}
    for v in variants:
        improvement = None
        if v != baseline:
            poi = stats.probability_of_improvement_ci(normalized[v], normalized[baseline], REPS)
            improvement = poi._asdict()
        p = profiles[v]
        across[v] = {
            "envs": envs,
            "runs": n,
            **{name: ci[v]._asdict() for name, ci in cis.items()},
            f"p_improvement_over_{baseline}": improvement,
            "profile": np.stack([TAUS, p.values, p.lower, p.upper], axis=1).tolist(),
        }
    return across


def _title(info: dict) -> str:
    """An env's title: its view's ``title`` over its entry and first variant's config."""
    fields = {**next(iter(info["configs"].values()), {}), **info}
    return VIEWS[trainer_of(info).name].title.format_map(collections.defaultdict(str, fields))


def compute_results(out: Path, baseline: str | None = None, trust_code: bool = False) -> dict:
    """Every number the report shows, from the finished runs under ``out``; written to
    ``out/results.json`` (atomically) and returned."""
    out = Path(out)
    if not (out / SPEC).is_file():
        raise DQNLMError(f"{out} is not a sweep directory (no {SPEC}); run `dqnlm sweep` first")
    spec = read_spec(out, trust_code)  # random_return makes each env: refuse module:Env
    cells = collect(out, spec)
    if not cells:
        raise DQNLMError(f"{out} has no finished run yet")
    variants = list(spec["variants"])
    baseline = baseline or variants[0]
    if baseline not in variants:
        raise DQNLMError(f"baseline {baseline!r} is not a variant; choose one of {variants}")
    edges = bounds(spec, cells)
    envs = [e for e in spec["envs"] if e in cells]
    results: dict[str, Any] = {
        "seeds_planned": len(spec["seeds"]),
        "variants": variants,
        "baseline": baseline,
        "trainers": {e: trainer_of(spec["envs"][e]).name for e in envs},
        "env_ids": {e: _title(spec["envs"][e]) for e in envs},
        "bounds": {e: list(edges[e]) for e in envs},
        "envs": {
            e: {
                v: _cell_results(cells[e][v], *edges[e], spec["envs"][e].get("threshold"))
                for v in variants
                if v in cells[e]
            }
            for e in envs
        },
    }
    complete = [
        e
        for e in envs
        if all(v in cells[e] and np.isfinite(cells[e][v].final).all() for v in variants)
    ]
    results["across"] = _across(results, complete) if complete else {}
    atomic_write_text(out / RESULTS, json.dumps(results, indent=1) + "\n")
    return results


# ------------------------------------------------- render: report.md and figures
def render_report(out: Path, results: dict | None = None) -> Path:
    """Write ``out/report.md`` and ``out/figures/`` from ``results`` (by default read from
    ``out/results.json``): no run is read and no statistic recomputed."""
    out = Path(out)
    if results is None:
        results = _load_results(out / RESULTS)
    _check_results(results, out / RESULTS)  # before writing anything
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    envs = list(results["envs"])
    _plot_curves(results, envs, "return_curve", None, figures / "learning_curves.png")
    q_envs = [e for e in envs if VIEWS[results["trainers"][e]].q]
    if q_envs:
        ylabel, path = "Q(start) - discounted return (IQM)", figures / "q_overestimation.png"
        _plot_curves(results, q_envs, "q_curve", ylabel, path, symlog=True)
    lines = _overview(out, results, q_envs) + _env_tables(results)
    if results["across"]:
        lines += _across_section(results, figures)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def write_report(out: Path, baseline: str | None = None, trust_code: bool = False) -> Path:
    """Aggregate the finished runs under ``out`` into ``out/results.json``, then render
    ``out/report.md`` and ``out/figures/`` from it."""
    return render_report(out, compute_results(out, baseline, trust_code))


def _fmt(interval: dict[str, float] | None, digits: int = 1) -> str:
    if interval is None:
        return "not evaluated"
    point, lower, upper = (interval[k] for k in ("point", "lower", "upper"))
    return f"{point:.{digits}f} [{lower:.{digits}f}, {upper:.{digits}f}]"


def _row(cells: list[str]) -> str:
    """A markdown table row (an empty cell is a single space)."""
    return "".join(f"| {c} " if c else "| " for c in cells) + "|"


def _by_trainer(results: dict) -> dict[str, list[str]]:
    """Trainer name -> its envs, in the order the envs come."""
    groups: dict[str, list[str]] = {}
    for env, name in results["trainers"].items():
        groups.setdefault(name, []).append(env)
    return groups


def _overview(out: Path, results: dict, q_envs: list[str]) -> list[str]:
    lines = ["# Sweep report", "", f"Directory `{out}`: {results['seeds_planned']} seeds planned."]
    for name, envs in _by_trainer(results).items():
        view, d = VIEWS[name], VIEWS[name].digits
        lines += ["", f"Normalised score = ({view.score} - low) / (high - low):", ""]
        for env in envs:
            low, high = results["bounds"][env]
            title = results["env_ids"][env]
            lines.append(f"* {env} (`{title}`): low {low:.{d}f}, high {high:.{d}f}")
        lines += ["", view.note] if view.note else []
    lines += ["", "## Learning curves", "", "![learning curves](figures/learning_curves.png)", ""]
    if not q_envs:
        return lines
    return lines + [
        "## Q overestimation during training",
        "",
        "Greedy Q of the evaluation episodes' start states minus the discounted return they "
        "earned (> 0: overestimation).",
        "",
        "![Q overestimation](figures/q_overestimation.png)",
        "",
    ]


def _env_tables(results: dict) -> list[str]:
    """One table per trainer, in its own columns."""
    lines, unevaluated = ["## Per environment"], []
    for name, envs in _by_trainer(results).items():
        view, extras = VIEWS[name], TRAINERS[name].extras
        header = ["env", "variant", "runs", f"{view.column} IQM [95% CI]"]
        header += [f"{view.column} mean [95% CI]", "AUC IQM [95% CI]"]
        header += [f"{EXTRAS[k][0]} IQM [95% CI]" for k in extras]
        header += ["Q overestimation (median)", "collapsed / reached"] if view.q else []
        lines += ["", _row(header), "|---" * len(header) + "|"]
        for env in envs:
            for variant in results["variants"]:
                c = results["envs"][env].get(variant)
                if c is None:
                    lines.append(_row([env, variant, "0"] + [""] * (len(header) - 3)))
                    continue
                runs, missing = len(c["final_return"]), c["final_return"].count(None)
                row = [env, variant, str(runs)]
                row += [_fmt(c[k], view.digits) for k in ("final_iqm", "final_mean")]
                row += [_fmt(c["auc_iqm"], 2)]
                row += [_fmt(c["extras"][k]["iqm"], EXTRAS[k][1]) for k in extras]
                if view.q:
                    row += [f"{np.median(c['q_overestimation']):.2f}"]
                    row += [f"{c['collapsed']} / {c['reached']}"]
                lines.append(_row(row))
                if missing:
                    unevaluated.append(f"{env} x {variant} ({missing} of {runs} runs)")
    if unevaluated:
        lines += [
            "",
            f"Not evaluated: {'; '.join(unevaluated)}. These runs finished without a final "
            "evaluation (eval.json holds no score, as with eval_prompts = 0): they count in the "
            "curves and AUC, not in the final scores, and their envs are left out across "
            "environments.",
        ]
    return lines


def _across_section(results: dict, figures: Path) -> list[str]:
    """The cross-environment table, drawing its figures on the way."""
    across, baseline = results["across"], results["baseline"]
    key = f"p_improvement_over_{baseline}"

    def column(name: str) -> dict:
        return {v: a[name] for v, a in across.items()}

    improvement = {v: i for v, i in column(key).items() if i is not None}
    _plot_intervals(
        column("final_iqm"), "normalised final score, IQM (95% CI)", figures / "final_iqm.png"
    )
    _plot_intervals(column("auc_iqm"), "normalised AUC, IQM (95% CI)", figures / "auc_iqm.png")
    _plot_profiles(column("profile"), figures / "performance_profiles.png")
    first = next(iter(across.values()))
    header = ["variant", "final IQM [95% CI]", "final mean [95% CI]", "AUC IQM [95% CI]"]
    lines = ["", f"## Across environments ({', '.join(first['envs'])}; {first['runs']} runs each)"]
    lines += ["", _row([*header, f"P(variant > {baseline}) [95% CI]"]), "|---" * 5 + "|"]
    for v, a in across.items():
        poi = _fmt(a[key], 2) if v in improvement else "-"
        lines.append(_row([v, *(_fmt(a[k], 2) for k in CIS), poi]))
    lines += [
        "",
        "![final IQM](figures/final_iqm.png) ![AUC IQM](figures/auc_iqm.png)",
        "",
        "![performance profiles](figures/performance_profiles.png)",
    ]
    if improvement:
        xlabel = f"P(variant > {baseline}) (95% CI)"
        _plot_intervals(improvement, xlabel, figures / "improvement.png")
        lines += ["", "![probability of improvement](figures/improvement.png)"]
    return lines


def _plot_curves(
    results: dict, envs: list[str], key: str, ylabel: str | None, path: Path, symlog: bool = False
) -> None:
    """One panel per env: each variant's ``key`` band, [step, IQM, lower, upper] rows, on its
    trainer's axes (``ylabel`` None: its score's; ``symlog``: where a panel's values pass 100
    in size, a y axis linear near 0 and logarithmic beyond, so diverging runs and stable
    ones show on one axis)."""
    fig, axes = pyplot().subplots(
        1, len(envs), figsize=(5.2 * len(envs), 3.8), dpi=110, squeeze=False
    )
    for ax, env in zip(axes[0], envs):
        view, largest = VIEWS[results["trainers"][env]], 0.0
        for i, variant in enumerate(results["variants"]):
            band = results["envs"][env].get(variant, {}).get(key)
            if band is None:
                continue
            steps, point, lower, upper = np.array(band).T
            ax.plot(steps, point, color=f"C{i}", label=variant)
            ax.fill_between(steps, lower, upper, color=f"C{i}", alpha=0.15)
            largest = max(largest, np.abs(point).max())
        # parse_math off: an env_id read from results.json is shown as it is, never parsed
        ax.set_title(results["env_ids"][env], parse_math=False)
        ax.set_xlabel(view.x_label)
        ax.set_ylabel(ylabel or f"{view.y_label} (IQM, 95% CI)")
        if symlog and largest > 100.0:
            ax.set_yscale("symlog", linthresh=10.0)
        ax.grid(alpha=0.3)
    # one legend below the panels, so it hides no curve
    legend = {}
    for ax in axes[0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    legend_inches = 0.25 * -(-len(legend) // 5) + 0.1  # rows of 5 entries
    fig.set_figheight(fig.get_figheight() + legend_inches)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=5, fontsize=8)
    save_figure(fig, path, rect=(0, legend_inches / fig.get_figheight(), 1, 1))


def _plot_intervals(intervals: dict[str, dict], xlabel: str, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 0.45 * len(intervals) + 1.2), dpi=110)
    for y, iv in enumerate(intervals.values()):
        ax.plot([iv["lower"], iv["upper"]], [y, y], color=f"C{y}", linewidth=6, alpha=0.5)
        ax.plot([iv["point"]], [y], "|", color="black", markersize=14)
    ax.set_yticks(range(len(intervals)), list(intervals))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path)


def _plot_profiles(profiles: dict[str, list], path: Path) -> None:
    """Each variant's performance profile, [tau, fraction, lower, upper] rows."""
    fig, ax = pyplot().subplots(figsize=(6, 4), dpi=110)
    for i, (name, rows) in enumerate(profiles.items()):
        taus, values, lower, upper = np.array(rows).T
        ax.plot(taus, values, color=f"C{i}", label=name)
        ax.fill_between(taus, lower, upper, color=f"C{i}", alpha=0.12)
    ax.set_xlabel("normalised final score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


# ------------------------------------------- results.json: the shape that render relies on
@dataclass(frozen=True)
class _Maybe:
    schema: Any  # a value of this schema, or null


INTERVAL = {"point": float, "lower": float, "upper": float}
BAND = [(float, float, float, float)]  # rows of [x, IQM or fraction, lower, upper]
CELL = {
    "seeds": [int],
    "final_return": [_Maybe(float)],
    "auc": [float],
    "q_overestimation": _Maybe([float]),
    "final_iqm": _Maybe(INTERVAL),
    "final_mean": _Maybe(INTERVAL),
    "auc_iqm": INTERVAL,
    "reached": int,
    "collapsed": int,
    "return_curve": _Maybe(BAND),
    "q_curve": _Maybe(BAND),
    "extras": {NAME: {"seeds": [_Maybe(float)], "iqm": _Maybe(INTERVAL)}},
}
ACROSS = {
    "envs": [NAME],
    "runs": int,
    "final_iqm": INTERVAL,
    "final_mean": INTERVAL,
    "auc_iqm": INTERVAL,
    "profile": BAND,
}
SHAPE = {
    "seeds_planned": int,
    "variants": [NAME],
    "baseline": NAME,
    "trainers": {NAME: str},
    "env_ids": {NAME: str},
    "bounds": {NAME: (float, float)},
    "envs": {NAME: {NAME: CELL}},
    "across": {NAME: ACROSS},
}
"""What render_report reads. A schema is float (a number), int (a count), str, NAME,
[schema] (a non-empty list), (schema, ...) (a list of that many), {NAME: schema} (an object
from env or variant names to values of that schema), {key: schema} (an object with those
keys, maybe more) or _Maybe(schema) (that, or null)."""
LARGEST = 1e300  # past this size matplotlib's axis arithmetic overflows, mid-figure
SCALARS = {
    float: (lambda v: _is_number(v) and abs(v) <= LARGEST, f"a number of size <= {LARGEST:g}"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count"),
    str: (lambda v: isinstance(v, str), "a string"),
    NAME: (lambda v: isinstance(v, str) and NAME.fullmatch(v), "a name (letters, digits, ._+-)"),
}


def _load_results(path: Path) -> Any:
    try:
        return loads_finite(path.read_text())
    except FileNotFoundError:
        raise DQNLMError(
            f"{path} does not exist: compute it with `dqnlm report` (without --render-only)"
        ) from None
    except OSError as e:
        raise DQNLMError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, non-finite, too deep
        raise DQNLMError(f"{path} is not valid JSON: {e}") from None


def _check_results(results: Any, path: Path) -> None:
    """A one-line DQNLMError for results that render_report cannot draw as they are."""
    try:
        _fit(results, SHAPE, "results")
        _fit_together(results)
    except ValueError as e:
        raise DQNLMError(f"{path} is not a valid report results file: {e}") from None


def _fit(value: Any, schema: Any, where: str) -> None:
    """Raise ValueError saying where ``value`` departs from ``schema``."""
    if isinstance(schema, _Maybe):
        if value is not None:
            _fit(value, schema.schema, where)
    elif isinstance(schema, type | re.Pattern):
        fits, what = SCALARS[schema]
        if not fits(value):
            raise ValueError(f"{where} must be {what}")
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object")
        if NAME in schema:  # names -> values
            for name, item in value.items():
                _fit(name, NAME, f"{where} key {str(name)[:40]!r}")
                _fit(item, schema[NAME], f"{where}.{name}")
        for key, item_schema in schema.items():
            if key is NAME:
                continue
            if key not in value:
                raise ValueError(f"{where} has no {key!r}")
            _fit(value[key], item_schema, f"{where}.{key}")
    else:  # a list
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where} must be a non-empty list")
        items = schema if isinstance(schema, tuple) else schema * len(value)
        if len(items) != len(value):
            raise ValueError(f"{where} must hold {len(items)} values")
        for i, (item, item_schema) in enumerate(zip(value, items)):
            _fit(item, item_schema, f"{where}[{i}]")


def _fit_together(results: dict) -> None:
    """Raise ValueError where well-shaped results do not fit together."""
    variants, envs, across = results["variants"], list(results["envs"]), results["across"]
    if results["baseline"] not in variants:
        raise ValueError("the baseline is not one of the variants")
    if not envs or any(list(results[k]) != envs for k in ("trainers", "env_ids", "bounds")):
        raise ValueError("envs, trainers, env_ids and bounds must name the same environments")
    if any(set(cells) - set(variants) for cells in results["envs"].values()):
        raise ValueError("envs hold a variant that variants does not list")
    if across and list(across) != variants:
        raise ValueError("across must be empty or hold every variant")
    key = f"p_improvement_over_{results['baseline']}"
    for variant, entry in across.items():
        _fit(entry.get(key, False), _Maybe(INTERVAL), f"results.across.{variant}.{key}")
    for env, name in results["trainers"].items():  # what the env's own columns read
        if name not in VIEWS:
            raise ValueError(f"results.trainers.{env} must be one of {', '.join(VIEWS)}")
        for variant, cell in results["envs"][env].items():
            where = f"results.envs.{env}.{variant}"
            for extra in TRAINERS[name].extras:
                _fit(cell["extras"].get(extra), {}, f"{where}.extras.{extra}")
            if VIEWS[name].q:
                _fit(cell["q_overestimation"], [float], f"{where}.q_overestimation")
