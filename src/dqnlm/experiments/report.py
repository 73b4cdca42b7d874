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
holds the per-seed numbers behind every table, so they can be re-analysed elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dqnlm.core.checkpoint import atomic_write_text, loads_finite
from dqnlm.errors import DQNLMError
from dqnlm.experiments import stats
from dqnlm.experiments.sweep import SPEC, Run, is_finished, read_spec, runs_of
from dqnlm.metrics import numeric_rows, save_figure

REPS = 2000  # bootstrap resamples


@dataclass
class Cell:
    """The finished runs of one environment x variant."""

    steps: np.ndarray  # evaluation steps (env steps)
    curves: np.ndarray  # seeds x steps: evaluation returns
    final: np.ndarray  # seeds: final evaluation return (test seeds)
    q_over: np.ndarray  # seeds: Q overestimation at the final evaluation
    q_curves: np.ndarray  # seeds x steps: Q overestimation at each evaluation
    seeds: list[int]


def _read_run(run_dir: Path) -> tuple[list[float], list[float], float, float, list[float]]:
    columns = ("step", "eval_return", "q_overestimation")
    rows = numeric_rows(run_dir / "metrics.csv", columns)
    rows = [r for r in rows if r["eval_return"] is not None]
    if any(r["step"] is None for r in rows):
        raise DQNLMError(f"{run_dir / 'metrics.csv'} has an evaluation row without a step")
    steps = [r["step"] for r in rows]
    returns = [r["eval_return"] for r in rows]
    q_over = [np.nan if r["q_overestimation"] is None else r["q_overestimation"] for r in rows]
    final = _read_eval(run_dir / "eval.json")
    return steps, returns, final["mean_return"], final["q_overestimation"], q_over


def _read_eval(path: Path) -> dict[str, float]:
    """The final evaluation's mean return and Q overestimation, as finite numbers."""
    try:
        final = loads_finite(path.read_text())
        values = {key: final[key] for key in ("mean_return", "q_overestimation")}
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()
        ):
            raise ValueError(f"mean_return and q_overestimation must be numbers, got {values}")
        values = {k: float(v) for k, v in values.items()}  # an int past 1e308 overflows
    except OSError as e:
        raise DQNLMError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        raise DQNLMError(f"{path} is not a valid evaluation record: {e}") from None
    return values


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


def _fmt(interval: stats.Interval, digits: int = 1) -> str:
    return f"{interval.point:.{digits}f} [{interval.lower:.{digits}f}, {interval.upper:.{digits}f}]"


