"""The target-network study on text: `sentiment` preset with polyak / hard / no target.

Each run is a separate `dqnlm lm train --preset sentiment` process on the same seeds and
budget; two run side by side with one torch thread each. Afterwards every run is scored
on held-out IMDb openings (its own eval.json) and on the `general` prompts (everyday
openings unlike movie reviews). Also measures the VADER baseline of real IMDb
continuations. Writes a markdown table and the raw JSON.

    .venv/bin/python benchmarks/lm_target_modes.py --root runs/lm-target-modes --out docs/data/lm_target_modes.md \
        --json docs/data/lm_target_modes.json
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

VARIANTS = {
    "polyak": [],  # the preset's own target: polyak, tau 0.01 per TD update
    "hard": ["--set", "target=hard", "--set", "target_period=100"],
    "none": ["--set", "target=none"],
}
DQNLM = [sys.executable, "-m", "dqnlm"]


def real_continuations() -> dict:
    """VADER compound of the 30 words after the first 8, on the held-out reviews."""
    from dqnlm.lm.data import load_reviews, split_reviews
    from dqnlm.lm.rewards import parse_reward

    _, held = split_reviews(load_reviews())
    scores = parse_reward("vader")([" ".join(t.split()[8:38]) for t in held])
    return {"mean": statistics.fmean(scores), "n": len(scores)}


def run_one(variant: str, seed: int, root: Path, threads: int) -> dict:
    run_dir = root / f"{variant}-s{seed}"
    started = time.perf_counter()
    if not (run_dir / "eval.json").is_file():  # finished runs are kept: the study resumes
        cmd = [*DQNLM, "lm", "train", "--preset", "sentiment", "--seed", str(seed)]
        cmd += [*VARIANTS[variant], "--run-dir", str(run_dir), "--no-progress"]
        cmd += ["--threads", str(threads), "--no-tensorboard"]
        if (run_dir / "checkpoints").exists():
            cmd = [*DQNLM, "lm", "train", "--resume", str(run_dir), "--no-progress"]
            cmd += ["--threads", str(threads), "--no-tensorboard"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    imdb = json.loads((run_dir / "eval.json").read_text())
    general = json.loads(
        subprocess.run(
            [*DQNLM, "lm", "eval", str(run_dir), "--prompts", "general", "--n", "60", "--json"]
            + ["--threads", str(threads), "--no-progress"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return {
        "variant": variant,
        "seed": seed,
        "seconds": seconds,
        "imdb": imdb,
        "general": general,
        "training": training_stats(run_dir),
    }


def training_stats(run_dir: Path, last: int = 50) -> dict:
    """Per-round training reward over the last ``last`` rounds (mean, std) and the final mean Q."""
    from dqnlm.metrics import read_metrics

    rows = read_metrics(run_dir / "metrics.csv")[-last:]
    rewards = [float(r["reward"]) for r in rows]
    return {
        "reward_mean": statistics.fmean(rewards),
        "reward_std": statistics.pstdev(rewards),
        "kl_max": max(float(r["kl"]) for r in rows),
        "mean_q": float(rows[-1]["mean_q"]),
    }


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
    for variant in VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        if rows:
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--root", type=Path, default=Path("runs/lm-target-modes"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument(
        "--table-only", action="store_true", help="rebuild --out from an existing --json"
    )
    args = parser.parse_args()
    if args.table_only:
        data = json.loads(args.json.read_text())
        for r in data["runs"]:  # runs made before training_stats existed
            r.setdefault("training", training_stats(args.root / f"{r['variant']}-s{r['seed']}"))
        args.json.write_text(json.dumps(data, indent=1))
        args.out.write_text(table(data["runs"], data["baseline"]))
        print(args.out.read_text())
        return
    args.root.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    threads = max(1, 2 // args.workers)
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda job: run_one(*job, args.root, threads), jobs))
    baseline = real_continuations()
    args.out.write_text(table(results, baseline))
    args.json.write_text(json.dumps({"baseline": baseline, "runs": results}, indent=1))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
