"""LM training in one process and data-parallel in N (``dqnlm lm train --processes N``),
side by side on the same presets, seeds and cores.

For each preset and seed, the same run (``--rounds`` rounds, no final evaluation) is
trained in each setting, one after another on an otherwise idle machine:

* ``1x<cores>``: one process with every core as torch threads (today's default);
* ``1x1``: one process, one thread (the unit that ideal scaling multiplies);
* ``Nx<cores/N>``: N processes sharing the cores (``--processes N``).

Reported per setting: whole-command wall-clock (start-up, model loading and process
group included), the median seconds per round after the first, generated tokens per
second, and the mean training reward of the last rounds (the processes must learn as one
process does; they sample different texts, so rewards agree statistically, not exactly).
Speed-ups are ratios of median round times; ideal is N against ``1x1``.

From the repository root::

    .venv/bin/python benchmarks/lm_processes.py --presets sentiment --seeds 31 --rounds 15 \\
        --out /tmp/bench_processes

Writes ``summary.json`` and ``summary.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def settings(processes: int, cores: int) -> list[tuple[str, int, int]]:
    """(name, processes, threads per process)."""
    return [
        (f"1x{cores}", 1, cores),
        ("1x1", 1, 1),
        (f"{processes}x{max(1, cores // processes)}", processes, max(1, cores // processes)),
    ]


def train(preset: str, seed: int, rounds: int, processes: int, threads: int, run_dir: Path):
    args = [sys.executable, "-m", "dqnlm", "lm", "train", "--preset", preset, "--seed", str(seed)]
    args += ["--rounds", str(rounds), "--set", "eval_prompts=0", "--run-dir", str(run_dir)]
    args += ["--threads", str(threads), "--no-progress", "--no-tensorboard"]
    if processes > 1:
        args += ["--processes", str(processes)]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    times = [float(r["time_s"]) for r in rows]
    steady = [b - a for a, b in zip(times, times[1:])]
    tail = rows[-5:]
    return {
        "wall_s": wall,
        "round_s": statistics.median(steady),
        "first_round_s": times[0],
        "tokens_per_s": float(rows[-1]["tokens"]) / times[-1],
        "reward_last5": statistics.fmean(float(r["reward"]) for r in tail),
        "kl_last5": statistics.fmean(float(r["kl"]) for r in tail),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["sentiment"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[31])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    results: dict = {}
    for preset in args.presets:
        for seed in args.seeds:
            for name, processes, threads in settings(args.processes, args.cores):
                run_dir = args.out / f"{preset}-s{seed}-{name}"
                result = train(preset, seed, args.rounds, processes, threads, run_dir)
                results.setdefault(preset, {}).setdefault(name, {})[seed] = result
                print(f"{preset} seed {seed} {name}: {json.dumps(result)}", flush=True)
    summary = {"command": " ".join(sys.argv), "cores": args.cores, "results": results}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "summary.md").write_text(render(summary, args.processes))
    print(render(summary, args.processes))


def render(summary: dict, processes: int) -> str:
    lines = []
    for preset, by_setting in summary["results"].items():
        names = list(by_setting)
        median = {
            name: {
                k: statistics.median(r[k] for r in runs.values()) for k in next(iter(runs.values()))
            }
            for name, runs in by_setting.items()
        }
        lines += [
            f"### {preset} (medians over seeds {', '.join(map(str, next(iter(by_setting.values()))))})",
            "",
            "| processes x threads | wall-clock (s) | s/round | tokens/s | reward (last 5) | KL (last 5) |",
            "|---|---|---|---|---|---|",
        ]
        for name in names:
            m = median[name]
            lines.append(
                f"| {name} | {m['wall_s']:.1f} | {m['round_s']:.2f} | {m['tokens_per_s']:.0f} | "
                f"{m['reward_last5']:.3f} | {m['kl_last5']:.2f} |"
            )
        whole, single, parallel = (median[n]["round_s"] for n in names)
        lines += [
            "",
            f"- {names[2]} against {names[0]} (same cores): {whole / parallel:.2f}x per round",
            f"- {names[2]} against 1x1: {single / parallel:.2f}x per round, "
            f"{single / parallel / processes:.0%} of ideal ({processes}x)",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
