"""``dqnlm sweep`` and ``dqnlm report``: multi-seed experiments (a thin face over dqnlm.experiments)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dqnlm.cli.common import add_trust_argument
from dqnlm.errors import DQNLMError

TRUST = (
    "an env_id module:Env or an LM reward module:function (in a sweep file or sweep.json) "
    "import its module, and sweep.json name a dialogue schema or LM model, prompts or data "
    "outside the sweep dir"
)
"""What ``--trust-code`` allows in these commands."""


def add_experiment_parsers(sub) -> None:
    from dqnlm.experiments import report, sweep

    p = sub.add_parser(
        "sweep",
        help="run a grid of environments x variants x seeds in parallel (resumable)",
        description=sweep.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, required=True, metavar="SWEEP.toml", help="the grid")
    p.add_argument(
        "--workers",
        type=int,
        help="runs at once in the local pool or a local Ray instance (default 2); with "
        "--address the cluster's free resources decide",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a process pool on this machine (default); ray: one Ray task per run, "
        "retried from its checkpoint if its node dies (pip install 'dqnlm[ray]')",
    )
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="with --backend ray: join this running cluster (what `ray start --head` "
        "prints, or auto); default: start a local Ray instance",
    )
    p.add_argument(
        "--cpus-per-run",
        type=float,
        default=1.0,
        metavar="N",
        help="with --backend ray: CPUs reserved per run, also its torch threads (default 1)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        metavar="F",
        help="with --backend ray: GPUs (or a fraction) reserved per run (default 0)",
    )
    p.add_argument("--out", type=Path, help="sweep directory (default: runs/sweep-<file name>)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    add_trust_argument(p, TRUST)

    p = sub.add_parser(
        "report",
        help="aggregate a sweep into a markdown report with figures",
        description=report.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "sweep_dir", type=Path, metavar="DIR", help="a sweep directory (holds sweep.json)"
    )
    p.add_argument("--baseline", help="the variant others are compared with (default: the first)")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="re-render report.md and figures from results.json without recomputing",
    )
    add_trust_argument(p, TRUST)


def cmd_sweep(args) -> int:
    from dqnlm.experiments.report import write_report
    from dqnlm.experiments.sweep import load_sweep, sweep

    ray = _ray_options(args)
    workers = 2 if args.workers is None else args.workers
    limit = 4 * (os.cpu_count() or 1)  # each worker is a process running one run
    if not 1 <= workers <= limit:
        raise DQNLMError(f"--workers must be in [1, {limit}] (4 per CPU), got {workers}")
    spec = load_sweep(args.config, args.trust_code)
    out = args.out or Path("runs") / f"sweep-{args.config.stem}"
    runs = sweep(spec, out, workers, not args.no_progress, args.trust_code, ray)
    print(f"{len(runs)} runs finished in {out}")
    if not args.no_report:
        print(f"report: {write_report(out, trust_code=args.trust_code)}")
    return 0


def _ray_options(args):
    """The Ray backend's options, or None for the local pool (which takes none of them)."""
    ray_flags = {
        "--address": args.address is not None,
        "--cpus-per-run": args.cpus_per_run != 1.0,
        "--gpus-per-run": args.gpus_per_run != 0.0,
    }
    if args.backend == "local":
        given = [flag for flag, set_ in ray_flags.items() if set_]
        if given:
            raise DQNLMError(f"{given[0]} needs --backend ray")
        return None
    if args.address is not None and args.workers is not None:
        raise DQNLMError(
            "--workers sizes the local pool or a local Ray instance; with --address the "
            "cluster's resources decide how many runs go at once"
        )
    from dqnlm.experiments.ray_backend import RayOptions

    return RayOptions(args.address, args.cpus_per_run, args.gpus_per_run)


def cmd_report(args) -> int:
    from dqnlm.experiments.report import render_report, write_report

    if args.render_only:
        if args.baseline:  # the comparisons with the baseline are in results.json already
            raise DQNLMError("--baseline changes what is computed; drop --render-only to use it")
        print(render_report(args.sweep_dir))
    else:
        print(write_report(args.sweep_dir, args.baseline, args.trust_code))
    return 0
