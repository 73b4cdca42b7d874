"""``dqnlm report DIR``: a markdown report with figures over a finished (or partial) sweep.

Scores are min-max normalised per environment: ``low`` is the sweep file's value or
the mean return of a uniformly random policy, ``high`` the sweep's value or the env's
threshold (its preset mark). Per environment and across environments the report gives:

* learning curves: IQM over seeds of the evaluation return, with 95% bootstrap bands;
* final return: IQM and mean with stratified bootstrap CIs (the final evaluation);
* speed: the area under the normalised learning curve (AUC, 1 = at ``high`` throughout);
* stability: Q overestimation at the final evaluation (greedy Q of start states minus
  the discounted return earned), and the fraction of runs that collapse: that fall
  below half the way from ``low`` to the threshold after first reaching the threshold;
* performance profiles and the probability that each variant beats the baseline.

Only finished runs count; the report says how many there are per cell. ``results.json``
holds every number behind the tables and figures (the per-seed ones too, to re-analyse
elsewhere); ``--render-only`` redraws ``report.md`` and the figures from it alone.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dqnlm.core.checkpoint import atomic_write_text, loads_finite
from dqnlm.errors import DQNLMError
from dqnlm.experiments import stats
from dqnlm.experiments.sweep import NAME, SPEC, Run, is_finished, read_spec, runs_of
from dqnlm.metrics import numeric_rows, save_figure

REPS = 2000  # bootstrap resamples of the tables
BAND_REPS = 500  # and of each point of a curve's band
TAUS = np.linspace(0.0, 1.2, 61)  # performance profile thresholds
RESULTS = "results.json"

# What the report reads of a run, named in one place so a trainer with other metrics can
# name its own: metrics.csv columns (step, evaluation curve, Q curve) and eval.json keys
# (final return, final Q overestimation).
CURVE_COLUMNS = ("step", "eval_return", "q_overestimation")
FINAL_KEYS = ("mean_return", "q_overestimation")


@dataclass
class Cell:
    """The finished runs of one environment x variant."""

    steps: np.ndarray  # evaluation steps (env steps)
    curves: np.ndarray  # seeds x steps: evaluation returns
    final: np.ndarray  # seeds: final evaluation return (test seeds)
    q_over: np.ndarray  # seeds: Q overestimation at the final evaluation
    q_curves: np.ndarray  # seeds x steps: Q overestimation at each evaluation
    seeds: list[int]


# ------------------------------------------------------------------ compute: results.json
def _read_run(run_dir: Path) -> tuple[list[float], list[float], float, float, list[float]]:
    step, curve, q_curve = CURVE_COLUMNS
    rows = numeric_rows(run_dir / "metrics.csv", CURVE_COLUMNS)
    rows = [r for r in rows if r[curve] is not None]
    if any(r[step] is None for r in rows):
        raise DQNLMError(f"{run_dir / 'metrics.csv'} has an evaluation row without a step")
    q_over = [np.nan if r[q_curve] is None else r[q_curve] for r in rows]
    final, final_q = _read_eval(run_dir / "eval.json")
    return [r[step] for r in rows], [r[curve] for r in rows], final, final_q, q_over


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past 1e308
        return False


def _read_eval(path: Path) -> tuple[float, ...]:
    """The final evaluation's ``FINAL_KEYS``, as finite numbers."""
    try:
        final = loads_finite(path.read_text())
        values = [final[key] for key in FINAL_KEYS]
        if not all(_is_number(v) for v in values):
            raise ValueError(f"{' and '.join(FINAL_KEYS)} must be numbers, got {values}")
    except OSError as e:
        raise DQNLMError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DQNLMError(f"{path} is not a valid evaluation record: {e}") from None
    return tuple(float(v) for v in values)


def collect(out: Path, spec: dict) -> dict[str, dict[str, Cell]]:
    cells: dict[str, dict[str, Cell]] = {}
    runs: dict[tuple[str, str], list[Run]] = {}
    for run in runs_of(spec):
        if is_finished(run.directory(out)):
            runs.setdefault((run.env, run.variant), []).append(run)
    for (env, variant), group in runs.items():
        read = [_read_run(r.directory(out)) for r in group]
        length = min(len(steps) for steps, *_ in read)
        cells.setdefault(env, {})[variant] = Cell(
            steps=np.array(read[0][0][:length]),
            curves=np.array([returns[:length] for _, returns, *_ in read]),
            final=np.array([r[2] for r in read]),
            q_over=np.array([r[3] for r in read]),
            q_curves=np.array([r[4][:length] for r in read]),
            seeds=[r.seed for r in group],
        )
    return cells


