"""dqnlm's ``cartpole`` preset against Stable-Baselines3 DQN on CartPole-v1, side by side.

The full benchmark (seeds 0..6; three processes per seed, one thread each), from the
repository root:

    .venv/bin/python benchmarks/cartpole_vs_sb3.py \\
        --out cartpole_vs_sb3.md --json cartpole_vs_sb3.json

A quick smoke test (seconds, not a benchmark):

    .venv/bin/python benchmarks/cartpole_vs_sb3.py --seeds 0 --sb3-steps 3000 \\
        --ours-args "--env CartPole-v1 --total-steps 3000 --set eval_interval=2500"

For each seed it runs, one after the other and in an order rotated by seed:

* ours: ``python -m dqnlm train --preset cartpole --seed S --run-dir DIR --no-progress``
  (the part after ``train`` up to ``--seed`` is ``--ours-args``);
* SB3 zoo: SB3 DQN with rl-baselines3-zoo's tuned CartPole-v1 hyperparameters and its
  full 50k-step budget (``benchmarks/sb3_cartpole_runner.py``);
* SB3 stop: the same, but training stops once a periodic evaluation reaches the
  ``stop_at_return`` of our preset (SB3's ``StopTrainingOnRewardThreshold``).

Both sides evaluate identically, with :func:`dqnlm.control.envs.run_episodes`: 10 greedy
episodes every 2,500 env steps on validation seeds
``dqnlm.seeding.seed_streams(S).validation + i``, and a final 20-episode
greedy evaluation on test seeds ``seed_streams(S).test + i``. Each process gets OMP_NUM_THREADS=1 and
MKL_NUM_THREADS=1. Per seed and side it reports the whole-process wall-clock (interpreter
start, imports, training and evaluation), the training-clock time at which a periodic
evaluation first reached 475 (the final evaluation's time if only that one did; "never"
otherwise), the final evaluation's mean return (solved: >= 475) and the env steps trained.
The summary gives medians, solved counts, and the median of per-seed ratios ours/SB3.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sidebyside import add_output_arguments, child_env, provenance, publish, runs_folder, warm_up

RUNNER = Path(__file__).resolve().with_name("sb3_cartpole_runner.py")
DEFAULT_SEEDS = list(range(7))
DEFAULT_OURS_ARGS = "--preset cartpole"
FALLBACK_STOP_AT = 490.0
SIDES = ("ours", "sb3-zoo", "sb3-stop")
SHORT = {"ours": "ours", "sb3-zoo": "zoo", "sb3-stop": "stop"}
FORBIDDEN_OURS = ("--seed", "--run-dir", "--resume")


# ---------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark dqnlm's cartpole preset against Stable-Baselines3 DQN "
        "(rl-baselines3-zoo hyperparameters) on CartPole-v1, same seeds, side by side.",
        epilog="Example: %(prog)s --seeds 0 --sb3-steps 3000 "
        '--ours-args "--env CartPole-v1 --total-steps 3000 --set eval_interval=2500"',
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=DEFAULT_SEEDS,
        metavar="S",
        help="seeds to run, each on every side (default: 0 1 2 3 4 5 6)",
    )
    p.add_argument(
        "--ours-args",
        default=DEFAULT_OURS_ARGS,
        metavar="ARGS",
        help="arguments for `python -m dqnlm train`, before --seed/--run-dir/--no-progress, "
        f"which the benchmark adds (default: {DEFAULT_OURS_ARGS!r}); quote them, or write "
        "--ours-args=ARGS when ARGS is a single word starting with '-'",
    )
    p.add_argument(
        "--sb3-mode",
        choices=("zoo", "stop", "both"),
        default="both",
        help="zoo: SB3 with the full budget, no early stop (the reference); stop: SB3 "
        "stopping at our preset's stop_at_return; both: run the two (default)",
    )
    p.add_argument(
        "--sb3-steps",
        type=int,
        default=50_000,
        help="SB3's training budget in env steps (default: the zoo's 50000)",
    )
    p.add_argument(
        "--sb3-stop-at",
        type=float,
        metavar="R",
        help="early-stop return for --sb3-mode stop/both (default: stop_at_return of the "
        f"preset in --ours-args, else of 'cartpole', else {FALLBACK_STOP_AT:g})",
    )
    p.add_argument(
        "--target",
        type=float,
        default=475.0,
        help="return that counts as solved and whose first crossing is timed (default: 475)",
    )
    add_output_arguments(p)
    return p


def preset_name(ours_args: list[str]) -> str | None:
    for i, arg in enumerate(ours_args):
        if arg == "--preset" and i + 1 < len(ours_args):
            return ours_args[i + 1]
        if arg.startswith("--preset="):
            return arg.split("=", 1)[1]
    return None


def check_ours_args(ours_args: list[str]) -> str | None:
    """Refuses flags the benchmark sets itself and presets dqnlm does not have."""
    for arg in ours_args:
        if arg.split("=", 1)[0] in FORBIDDEN_OURS:
            return f"--ours-args must not contain {arg.split('=', 1)[0]}; the benchmark sets it"
    name = preset_name(ours_args)
    if name is not None:
        from dqnlm.control.presets import PRESETS

        if name not in PRESETS:
            known = ", ".join(PRESETS) or "none yet"
            return (
                f"dqnlm has no preset {name!r} (presets: {known}); pass another configuration, "
                'e.g. --ours-args "--env CartPole-v1 --total-steps 3000"'
            )
    return None


def resolve_stop_at(given: float | None, ours_args: list[str]) -> tuple[float, str]:
    """The SB3 early-stop return and where it came from."""
    if given is not None:
        return given, "--sb3-stop-at"
    from dqnlm.control.presets import PRESETS

    name = preset_name(ours_args) or "cartpole"
    if name in PRESETS:
        value = PRESETS[name].config().stop_at_return
        if value is not None:
            return float(value), f"stop_at_return of preset {name!r}"
        return FALLBACK_STOP_AT, f"fallback (preset {name!r} has no stop_at_return)"
    return FALLBACK_STOP_AT, f"fallback (no preset {name!r})"


# ------------------------------------------------------------------------- running
def side_command(side: str, seed: int, run_dir: Path, args, stop_at: float) -> list[str]:
    if side == "ours":
        return [
            sys.executable,
            "-m",
            "dqnlm",
            "train",
            *args.ours_argv,
            "--seed",
            str(seed),
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ]
    cmd = [sys.executable, str(RUNNER), "--seed", str(seed), "--steps", str(args.sb3_steps)]
    cmd += ["--target", f"{args.target:g}"]
    if side == "sb3-stop":
        cmd += ["--stop-at", f"{stop_at:g}"]
    return cmd


def read_ours(run_dir: Path, target: float) -> dict:
    """time to target, final mean, steps and early stop from a dqnlm run directory."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("eval_return")]
    final = json.loads((run_dir / "eval.json").read_text())
    if not rows:
        raise ValueError(f"{run_dir / 'metrics.csv'} has no evaluation rows")
    periodic, last = rows[:-1], rows[-1]
    time_to = next(
        (float(r["time_s"]) for r in periodic if float(r["eval_return"]) >= target), None
    )
    if time_to is None and float(last["eval_return"]) >= target:
        time_to = float(last["time_s"])  # reached only in the final evaluation
    return {
        "time_to_475": time_to,
        "final_mean": float(final["mean_return"]),
        "final_std": float(final["std_return"]),
        "final_returns": final["returns"],
        "steps": int(final.get("step", float(last["step"]))),
        "stopped_early": bool(final.get("stopped_early", False)),
        "train_time_s": float(last["time_s"]),
        "evals": [
            {
                "step": int(float(r["step"])),
                "time_s": float(r["time_s"]),
                "eval_return": float(r["eval_return"]),
            }
            for r in periodic
        ],
    }


