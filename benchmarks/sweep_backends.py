"""Sweep wall-clock on the local process pool and on Ray, for 1 and 2 workers, side by side.

The same sweep (``--runs`` CartPole runs of ``--steps`` steps each, one seed per run) is
run four times into fresh directories, the backends alternating, and reports:

* wall-clock per backend and worker count, and the speed-up from 1 to 2 workers as a
  fraction of ideal (2x);
* Ray's overhead per run: (Ray wall-clock - local wall-clock) / runs at the same worker
  count, which covers starting the Ray instance, scheduling and result transfer;
* that the two backends gave the same results (metrics rows without wall-clock, eval.json).

From the repository root, on an otherwise idle machine::

    .venv/bin/python benchmarks/sweep_backends.py --runs 8 --steps 5000 --out /tmp/sweep_bench

Writes ``summary.json`` and ``summary.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from dqnlm.experiments.ray_backend import RayOptions
from dqnlm.experiments.sweep import load_sweep, runs_of, sweep

SWEEP = """\
seeds = {runs}
[base]
total_steps = {steps}
learning_starts = 500
eval_interval = {steps}
checkpoint_interval = {steps}
device = "cpu"
eval_episodes = 5
final_eval_episodes = 5
[envs.cartpole]
preset = "cartpole"
threshold = 100
[variants.polyak]
"""


def comparable(out: Path, spec: dict) -> dict:
    found = {}
    for run in runs_of(spec):
        run_dir = run.directory(out)
        rows = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()]
        col = rows[0].index("time_s")
        evaluation = json.loads((run_dir / "eval.json").read_text())
        found[run_dir.name] = (
            [r[:col] + r[col + 1 :] for r in rows],
            {k: v for k, v in evaluation.items() if "second" not in k},
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("runs/sweep_backends"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args.out.mkdir(parents=True, exist_ok=True)
    toml = args.out / "sweep.toml"
    toml.write_text(SWEEP.format(runs=args.runs, steps=args.steps))
    spec = load_sweep(toml)

    wall, outputs = {}, {}
    for workers in (1, 2):
        for backend in ("local", "ray") if workers == 1 else ("ray", "local"):
            out = args.out / f"{backend}-w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            ray = RayOptions() if backend == "ray" else None
            sweep(spec, out, workers=workers, progress=False, ray=ray)
            wall[f"{backend}-w{workers}"] = time.perf_counter() - started
            outputs[f"{backend}-w{workers}"] = comparable(out, spec)
            print(f"{backend:5s} workers={workers}: {wall[f'{backend}-w{workers}']:.1f} s")

    same = all(outputs[k] == outputs["local-w1"] for k in outputs)
    summary = {"runs": args.runs, "steps": args.steps, "wall_s": wall, "identical": same}
    for backend in ("local", "ray"):
        speedup = wall[f"{backend}-w1"] / wall[f"{backend}-w2"]
        summary[f"{backend}_speedup_1_to_2"] = speedup
        summary[f"{backend}_fraction_of_ideal"] = speedup / 2
    for workers in (1, 2):
        extra = wall[f"ray-w{workers}"] - wall[f"local-w{workers}"]
        summary[f"ray_overhead_per_run_s_w{workers}"] = extra / args.runs
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [
        f"{args.runs} CartPole runs of {args.steps} steps; results identical across "
        f"backends and worker counts: {same}",
        "",
        "| backend | 1 worker (s) | 2 workers (s) | speed-up | of ideal | overhead/run, 1 w (s) |",
        "|---|---|---|---|---|---|",
    ]
    for backend in ("local", "ray"):
        overhead = summary["ray_overhead_per_run_s_w1"] if backend == "ray" else 0.0
        lines.append(
            f"| {backend} | {wall[f'{backend}-w1']:.1f} | {wall[f'{backend}-w2']:.1f} | "
            f"{summary[f'{backend}_speedup_1_to_2']:.2f}x | "
            f"{summary[f'{backend}_fraction_of_ideal']:.0%} | {overhead:+.2f} |"
        )
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
