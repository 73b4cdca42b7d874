"""What every `dqnlm` training command shares: arguments, --threads, the --resume guard,
config layering and default run directories."""

from __future__ import annotations

import argparse
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dqnlm.errors import DQNLMError
from dqnlm.seeding import check_seed

C = TypeVar("C")


def config_fields_help(config_cls: type) -> str:
    """Every config field with its default and docstring, for a command's ``--help``."""
    from dqnlm.config_io import field_docs

    defaults = config_cls()
    lines = ["config fields (TOML keys for --config, or --set KEY=VALUE):"]
    for name, doc in field_docs(config_cls).items():
        default = getattr(defaults, name)
        default = list(default) if isinstance(default, tuple) else default
        lines.append(f"  {name} = {default!r}")
        lines += textwrap.wrap(doc, 84, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def add_config_arguments(parser, example: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE``."""
    parser.add_argument("--config", type=Path, help="TOML file of config fields")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one config field, e.g. --set {example} (repeatable)",
    )


def add_trust_argument(parser, what: str) -> None:
    """``--trust-code``: let a handed file do ``what`` (import a module, read outside it)."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help=f"let {what}; off by default, as a stranger's files could run code",
    )


def add_train_arguments(parser, run_name: str, trust: str, threads: int | None = 1) -> None:
    """The options of a training command beside its config: threads (1 by default, as small
    Q-networks run fastest on one), where it writes, what it shows, and ``--trust-code``."""
    add_threads_argument(parser, threads)
    add = parser.add_argument
    add("--run-dir", type=Path, help=f"where outputs go (default: runs/{run_name}-s<seed>-<time>)")
    add("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    add("--no-progress", action="store_true", help="hide the progress bar")
    add("--no-tensorboard", action="store_true", help="skip TensorBoard event files")
    add(
        "--overwrite",
        action="store_true",
        help="clear a run directory that holds a run, then train into it",
    )
    add_trust_argument(parser, trust)


def add_threads_argument(parser, default: int | None) -> None:
    """``--threads``; a None default keeps torch's own, every core."""
    text = f"torch CPU threads (default {default or 'torch: every core'})"
    parser.add_argument("--threads", type=int, default=default, help=text)


def set_threads(threads: int | None) -> None:
    """Apply ``--threads``; None keeps torch's own default (every core). Also flush
    denormal floats to zero: Adam's tiny second moments otherwise fall into the CPU's slow
    denormal path (MinAtar training ran 20% faster with identical results)."""
    if threads is not None and threads < 1:
        raise DQNLMError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_flush_denormal(True)
    if threads is not None:
        torch.set_num_threads(threads)


def check_episodes(episodes: int | None, most: int) -> None:
    """``--episodes``, when given, must be in [1, most]."""
    if episodes is not None and not 1 <= episodes <= most:
        raise DQNLMError(f"--episodes must be in [1, {most:,}], got {episodes:,}")


def check_seed_flag(seed: int | None) -> None:
    """``--seed``, when given, must be a valid seed."""
    if seed is not None:
        check_seed(seed, "--seed")


def refuse_config_with_resume(
    args: argparse.Namespace, allowed: Sequence[str], refused: Sequence[str] = ()
) -> None:
    """``--resume`` trains on with the run's saved config, so every config flag but
    ``allowed`` is refused, naming the ones given. ``refused`` names a command's own
    flags beside --config, --seed, --run-dir and --set."""
    given = [f for f in (*refused, "config", "seed", "run_dir") if getattr(args, f) is not None]
    given += ["--set"] * bool(args.overrides)
    if given:
        flags = " and ".join("--" + f.replace("_", "-") for f in allowed)
        raise DQNLMError(
            f"--resume takes its config from the run directory; only {flags} may be given "
            f"with it (got {', '.join(given)})"
        )


def layer_config(
    base: C,
    config_file: Path | None,
    overrides: Sequence[str],
    flags: dict[str, Any],
    before_set: dict[str, Any] | None = None,
    check_file: Callable[[dict[str, Any], str], None] | None = None,
) -> C:
    """``base`` (defaults or a preset), then the ``--config`` file, then the ``before_set``
    flags, then ``--set KEY=VALUE``, then ``flags``; None means a flag was not given.

    ``check_file(values, source)`` sees the file's values that no later layer replaces:
    a value there may name code to import, which only ``--trust-code`` allows."""
    from dqnlm.config_io import load_toml, parse_override, replace

    before_set = _given(before_set or {})
    set_values = dict(parse_override(o) for o in overrides)
    config = base
    if config_file:
        values = load_toml(config_file)
        if check_file is not None:
            kept = {k: v for k, v in values.items() if k not in {**before_set, **set_values}}
            check_file(kept, str(config_file))
        config = replace(config, values, source=str(config_file))
    config = replace(config, before_set, source="flags")
    config = replace(config, set_values, source="--set")
    return replace(config, _given(flags), source="flags")


def _given(flags: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def default_run_dir(name: str, seed: int) -> Path:
    return Path("runs") / f"{name}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def config_from_run(config_cls: type, values: dict, source: str, **flags):
    """A run's config rebuilt from its ``config.toml`` values, then the non-None ``flags``."""
    from dqnlm.config_io import replace

    return replace(replace(config_cls(), values, source=source), _given(flags), source="flags")
