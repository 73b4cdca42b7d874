"""dqnlm's ``minatar-breakout`` preset against Stable-Baselines3 DQN on MinAtar Breakout,
same hyperparameters, frames and seeds, side by side.

The benchmark (seeds 100..102, 50k frames; two processes per seed, one thread each), from
the repository root:

    .venv/bin/python benchmarks/minatar_vs_sb3.py \\
        --out docs/data/minatar_vs_sb3.md --json docs/data/minatar_vs_sb3.json

and with one update per 4 frames instead of the preset's one per frame:

    .venv/bin/python benchmarks/minatar_vs_sb3.py --set train_freq=4 \\
        --out docs/data/minatar_vs_sb3_freq4.md --json docs/data/minatar_vs_sb3_freq4.json

A smoke test (a minute, not a benchmark):

    .venv/bin/python benchmarks/minatar_vs_sb3.py --seeds 100 --steps 3000 \\
        --final-episodes 3 --set learning_starts=1000

For each seed it runs, one after the other and in an order rotated by seed:

* ours: ``python -m dqnlm train --preset minatar-breakout --seed S --total-steps N
  --run-dir DIR --no-progress --device cpu --set eval_interval=0 [--set ...]``;
* SB3: ``benchmarks/sb3_minatar_runner.py`` with the same preset, seed, frames and
  ``--set`` overrides: SB3 DQN on dqnlm's own environment (``make_env``), with dqnlm's
  minatar Q-network as an SB3 features extractor and every hyperparameter mapped from
  the same ``DQNConfig`` (see that file).

The ``--set`` overrides (``eval_interval=0`` first: no periodic evaluations on either
side) go to both sides. Both evaluate identically at the end, with dqnlm's
:func:`dqnlm.control.envs.run_episodes` on ``make_env(config, train=False)``:
``final_eval_episodes`` greedy episodes (the preset's 30 unless ``--final-episodes``) on
the test seeds ``dqnlm.seeding.seed_streams(S).test + i``; ours reports it in eval.json.
Each process gets OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1 (dqnlm's ``--threads`` is 1 by
default; the runner calls ``torch.set_num_threads(1)``). Per seed and side it reports
the whole-process wall-clock (interpreter start, imports, training, final evaluation,
and for dqnlm its checkpoint, plot and TensorBoard files), the process's CPU time, the
training-clock time, the final mean return and the Q-network's parameter count. The
summary gives medians and the median of per-seed ratios ours/SB3. The load average is
recorded before every run, since other jobs may share the cores; the alternating order
keeps the ratio fair under a steady load.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sidebyside import add_output_arguments, child_env, provenance, publish, runs_folder, warm_up

RUNNER = Path(__file__).resolve().with_name("sb3_minatar_runner.py")
DEFAULT_SEEDS = [100, 101, 102]
DEFAULT_STEPS = 50_000
DEFAULT_PRESET = "minatar-breakout"
BASE_OVERRIDES = ["eval_interval=0"]
SIDES = ("ours", "sb3")
FORBIDDEN_KEYS = {
    "seed": "--seeds",
    "total_steps": "--steps",
    "device": "--device",
    "final_eval_episodes": "--final-episodes",
}
GOAL_RATIO = 0.5


# ---------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark dqnlm's minatar-breakout preset against Stable-Baselines3 DQN "
        "with the same hyperparameters, frames, seeds and final evaluation.",
        epilog="Example: %(prog)s --seeds 100 --steps 3000 --final-episodes 3 "
        "--set learning_starts=1000",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=DEFAULT_SEEDS,
        metavar="S",
        help="seeds to run, each on both sides (default: 100 101 102)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        metavar="N",
        help=f"training frames (env steps) on both sides (default: {DEFAULT_STEPS})",
    )
    p.add_argument(
        "--preset", default=DEFAULT_PRESET, help="dqnlm MinAtar preset (default: %(default)s)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both sides, as `dqnlm train --set` (repeatable), e.g. "
        "--set train_freq=4; applied after eval_interval=0",
    )
    p.add_argument(
        "--final-episodes",
        type=int,
        metavar="K",
        help="greedy episodes in the final evaluation on both sides (default: the preset's "
        "final_eval_episodes)",
    )
    p.add_argument(
        "--device", default="cpu", help="torch device for both sides (default: %(default)s)"
    )
    p.add_argument(
        "--together",
        action="store_true",
        help="also train ours on all seeds in one process (`dqnlm train --seeds`) and compare "
        "that process's wall-clock with the sum of SB3's per-seed processes",
    )
    add_output_arguments(p)
    return p


def check_config(preset: str, overrides: list[str], steps: int) -> tuple[object, str | None]:
    """The config both sides will build, or a one-line reason the SB3 side cannot match it."""
    sys.path.insert(0, str(RUNNER.parent))
    from sb3_minatar_runner import unsupported

    from dqnlm.config_io import parse_override, replace
    from dqnlm.control.envs import family
    from dqnlm.control.presets import get_preset
    from dqnlm.errors import DQNLMError

    try:
        values = dict(parse_override(text) for text in overrides)
        cfg = replace(get_preset(preset).config(), values, source="--set")
        cfg = replace(cfg, {"total_steps": steps}, source="--steps").validate()
    except DQNLMError as e:
        return None, str(e)
    if family(cfg.env_id) != "minatar":
        return None, f"preset {preset!r} is not a MinAtar game ({cfg.env_id})"
    problems = unsupported(cfg)
    return cfg, ("SB3 cannot reproduce " + "; ".join(problems)) if problems else None


# ------------------------------------------------------------------------- running
def side_command(side: str, seed: int, run_dir: Path, args) -> list[str]:
    sets = [x for text in args.all_overrides for x in ("--set", text)]
    if side == "ours":
        return [
            sys.executable,
            "-m",
            "dqnlm",
            "train",
            "--preset",
            args.preset,
            *sets,
            "--seed",
            str(seed),
            "--total-steps",
            str(args.steps),
            "--device",
            args.device,
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ]
    return [
        sys.executable,
        str(RUNNER),
        "--preset",
        args.preset,
        *sets,
        "--seed",
        str(seed),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
    ]


def q_params_from_checkpoint(run_dir: Path) -> int | None:
    """Parameters of the Q-network in a dqnlm run's last checkpoint."""
    try:
        from safetensors import safe_open

        latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["checkpoint"]
        path = run_dir / "checkpoints" / Path(latest).with_suffix(".safetensors").name
        total = 0
        with safe_open(str(path), "np") as f:
            names = f.keys()  # a safetensors file handle is not iterable
            for key in names:
                if key.startswith("q_net."):
                    n = 1
                    for dim in f.get_slice(key).get_shape():
                        n *= dim
                    total += n
        return total
    except (ImportError, OSError, KeyError, ValueError):
        return None


