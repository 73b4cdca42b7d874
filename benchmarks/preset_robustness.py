"""Summarise a preset-robustness sweep: solve rate, return and time distributions per preset.

    dqnlm sweep --config benchmarks/preset_robustness.toml --out runs/preset-robustness --workers 2
    python benchmarks/preset_robustness.py runs/preset-robustness \
        --out docs/data/preset_robustness.md --json docs/data/preset_robustness.json \
        --figure docs/figures/preset_robustness.png

Each run's final test return (``eval.json``, the 20 test episodes the presets ship with)
is compared with its preset's mark (``dqnlm presets``); time is the run's training
wall-clock (the last ``time_s`` of its ``metrics.csv``), steps the env steps it used.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def collect(sweep_dir: Path) -> dict[str, dict]:
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    results = {}
    for env, info in spec["envs"].items():
        for variant in spec["variants"]:
            rows = []
            for seed in spec["seeds"]:
                run = sweep_dir / "runs" / env / variant / f"s{seed}"
                if not (run / "eval.json").is_file():
                    continue
                final = json.loads((run / "eval.json").read_text())
                with open(run / "metrics.csv", newline="") as f:
                    times = [float(r["time_s"]) for r in csv.DictReader(f) if r["time_s"]]
                rows.append(
                    {
                        "seed": seed,
                        "mean_return": final["mean_return"],
                        "steps": final["step"],
                        "stopped_early": final["stopped_early"],
                        "time_s": times[-1],
                    }
                )
            results[f"{env}/{variant}"] = {"mark": info["threshold"], "runs": rows}
    return results


def _quantiles(values: list[float]) -> str:
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return " / ".join(f"{v:.1f}" for v in q)


def table(results: dict[str, dict]) -> str:
    lines = [
        "| preset | mark | solved | final test return: min / q1 / median / q3 / max "
        "| training time, s: min / median / max | env steps: median | failed seeds (return) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        runs, mark = result["runs"], result["mark"]
        if not runs:
            continue
        returns = [r["mean_return"] for r in runs]
        times = [r["time_s"] for r in runs]
        failed = [f"{r['seed']} ({r['mean_return']:.1f})" for r in runs if r["mean_return"] < mark]
        lines.append(
            f"| {name} | {mark:g} | {len(runs) - len(failed)}/{len(runs)} | {_quantiles(returns)} "
            f"| {min(times):.0f} / {np.median(times):.0f} / {max(times):.0f} "
            f"| {np.median([r['steps'] for r in runs]):,.0f} | {', '.join(failed) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def figure(results: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in results.items() if r["runs"]]
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.5), squeeze=False)
    for i, name in enumerate(names):
        runs, mark = results[name]["runs"], results[name]["mark"]
        returns = np.array([r["mean_return"] for r in runs])
        times = np.array([r["time_s"] for r in runs])
        solved = returns >= mark
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(runs))
        ax = axes[0, i]
        ax.scatter(jitter[solved], returns[solved], s=14, c="tab:blue", label="solved")
        ax.scatter(jitter[~solved], returns[~solved], s=14, c="tab:red", label="missed")
        ax.axhline(mark, color="grey", ls="--", lw=1)
        ax.set_xticks([])
        ax.set_title(f"{name}\n{solved.sum()}/{len(runs)} reach {mark:g}", fontsize=9)
        if i == 0:
            ax.set_ylabel("final test return (20 episodes)")
        ax = axes[1, i]
        ax.hist(times, bins=12, color="tab:grey")
        ax.set_xlabel("training time (s)")
        if i == 0:
            ax.set_ylabel("runs")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="markdown table")
    parser.add_argument("--json", type=Path, help="per-seed results")
    parser.add_argument("--figure", type=Path, help="PNG: returns and times per preset")
    args = parser.parse_args()
    results = collect(args.sweep_dir)
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.figure:
        figure(results, args.figure)


if __name__ == "__main__":
    main()