def random_return(env_id: str, episodes: int = 20, seed: int = 0) -> float:
    """Mean return of a uniformly random policy: the ``low`` end of normalised scores."""
    import gymnasium as gym

    from dqnlm.control.envs import run_episodes

    space = gym.make(env_id).action_space
    space.seed(seed)
    returns, _, _ = run_episodes(env_id, lambda obs: [space.sample() for _ in obs], episodes, seed)
    return float(returns.mean())


def bounds(spec: dict, cells: dict[str, dict[str, Cell]]) -> dict[str, tuple[float, float]]:
    result = {}
    for env, info in spec["envs"].items():
        low = info["low"] if info["low"] is not None else random_return(info["env_id"])
        high = info["high"]
        if high is None:  # no threshold given: the best final return seen
            high = max((c.final.max() for c in cells.get(env, {}).values()), default=low + 1)
        if high <= low:
            raise DQNLMError(
                f"{env}: the normalising range is empty (low {low:.1f}, high {high:.1f}); "
                "set low and high in the sweep file"
            )
        result[env] = (float(low), float(high))
    return result


def auc(cell: Cell, low: float, high: float) -> np.ndarray:
    """Per seed: the mean normalised return over the run (trapezoid over env steps)."""
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


def _interval(interval: stats.Interval) -> dict[str, float]:
    return {"point": interval.point, "lower": interval.lower, "upper": interval.upper}


def _ci(values: np.ndarray, aggregate: stats.Aggregate, reps: int = REPS) -> dict[str, float]:
    """``aggregate`` of per-seed ``values`` with its 95% bootstrap CI."""
    return _interval(stats.stratified_bootstrap_ci({"v": values[:, None]}, aggregate, reps)["v"])


def _band(steps: np.ndarray, curves: np.ndarray) -> list[list[float]] | None:
    """[step, IQM, lower, upper] per evaluation, IQM over seeds with its 95% CI; None where
    a value is missing (that curve is not drawn)."""
    if not np.isfinite(curves).all():
        return None
    points = [_ci(column, stats.iqm, BAND_REPS) for column in curves.T]
    return [[x, p["point"], p["lower"], p["upper"]] for x, p in zip(steps.tolist(), points)]


def _cell_results(cell: Cell, low: float, high: float, threshold: float | None) -> dict:
    area = auc(cell, low, high)
    reached, fell = collapses(cell, threshold, low)
    return {
        "seeds": cell.seeds,
        "final_return": cell.final.tolist(),
        "auc": area.tolist(),
        "q_overestimation": cell.q_over.tolist(),
        "final_iqm": _ci(cell.final, stats.iqm),
        "final_mean": _ci(cell.final, stats.mean),
        "auc_iqm": _ci(area, stats.iqm),
        "reached": reached,
        "collapsed": fell,
        "return_curve": _band(cell.steps, cell.curves),
        "q_curve": _band(cell.steps, cell.q_curves),
    }


