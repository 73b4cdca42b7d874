"""LM dialogue agents (`dqnlm dialogue train --agent lm`) next to their baselines.

For one domain, in one run, on the same held-out test goals:

* ``rule``: the rule agent (``dqnlm dialogue eval rule``);
* ``imitation``: the embedded speaker before Q-learning (imitation of the rule agent);
* ``lm-polyak``, ``lm-hard``, ``lm-none``: multi-turn Q-learning of the speaker with each
  target-network rule (polyak: the config's tau every update; hard: a copy every 20
  updates; none: bootstrap from the online model), ``--budget-s`` of training
  wall-clock per run;
* ``dqn``: the act-level DQN (``dqnlm dialogue train``, its default run).

From the repository root::

    .venv/bin/python benchmarks/dialogue_lm.py --domain movie --seeds 11 12 13 \\
        --budget-s 1500 --jobs 2 --out runs/dialogue_lm_movie

Each run is a ``dqnlm`` command in its own process (``--threads`` torch threads each,
``--jobs`` at once); a finished run is skipped when the script is started again. The
speaker is pretrained once per domain before any run starts (its seconds are reported:
they count toward an LM run's budget). ``summary.md`` and ``summary.json`` hold the table
(medians over seeds) and ``validation.png`` the LM runs' validation success over time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

LM_RULES = ("polyak", "hard", "none")


def dqnlm(*args: str, threads: int, log: Path) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "w") as out:
        cmd = [sys.executable, "-m", "dqnlm", *args]
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def train_lm(args, rule: str, seed: int) -> Path:
    run = args.out / "runs" / f"lm-{rule}-s{seed}"
    if (run / "eval.json").is_file():
        return run
    period = ["target_update_period=20"] if rule == "hard" else []  # a copy every 20 updates
    sets = [f"target_update={rule}", *period, f"max_seconds={args.budget_s}", "rounds=1000000",
            f"slot_error_rate={args.noise}", *args.set]  # fmt: skip
    flags = [x for s in sets for x in ("--set", s)]
    code = dqnlm(
        "dialogue", "train", "--agent", "lm", "--domain", args.domain, "--seed", str(seed),
        "--run-dir", str(run), "--overwrite", "--no-progress", "--no-tensorboard",
        "--threads", str(args.threads), *flags,
        threads=args.threads, log=args.out / "runs" / f"lm-{rule}-s{seed}.log",
    )  # fmt: skip
    if code != 0:
        print(f"lm-{rule} seed {seed} failed (exit {code}); see its log", file=sys.stderr)
    return run


def train_dqn(args, seed: int) -> Path:
    run = args.out / "runs" / f"dqn-s{seed}"
    if (run / "eval.json").is_file():
        return run
    started = time.perf_counter()
    dqnlm(
        "dialogue", "train", "--domain", args.domain, "--seed", str(seed), "--run-dir", str(run),
        "--overwrite", "--no-progress", "--no-tensorboard", "--threads", str(args.threads),
        "--set", f"slot_error_rate={args.noise}",
        threads=args.threads, log=args.out / "runs" / f"dqn-s{seed}.log",
    )  # fmt: skip
    (run / "wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - started}))
    return run


def imitation(args) -> tuple[dict, float]:
    """The speaker before Q-learning on the test goals, and its pretraining seconds."""
    import torch

    from dqnlm.dialogue.text_env import TextDialogueEnv
    from dqnlm.lm.models import load_checked
    from dqnlm.lmdialogue import rollout
    from dqnlm.lmdialogue.config import LMDialogueConfig
    from dqnlm.lmdialogue.speaker import SUMMARY, resolve_speaker

    torch.set_num_threads(args.threads * args.jobs)
    config = LMDialogueConfig(domain=args.domain, slot_error_rate=args.noise)
    path = resolve_speaker(config.env_config("train"), config.speaker_config())
    seconds = json.loads((path / SUMMARY).read_text())["seconds"]
    _, tokenizer, model = load_checked(str(path), "float32", torch.device("cpu"))
    envs = [TextDialogueEnv(config.env_config("test"), config.state_line) for _ in range(32)]
    goals = len(envs[0].goals)
    result = rollout.evaluate(model, tokenizer, envs, goals, 2_000_006, config.new_tokens)
    return result, seconds


def rule_agent(args) -> dict:
    log = args.out / "rule.json"
    dqnlm("dialogue", "eval", "rule", "--domain", args.domain, "--noise", str(args.noise),
          "--json", threads=1, log=log)  # fmt: skip
    return json.loads(log.read_text().strip().splitlines()[-1])


def read_eval(run: Path) -> dict | None:
    path = run / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else None


def plot(args, runs: dict[str, list[Path]]) -> None:
    from dqnlm.metrics import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, paths), color in zip(runs.items(), ("C0", "C1", "C2")):
        for i, run in enumerate(paths):
            metrics = run / "metrics.csv"
            rows = (
                list(csv.DictReader(metrics.read_text().splitlines())) if metrics.is_file() else []
            )
            points = [
                (float(r["time_s"]), float(r["eval_success"]))
                for r in rows
                if r.get("eval_success")
            ]
            if points:
                ax.plot(*zip(*points), color=color, alpha=0.7, label=name if i == 0 else None)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation success (greedy)")
    ax.set_title(f"LM dialogue agent, {Path(args.domain).stem}")
    ax.legend()
    save_figure(fig, args.out / "validation.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", default="movie")
    p.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    p.add_argument("--rules", nargs="+", choices=LM_RULES, default=list(LM_RULES))
    p.add_argument("--budget-s", type=float, default=1500.0, help="LM training wall-clock per run")
    p.add_argument("--noise", type=float, default=0.0, help="slot error rate of the user simulator")
    p.add_argument("--set", action="append", default=[], help="an LM config field for every LM run")
    p.add_argument("--no-dqn", action="store_true", help="skip the act-level DQN runs")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    start, pretrain_s = imitation(args)
    rule = rule_agent(args)
    jobs = [("lm", rule, seed) for seed in args.seeds for rule in args.rules]
    if not args.no_dqn:
        jobs += [("dqn", None, seed) for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(
            lambda job: train_lm(args, job[1], job[2]) if job[0] == "lm" else train_dqn(args, job[2]),
            jobs,
        ))  # fmt: skip
    rows = {"rule": [rule], "imitation": [start]}
    lm_runs: dict[str, list[Path]] = {}
    for (kind, rule_name, seed), run in zip(jobs, done):
        name = f"lm-{rule_name}" if kind == "lm" else "dqn"
        result = read_eval(run)
        if result is None:
            continue
        if kind == "dqn":
            result["train_seconds"] = json.loads((run / "wall.json").read_text())["wall_s"]
        else:
            lm_runs.setdefault(name, []).append(run)
        rows.setdefault(name, []).append({**result, "seed": seed})
    keys = ("success_rate", "avg_turns", "avg_reward", "parse_rate", "train_seconds")
    lines = [
        f"# LM dialogue agents, domain `{args.domain}`, slot noise {args.noise}",
        "",
        f"Speaker pretraining (imitation of the rule agent, cached): {pretrain_s:.0f} s. "
        f"LM runs: {args.budget_s:.0f} s of training each, seeds {args.seeds}.",
        "",
        "| agent | seeds | test success | turns | reward | parse rate | train s | per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for name, results in rows.items():
        med = {k: float(np.median([r[k] for r in results if r.get(k) is not None]))
               if any(r.get(k) is not None for r in results) else None for k in keys}  # fmt: skip
        summary[name] = {"median": med, "runs": results}
        per_seed = ", ".join(f"{r['success_rate']:.3f}" for r in results)
        cells = [f"{med[k]:.3f}" if med[k] is not None and k in ("success_rate", "parse_rate")
                 else (f"{med[k]:.1f}" if med[k] is not None else "-") for k in keys]  # fmt: skip
        lines.append(f"| {name} | {len(results)} | {' | '.join(cells)} | {per_seed} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if lm_runs:
        plot(args, lm_runs)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
