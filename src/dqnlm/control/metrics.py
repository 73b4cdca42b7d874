"""Control run outputs: the metrics columns and learning-curve plots."""

from __future__ import annotations

from pathlib import Path

from dqnlm.metrics import numeric_rows, pyplot, save_figure, series

COLUMNS = (
    "step",
    "time_s",
    "episode_return",
    "eval_return",
    "loss",
    "mean_q",
    "epsilon",
    "q_overestimation",  # greedy Q of the start states minus the discounted return earned
)


def plot_runs(run_dirs: list[Path], out: Path, title: str | None = None) -> Path:
    """Overlay learning curves: recent training return (thin) and evaluation return (markers)."""
    columns = ("step", "episode_return", "eval_return")
    runs = [numeric_rows(Path(run_dir) / "metrics.csv", columns) for run_dir in run_dirs]
    fig, ax = pyplot().subplots(figsize=(7, 4.2), dpi=110)
    for i, (run_dir, rows) in enumerate(zip(run_dirs, runs)):
        color, name = f"C{i % 10}", Path(run_dir).name
        steps, returns = series(rows, "episode_return")
        if len(steps):
            ax.plot(steps, returns, color=color, alpha=0.45, linewidth=1, label=f"{name} (train)")
        steps, returns = series(rows, "eval_return")
        if len(steps):
            ax.plot(steps, returns, "o-", color=color, markersize=3, label=f"{name} (eval)")
    ax.set(xlabel="environment steps", ylabel="episode return")
    ax.set_title(title or "dqnlm learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out)
