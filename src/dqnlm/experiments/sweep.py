"""Sweeps: a grid of environments x config variants x seeds, run in worker processes on
this machine (``--workers``) or as Ray tasks on a cluster (``--backend ray``).

A sweep file (TOML) names the grid::

    seeds = 10                      # or a list: [0, 1, 2]
    [base]                          # config fields for every run (after the env's preset)
    eval_interval = 5_000
    [envs.cartpole]                 # an env: a preset and/or env_id, plus config fields
    preset = "cartpole"
    total_steps = 30_000
    [variants.none]                 # a variant: config fields on top
    target_update = "none"

An env table may name its trainer: ``trainer = "control"`` (the default: DQNConfig
fields, a ``preset``, ``env_id``, and ``low``/``high``/``threshold`` to normalise
returns), ``"dialogue"`` (DialogueDQNConfig fields such as ``domain`` and ``epochs``) or
``"lm"`` (a ``preset`` and LMConfig fields such as ``model`` and ``rounds``); ``[base]``
and the variants then hold fields of every trainer the sweep names (see
:mod:`dqnlm.experiments.trainers`).

Each run is an ordinary run directory of its trainer, ``OUT/runs/<env>/<variant>/s<seed>``.
A run is finished when its ``eval.json`` exists, so a sweep started again skips it; a
run killed mid-way continues from its last checkpoint. A sweep file may grow (more envs,
variants or seeds) and rerun into the same directory: only the new runs train, and a
change to a run already there is refused. Control runs do not stop early unless the file
says ``early_stop = true`` (to measure presets as they ship): by default every run spends
its whole budget, so curves and areas compare. With ``lockstep = true`` the seeds of each
control env x variant train together in one worker (as ``dqnlm train --seeds``: batched
networks, each seed its own run directory and the run it would be alone); Ray runs each
seed as its own task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from dqnlm.config_io import load_toml, replace
from dqnlm.core.checkpoint import atomic_write_text, loads_finite
from dqnlm.errors import ConfigError, DQNLMError
from dqnlm.experiments.trainers import trainer_of
from dqnlm.experiments.worker import (
    Run,
    execute,
    execute_lockstep,
    init_pool_worker,
    is_finished,
)
from dqnlm.rundir import claim_run_dir, holds_run
from dqnlm.seeding import check_seed

if TYPE_CHECKING:
    from dqnlm.experiments.ray_backend import RayOptions

__all__ = ["Run", "execute", "is_finished", "load_sweep", "read_spec", "runs_of", "sweep"]

SPEC = "sweep.json"
NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")
"""Env and variant names: they become directory names."""
MAX_RUNS = 10_000
"""Runs in one sweep: far beyond any study's need, far below what a typo (1e9 seeds) asks."""


def load_sweep(path: str | Path, trust_code: bool = False) -> dict[str, Any]:
    """Read and check a sweep file; returns the spec with every run's config resolved.
    What would import a module (an ``env_id`` ``module:Env``, a reward ``module:function``)
    needs ``trust_code``."""
    raw = load_toml(path)
    try:
        unknown = set(raw) - {"seeds", "base", "envs", "variants", "early_stop", "lockstep"}
        if unknown:
            raise ConfigError(f"unknown top-level keys {sorted(unknown)}")
        seeds = _seeds(raw.get("seeds", 10))
        tables = {key: raw.get(key, {}) for key in ("base", "envs", "variants")}
        for key, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{key} must be a table, got {table!r}")
            if key != "base":
                for name, entry in table.items():
                    if not isinstance(entry, dict):
                        raise ConfigError(f"[{key}.{name}] must be a table")
                    if not NAME.fullmatch(name):
                        raise ConfigError(
                            f"[{key}.{name}]: names may hold letters, digits and . _ + - only "
                            "(they become directory names)"
                        )
        if not tables["envs"] or not tables["variants"]:
            raise ConfigError("needs at least one [envs.NAME] and one [variants.NAME]")
        grid = len(tables["envs"]) * len(tables["variants"]) * len(seeds)
        if grid > MAX_RUNS:
            raise ConfigError(
                f"{len(tables['envs'])} envs x {len(tables['variants'])} variants x "
                f"{len(seeds)} seeds = {grid:,} runs; a sweep holds at most {MAX_RUNS:,}"
            )
        early_stop = raw.get("early_stop", False)
        if not isinstance(early_stop, bool):
            raise ConfigError(f"early_stop must be true or false, got {early_stop!r}")
        lockstep = raw.get("lockstep", False)
        if not isinstance(lockstep, bool):
            raise ConfigError(f"lockstep must be true or false, got {lockstep!r}")
        spec = {"seeds": seeds, "envs": {}, "variants": tables["variants"], "base": tables["base"]}
        if lockstep:
            spec["lockstep"] = True
        for name, env in tables["envs"].items():
            entry = _resolve_env(name, env, spec["base"], spec["variants"], early_stop)
            trainer_of(entry).check_file(entry, f"[envs.{name}]", f"sweep file {path}", trust_code)
            spec["envs"][name] = entry
    except ConfigError as e:
        raise ConfigError(f"sweep file {path}: {e}") from None
    return json.loads(json.dumps(spec))  # plain JSON values, as saved in sweep.json


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seeds(seeds: Any) -> list[int]:
    """The seed list of a sweep's ``seeds`` (a count or a list), each a valid seed."""
    if _is_int(seeds) and 0 < seeds <= MAX_RUNS:
        return list(range(seeds))
    if _is_int(seeds) and seeds > MAX_RUNS:
        raise ConfigError(
            f"seeds = {seeds:,} runs per cell; a sweep holds at most {MAX_RUNS:,} runs"
        )
    if not (isinstance(seeds, list) and seeds):
        raise ConfigError(f"seeds must be a positive count or a list of ints, got {seeds!r}")
    for i, seed in enumerate(seeds):
        check_seed(seed, f"seeds[{i}]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds repeat: {seeds}")
    return seeds


