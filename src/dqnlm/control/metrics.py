"""Run-directory outputs: metrics CSV, TensorBoard events and learning-curve plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dqnlm.core.checkpoint import atomic_write_text

COLUMNS = ("step", "time_s", "episode_return", "eval_return", "loss", "mean_q", "epsilon")


class MetricsLogger:
    """Appends rows to ``metrics.csv`` and mirrors them to TensorBoard (``tb/``)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        if resume_step is not None and self.path.exists():
            # drop rows logged after the checkpoint we resume from: they will be logged again
            rows = [r for r in read_metrics(self.path) if int(float(r["step"])) <= resume_step]
            lines = [",".join(COLUMNS)] + [",".join(r[c] for c in COLUMNS) for r in rows]
            atomic_write_text(self.path, "\n".join(lines) + "\n")
        new = not self.path.exists()
        self.file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(COLUMNS)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, step: int, **values: float | None) -> None:
        row = [step] + [_fmt(values.get(c)) for c in COLUMNS[1:]]
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for key, value in values.items():
                if value is not None and key != "time_s":
                    self.tb.add_scalar(f"dqn/{key}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _series(rows: list[dict[str, str]], column: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(float(r["step"]), float(r[column])) for r in rows if r.get(column)]
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

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, run_dir in enumerate(run_dirs):
        rows = read_metrics(Path(run_dir) / "metrics.csv")
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
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
