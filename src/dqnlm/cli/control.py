"""``dqnlm train|eval|plot|presets``: DQN on Gymnasium environments (a thin face over
dqnlm.control)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from dqnlm.cli.common import (
    add_config_arguments,
    add_overwrite_argument,
    add_trust_argument,
    config_fields_help,
    config_from_run,
)
from dqnlm.control.config import LIMITS, DQNConfig
from dqnlm.errors import DQNLMError
from dqnlm.rundir import training_run
from dqnlm.seeding import check_seed
from dqnlm.trust import check_module_reference

TRUST = "a run directory or config file import modules outside dqnlm (a `module:Env` env_id)"
"""What ``--trust-code`` allows in these commands."""


def add_control_parsers(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train DQN on a Gymnasium environment",
        description="Train DQN with a target network. Settings apply in order: "
        "preset, --config file, --env, --set, then --seed/--total-steps/--device.",
        epilog=config_fields_help(DQNConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a tuned configuration (see `dqnlm presets`)")
    source.add_argument("--env", dest="env_id", help="any Gymnasium id with discrete actions")
    add_config_arguments(p, "learning_rate=3e-4")
    p.add_argument("--seed", type=int)
    p.add_argument("--total-steps", type=int, help="training length in env steps")
    p.add_argument(
        "--run-dir", type=Path, help="where outputs go (default: runs/<name>-s<seed>-<time>)"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small Q-networks are fastest on one thread)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard event files")
    add_overwrite_argument(p)
    add_trust_argument(p, TRUST)

    p = sub.add_parser("eval", help="evaluate a run's last checkpoint with greedy actions")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, help="first evaluation seed (default: the run's own)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_trust_argument(p, TRUST)

    p = sub.add_parser("plot", help="overlay the learning curves of one or more runs")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--out", type=Path, help="PNG path (default: RUN_DIR/learning_curve.png for one run)"
    )

    sub.add_parser("presets", help="list the tuned presets")


def _resolve_config(args):
    from dqnlm.config_io import load_toml, parse_override, replace
    from dqnlm.control import DQNConfig
    from dqnlm.control.presets import get_preset

    config = get_preset(args.preset).config() if args.preset else DQNConfig()
    if args.config:
        from_file = load_toml(args.config)
        if args.env_id is None and isinstance(from_file.get("env_id"), str):
            check_module_reference(from_file["env_id"], "env_id", str(args.config), args.trust_code)
        config = replace(config, from_file, source=str(args.config))
    if args.env_id is not None:  # an empty --env is a mistake, not "use the default"
        config = dataclasses.replace(config, env_id=args.env_id)
    config = replace(config, dict(parse_override(o) for o in args.overrides), source="--set")
    flags = {"seed": args.seed, "total_steps": args.total_steps, "device": args.device}
    return replace(config, {k: v for k, v in flags.items() if v is not None}, source="flags")


def cmd_train(args) -> int:
    import torch

    from dqnlm.control import DQN

    if args.threads < 1:
        raise DQNLMError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)

    if args.resume:
        given = [
            f
            for f in ("preset", "env_id", "config", "seed", "run_dir")
            if getattr(args, f) is not None
        ]
        if given or args.overrides:
            raise DQNLMError(
                "--resume takes its config from the run directory; only --total-steps and "
                f"--device may be given with it (got {', '.join(given + ['--set'] * bool(args.overrides))})"
            )
        run_dir = args.resume
    else:
        config = _resolve_config(args).validate()
        run_dir = args.run_dir or Path("runs") / (
            f"{args.preset or config.env_id}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    flags = {"device": args.device, "total_steps": args.total_steps}

    def restart(values: dict, source: str) -> DQN:
        if isinstance(values.get("env_id"), str):
            check_module_reference(values["env_id"], "env_id", source, args.trust_code)
        return DQN(config_from_run(DQNConfig, values, source, **flags), run_dir)

    with training_run(
        run_dir,
        resume=bool(args.resume),
        overwrite=args.overwrite,
        new=lambda: DQN(config, run_dir),  # checks the environment before anything is written
        load=lambda: DQN.load(run_dir, **flags, trust_code=args.trust_code),
        restart=restart,
    ) as agent:
        if agent.last_checkpoint:
            print(f"resuming {run_dir} at step {agent.global_step} of {agent.config.total_steps}")
        result = agent.learn(progress=not args.no_progress, tensorboard=not args.no_tensorboard)
    if agent.stopped_early:
        print(
            f"stopped early at step {agent.global_step:,}: a validation evaluation reached "
            f"stop_at_return={agent.config.stop_at_return:g}"
        )
    print(
        f"eval mean return {result['mean_return']:.1f} +/- {result['std_return']:.1f} "
        f"over {result['episodes']} episodes"
    )
    print(f"run directory: {agent.run_dir}")
    return 0


def cmd_eval(args) -> int:
    from dqnlm.control import DQN

    if not 1 <= args.episodes <= LIMITS["final_eval_episodes"]:
        raise DQNLMError(
            f"--episodes must be in [1, {LIMITS['final_eval_episodes']:,}], got {args.episodes:,}"
        )
    if args.seed is not None:  # episode i plays seed + i
        check_seed(args.seed, "--seed")
        check_seed(args.seed + args.episodes - 1, "--seed plus --episodes - 1")
    agent = DQN.load(args.run_dir, device=args.device, replay=False, trust_code=args.trust_code)
    result = agent.evaluate(args.episodes, args.seed)
    result["step"] = agent.global_step
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{agent.config.env_id} at step {agent.global_step}: mean return "
            f"{result['mean_return']:.2f} +/- {result['std_return']:.2f} over {args.episodes} episodes"
        )
    return 0


def cmd_plot(args) -> int:
    from dqnlm.control.metrics import plot_runs

    for run_dir in args.run_dirs:
        if not (run_dir / "metrics.csv").is_file():
            raise DQNLMError(f"{run_dir} has no metrics.csv; is it a dqnlm run directory?")
    if args.out is None and len(args.run_dirs) > 1:
        raise DQNLMError("give --out FILE.png when plotting several runs")
    out = args.out or args.run_dirs[0] / "learning_curve.png"
    print(plot_runs(args.run_dirs, out))
    return 0


def cmd_presets(args) -> int:
    from dqnlm.control.presets import PRESETS, describe_target

    rows = [("preset", "environment", "steps", "target network", "mark")]
    for name, preset in PRESETS.items():
        config = preset.config()
        rows.append(
            (
                name,
                preset.env_id,
                f"{config.total_steps:,}",
                describe_target(config),
                f">= {preset.mark:g}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
