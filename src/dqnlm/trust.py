"""What a file a user was handed may make dqnlm do.

A run directory, checkpoint or config carries strings that name code: a Gymnasium id
``module:Env``, an LM reward ``module:function``, a model path. Loading them from a
file must never import a module or reach outside the run's folder unless the user
opts in on the command line (``--trust-code``), as Hugging Face's ``trust_remote_code``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dqnlm.errors import DQNLMError

_OWN_PACKAGE = Path(__file__).resolve().parent


class UntrustedInput(DQNLMError):
    """A file asked for something that could run code, and the user did not opt in."""


def is_own_module(module: str) -> bool:
    """Whether ``module`` is part of the installed dqnlm package (safe to import)."""
    if module != "dqnlm" and not module.startswith("dqnlm."):
        return False
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return False
    # `python -m` puts the working directory first on sys.path: a folder named dqnlm
    # there would shadow the installed package, so check where it really lives
    return (
        spec is not None
        and spec.origin is not None
        and Path(spec.origin).resolve().parent == _OWN_PACKAGE
    )


def check_module_reference(spec: str, what: str, source: str, trust_code: bool) -> None:
    """Refuse ``spec`` (``module:name``) read from ``source`` if it would import a module
    outside dqnlm and the user did not pass ``--trust-code``."""
    if trust_code or ":" not in spec:
        return
    module = spec.split(":", 1)[0]
    if not is_own_module(module):
        raise UntrustedInput(
            f"{source} sets {what} = {spec!r}, which would import module {module!r}; "
            "refused: pass --trust-code if you trust this file"
        )


def check_inside(path: str | Path, folder: Path, what: str, source: str, trust_code: bool) -> Path:
    """Resolve ``path`` (relative to ``folder``) and refuse it if it leaves ``folder``."""
    resolved = (folder / path).resolve()
    if not trust_code and not resolved.is_relative_to(folder.resolve()):
        raise UntrustedInput(
            f"{source} sets {what} = {str(path)!r}, outside its folder {folder}; "
            "refused: pass --trust-code if you trust this file"
        )
    return resolved
