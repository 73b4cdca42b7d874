"""Argument helpers shared by every `dqnlm` training command."""

from __future__ import annotations

import textwrap
from pathlib import Path


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
    """``--trust-code``: let a handed file do ``what`` (import a module, read outside its
    folder); off by default, as a stranger's file could run code."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help=f"let {what}; off by default, as a stranger's files could run code",
    )


def add_overwrite_argument(parser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="clear a run directory that already holds a run, then train into it",
    )


def config_from_run(config_cls: type, values: dict, source: str, **flags):
    """A run's config rebuilt from its ``config.toml`` values, then the non-None ``flags``."""
    from dqnlm.config_io import replace

    config = replace(config_cls(), values, source=source)
    return replace(config, {k: v for k, v in flags.items() if v is not None}, source="flags")
