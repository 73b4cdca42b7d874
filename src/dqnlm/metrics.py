"""Run-directory metrics shared by every trainer: a CSV file mirrored to TensorBoard, and
the figures drawn from it."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dqnlm.core.checkpoint import atomic_write_text
from dqnlm.errors import DQNLMError


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
            steps = numeric_rows(self.path, ["step"])
            rows = [
                row
                for row, s in zip(read_metrics(self.path), steps)
                if s["step"] is not None and s["step"] <= resume_step
            ]
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
    """The rows of a ``metrics.csv`` as strings; an unreadable file is one DQNLMError."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise DQNLMError(f"cannot read {path}: {e.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DQNLMError(f"{path} is not a valid CSV file: {e}") from None


def numeric_rows(path: Path, columns: Sequence[str]) -> list[dict[str, float | None]]:
    """``columns`` of every row of a ``metrics.csv`` as finite floats (None where empty);
    a missing column or a value that is not a finite number is one DQNLMError naming it."""
    rows = read_metrics(path)
    header = rows[0].keys() if rows else _header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DQNLMError(f"{path} has no column {missing[0]!r}; is it a dqnlm metrics file?")
    return [
        {c: _number(row[c], path, line, c) for c in columns} for line, row in enumerate(rows, 2)
    ]


def _header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def _number(text: str | None, path: Path, line: int, column: str) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DQNLMError(f"{path}, line {line}: {column} = {text!r} is not a finite number")
    return value


def series(
    rows: list[dict[str, float | None]], column: str, keep: Callable[[dict], bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``column`` in the ``numeric_rows`` where both are set (and ``keep``)."""
    pairs = [
        (r["step"], r[column])
        for r in rows
        if r["step"] is not None and r[column] is not None and (keep is None or keep(r))
    ]
    steps, values = np.array(pairs, dtype=float).reshape(-1, 2).T
    return steps, values


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: figures go to files, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path, rect: tuple[float, ...] | None = None) -> Path:
    """Lay out a matplotlib figure (``tight_layout`` within ``rect``), write it atomically
    (a temporary file, then a rename) and close it."""
    plt = pyplot()
    out = Path(out)
    problem = None
    if not out.parent.is_dir():
        problem = f"folder {out.parent} does not exist"
    elif out.is_dir():
        problem = "it is a folder"
    if problem:
        plt.close(fig)
        raise DQNLMError(f"cannot write figure {out}: {problem}")
    fig.tight_layout(rect=rect)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
