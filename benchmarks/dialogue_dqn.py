"""DQN dialogue policy vs the rule agent: a summary of a finished dialogue sweep.

The runs are a sweep (benchmarks/dialogue_dqn.toml: target-network rules and slot noise,
several seeds), so an interrupted benchmark continues where it stopped and may grow in
place. This script reads the finished runs (eval.json, metrics.csv), plays the rule agent
on the same test goals, and writes a markdown table, a JSON file and a learning-curve
figure (greedy success on training goals against training dialogues, mean over seeds
with a min-max band)::

    dqnlm sweep --config benchmarks/dialogue_dqn.toml --out runs/dialogue_dqn --workers 2
    python benchmarks/dialogue_dqn.py runs/dialogue_dqn --out docs/data/dialogue_dqn.md \\
        --json docs/data/dialogue_dqn.json --figure docs/figures/dialogue_success.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from dqnlm.dialogue import DialogueConfig, DialogueEnv, RuleAgent, evaluate, load_domain
from dqnlm.dialogue.config import RULE_EVAL_SEED, DialogueDQNConfig
from dqnlm.errors import DQNLMError
from dqnlm.experiments.sweep import is_finished, read_spec, runs_of
from dqnlm.metrics import read_metrics

GOAL_SUCCESS = 0.95
DESCRIPTIONS = {
    "hard": "hard copy every 1,000 updates (about one epoch, TC-Bot; the default)",
    "polyak": "polyak, tau 0.01 per update",
    "none": "no target network",
    "noise5": "trained and tested with 5% slot noise",
    "single": "plain (not Double) DQN",
    "no-mask": "no action masking",
    "no-warm": "no rule-agent warm start",
}
"""Variants of benchmarks/dialogue_dqn.toml; others are described by their config."""


def describe(variant: str, config: dict) -> str:
    if variant in DESCRIPTIONS:
        return DESCRIPTIONS[variant]
    defaults = json.loads(json.dumps(dataclasses.asdict(DialogueDQNConfig())))
    changed = [f"{k} {v}" for k, v in config.items() if k != "seed" and defaults.get(k) != v]
    return ", ".join(changed) or "the defaults"


def dialogue_env(spec: dict, name: str | None) -> str:
    """The sweep's dialogue env: ``name``, or the only one."""
    envs = [e for e, info in spec["envs"].items() if info["trainer"] == "dialogue"]
    if name is not None and name not in envs:
        sys.exit(f"no dialogue env {name!r} in this sweep; it has {envs}")
    if name is None and len(envs) != 1:
        sys.exit(f"the sweep has dialogue envs {envs}: choose one with --env")
    return name or envs[0]


def first_reaching(rows: list[dict], threshold: float) -> int | None:
    """Training dialogues at the first greedy evaluation (epoch > 0) at or above ``threshold``."""
    for row in rows:
        evaluated = row.get("eval_success") and row["epoch"] != "0"
        if evaluated and float(row["eval_success"]) >= threshold:
            return int(float(row["step"]))
    return None


def summarize(out: Path, spec: dict, env: str) -> dict:
    """Every run of ``env`` (all must be finished) and the rule agent on its test goals."""
    runs = [r for r in runs_of(spec) if r.env == env]
    unfinished = [str(r.directory(out)) for r in runs if not is_finished(r.directory(out))]
    if unfinished:
        sys.exit(f"{len(unfinished)} of {len(runs)} runs are unfinished, e.g. {unfinished[0]}")
    domain = runs[0].config["domain"]
    summary = {"domain": domain, "seeds": spec["seeds"], "variants": {}, "rule": {}}
    for noise in (0.0, 0.05):
        test = DialogueEnv(DialogueConfig(domain=domain, split="test", slot_error_rate=noise))
        # ten passes over the test goals (the simulator's choices vary with the seed)
        rule = RuleAgent(load_domain(domain))
        summary["rule"][f"noise {noise:g}"] = evaluate(
            test, rule, RULE_EVAL_SEED, 10 * len(test.goals)
        )
    for variant, config in spec["envs"][env]["configs"].items():
        results = []
        for run in (r for r in runs if r.variant == variant):
            run_dir = run.directory(out)
            result = json.loads((run_dir / "eval.json").read_text())
            result["seed"] = run.seed
            result["dialogues_to_goal"] = first_reaching(
                read_metrics(run_dir / "metrics.csv"), GOAL_SUCCESS
            )
            results.append(result)
        summary["variants"][variant] = {
            "description": describe(variant, config),
            "runs": results,
            "run_dirs": [str(r.directory(out)) for r in runs if r.variant == variant],
        }
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
        "training goals); the rule agent plays the test goals ten times over. *To 0.95*: "
        "training dialogues (warm start included) until a greedy validation first reached "
        "0.95 success (median over the seeds that did; n/N = how many did).",
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


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=110)
    for i, (variant, data) in enumerate(summary["variants"].items()):
        curves = []
        for run_dir in data["run_dirs"]:
            rows = read_metrics(Path(run_dir) / "metrics.csv")
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
    parser.add_argument("sweep_dir", type=Path, help="a finished sweep of dialogue_dqn.toml")
    parser.add_argument("--env", help="the sweep's dialogue env (default: its only one)")
    parser.add_argument("--out", type=Path, help="markdown table")
    parser.add_argument("--json", type=Path, help="all numbers")
    parser.add_argument("--figure", type=Path, help="learning-curve PNG")
    parser.add_argument("--trust-code", action="store_true", help="a schema outside the sweep")
    args = parser.parse_args()

    try:
        spec = read_spec(args.sweep_dir, args.trust_code)
    except DQNLMError as e:
        sys.exit(f"{args.sweep_dir}: {e}")
    summary = summarize(args.sweep_dir, spec, dialogue_env(spec, args.env))
    command = (
        f"dqnlm sweep --config benchmarks/dialogue_dqn.toml --out {args.sweep_dir} "
        f"--workers 2 && python {' '.join(sys.argv)}"
    )
    table = to_markdown(summary, command)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.figure:
        plot(summary, args.figure)


if __name__ == "__main__":
    main()
