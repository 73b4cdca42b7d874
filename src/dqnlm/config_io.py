"""Dataclass configs <-> TOML files and ``--set key=value`` overrides.

Shared by every config in the package (control, and later LM and dialogue).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from dqnlm.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Check ``value`` against the field's annotation; convert lists to tuples and ints to floats."""
    hint = typing.get_type_hints(cls)[name]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{name} must be a list of integers, got {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {hint.__name__}, got {value!r}")
    return value


def _check_keys(cls: type, keys, source: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in keys:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {source}{hint}")


def replace(config: C, values: dict[str, Any], source: str = "config") -> C:
    """A copy of ``config`` with ``values`` applied, type-checked field by field."""
    _check_keys(type(config), values, source)
    coerced = {k: _coerce(type(config), k, v) for k, v in values.items()}
    return dataclasses.replace(config, **coerced)


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` where value is TOML (``3``, ``1e-3``, ``true``, ``[64, 64]``) or a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words such as polyak or CartPole-v1
    return key, value


MAX_CONFIG_BYTES = 1 << 20
"""A config file is a page of settings; anything larger is a mistake (or /dev/zero)."""


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise ConfigError(f"config file {path} is not a regular file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is {path.stat().st_size:,} bytes; a config holds at most "
                f"{MAX_CONFIG_BYTES:,}"
            )
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def to_toml(config: Any) -> str:
    values = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }
    return tomli_w.dumps({k: v for k, v in values.items() if v is not None})


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstring under each dataclass field (CleanRL style), read from the source."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


class Checks:
    """Every invalid value of a config, collected so that all are reported at once, in one
    line, with the same wording in every trainer's config."""

    def __init__(self, config: Any) -> None:
        self.config, self.problems = config, []

    def need(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def _each(self, names: str):
        return ((name, getattr(self.config, name)) for name in names.split())

    def at_least(self, low: float, names: str) -> None:
        """Each of the space-separated ``names`` is >= ``low``."""
        for name, value in self._each(names):
            self.need(value >= low, f"{name} must be >= {low:g}, got {value}")

    def positive(self, names: str) -> None:
        """Each of ``names`` is a finite number > 0."""
        for name, value in self._each(names):
            self.need(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")

    def within(self, low: float, high: float, names: str, open_low: bool = False) -> None:
        """Each of ``names`` lies in [low, high] (or (low, high] with ``open_low``)."""
        for name, value in self._each(names):
            above = low < value if open_low else low <= value
            ok = math.isfinite(value) and above and value <= high
            shown = f"{'(' if open_low else '['}{low:g}, {high:g}]"
            self.need(ok, f"{name} must be in {shown}, got {value}")

    def one_of(self, name: str, choices: tuple[str, ...], hint: str = "") -> None:
        value = getattr(self.config, name)
        self.need(
            value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}{hint}"
        )

    def seed(self) -> None:
        from dqnlm.seeding import check_seed

        try:
            check_seed(self.config.seed)
        except ConfigError as e:
            self.problems.append(str(e))

    def target_network(self) -> None:
        """The target-network fields every trainer shares (target_update and its period, tau)."""
        from dqnlm.core.target import TARGET_MODES

        hint = ""
        if self.config.target_update == "epoch":
            hint = " (a copy per epoch is now hard with target_update_period in gradient updates)"
        self.one_of("target_update", TARGET_MODES, hint)
        self.at_least(1, "target_update_period")
        self.within(0, 1, "tau", open_low=True)

    def device(self) -> None:
        self.one_of("device", ("auto", "cpu", "cuda"))

    def done(self, what: str):
        """The config, or a ConfigError listing every problem (``invalid {what}: ...``)."""
        if self.problems:
            raise ConfigError(f"invalid {what}: " + "; ".join(self.problems))
        return self.config
