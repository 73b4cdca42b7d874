"""Where one LM Q-learning round spends its time: generation, scoring, each model's
forward passes, and the rest of the TD update (backward, optimizer, target update).

Runs a preset for a few rounds in-process and times each phase by wrapping the trainer's
own functions, so it also runs against an older checkout of dqnlm (``PYTHONPATH``) for a
before/after comparison on the same machine:

    .venv/bin/python benchmarks/lm_round_profile.py --preset sentiment --rounds 6
    git worktree add /tmp/old aec1e9a
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/lm_round_profile.py --preset sentiment

The first round is a warm-up and is left out of the means. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="sentiment")
    parser.add_argument("--model", help="model name or directory (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dqnlm.config_io import parse_override, replace
    from dqnlm.lm import trainer as trainer_module
    from dqnlm.lm.config import PRESETS, LMConfig

    values = dict(PRESETS[args.preset], device="cpu", eval_prompts=0)
    values = {k: v for k, v in values.items() if k in LMConfig.__dataclass_fields__}
    if args.model:
        values["model"] = args.model
    config = replace(LMConfig(), {**values, **dict(map(parse_override, args.overrides))})
    trainer = trainer_module.LMTrainer(config, None, progress=False)

    seconds: dict[str, float] = defaultdict(float)
    names = {id(trainer.model): "forward_online", id(trainer.target): "forward_target"}
    names[id(trainer.reference)] = "forward_reference"
    forward = trainer_module.forward_logits

    def timed_forward(model, *rest, **kw):
        started = time.perf_counter()
        out = forward(model, *rest, **kw)
        seconds[names.get(id(model), "forward_other")] += time.perf_counter() - started
        return out

    trainer_module.forward_logits = timed_forward
    for name in ("generate", "shaped_rewards", "score"):
        method = getattr(trainer, name)

        def timed(*a, _method=method, _name=name, **kw):
            started = time.perf_counter()
            out = _method(*a, **kw)
            seconds[_name] += time.perf_counter() - started
            return out

        setattr(trainer, name, timed)

    rows, tokens = [], 0
    for round_ in range(args.rounds):
        seconds.clear()
        started = time.perf_counter()
        collected = trainer._collect()
        batch, rewards = collected[0], collected[1]
        extra = collected[3:4] if len(collected) == 5 else ()  # newer: reference stats
        trainer.replay.add(batch, rewards, *extra)
        collect_s = time.perf_counter() - started
        for _ in range(config.updates_per_round):
            trainer._update()
        total = time.perf_counter() - started
        row = dict(seconds, round_s=total, collect_s=collect_s, updates_s=total - collect_s)
        if round_ > 0:  # the first round warms caches and allocators
            rows.append(row)
            tokens += int(batch.actions.sum())
    keys = sorted({k for r in rows for k in r})
    means = {k: sum(r.get(k, 0.0) for r in rows) / len(rows) for k in keys}
    means["tokens_per_s"] = tokens / sum(r["round_s"] for r in rows)
    print(json.dumps({"preset": args.preset, "rounds_timed": len(rows), **means}, indent=1))


if __name__ == "__main__":
    main()