def run_side(side: str, seed: int, base: Path, args, stop_at: float) -> dict:
    run_dir = base / f"{side}-s{seed}"
    cmd = side_command(side, seed, run_dir, args, stop_at)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = base / f"{side}-s{seed}.log"
    log.write_text(
        f"$ {shlex.join(cmd)}\n# exit {proc.returncode}, {wall:.2f} s\n"
        f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    )
    result = {"command": shlex.join(cmd), "wall_s": wall, "returncode": proc.returncode}
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}")
        if side == "ours":
            result.update(read_ours(run_dir, args.target))
        else:
            lines = proc.stdout.strip().splitlines()
            result.update(json.loads(lines[-1]) if lines else {})
            result.pop("seed", None)
            if "final_mean" not in result:
                raise RuntimeError("the SB3 runner printed no result")
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        result["error"] = f"{e}; last stderr lines:\n{tail}" if tail else str(e)
    else:
        result["solved"] = result["final_mean"] >= args.target
    return result


# ------------------------------------------------------------------------- report
def fmt_s(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "never"
    return f"{value:.1f}"


def fmt_final(run: dict) -> str:
    if "error" in run:
        return "failed"
    return f"{run['final_mean']:.1f} {'✓' if run['solved'] else '✗'}"


def fmt_steps(run: dict) -> str:
    if "error" in run:
        return "-"
    return f"{run['steps'] / 1000:.1f}k" + ("*" if run.get("stopped_early") else "")


def ratio(a: dict, b: dict, key: str) -> float | None:
    if "error" in a or "error" in b or a.get(key) is None or b.get(key) is None:
        return None
    return a[key] / b[key] if b[key] > 0 else None


def summarize(results: list[dict], sides: list[str]) -> dict:
    summary: dict = {}
    for side in sides:
        runs = [r["runs"][side] for r in results if "error" not in r["runs"][side]]
        if not runs:
            summary[side] = {"ok": 0}
            continue
        t = [math.inf if x["time_to_475"] is None else x["time_to_475"] for x in runs]
        summary[side] = {
            "ok": len(runs),
            "median_wall_s": statistics.median(x["wall_s"] for x in runs),
            "median_time_to_475_s": statistics.median(t),
            "reached_475": sum(x["time_to_475"] is not None for x in runs),
            "median_final_mean": statistics.median(x["final_mean"] for x in runs),
            "solved": sum(x["solved"] for x in runs),
            "median_steps": statistics.median(x["steps"] for x in runs),
        }
    for side in sides[1:]:
        walls = [ratio(r["runs"]["ours"], r["runs"][side], "wall_s") for r in results]
        times = [ratio(r["runs"]["ours"], r["runs"][side], "time_to_475") for r in results]
        walls, times = [x for x in walls if x is not None], [x for x in times if x is not None]
        summary[f"ours/{side}"] = {
            "median_wall_ratio": statistics.median(walls) if walls else None,
            "wall_seeds": len(walls),
            "median_time_to_475_ratio": statistics.median(times) if times else None,
            "time_to_475_seeds": len(times),
        }
    return summary


def markdown(
    results: list[dict], summary: dict, sides: list[str], labels: dict, target: float
) -> str:
    g = f"{target:g}"  # 475 unless --target says otherwise
    head = ["seed", "order"]
    for side in sides:
        s = SHORT[side]
        head += [f"{s} wall s", f"{s} t{g} s", f"{s} final", f"{s} steps"]
    head += [f"ours/{SHORT[side]} wall" for side in sides[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [str(r["seed"]), ", ".join(SHORT[s] for s in r["order"])]
        for side in sides:
            run = r["runs"][side]
            ok = "error" not in run
            cells += [
                f"{run['wall_s']:.1f}",
                fmt_s(run["time_to_475"]) if ok else "-",
                fmt_final(run),
                fmt_steps(run),
            ]
        for side in sides[1:]:
            x = ratio(r["runs"]["ours"], r["runs"][side], "wall_s")
            cells.append("-" if x is None else f"{x:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "wall s: whole-process wall-clock (interpreter start, imports, training, evaluations). "
        f"t{g} s: training-clock seconds until a periodic evaluation (10 greedy episodes, "
        f"validation seeds) first reached {g}, else the whole training time if only the final "
        "evaluation did. final: mean return of the final 20-episode greedy evaluation on test "
        f"seeds; ✓ solved (>= {g}). steps: env steps trained; * stopped early.",
        "",
        f"Summary over {len(results)} seed(s):",
        "",
        f"| side | median wall s | median t{g} s | reached {g} | median final | solved "
        "| median steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        s = summary[side]
        if not s["ok"]:
            lines.append(f"| {labels[side]} | all runs failed | | | | | |")
            continue
        lines.append(
            f"| {labels[side]} | {s['median_wall_s']:.1f} | {fmt_s(s['median_time_to_475_s'])} "
            f"| {s['reached_475']}/{s['ok']} | {s['median_final_mean']:.1f} "
            f"| {s['solved']}/{s['ok']} | {s['median_steps'] / 1000:.1f}k |"
        )
    lines.append("")
    for side in sides[1:]:
        s = summary[f"ours/{side}"]
        wall = s["median_wall_ratio"]
        t = s["median_time_to_475_ratio"]
        lines.append(
            f"* ours / {labels[side]}, median of per-seed ratios: whole-process wall-clock "
            f"{'-' if wall is None else f'{wall:.2f}'} ({s['wall_seeds']} seeds); time to {g} "
            f"{'-' if t is None else f'{t:.2f}'} ({s['time_to_475_seeds']} seeds where both "
            "reached it)"
        )
    lines.append(
        f"* Medians of time to {g} count 'never' as slower than any time; failed runs are left out."
    )
    return "\n".join(lines) + "\n"


def header(meta: dict, labels: dict) -> str:
    v = meta["versions"]
    lines = [
        "# dqnlm vs Stable-Baselines3 DQN on CartPole-v1",
        "",
        f"* command: `{meta['command']}`",
        f"* date: {meta['date']}",
        f"* CPU: {meta['cpu']} ({meta['cpu_count']} logical CPUs); one thread per process "
        "(OMP_NUM_THREADS=1, MKL_NUM_THREADS=1; torch.set_num_threads(1) in the SB3 runner); "
        "runs one at a time",
        "* versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"* seeds: {', '.join(map(str, meta['seeds']))}; order rotated per seed",
        f"* {labels['ours']}: `python -m dqnlm train {meta['ours_args']} --seed S "
        "--run-dir DIR --no-progress`",
    ]
    if "sb3-zoo" in meta["sides"] or "sb3-stop" in meta["sides"]:
        lines.append(
            f"* SB3: rl-baselines3-zoo CartPole-v1 hyperparameters, {meta['sb3_steps']:,} steps "
            "(lr 2.3e-3, batch 64, buffer 100k, learning_starts 1000, gamma 0.99, "
            "target_update_interval 10, train_freq 256, gradient_steps 128, "
            "exploration_fraction 0.16, exploration_final_eps 0.04, net_arch [256, 256])"
        )
    if "sb3-stop" in meta["sides"]:
        lines.append(
            f"* {labels['sb3-stop']}: stops once a periodic evaluation's mean return is "
            f">= {meta['stop_at']:g} ({meta['stop_at_source']})"
        )
    return "\n".join(lines) + "\n\n"


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sb3_steps < 1:
        parser.error(f"--sb3-steps must be >= 1, got {args.sb3_steps}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must not repeat a seed")
    args.ours_argv = shlex.split(args.ours_args)
    problem = check_ours_args(args.ours_argv)
    if problem:
        parser.error(problem)
    variants = {"zoo": ["sb3-zoo"], "stop": ["sb3-stop"], "both": ["sb3-zoo", "sb3-stop"]}
    sides = ["ours", *variants[args.sb3_mode]]
    stop_at, stop_source = FALLBACK_STOP_AT, "unused"
    if "sb3-stop" in sides:
        stop_at, stop_source = resolve_stop_at(args.sb3_stop_at, args.ours_argv)
    labels = {
        "ours": f"ours (`{args.ours_args}`)",
        "sb3-zoo": "SB3 zoo",
        "sb3-stop": f"SB3 stop@{stop_at:g}",
    }

    base = runs_folder(parser, args.keep, args.seeds, sides, "cartpole_vs_sb3-")

    meta = {
        **provenance(("dqnlm", "torch", "stable-baselines3", "gymnasium", "numpy")),
        "seeds": args.seeds,
        "sides": sides,
        "ours_args": args.ours_args,
        "sb3_steps": args.sb3_steps,
        "stop_at": stop_at if "sb3-stop" in sides else None,
        "stop_at_source": stop_source,
        "target": args.target,
        "run_root": str(base) if args.keep else None,
    }

    results = []
    total, done = len(args.seeds) * len(sides), 0
    try:
        print("warming the file cache (one untimed import run) ...", file=sys.stderr, flush=True)
        warm_up("torch, gymnasium, stable_baselines3, dqnlm.control, dqnlm.cli")
        for k, seed in enumerate(args.seeds):
            shift = k % len(sides)
            order = sides[shift:] + sides[:shift]
            runs = {}
            for side in order:
                done += 1
                print(
                    f"[{done}/{total}] seed {seed} {side:8s} ...",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                run = runs[side] = run_side(side, seed, base, args, stop_at)
                if "error" in run:
                    print(f" FAILED after {run['wall_s']:.1f} s: {run['error']}", file=sys.stderr)
                else:
                    t = fmt_s(run["time_to_475"])
                    print(
                        f" {run['wall_s']:.1f} s wall, t{args.target:g} {t}, "
                        f"final {run['final_mean']:.1f}, {run['steps']:,} steps"
                        + (" (stopped early)" if run["stopped_early"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
            results.append({"seed": seed, "order": order, "runs": runs})
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    summary = summarize(results, sides)
    report = markdown(results, summary, sides, labels, args.target)
    return publish(args.out, args.json, header(meta, labels), report, meta, results, summary)


if __name__ == "__main__":
    raise SystemExit(main())
