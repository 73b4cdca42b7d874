"""DQN dialogue policy vs the rule agent: target-network rules, noise and ablations, several seeds.

Every run goes through the CLI (``dqnlm dialogue train``), so this measures what a user
gets. Finished runs (an ``eval.json`` in their directory) are not repeated, so an
interrupted benchmark continues where it stopped. Results: a markdown table, a JSON
file and a learning-curve figure (greedy success on training goals against training
dialogues, mean over seeds with a min-max band)::

    python benchmarks/dialogue_dqn.py --root runs/bench-dialogue --workers 2 \\
        --out docs/data/dialogue_dqn.md --json docs/data/dialogue_dqn.json \\
        --figure docs/figures/dialogue_success.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dqnlm.dialogue import DialogueConfig, DialogueEnv, RuleAgent, evaluate, load_domain
from dqnlm.dialogue.config import TEST_SEED
from dqnlm.metrics import read_metrics

VARIANTS = {
    "epoch": ({}, "hard copy after every epoch (TC-Bot; the default)"),
    "polyak": ({"target_update": "polyak", "tau": 0.01}, "polyak, tau 0.01 per update"),
    "hard-1000": (
        {"target_update": "hard", "target_update_period": 1000},
        "hard copy every 1000 updates",
    ),
    "none": ({"target_update": "none"}, "no target network"),
    "single": ({"double_dqn": False}, "epoch target, plain (not Double) DQN"),
    "no-mask": ({"action_mask": False}, "epoch target, no action masking"),
    "no-warm": ({"warm_start_dialogues": 0}, "epoch target, no rule-agent warm start"),
    "noise5": ({"slot_error_rate": 0.05}, "trained and tested with 5% slot noise"),
}
GOAL_SUCCESS = 0.95


def run_one(root: Path, variant: str, seed: int, domain: str) -> Path:
    run_dir = root / f"{variant}-s{seed}"
    if (run_dir / "eval.json").is_file():
        return run_dir
    overrides, _ = VARIANTS[variant]
    cmd = [sys.executable, "-m", "dqnlm", "dialogue", "train", "--domain", domain]
    cmd += ["--seed", str(seed), "--run-dir", str(run_dir), "--no-progress", "--no-tensorboard"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value) if isinstance(value, bool) else value}"]
    if (run_dir / "checkpoints").is_dir():  # killed mid-run: continue it
        cmd = [sys.executable, "-m", "dqnlm", "dialogue", "train", "--resume", str(run_dir)]
        cmd += ["--no-progress", "--no-tensorboard"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    print(f"{run_dir.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return run_dir


def first_reaching(rows: list[dict], threshold: float) -> int | None:
    """Training dialogues at the first greedy evaluation (epoch > 0) at or above ``threshold``."""
    for row in rows:
        evaluated = row.get("eval_success") and row["epoch"] != "0"
        if evaluated and float(row["eval_success"]) >= threshold:
            return int(float(row["step"]))
    return None


def summarize(root: Path, variants: list[str], seeds: list[int], domain: str) -> dict:
    summary = {"domain": domain, "seeds": seeds, "variants": {}, "rule": {}}
    for noise in (0.0, 0.05):
        env = DialogueEnv(DialogueConfig(domain=domain, split="test", slot_error_rate=noise))
        # ten passes over the test goals (the simulator's choices vary with the seed)
        rule = RuleAgent(load_domain(domain))
        summary["rule"][f"noise {noise:g}"] = evaluate(env, rule, TEST_SEED, 10 * len(env.goals))
    for variant in variants:
        runs = []
        for seed in seeds:
            run_dir = root / f"{variant}-s{seed}"
            result = json.loads((run_dir / "eval.json").read_text())
            rows = read_metrics(run_dir / "metrics.csv")
            result["seed"] = seed
            result["dialogues_to_goal"] = first_reaching(rows, GOAL_SUCCESS)
            runs.append(result)
        summary["variants"][variant] = {"description": VARIANTS[variant][1], "runs": runs}
    return summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def to_markdown(summary: dict, command: str) -> str:
    lines = [
        f"# DQN dialogue policy, domain `{summary['domain']}`, seeds {summary['seeds']}",
        "",
        f"Command: `{command}`",
        "",
        "Held-out test goals (60), greedy policy (the best of the periodic validations on "
        "training goals); the rule agent plays the test goals ten times over. *To 0.95*: training dialogues (warm start included) until a "
        "greedy validation first reached 0.95 success (median over the seeds that did; "
        "n/N = how many did).",
        "",
        "| agent | test success per seed | median success | mean ± sd | median turns "
        "| median reward | to 0.95 | median train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in summary["rule"].items():
        lines.append(
            f"| rule agent ({name}) | {result['success_rate']:.3f} | {result['success_rate']:.3f} "
            f"| - | {result['avg_turns']:.2f} | {result['avg_reward']:.1f} | - | - |"
        )
    for variant, data in summary["variants"].items():
        runs = data["runs"]
        success = [r["success_rate"] for r in runs]
        reached = [r["dialogues_to_goal"] for r in runs if r["dialogues_to_goal"] is not None]
        to_goal = f"{_median(reached):,.0f} ({len(reached)}/{len(runs)})" if reached else "never"
        lines.append(
            f"| {variant}: {data['description']} | {' '.join(f'{s:.3f}' for s in success)} "
            f"| {_median(success):.3f} | {statistics.mean(success):.3f} ± "
            f"{statistics.pstdev(success):.3f} | {_median([r['avg_turns'] for r in runs]):.2f} "
            f"| {_median([r['avg_reward'] for r in runs]):.1f} | {to_goal} "
            f"| {_median([r['train_seconds'] for r in runs]):.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(root: Path, summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=110)
    for i, variant in enumerate(summary["variants"]):
        curves = []
        for seed in summary["seeds"]:
            rows = read_metrics(root / f"{variant}-s{seed}" / "metrics.csv")
            points = [
                (float(r["step"]), float(r["eval_success"]))
                for r in rows
                if r.get("eval_success") and r["epoch"] != "0"
            ]
            curves.append(points)
        length = min(len(c) for c in curves)
        steps = np.array([p[0] for p in curves[0][:length]])
        values = np.array([[p[1] for p in c[:length]] for c in curves])
        ax.plot(steps, values.mean(0), color=f"C{i}", label=variant)
        ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i}", alpha=0.1)
    rule = summary["rule"]["noise 0"]["success_rate"]
    ax.axhline(rule, color="gray", linestyle="--", label=f"rule agent, test ({rule:.2f})")
    ax.axhline(GOAL_SUCCESS, color="black", linewidth=0.6, linestyle=":")
    ax.set_xlabel("training dialogues (warm start included)")
    ax.set_ylabel("greedy success on training goals")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"DQN dialogue policy ({summary['domain']}): mean and min-max over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/bench-dialogue"))
    parser.add_argument("--domain", default="movie")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--variants", nargs="+", default=["epoch", "polyak", "none", "noise5"], choices=VARIANTS
    )
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel")
    parser.add_argument("--out", type=Path, help="markdown table")
    parser.add_argument("--json", type=Path, help="all numbers")
    parser.add_argument("--figure", type=Path, help="learning-curve PNG")
    args = parser.parse_args()

    jobs = [(v, s) for v in args.variants for s in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:  # each run is its own process
        list(pool.map(lambda job: run_one(args.root, *job, args.domain), jobs))
    summary = summarize(args.root, args.variants, args.seeds, args.domain)
    command = "python " + " ".join(sys.argv)
    table = to_markdown(summary, command)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.figure:
        plot(args.root, summary, args.figure)


if __name__ == "__main__":
    main()