def read_ours(run_dir: Path) -> dict:
    final = json.loads((run_dir / "eval.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_rows = [r for r in rows if not r.get("eval_return")]
    return {
        "final_mean": float(final["mean_return"]),
        "final_std": float(final["std_return"]),
        "final_returns": final["returns"],
        "episodes": int(final["episodes"]),
        "steps": int(final["step"]),
        "train_time_s": float(train_rows[-1]["time_s"]) if train_rows else None,
        "q_params": q_params_from_checkpoint(run_dir),
    }


def load1() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {load1()}"


def run_side(side: str, seed: int, base: Path, args) -> dict:
    run_dir = base / f"{side}-s{seed}"
    cmd = side_command(side, seed, run_dir, args)
    load = load1()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log = base / f"{side}-s{seed}.log"
    log.write_text(
        f"$ {shlex.join(cmd)}\n# exit {proc.returncode}, {wall:.2f} s\n"
        f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    )
    result = {
        "command": shlex.join(cmd),
        "wall_s": wall,
        "cpu_s": cpu,
        "load1_before": load,
        "returncode": proc.returncode,
    }
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}")
        if side == "ours":
            result.update(read_ours(run_dir))
        else:
            lines = proc.stdout.strip().splitlines()
            out = json.loads(lines[-1]) if lines else {}
            out.pop("seed", None)
            out["q_params"] = out.get("sb3_q_params")
            result.update(out)
            if "final_mean" not in result:
                raise RuntimeError("the SB3 runner printed no result")
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        result["error"] = f"{e}; last stderr lines:\n{tail}" if tail else str(e)
    return result


def run_together(base: Path, args) -> dict:
    """Ours on every seed in one lockstep process: its wall-clock and each seed's return."""
    root = base / "together"
    seeds = ",".join(str(seed) for seed in args.seeds)
    cmd = side_command("ours", args.seeds[0], root, args)
    at = cmd.index("--seed")
    cmd[at : at + 2] = ["--seeds", seeds]
    print(f"all seeds in one process: {shlex.join(cmd)} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, env=child_env(), capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    finals = [read_ours(root / f"s{seed}")["final_mean"] for seed in args.seeds]
    print(f" {wall:.1f} s wall, finals {finals}", file=sys.stderr, flush=True)
    return {"command": shlex.join(cmd), "wall_s": wall, "finals": finals}


# ------------------------------------------------------------------------- report
def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: dict, b: dict, key: str) -> float | None:
    if "error" in a or "error" in b or a.get(key) is None or not b.get(key):
        return None
    return a[key] / b[key]


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results: list[dict]) -> dict:
    summary: dict = {}
    for side in SIDES:
        runs = [r["runs"][side] for r in results if "error" not in r["runs"][side]]
        summary[side] = {
            "ok": len(runs),
            "median_wall_s": median(x["wall_s"] for x in runs),
            "median_cpu_s": median(x["cpu_s"] for x in runs),
            "median_train_time_s": median(x.get("train_time_s") for x in runs),
            "median_final_mean": median(x["final_mean"] for x in runs),
            "mean_final_mean": statistics.fmean(x["final_mean"] for x in runs) if runs else None,
            "q_params": sorted({x.get("q_params") for x in runs if x.get("q_params")}),
        }
    pairs = [(r["runs"]["ours"], r["runs"]["sb3"]) for r in results]
    walls = [ratio(a, b, "wall_s") for a, b in pairs]
    cpus = [ratio(a, b, "cpu_s") for a, b in pairs]
    trains = [ratio(a, b, "train_time_s") for a, b in pairs]
    wall_ratio = median(walls)
    ours_ret, sb3_ret = summary["ours"]["median_final_mean"], summary["sb3"]["median_final_mean"]
    summary["ours/sb3"] = {
        "median_wall_ratio": wall_ratio,
        "median_cpu_ratio": median(cpus),
        "median_train_time_ratio": median(trains),
        "seeds": sum(w is not None for w in walls),
        "goal_ratio": GOAL_RATIO,
        "goal_time_met": wall_ratio is not None and wall_ratio <= GOAL_RATIO,
        "goal_return_met": ours_ret is not None and sb3_ret is not None and ours_ret >= sb3_ret,
    }
    return summary


