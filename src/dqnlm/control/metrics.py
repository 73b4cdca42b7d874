"""Control run outputs: the metrics columns and learning-curve plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dqnlm.metrics import numeric_rows, save_figure

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


def _series(rows: list[dict[str, float | None]], column: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        (r["step"], r[column]) for r in rows if r[column] is not None and r["step"] is not None
    ]
    return (
        (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
        if pairs
        else (np.array([]), np.array([]))
    )


def plot_runs(run_dirs: list[Path], out: Path, title: str | None = None) -> Path:
    """Overlay learning curves: recent training return (thin) and evaluation return (markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("step", "episode_return", "eval_return")
    runs = [numeric_rows(Path(run_dir) / "metrics.csv", columns) for run_dir in run_dirs]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, (run_dir, rows) in enumerate(zip(run_dirs, runs)):
        color = f"C{i % 10}"
        name = Path(run_dir).name
        steps, returns = _series(rows, "episode_return")
        if len(steps):
            ax.plot(steps, returns, color=color, alpha=0.45, linewidth=1, label=f"{name} (train)")
        steps, returns = _series(rows, "eval_return")
        if len(steps):
            ax.plot(steps, returns, "o-", color=color, markersize=3, label=f"{name} (eval)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or "dqnlm learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, out)