def _across(results: dict, envs: list[str]) -> dict[str, dict]:
    """Per variant: normalised aggregates over ``envs`` (where every variant has runs),
    from the first ``n`` runs of each cell, so every variant weighs each env alike."""
    variants, baseline, cells = results["variants"], results["baseline"], results["envs"]
    n = min(len(cells[e][v]["final_return"]) for e in envs for v in variants)

    def scores(key: str, v: str) -> np.ndarray:  # runs x envs
        return np.array([cells[e][v][key][:n] for e in envs]).T

    lows, highs = zip(*(results["bounds"][e] for e in envs))
    normalized = {v: stats.normalize(scores("final_return", v), lows, highs) for v in variants}
    areas = {v: scores("auc", v) for v in variants}
    final_iqm = stats.stratified_bootstrap_ci(normalized, stats.iqm, REPS)
    final_mean = stats.stratified_bootstrap_ci(normalized, stats.mean, REPS)
    area_iqm = stats.stratified_bootstrap_ci(areas, stats.iqm, REPS)
    profiles = stats.performance_profile(normalized, TAUS, reps=BAND_REPS)
    across = {}
    for v in variants:
        improvement = None
        if v != baseline:
            improvement = _interval(
                stats.probability_of_improvement_ci(normalized[v], normalized[baseline], REPS)
            )
        p = profiles[v]
        across[v] = {
            "envs": envs,
            "runs": n,
            "final_iqm": _interval(final_iqm[v]),
            "final_mean": _interval(final_mean[v]),
            "auc_iqm": _interval(area_iqm[v]),
            f"p_improvement_over_{baseline}": improvement,
            "profile": np.stack([TAUS, p.values, p.lower, p.upper], axis=1).tolist(),
        }
    return across


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
        "env_ids": {e: spec["envs"][e]["env_id"] for e in envs},
        "bounds": {e: list(edges[e]) for e in envs},
        "envs": {
            e: {
                v: _cell_results(cells[e][v], *edges[e], spec["envs"][e]["threshold"])
                for v in variants
                if v in cells[e]
            }
            for e in envs
        },
    }
    complete = [e for e in envs if all(v in cells[e] for v in variants)]
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
    curves = figures / "learning_curves.png"
    _plot_curves(results, "return_curve", "evaluation return (IQM, 95% CI)", curves)
    q_curves = figures / "q_overestimation.png"
    _plot_curves(results, "q_curve", "Q(start) - discounted return (IQM)", q_curves, symlog=True)
    lines = _overview(out, results) + _env_table(results)
    if results["across"]:
        lines += _across_section(results, figures)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def write_report(out: Path, baseline: str | None = None, trust_code: bool = False) -> Path:
    """Aggregate the finished runs under ``out`` into ``out/results.json``, then render
    ``out/report.md`` and ``out/figures/`` from it."""
    return render_report(out, compute_results(out, baseline, trust_code))


def _fmt(interval: dict[str, float], digits: int = 1) -> str:
    point, lower, upper = (interval[k] for k in ("point", "lower", "upper"))
    return f"{point:.{digits}f} [{lower:.{digits}f}, {upper:.{digits}f}]"


def _overview(out: Path, results: dict) -> list[str]:
    lines = ["# Sweep report", "", f"Directory `{out}`: {results['seeds_planned']} seeds planned."]
    lines += ["", "Normalised score = (return - low) / (high - low):", ""]
    for env, (low, high) in results["bounds"].items():
        lines.append(f"* {env} (`{results['env_ids'][env]}`): low {low:.1f}, high {high:.1f}")
    return lines + [
        "",
        "## Learning curves",
        "",
        "![learning curves](figures/learning_curves.png)",
        "",
        "## Q overestimation during training",
        "",
        "Greedy Q of the evaluation episodes' start states minus the discounted return they "
        "earned (> 0: overestimation).",
        "",
        "![Q overestimation](figures/q_overestimation.png)",
        "",
    ]