def markdown(results: list[dict], summary: dict, meta: dict) -> str:
    head = [
        "seed",
        "order",
        "ours wall s",
        "ours cpu s",
        "ours train s",
        "ours final",
        "SB3 wall s",
        "SB3 cpu s",
        "SB3 train s",
        "SB3 final",
        "ours/SB3 wall",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [str(r["seed"]), " → ".join(r["order"])]
        for side in SIDES:
            run = r["runs"][side]
            if "error" in run:
                cells += [fmt(run["wall_s"]), "-", "-", "failed"]
                continue
            cells += [
                fmt(run["wall_s"]),
                fmt(run["cpu_s"]),
                fmt(run.get("train_time_s")),
                f"{run['final_mean']:.2f} ± {run['final_std']:.2f}",
            ]
        cells.append(fmt(ratio(r["runs"]["ours"], r["runs"]["sb3"], "wall_s"), ".2f"))
        lines.append("| " + " | ".join(cells) + " |")
    episodes = meta["final_episodes"]
    lines += [
        "",
        "wall: whole process (start-up, imports, training, final evaluation, output files); "
        "cpu: the process's user + system CPU time; train: the side's own training clock "
        "(dqnlm: metrics.csv time_s; SB3: model construction + learn()). final: mean ± std "
        f"return of the final {episodes}-episode greedy evaluation on the test seeds.",
        "",
        f"Summary over {len(results)} seed(s):",
        "",
        "| side | median wall s | median cpu s | median train s | median final | mean final "
        "| Q-net params |",
        "|---|---|---|---|---|---|---|",
    ]
    for side, label in (("ours", "dqnlm"), ("sb3", "SB3")):
        s = summary[side]
        if not s["ok"]:
            lines.append(f"| {label} | all runs failed | | | | | |")
            continue
        lines.append(
            f"| {label} | {fmt(s['median_wall_s'])} | {fmt(s['median_cpu_s'])} "
            f"| {fmt(s['median_train_time_s'])} | {fmt(s['median_final_mean'], '.2f')} "
            f"| {fmt(s['mean_final_mean'], '.2f')} "
            f"| {', '.join(f'{n:,}' for n in s['q_params']) or '-'} |"
        )
    s = summary["ours/sb3"]
    lines += [
        "",
        f"* ours / SB3, median of per-seed ratios ({s['seeds']} seeds): whole-process "
        f"wall-clock {fmt(s['median_wall_ratio'], '.2f')}, CPU time "
        f"{fmt(s['median_cpu_ratio'], '.2f')}, training clock "
        f"{fmt(s['median_train_time_ratio'], '.2f')}",
        f"* goal (dqnlm at most {GOAL_RATIO:g}x SB3's wall-clock at equal or better return): "
        f"time {'met' if s['goal_time_met'] else 'not met'} "
        f"({fmt(s['median_wall_ratio'], '.2f')}); return "
        f"{'met' if s['goal_return_met'] else 'not met'} (median final "
        f"{fmt(summary['ours']['median_final_mean'], '.2f')} vs "
        f"{fmt(summary['sb3']['median_final_mean'], '.2f')})",
    ]
    return "\n".join(lines) + "\n"


def header(meta: dict) -> str:
    v, h = meta["versions"], meta["sb3_hyperparameters"]
    sets = " ".join(f"--set {x}" for x in meta["overrides"])
    lines = [
        f"# dqnlm vs Stable-Baselines3 DQN on {meta['env_id']}",
        "",
        f"* command: `{meta['command']}`",
        f"* date: {meta['date']}",
        f"* CPU: {meta['cpu']} ({meta['cpu_count']} logical CPUs, shared with other jobs); "
        "one thread per process (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1; dqnlm --threads 1; "
        "torch.set_num_threads(1) in the SB3 runner); runs one at a time, order rotated per "
        "seed",
        f"* load: at start `{meta['uptime_start']}`; at end `{meta['uptime_end']}`",
        "* versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"* seeds: {', '.join(map(str, meta['seeds']))}; {meta['steps']:,} frames each; "
        f"device {meta['device']}",
        f"* ours: `python -m dqnlm train --preset {meta['preset']} {sets} --seed S "
        f"--total-steps {meta['steps']} --device {meta['device']} --run-dir DIR --no-progress`",
        f"* SB3: `benchmarks/sb3_minatar_runner.py --preset {meta['preset']} {sets} --seed S "
        f"--steps {meta['steps']} --device {meta['device']}`: SB3 DQN on dqnlm's make_env, "
        "hyperparameters from the same DQNConfig: "
        + ", ".join(f"{k} {val:g}" for k, val in h.items())
        + "; Adam, Huber loss, plain (not double) DQN on both sides",
        f"* Q-network: dqnlm's minatar network on both sides (SB3: features extractor "
        f"Conv2d(C,16,3)+ReLU+Linear(1024,128)+ReLU, net_arch [], linear head); parameters: "
        f"dqnlm {meta['q_params']['ours']}, SB3 {meta['q_params']['sb3']}",
        f"* final evaluation: {meta['final_episodes']} greedy episodes with "
        "dqnlm.control.envs.run_episodes on make_env(config, train=False), test seeds "
        "seed_streams(S).test + i, on both sides; no periodic evaluations",
    ]
    return "\n".join(lines) + "\n\n"


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.final_episodes is not None and args.final_episodes < 1:
        parser.error(f"--final-episodes must be >= 1, got {args.final_episodes}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must not repeat a seed")
    for text in args.overrides:
        key = text.partition("=")[0].strip()
        if key in FORBIDDEN_KEYS:
            parser.error(f"--set {key}=... is not allowed; use {FORBIDDEN_KEYS[key]}")
    args.all_overrides = BASE_OVERRIDES + args.overrides
    if args.final_episodes is not None:
        args.all_overrides.append(f"final_eval_episodes={args.final_episodes}")
    cfg, problem = check_config(args.preset, args.all_overrides, args.steps)
    if problem:
        parser.error(problem)
    sys.path.insert(0, str(RUNNER.parent))
    from sb3_minatar_runner import sb3_hyperparameters

    base = runs_folder(parser, args.keep, args.seeds, SIDES, "minatar_vs_sb3-")

    meta = {
        **provenance(("dqnlm", "torch", "stable-baselines3", "gymnasium", "minatar", "numpy")),
        "preset": args.preset,
        "env_id": cfg.env_id,
        "seeds": args.seeds,
        "steps": args.steps,
        "device": args.device,
        "overrides": args.all_overrides,
        "final_episodes": cfg.final_eval_episodes,
        "sb3_hyperparameters": sb3_hyperparameters(cfg),
        "uptime_start": uptime(),
        "run_root": str(base) if args.keep else None,
    }

    results = []
    total, done = len(args.seeds) * len(SIDES), 0
    try:
        print("warming the file cache (one untimed import run) ...", file=sys.stderr, flush=True)
        warm_up(
            "torch, gymnasium, minatar, stable_baselines3, dqnlm.control, dqnlm.cli, "
            "dqnlm.control.envs"
        )
        for k, seed in enumerate(args.seeds):
            shift = k % len(SIDES)
            order = list(SIDES[shift:] + SIDES[:shift])
            runs = {}
            for side in order:
                done += 1
                print(f"[{done}/{total}] seed {seed} {side:4s} ...", end="", file=sys.stderr)
                sys.stderr.flush()
                run = runs[side] = run_side(side, seed, base, args)
                if "error" in run:
                    print(f" FAILED after {run['wall_s']:.1f} s: {run['error']}", file=sys.stderr)
                else:
                    print(
                        f" {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s cpu, "
                        f"final {run['final_mean']:.2f}, {run['steps']:,} steps "
                        f"(load {run['load1_before']})",
                        file=sys.stderr,
                        flush=True,
                    )
            results.append({"seed": seed, "order": order, "runs": runs})
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    together = run_together(base, args) if args.together else None
    meta["uptime_end"] = uptime()

    summary = summarize(results)
    meta["q_params"] = {
        side: ", ".join(f"{n:,}" for n in summary[side]["q_params"]) or "unknown" for side in SIDES
    }
    report = markdown(results, summary, meta)
    if together is not None:
        sb3_total = sum(r["runs"]["sb3"]["wall_s"] for r in results)
        finals = ", ".join(f"{f:.2f}" for f in together["finals"])
        report += (
            f"\n**All seeds in one process** (`dqnlm train --seeds`, lockstep): "
            f"{together['wall_s']:.1f} s whole-process for {len(args.seeds)} seeds against "
            f"{sb3_total:.1f} s for SB3's {len(args.seeds)} processes: ratio "
            f"**{together['wall_s'] / sb3_total:.2f}**; final returns {finals} "
            f"(median {statistics.median(together['finals']):.2f}).\n"
        )
        meta["together"] = together
    return publish(args.out, args.json, header(meta), report, meta, results, summary)


if __name__ == "__main__":
    raise SystemExit(main())