def _resolve_env(
    name: str, env: dict, base: dict, variants: dict, early_stop: bool = False
) -> dict[str, Any]:
    """An env's sweep.json entry: its trainer, the trainer's record of the env table (the
    control env's bounds), and one config per variant: table over [base] over preset."""
    where = f"[envs.{name}]"
    try:
        kind = trainer_of(env)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    fields = {k: v for k, v in env.items() if k not in (*kind.table_keys, "trainer")}
    try:
        config = kind.start(env) if kind.start else kind.config({}, "defaults")
        config = replace(config, base, source="[base]")
        config = replace(config, fields, where)
        record = kind.record(env, config)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    configs = {}
    for variant, values in variants.items():
        here = f"{where} x [variants.{variant}]"
        try:
            resolved = replace(config, values, source=here)
            if kind.early_stop and not early_stop:  # curves and areas compare over whole budgets
                resolved = dataclasses.replace(resolved, **{kind.early_stop: None})
            configs[variant] = dataclasses.asdict(kind.finish(resolved))
        except ConfigError as e:
            raise ConfigError(f"{here}: {e}") from None
    return {"trainer": kind.name, **record, "configs": configs}


def _conflict(old: dict[str, Any], new: dict[str, Any], out: Path) -> str | None:
    """Why ``new`` cannot continue the sweep ``old`` in ``out`` (None when it can): a sweep
    may grow by envs, variants and seeds, but a run both share must keep its exact config.
    Cells with no run under way yet (a sweep that failed to start) may change freely."""
    started = {(r.env, r.variant) for r in runs_of(old) if holds_run(r.directory(out))}
    for env in old["envs"].keys() & new["envs"].keys():
        was, now = old["envs"][env], new["envs"][env]
        cells = {variant for e, variant in started if e == env}
        if not cells:
            continue
        for key in sorted((was.keys() | now.keys()) - {"configs"}):
            if was.get(key) != now.get(key):
                return f"[envs.{env}] {key} was {was.get(key)!r}, now {now.get(key)!r}"
        for variant in was["configs"].keys() & now["configs"].keys() & cells:
            before, after = was["configs"][variant], now["configs"][variant]
            changed = sorted(
                k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
            )
            if changed:
                return f"{env} x {variant}: {', '.join(changed)} changed"
    return None


def read_spec(out: Path, trust_code: bool = False) -> dict[str, Any]:
    """``out/sweep.json``, checked as if a stranger wrote it: a malformed or edited file is
    one error naming it, and what would import a module or read a file outside ``out``
    (an ``env_id`` ``module:Env``, a dialogue schema, an LM model) is refused unless
    ``trust_code``. An env entry without a trainer (an older sweep) is a control env."""
    path = out / SPEC
    try:
        spec = loads_finite(path.read_text())
        if not isinstance(spec, dict) or not {"seeds", "envs", "variants"} <= spec.keys():
            raise ValueError("it needs an object with seeds, envs and variants")
        _seeds(spec["seeds"])
        for key in ("envs", "variants"):
            if not isinstance(spec[key], dict) or not spec[key]:
                raise ValueError(f"{key} must be a non-empty object")
            bad = [name for name in spec[key] if not NAME.fullmatch(name)]
            if bad:
                raise ValueError(f"{key} has names that are not plain folder names: {bad}")
        for name, info in spec["envs"].items():
            kind = _check_env_entry(name, info, spec["variants"])
            info = {"trainer": kind.name, **info}
            spec["envs"][name] = kind.trusted(info, out, f"[envs.{name}]", str(path), trust_code)
    except OSError as e:
        raise DQNLMError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, TypeError, OverflowError, ConfigError) as e:
        raise DQNLMError(f"{path} is not a valid sweep record: {e}") from None
    return spec


