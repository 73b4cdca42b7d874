"""``dqnlm train|eval|plot|presets``: DQN on Gymnasium environments (a thin face over
dqnlm.control)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dqnlm.cli import common
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
        epilog=common.config_fields_help(DQNConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a tuned configuration (see `dqnlm presets`)")
    source.add_argument("--env", dest="env_id", help="any Gymnasium id with discrete actions")
    common.add_config_arguments(p, "learning_rate=3e-4")
    p.add_argument("--seed", type=int)
    p.add_argument("--total-steps", type=int, help="training length in env steps")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    common.add_train_arguments(p, "<name>", TRUST)

    p = sub.add_parser("eval", help="evaluate a run's last checkpoint with greedy actions")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, help="first evaluation seed (default: the run's own)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    common.add_trust_argument(p, TRUST)

    p = sub.add_parser("plot", help="overlay the learning curves of one or more runs")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--out", type=Path, help="PNG path (default: RUN_DIR/learning_curve.png for one run)"
    )

    sub.add_parser("presets", help="list the tuned presets")


def _check_env_id(values: dict, source: str, trust_code: bool) -> None:
    """A `module:Env` env_id imports its module: only with --trust-code."""
    if isinstance(values.get("env_id"), str):
        check_module_reference(values["env_id"], "env_id", source, trust_code)


def cmd_train(args) -> int:
    from dqnlm.control import DQN
    from dqnlm.control.presets import get_preset

    common.set_threads(args.threads)
    if args.resume:
        common.refuse_config_with_resume(args, ("total_steps", "device"), ("preset", "env_id"))
        run_dir = args.resume
    else:
        config = common.layer_config(
            get_preset(args.preset).config() if args.preset else DQNConfig(),
            args.config,
            args.overrides,
            {"seed": args.seed, "total_steps": args.total_steps, "device": args.device},
            # an empty --env is a mistake, not "use the default": only None is skipped
            before_set={"env_id": args.env_id},
            check_file=lambda values, source: _check_env_id(values, source, args.trust_code),
        ).validate()
        run_dir = args.run_dir or common.default_run_dir(args.preset or config.env_id, config.seed)
    flags = {"device": args.device, "total_steps": args.total_steps}

    def restart(values: dict, source: str) -> DQN:
        _check_env_id(values, source, args.trust_code)
        return DQN(common.config_from_run(DQNConfig, values, source, **flags), run_dir)

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

    common.check_episodes(args.episodes, LIMITS["final_eval_episodes"])
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
        steps, target = f"{config.total_steps:,}", describe_target(config)
        rows.append((name, preset.env_id, steps, target, f">= {preset.mark:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