def _env_table(results: dict) -> list[str]:
    lines = [
        "## Per environment",
        "",
        "| env | variant | runs | final IQM [95% CI] | final mean [95% CI] | AUC IQM [95% CI] "
        "| Q overestimation (median) | collapsed / reached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env, cells in results["envs"].items():
        for variant in results["variants"]:
            c = cells.get(variant)
            if c is None:
                lines.append(f"| {env} | {variant} | 0 | | | | | |")
                continue
            lines.append(
                f"| {env} | {variant} | {len(c['final_return'])} | {_fmt(c['final_iqm'])} "
                f"| {_fmt(c['final_mean'])} | {_fmt(c['auc_iqm'], 2)} "
                f"| {np.median(c['q_overestimation']):.2f} | {c['collapsed']} / {c['reached']} |"
            )
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
    lines = [
        "",
        f"## Across environments ({', '.join(first['envs'])}; {first['runs']} runs each)",
        "",
        "| variant | final IQM [95% CI] | final mean [95% CI] | AUC IQM [95% CI] "
        f"| P(variant > {baseline}) [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for v, a in across.items():
        poi = _fmt(a[key], 2) if v in improvement else "-"
        lines.append(
            f"| {v} | {_fmt(a['final_iqm'], 2)} | {_fmt(a['final_mean'], 2)} "
            f"| {_fmt(a['auc_iqm'], 2)} | {poi} |"
        )
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_curves(results: dict, key: str, ylabel: str, path: Path, symlog: bool = False) -> None:
    """One panel per environment: each variant's ``key`` band, [step, IQM, lower, upper] rows
    (``symlog``: where a panel's values pass 100 in size, a y axis linear near 0 and
    logarithmic beyond, so diverging runs and stable ones show on one axis)."""
    envs = results["envs"]
    fig, axes = _pyplot().subplots(
        1, len(envs), figsize=(5.2 * len(envs), 3.8), dpi=110, squeeze=False
    )
    for ax, (env, cells) in zip(axes[0], envs.items()):
        largest = 0.0
        for i, variant in enumerate(results["variants"]):
            band = cells.get(variant, {}).get(key)
            if band is None:
                continue
            steps, point, lower, upper = np.array(band).T
            ax.plot(steps, point, color=f"C{i}", label=variant)
            ax.fill_between(steps, lower, upper, color=f"C{i}", alpha=0.15)
            largest = max(largest, np.abs(point).max())
        # parse_math off: an env_id read from results.json is shown as it is, never parsed
        ax.set_title(results["env_ids"][env], parse_math=False)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
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
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    save_figure(fig, path)


def _plot_intervals(intervals: dict[str, dict], xlabel: str, path: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(6, 0.45 * len(intervals) + 1.2), dpi=110)
    for y, iv in enumerate(intervals.values()):
        ax.plot([iv["lower"], iv["upper"]], [y, y], color=f"C{y}", linewidth=6, alpha=0.5)
        ax.plot([iv["point"]], [y], "|", color="black", markersize=14)
    ax.set_yticks(range(len(intervals)), list(intervals))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_profiles(profiles: dict[str, list], path: Path) -> None:
    """Each variant's performance profile, [tau, fraction, lower, upper] rows."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=110)
    for i, (name, rows) in enumerate(profiles.items()):
        taus, values, lower, upper = np.array(rows).T
        ax.plot(taus, values, color=f"C{i}", label=name)
        ax.fill_between(taus, lower, upper, color=f"C{i}", alpha=0.12)
    ax.set_xlabel("normalised final score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


# ------------------------------------------- results.json: the shape that render relies on
@dataclass(frozen=True)
class _Maybe:
    schema: Any  # a value of this schema, or null


@dataclass(frozen=True)
class _Names:
    schema: Any  # an object from env or variant names to values of this schema


INTERVAL = {"point": float, "lower": float, "upper": float}
BAND = [(float, float, float, float)]  # rows of [x, IQM or fraction, lower, upper]
CELL = {
    "seeds": [int],
    "final_return": [float],
    "auc": [float],
    "q_overestimation": [float],
    "final_iqm": INTERVAL,
    "final_mean": INTERVAL,
    "auc_iqm": INTERVAL,
    "reached": int,
    "collapsed": int,
    "return_curve": _Maybe(BAND),
    "q_curve": _Maybe(BAND),
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
    "env_ids": _Names(str),
    "bounds": _Names((float, float)),
    "envs": _Names(_Names(CELL)),
    "across": _Names(ACROSS),
}
"""What render_report reads. A schema is float (a number), int (a count), str, NAME,
[schema] (a non-empty list), (schema, ...) (a list of that many), {key: schema} (an object
with those keys, maybe more), _Names or _Maybe."""
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
    elif isinstance(schema, dict | _Names):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object")
        if isinstance(schema, _Names):
            for name, item in value.items():
                _fit(name, NAME, f"{where} key {str(name)[:40]!r}")
                _fit(item, schema.schema, f"{where}.{name}")
        else:
            for key, item_schema in schema.items():
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
    if not envs or list(results["env_ids"]) != envs or list(results["bounds"]) != envs:
        raise ValueError("envs, env_ids and bounds must name the same environments")
    if any(set(cells) - set(variants) for cells in results["envs"].values()):
        raise ValueError("envs hold a variant that variants does not list")
    if across and list(across) != variants:
        raise ValueError("across must be empty or hold every variant")
    key = f"p_improvement_over_{results['baseline']}"
    for variant, entry in across.items():
        _fit(entry.get(key, False), _Maybe(INTERVAL), f"results.across.{variant}.{key}")