def _check_env_entry(name: str, info: Any, variants: dict):
    """The trainer kind of a well-formed env entry (ValueError naming what is wrong)."""
    if not isinstance(info, dict):
        raise ValueError(f"envs.{name} must be an object")
    try:
        kind = trainer_of(info)
        kind.check_record(info)
    except (ValueError, ConfigError) as e:
        raise ValueError(f"envs.{name}: {e}") from None
    configs = info.get("configs")
    if not isinstance(configs, dict) or set(configs) != set(variants):
        raise ValueError(f"envs.{name}.configs must hold one config per variant")
    if not all(isinstance(c, dict) for c in configs.values()):
        raise ValueError(f"envs.{name}.configs must hold objects")
    return kind


def runs_of(spec: dict[str, Any]) -> list[Run]:
    return [
        Run(env, variant, seed, {**info["configs"][variant], "seed": seed}, trainer_of(info).name)
        for env, info in spec["envs"].items()
        for variant in spec["variants"]
        for seed in spec["seeds"]
    ]


def check_runnable(spec: dict[str, Any]) -> None:
    """Rebuild each config and make each environment once, so that a sweep that cannot run
    fails before it writes anything."""
    for env, info in spec["envs"].items():
        kind = trainer_of(info)
        try:
            kind.check_runnable(
                [kind.finish(c) for c in kind.configs(info, f"[envs.{env}]").values()]
            )
        except DQNLMError as e:
            raise ConfigError(f"[envs.{env}]: {e}") from None


def sweep(
    spec: dict[str, Any],
    out: Path,
    workers: int = 2,
    progress: bool = True,
    trust_code: bool = False,
    ray: RayOptions | None = None,
) -> list[Path]:
    """Run every unfinished run of ``spec`` under ``out``; returns all run directories.

    ``workers`` runs go at once in a local process pool, or, with ``ray``, as Ray tasks on
    a local Ray instance sized for ``workers`` runs or on the cluster at ``ray.address``.
    ``trust_code`` lets a run import a module or read files outside ``out`` (dqnlm.trust).
    """
    check_runnable(spec)
    with contextlib.ExitStack() as stack:
        if ray is not None:  # connect (or refuse the cluster) before anything is written
            from dqnlm.experiments import ray_backend

            stack.enter_context(ray_backend.connected(ray, workers))
        with claim_run_dir(out, keep_on_failure=True):
            saved = out / SPEC
            if saved.is_file():
                conflict = _conflict(read_spec(out, trust_code), spec, out)
                if conflict:
                    raise ConfigError(
                        f"{out} holds a different sweep ({saved}: {conflict}); use another "
                        "--out, or a sweep file that only adds envs, variants or seeds"
                    )
            atomic_write_text(saved, json.dumps(spec, indent=1))
            runs = runs_of(spec)
            todo = [r for r in runs if not is_finished(r.directory(out))]
            if ray is None:
                results = _pool_results(todo, out, workers, trust_code, spec.get("lockstep", False))
            else:
                results = ray_backend.results(todo, out, ray, trust_code)
            bar = tqdm(
                total=len(runs), initial=len(runs) - len(todo), unit="run", disable=not progress
            )
            with bar, contextlib.closing(results):
                for run, result in results:
                    bar.set_postfix_str(
                        f"{run.env}/{run.variant}/s{run.seed}: {result['summary']}", refresh=False
                    )
                    bar.update()
    return [r.directory(out) for r in runs]


def _pool_results(
    todo: list[Run], out: Path, workers: int, trust_code: bool, lockstep: bool = False
) -> Iterator[tuple[Run, dict]]:
    """Each run of ``todo`` trained in a local process pool, as it finishes; with
    ``lockstep``, the control seeds of each env x variant as one task."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in todo:
        together = lockstep and run.trainer == "control"
        groups.setdefault(
            (run.env, run.variant) if together else (run.env, run.variant, run.seed), []
        ).append(run)
    context = multiprocessing.get_context("spawn")  # no forked torch state in workers
    with ProcessPoolExecutor(workers, context, initializer=init_pool_worker) as pool:
        futures = {}
        for group in groups.values():
            if len(group) > 1:
                futures[pool.submit(execute_lockstep, group, out, trust_code)] = group
            else:
                futures[pool.submit(_one, group[0], out, trust_code)] = group
        try:
            for future in as_completed(futures):
                for run, result in zip(futures[future], future.result()):
                    yield run, result
        except BaseException as e:
            for future in futures:
                future.cancel()
            # Ctrl-C or SIGTERM here, or an error in the caller's loop: checkpoint and stop
            if isinstance(e, (KeyboardInterrupt, GeneratorExit)):
                for worker in multiprocessing.active_children():
                    worker.terminate()  # SIGTERM; a worker Ctrl-C reached ignores it
            raise


def _one(run: Run, out: Path, trust_code: bool) -> list[dict]:
    return [execute(run, run.directory(out), trust_code)]
