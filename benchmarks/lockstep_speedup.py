"""Many seeds in one process (``dqnlm train --seeds``) against the same seeds run one
after another as separate processes: whole-process wall-clock and final returns.

    .venv/bin/python benchmarks/lockstep_speedup.py --preset cartpole --seeds 500-509
    .venv/bin/python benchmarks/lockstep_speedup.py --preset minatar-breakout --seeds 0-4 \\
        --args "--total-steps 20000 --set eval_interval=5000"

Every process gets one torch thread (the CLI default) and OMP/MKL_NUM_THREADS=1. The
lockstep run goes first, then each seed alone; ``--threads N`` gives the lockstep run N
torch threads as well (``--threads`` of ``dqnlm train``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dqnlm.seeding import parse_seeds


def timed(command: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def final(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--seeds", default="500-509")
    p.add_argument("--args", default="", help="more `dqnlm train` arguments for every run")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the lockstep run")
    p.add_argument("--skip-separate", action="store_true", help="time the lockstep run only")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    seeds = parse_seeds(args.seeds)
    train = [sys.executable, "-m", "dqnlm", "train", "--preset", args.preset, "--no-progress"]
    train += shlex.split(args.args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lockstep"
        together = timed([*train, "--seeds", args.seeds, "--run-dir", str(root),
                          "--threads", str(args.threads)])  # fmt: skip
        rows = [{"seed": s, "lockstep": final(root / f"s{s}")} for s in seeds]
        separate = None
        if not args.skip_separate:
            separate = 0.0
            for row in rows:
                run = Path(tmp) / f"alone-{row['seed']}"
                row["alone_s"] = timed([*train, "--seed", str(row["seed"]), "--run-dir", str(run)])
                row["alone"] = final(run)
                separate += row["alone_s"]
    print(f"{args.preset}, seeds {args.seeds} {args.args}")
    print("| seed | lockstep final | lockstep steps | alone final | alone steps | alone wall s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ours, alone = row["lockstep"], row.get("alone")
        cells = [f"{ours['mean_return']:.1f}", f"{ours['step']:,}"]
        cells += (
            [f"{alone['mean_return']:.1f}", f"{alone['step']:,}", f"{row['alone_s']:.1f}"]
            if alone
            else ["-"] * 3
        )
        print(f"| {row['seed']} | " + " | ".join(cells) + " |")
    finals = [r["lockstep"]["mean_return"] for r in rows]
    print(f"\nlockstep: {together:.1f} s whole-process for {len(seeds)} seeds "
          f"(threads {args.threads}); median final {statistics.median(finals):.1f}")  # fmt: skip
    if separate is not None:
        print(f"separate: {separate:.1f} s in all; speed-up {separate / together:.2f}x")
    if args.json:
        summary = {"lockstep_s": together, "separate_s": separate, "rows": rows, "args": vars(args)}
        args.json.write_text(json.dumps(summary, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