def _plot_curves(
    cells, spec, variants, path: Path, field: str, ylabel: str, symlog: bool = False
) -> None:
    """One panel per environment: the IQM over seeds of ``field`` with a 95% CI band
    (``symlog``: where a panel's values pass 100 in size, a y axis linear near 0 and
    logarithmic beyond, so diverging runs and stable ones show on one axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = [e for e in spec["envs"] if e in cells]
    fig, axes = plt.subplots(1, len(envs), figsize=(5.2 * len(envs), 3.8), dpi=110, squeeze=False)
    for ax, env in zip(axes[0], envs):
        largest = 0.0
        for i, variant in enumerate(variants):
            cell = cells[env].get(variant)
            if cell is None:
                continue
            curves = getattr(cell, field)
            if not np.isfinite(curves).all():
                continue
            points = [
                stats.stratified_bootstrap_ci({"v": curves[:, j : j + 1]}, stats.iqm, 500)["v"]
                for j in range(len(cell.steps))
            ]
            ax.plot(cell.steps, [p.point for p in points], color=f"C{i}", label=variant)
            ax.fill_between(
                cell.steps,
                [p.lower for p in points],
                [p.upper for p in points],
                color=f"C{i}",
                alpha=0.15,
            )
            largest = max(largest, max(abs(p.point) for p in points))
        ax.set_title(spec["envs"][env]["env_id"])
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


def _plot_intervals(intervals: dict[str, stats.Interval], xlabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(intervals)
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2), dpi=110)
    for y, name in enumerate(names):
        iv = intervals[name]
        ax.plot([iv.lower, iv.upper], [y, y], color=f"C{y}", linewidth=6, alpha=0.5)
        ax.plot([iv.point], [y], "|", color="black", markersize=14)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_profiles(normalized: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.linspace(0.0, 1.2, 61)
    profiles = stats.performance_profile(normalized, taus, reps=500)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for i, (name, profile) in enumerate(profiles.items()):
        ax.plot(taus, profile.values, color=f"C{i}", label=name)
        ax.fill_between(taus, profile.lower, profile.upper, color=f"C{i}", alpha=0.12)
    ax.set_xlabel("normalised final score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def write_report(out: Path, baseline: str | None = None, trust_code: bool = False) -> Path:
    """Aggregate the finished runs under ``out`` into ``out/report.md`` and ``out/figures/``."""
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
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    envs = [e for e in spec["envs"] if e in cells]
    # envs where every variant has runs enter the cross-environment aggregates
    complete = [e for e in envs if all(v in cells[e] for v in variants)]

    lines = ["# Sweep report", "", f"Directory `{out}`: {len(spec['seeds'])} seeds planned."]
    lines += ["", "Normalised score = (return - low) / (high - low):", ""]
    for env in envs:
        low, high = edges[env]
        lines.append(f"* {env} (`{spec['envs'][env]['env_id']}`): low {low:.1f}, high {high:.1f}")

    _plot_curves(
        cells,
        spec,
        variants,
        figures / "learning_curves.png",
        "curves",
        "evaluation return (IQM, 95% CI)",
    )
    _plot_curves(
        cells,
        spec,
        variants,
        figures / "q_overestimation.png",
        "q_curves",
        "Q(start) - discounted return (IQM)",
        symlog=True,
    )
    lines += ["", "## Learning curves", "", "![learning curves](figures/learning_curves.png)", ""]
    lines += [
        "## Q overestimation during training",
        "",
        "Greedy Q of the evaluation episodes' start states minus the discounted return they "
        "earned (> 0: overestimation).",
        "",
        "![Q overestimation](figures/q_overestimation.png)",
        "",
    ]

    results: dict = {"bounds": {e: list(edges[e]) for e in envs}, "envs": {}, "across": {}}
    lines += ["## Per environment", ""]
    header = (
        "| env | variant | runs | final IQM [95% CI] | final mean [95% CI] | AUC IQM [95% CI] "
        "| Q overestimation (median) | collapsed / reached |"
    )
    lines += [header, "|---|---|---|---|---|---|---|---|"]
    areas = {}  # (env, variant) -> per-seed AUC, reused by the cross-environment tables
    for env in envs:
        low, high = edges[env]
        for variant in variants:
            cell = cells[env].get(variant)
            if cell is None:
                lines.append(f"| {env} | {variant} | 0 | | | | | |")
                continue
            final = cell.final[:, None]
            iqm = stats.stratified_bootstrap_ci({"v": final}, stats.iqm, REPS)["v"]
            mean = stats.stratified_bootstrap_ci({"v": final}, stats.mean, REPS)["v"]
            areas[env, variant] = auc(cell, low, high)
            area = stats.stratified_bootstrap_ci(
                {"v": areas[env, variant][:, None]}, stats.iqm, REPS
            )
            reached, fell = collapses(cell, spec["envs"][env]["threshold"], low)
            results["envs"].setdefault(env, {})[variant] = {
                "seeds": cell.seeds,
                "final_return": cell.final.tolist(),
                "auc": areas[env, variant].tolist(),
                "q_overestimation": cell.q_over.tolist(),
                "final_iqm": _interval(iqm),
                "final_mean": _interval(mean),
                "auc_iqm": _interval(area["v"]),
                "reached": reached,
                "collapsed": fell,
            }
            lines.append(
                f"| {env} | {variant} | {len(cell.final)} | {_fmt(iqm)} | {_fmt(mean)} "
                f"| {_fmt(area['v'], 2)} | {np.median(cell.q_over):.2f} | {fell} / {reached} |"
            )

    if complete:
        n = min(len(cells[e][v].final) for e in complete for v in variants)
        lows, highs = ([edges[e][k] for e in complete] for k in (0, 1))
        normalized = {
            v: stats.normalize(
                np.stack([cells[e][v].final[:n] for e in complete], axis=1), lows, highs
            )
            for v in variants
        }
        env_areas = {v: np.stack([areas[e, v][:n] for e in complete], axis=1) for v in variants}
        final_iqm = stats.stratified_bootstrap_ci(normalized, stats.iqm, REPS)
        final_mean = stats.stratified_bootstrap_ci(normalized, stats.mean, REPS)
        area_iqm = stats.stratified_bootstrap_ci(env_areas, stats.iqm, REPS)
        _plot_intervals(
            final_iqm, "normalised final score, IQM (95% CI)", figures / "final_iqm.png"
        )
        _plot_intervals(area_iqm, "normalised AUC, IQM (95% CI)", figures / "auc_iqm.png")
        _plot_profiles(normalized, figures / "performance_profiles.png")
        improvement = {
            v: stats.probability_of_improvement_ci(normalized[v], normalized[baseline], REPS)
            for v in variants
            if v != baseline
        }
        if improvement:
            _plot_intervals(
                improvement, f"P(variant > {baseline}) (95% CI)", figures / "improvement.png"
            )
        lines += [
            "",
            f"## Across environments ({', '.join(complete)}; {n} runs each)",
            "",
            "| variant | final IQM [95% CI] | final mean [95% CI] | AUC IQM [95% CI] "
            f"| P(variant > {baseline}) [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for v in variants:
            results["across"][v] = {
                "envs": complete,
                "final_iqm": _interval(final_iqm[v]),
                "final_mean": _interval(final_mean[v]),
                "auc_iqm": _interval(area_iqm[v]),
                f"p_improvement_over_{baseline}": (
                    _interval(improvement[v]) if v in improvement else None
                ),
            }
            poi = _fmt(improvement[v], 2) if v in improvement else "-"
            lines.append(
                f"| {v} | {_fmt(final_iqm[v], 2)} | {_fmt(final_mean[v], 2)} "
                f"| {_fmt(area_iqm[v], 2)} | {poi} |"
            )
        lines += [
            "",
            "![final IQM](figures/final_iqm.png) ![AUC IQM](figures/auc_iqm.png)",
            "",
            "![performance profiles](figures/performance_profiles.png)",
        ]
        if improvement:
            lines += ["", "![probability of improvement](figures/improvement.png)"]
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
