"""``dqnlm train|eval|plot|presets``: DQN on Gymnasium environments (a thin face over
dqnlm.control)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
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
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int)
    seeds.add_argument(
        "--seeds",
        metavar="LIST",
        help="train many seeds in lockstep in one process, e.g. 0-9 or 1,3,5: batched "
        "networks, each seed with its own envs, replay and exploration, writing an ordinary "
        "run directory RUN_DIR/s<seed> (with --resume RUN_DIR: resume those seeds)",
    )
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
    if args.seeds is not None or (args.resume and _lockstep_seeds(args.resume)):
        return _train_lockstep(args)
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


def _lockstep_seeds(root: Path) -> list[int]:
    """The seeds of a lockstep run directory (folders s<seed> holding runs), or []."""
    from dqnlm.rundir import holds_run

    if not root.is_dir() or holds_run(root):
        return []
    found = [p for p in root.iterdir() if p.name[:1] == "s" and p.name[1:].isdigit()]
    return sorted(int(p.name[1:]) for p in found if p.is_dir() and holds_run(p))


def _train_lockstep(args) -> int:
    """``--seeds``: one config on many seeds, trained in lockstep (control.lockstep)."""
    import contextlib
    import statistics
    import time

    from dqnlm.control import DQN
    from dqnlm.control.lockstep import Lockstep, seed_dir
    from dqnlm.control.presets import get_preset
    from dqnlm.seeding import parse_seeds

    flags = {"device": args.device, "total_steps": args.total_steps}
    if args.resume:
        common.refuse_config_with_resume(
            args, ("total_steps", "device", "seeds"), ("preset", "env_id")
        )
        root = args.resume
        found = _lockstep_seeds(root)
        seeds = parse_seeds(args.seeds) if args.seeds is not None else found
        missing = [s for s in seeds if s not in found]
        if missing:
            raise DQNLMError(
                f"{root} holds no run of seed {missing[0]} ({seed_dir(root, missing[0])})"
            )
        config = None
    else:
        seeds = parse_seeds(args.seeds)
        config = common.layer_config(
            get_preset(args.preset).config() if args.preset else DQNConfig(),
            args.config,
            args.overrides,
            {"total_steps": args.total_steps, "device": args.device},
            before_set={"env_id": args.env_id},
            check_file=lambda values, source: _check_env_id(values, source, args.trust_code),
        ).validate()
        name = args.preset or config.env_id.replace("/", "-")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root = args.run_dir or Path("runs") / f"{name}-seeds{seeds[0]}-{seeds[-1]}-{stamp}"

    def restart(values: dict, source: str, run_dir: Path) -> DQN:
        _check_env_id(values, source, args.trust_code)
        return DQN(common.config_from_run(DQNConfig, values, source, **flags), run_dir)

    with contextlib.ExitStack() as stack:
        agents = []
        for seed in seeds:
            run_dir = seed_dir(root, seed)
            agents.append(
                stack.enter_context(
                    training_run(
                        run_dir,
                        resume=bool(args.resume),
                        overwrite=args.overwrite,
                        new=lambda s=seed, d=run_dir: DQN(dataclasses.replace(config, seed=s), d),
                        load=lambda d=run_dir: DQN.load(d, **flags, trust_code=args.trust_code),
                        restart=lambda v, src, d=run_dir: restart(v, src, d),
                    )
                )
            )
        if args.resume:
            print(f"resuming {len(agents)} seeds in {root} at step {agents[0].global_step}")
        results = Lockstep(agents).learn(
            progress=not args.no_progress, tensorboard=not args.no_tensorboard
        )
    returns = [r["mean_return"] for r in results]
    for seed, result in zip(seeds, results):
        stop = " (stopped early)" if result["stopped_early"] else ""
        print(
            f"seed {seed}: eval mean return {result['mean_return']:.1f} at step {result['step']:,}{stop}"
        )
    print(
        f"{len(seeds)} seeds: median eval return {statistics.median(returns):.1f} "
        f"(min {min(returns):.1f}, max {max(returns):.1f})"
    )
    print(f"run directories: {root}/s<seed>")
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
    print("\nsources:")
    for name, preset in PRESETS.items():
        print(
            textwrap.fill(preset.source, 96, initial_indent=f"  {name}: ", subsequent_indent="    ")
        )
    return 0
