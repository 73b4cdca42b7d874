"""The ``dqnlm`` command line: a thin face over :mod:`dqnlm.control`, :mod:`dqnlm.lm` and
:mod:`dqnlm.dialogue`."""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import os
import signal
import sys
import threading

import dqnlm
from dqnlm.cli.control import add_control_parsers, cmd_eval, cmd_plot, cmd_presets, cmd_train
from dqnlm.cli.dialogue import add_dialogue_parser, cmd_dialogue
from dqnlm.cli.experiments import add_experiment_parsers, cmd_report, cmd_sweep
from dqnlm.cli.lm import add_lm_parser, cmd_lm
from dqnlm.core.checkpoint import CheckpointError
from dqnlm.errors import DQNLMError


def _version() -> str:
    try:
        return importlib.metadata.version("dqnlm")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return getattr(dqnlm, "__version__", "unknown")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dqnlm", description="Deep Q-learning with target networks."
    )
    parser.add_argument("--version", action="version", version=f"dqnlm {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_control_parsers(sub)
    add_lm_parser(sub)
    add_dialogue_parser(sub)
    add_experiment_parsers(sub)
    return parser


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "plot": cmd_plot,
    "presets": cmd_presets,
    "lm": cmd_lm,
    "dialogue": cmd_dialogue,
    "sweep": cmd_sweep,
    "report": cmd_report,
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a KeyboardInterrupt so trainers checkpoint as on Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --processes hands on
    # schedulers send SIGTERM before they kill: treat it as Ctrl-C (a handler can only be
    # set from the main thread; the previous one is put back when main returns)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return COMMANDS[args.command](args)
    except (DQNLMError, CheckpointError) as e:
        print(f"dqnlm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        terminated = isinstance(e, _Terminated)
        print(f"dqnlm: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except BrokenPipeError:  # output piped into `head` and friends: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter closes it at exit
        return 0
    except OSError as e:
        # a full disk, a read-only file system, a file where a folder should be: every
        # output is written atomically, so what was there before is intact
        if e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f"{e.filename}: " if e.filename is not None else ""
        print(f"dqnlm: error: {where}{e.strerror}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
