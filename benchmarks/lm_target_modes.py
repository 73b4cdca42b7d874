"""The target-network study on text: a summary of a finished `lm_target_modes` sweep.

The runs are a sweep (benchmarks/lm_target_modes.toml: the `sentiment` preset with a
polyak, hard or no target network on the same seeds and budget), so an interrupted study
continues where it stopped. This script scores every finished run on held-out IMDb
openings (its own eval.json) and on the `general` prompts (everyday openings unlike
movie reviews), measures the VADER baseline of real IMDb continuations, and writes a
markdown table and the raw JSON::

    dqnlm sweep --config benchmarks/lm_target_modes.toml --out runs/lm_target_modes \\
        --workers 2
    python benchmarks/lm_target_modes.py runs/lm_target_modes \\
        --out docs/data/lm_target_modes.md --json docs/data/lm_target_modes.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from dqnlm.errors import DQNLMError
from dqnlm.experiments.sweep import is_finished, read_spec, runs_of
from dqnlm.metrics import read_metrics

GENERAL_PROMPTS = 60


def real_continuations() -> dict:
    """VADER compound of the 30 words after the first 8, on the held-out reviews."""
    from dqnlm.lm.data import load_reviews, split_reviews
    from dqnlm.lm.rewards import parse_reward

    _, held = split_reviews(load_reviews())
    scores = parse_reward("vader")([" ".join(t.split()[8:38]) for t in held])
    return {"mean": statistics.fmean(scores), "n": len(scores)}


def general_eval(run_dir: Path, trust_code: bool) -> dict:
    """The run's model on the `general` prompts."""
    from dqnlm.lm.data import load_prompts
    from dqnlm.lm.evaluate import EVAL_KEYS, evaluate
    from dqnlm.lm.trainer import LMTrainer

    trainer = LMTrainer.load(run_dir, trust_code=trust_code)
    result = evaluate(trainer, load_prompts("general"), GENERAL_PROMPTS)
    return {k: result[k] for k in EVAL_KEYS}


def training_stats(run_dir: Path, last: int = 50) -> dict:
    """Per-round training reward over the last ``last`` rounds (mean, std) and the final mean Q."""
    rows = read_metrics(run_dir / "metrics.csv")[-last:]
    rewards = [float(r["reward"]) for r in rows]
    return {
        "reward_mean": statistics.fmean(rewards),
        "reward_std": statistics.pstdev(rewards),
        "kl_max": max(float(r["kl"]) for r in rows),
        "mean_q": float(rows[-1]["mean_q"]),
    }


def summarize(out: Path, spec: dict, trust_code: bool) -> list[dict]:
    """Every LM run of the sweep (all must be finished), in seed order then variant order."""
    runs = [r for r in runs_of(spec) if r.trainer == "lm"]
    unfinished = [str(r.directory(out)) for r in runs if not is_finished(r.directory(out))]
    if not runs or unfinished:
        sys.exit(f"{len(unfinished)} of {len(runs)} LM runs are unfinished: {unfinished[:1]}")
    variants = list(spec["variants"])
    results = []
    for run in sorted(runs, key=lambda r: (r.env, r.seed, variants.index(r.variant))):
        run_dir = run.directory(out)
        rows = read_metrics(run_dir / "metrics.csv")
        results.append(
            {
                "env": run.env,
                "variant": run.variant,
                "seed": run.seed,
                "seconds": float(rows[-1]["time_s"]),
                "imdb": json.loads((run_dir / "eval.json").read_text()),
                "general": general_eval(run_dir, trust_code),
                "training": training_stats(run_dir),
            }
        )
    return results


def table(results: list[dict], baseline: dict) -> str:
    lines = [
        f"Real IMDb continuations (30 words after the first 8, {baseline['n']} held-out "
        f"reviews): mean VADER {baseline['mean']:+.3f}.",
        "",
        "| target | seed | IMDb reward | IMDb KL (nats) | IMDb distinct-2 | ref ppl "
        "| general reward | general KL | general distinct-2 | train reward, last 50 rounds "
        "| max train KL | final mean Q |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        i, g, t = r["imdb"], r["general"], r["training"]
        lines.append(
            f"| {r['variant']} | {r['seed']} | {i['reward']:+.3f} | {i['kl']:.2f} | "
            f"{i['distinct_2']:.3f} | {i['ref_perplexity']:.1f} | {g['reward']:+.3f} | "
            f"{g['kl']:.2f} | {g['distinct_2']:.3f} | {t['reward_mean']:.3f} +/- "
            f"{t['reward_std']:.3f} | {t['kl_max']:.1f} | {t['mean_q']:+.3f} |"
        )
    lines += [
        "",
        "| target | median IMDb reward | median IMDb KL | median general reward "
        "| median general KL | median train-reward std |",
        "|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        lines.append(
            f"| {variant} | {statistics.median(r['imdb']['reward'] for r in rows):+.3f} | "
            f"{statistics.median(r['imdb']['kl'] for r in rows):.2f} | "
            f"{statistics.median(r['general']['reward'] for r in rows):+.3f} | "
            f"{statistics.median(r['general']['kl'] for r in rows):.2f} | "
            f"{statistics.median(r['training']['reward_std'] for r in rows):.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a finished sweep of lm_target_modes.toml")
    parser.add_argument("--out", type=Path, required=True, help="markdown table")
    parser.add_argument("--json", type=Path, required=True, help="all numbers")
    parser.add_argument(
        "--table-only", action="store_true", help="rebuild --out from an existing --json"
    )
    parser.add_argument(
        "--trust-code", action="store_true", help="a model or data outside the sweep dir"
    )
    args = parser.parse_args()
    if args.table_only:
        data = json.loads(args.json.read_text())
    else:
        try:
            spec = read_spec(args.sweep_dir, args.trust_code)
            results = summarize(args.sweep_dir, spec, args.trust_code)
        except DQNLMError as e:
            sys.exit(f"{args.sweep_dir}: {e}")
        data = {"baseline": real_continuations(), "runs": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(data["runs"], data["baseline"]))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
