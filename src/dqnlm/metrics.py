"""Run-directory metrics shared by every trainer: a CSV file mirrored to TensorBoard."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from dqnlm.core.checkpoint import atomic_write_text


class MetricsLogger:
    """Appends rows to ``metrics.csv`` and mirrors them to TensorBoard (``tb/``)."""

    def __init__(
        self,
        run_dir: Path,
        columns: Sequence[str],
        tensorboard: bool = True,
        resume_step: int | None = None,
        tb_prefix: str = "dqn",
    ):
        self.columns, self.tb_prefix = tuple(columns), tb_prefix
        self.path = Path(run_dir) / "metrics.csv"
        if resume_step is not None and self.path.exists():
            # drop rows logged after the checkpoint we resume from: they will be logged again
            rows = [r for r in read_metrics(self.path) if int(float(r["step"])) <= resume_step]
            lines = [",".join(self.columns)] + [
                ",".join(r.get(c, "") for c in self.columns) for r in rows
            ]
            atomic_write_text(self.path, "\n".join(lines) + "\n")
        new = not self.path.exists()
        self.file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.columns)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, step: int, **values: float | None) -> None:
        row = [step] + [_fmt(values.get(c)) for c in self.columns[1:]]
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for key, value in values.items():
                if value is not None and key != "time_s":
                    self.tb.add_scalar(f"{self.tb_prefix}/{key}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_figure(fig, out: Path) -> Path:
    """Write a matplotlib figure atomically (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
