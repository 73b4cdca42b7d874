"""Where a control run's time goes: env stepping, acting, replay sampling, the update,
evaluations, and the rest (the loop's own Python), for one preset on a few seeds.

    .venv/bin/python benchmarks/control_step_profile.py --preset cartpole --seeds 100 101 102

Each phase is timed with ``time.perf_counter`` around the DQN's own methods (no profiler
overhead inflating Python), one torch thread, no run directory. ``--set KEY=VALUE``
overrides the preset (to compare configurations).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from dqnlm.cli.common import layer_config
from dqnlm.control.dqn import DQN
from dqnlm.control.presets import get_preset

PHASES = ("env step + store", "acting", "replay sampling", "update", "evaluation")


def profile(config) -> dict[str, float]:
    agent = DQN(config)
    spent: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    sample = agent.replay.sample
    agent.replay.sample = timed("replay sampling", sample)
    agent.act = timed("acting", agent.act)
    agent.env_step = timed("env step + store", agent.env_step)
    agent._update = timed("update", agent._update)
    agent.evaluate = timed("evaluation", agent.evaluate)
    start = time.perf_counter()
    result = agent.learn(progress=False, tensorboard=False)
    total = time.perf_counter() - start
    spent["update"] -= spent["replay sampling"]  # sampling happens inside the update
    spent["rest of the loop"] = total - sum(spent.values())
    spent["total"] = total
    spent["env steps"] = agent.global_step
    spent["updates"] = agent.num_updates
    spent["final return"] = result["mean_return"]
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    torch.set_num_threads(1)
    base = layer_config(get_preset(args.preset).config(), None, args.overrides, {"device": "cpu"})
    rows = [profile(base.__class__(**{**vars(base), "seed": seed})) for seed in args.seeds]
    print(f"preset {args.preset} {' '.join(args.overrides)}; seeds {args.seeds}")
    print("| phase | median s | share of loop | per env step, us | per update, us |")
    print("|---|---|---|---|---|")
    for name in (*PHASES, "rest of the loop", "total"):
        seconds = statistics.median(r[name] for r in rows)
        share = statistics.median(r[name] / r["total"] for r in rows)
        per_step = statistics.median(r[name] / r["env steps"] * 1e6 for r in rows)
        per_update = statistics.median(r[name] / max(r["updates"], 1) * 1e6 for r in rows)
        print(f"| {name} | {seconds:.2f} | {share:.0%} | {per_step:.0f} | {per_update:.0f} |")
    steps = [int(r["env steps"]) for r in rows]
    finals = [r["final return"] for r in rows]
    print(f"env steps {steps}; updates {[int(r['updates']) for r in rows]}; final returns {finals}")


if __name__ == "__main__":
    main()
