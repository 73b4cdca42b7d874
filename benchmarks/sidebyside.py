"""What the side-by-side benchmarks share: the machine and versions they record, the
environment of each timed process (one thread), an untimed warm-up, the folder the runs
go to, and how a report is published."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def child_env() -> dict[str, str]:
    """The environment of a timed process: one BLAS/OpenMP thread."""
    return {**os.environ, **THREAD_ENV}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(distributions: tuple[str, ...]) -> dict[str, str]:
    """Python's and each distribution's version, and the git commit (with a note when the
    tracked files differ from it)."""
    out = {"python": platform.python_version()}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        root = Path(__file__).resolve().parent
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        out["git"] = commit + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def provenance(distributions: tuple[str, ...]) -> dict:
    """The command as typed, the date, the machine and the versions a report starts with."""
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    return {
        "command": shlex.join([str(exe), *sys.argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "versions": versions(distributions),
    }


def warm_up(modules: str) -> None:
    """Imports ``modules`` once, untimed, so the first timed process does not pay for a
    cold file cache."""
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=child_env(), check=False)


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """--out, --json and --keep: where a report, its raw results and the runs go."""
    p.add_argument("--out", type=Path, metavar="FILE.md", help="also write the report here")
    p.add_argument("--json", type=Path, metavar="FILE", help="dump the raw per-seed results here")
    p.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="put run directories and process logs in DIR and keep them "
        "(default: a temporary directory, deleted at the end)",
    )


def runs_folder(
    parser: argparse.ArgumentParser, keep: Path | None, seeds, sides, prefix: str
) -> Path:
    """``keep`` (refused if it already holds one of these runs), else a new temporary folder."""
    if keep is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    keep.mkdir(parents=True, exist_ok=True)
    taken = [
        keep / f"{side}-s{seed}"
        for seed in seeds
        for side in sides
        if (keep / f"{side}-s{seed}").exists()
    ]
    if taken:
        parser.error(f"--keep {keep} already holds {taken[0]}; choose another directory")
    return keep


def publish(
    out: Path | None, raw: Path | None, head: str, report: str, meta: dict, results, summary
) -> int:
    """Print the report, write it with its header to ``out`` and the raw results to ``raw``;
    the exit status: 1 when any run failed."""
    print(report, end="")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(head + report)
        print(f"report written to {out}", file=sys.stderr)
    if raw:
        raw.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": meta, "results": results, "summary": summary}
        raw.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"raw results written to {raw}", file=sys.stderr)
    failed = sum("error" in run for r in results for run in r["runs"].values())
    if failed:
        print(
            f"{failed} run(s) failed; see the table and, with --keep, their logs", file=sys.stderr
        )
    return 1 if failed else 0
