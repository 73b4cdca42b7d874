"""How learnable is the first move of a star-graph path, given the strongest signal?

Post-training (Q-learning, GRPO, RLOO) learns the first move from a reward that says
whether a sampled path was right. This benchmark gives the model more than any of them
gets: the correct first move itself, as a cross-entropy label (supervised learning on the
one token that needs planning), on fresh training graphs every step. If this cannot lift
held-out first-step accuracy off 1/d within a budget, no reward-driven method can be
expected to on the same model and budget. From the repository root::

    .venv/bin/python benchmarks/stargraph_oracle.py --degree 2 --arm-length 3 \\
        --budget-s 1800 --out runs/stargraph_oracle/g23.json
    .venv/bin/python benchmarks/stargraph_oracle.py --degree 2 --arm-length 5 \\
        --budget-s 1800 --out runs/stargraph_oracle/g25.json

Options: ``--init pretrained`` (default: the family's cached teacher-forced model, pretrained
on first use) or ``scratch`` (the same architecture, fresh weights); ``--structured``
builds each batch from graphs shown with every one of their d goals (the "structured
samples" of Frydenlund 2024), so the edges alone never tell the answer. Held-out
first-step accuracy (the argmax at the first move, as greedy decoding takes it) is
measured on 512 of the family's fixed held-out graphs every ``--eval-every`` steps.
Writes the curve as JSON to ``--out`` and a plot beside it (``.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def with_every_goal(graphs):
    """Each graph once per arm, the goal at that arm's end."""
    from dqnlm.lm.stargraph import Graph

    out = []
    for graph in graphs:
        child = {a: b for a, b in graph.edges if a != graph.start}  # arms do not branch
        for first in (b for a, b in graph.edges if a == graph.start):
            path = [graph.start, first]
            while path[-1] in child:
                path.append(child[path[-1]])
            out.append(Graph(graph.edges, graph.start, path[-1], tuple(path)))
    return out


def first_moves(tokenizer, graphs, prompt_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of prompt + start node, and the id of the correct first move."""
    texts = [g.prompt() + f"{g.start},{g.path[1]}" for g in graphs]
    ids = torch.tensor(tokenizer(texts, add_special_tokens=False)["input_ids"])
    return ids[:, : prompt_tokens + 1], ids[:, prompt_tokens + 1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--degree", type=int, default=2)
    p.add_argument("--arm-length", type=int, default=5)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--init", choices=("pretrained", "scratch"), default="pretrained")
    p.add_argument("--structured", action="store_true", help="every graph with all d goals")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    p.add_argument("--budget-s", type=float, default=1800.0, help="training wall-clock")
    p.add_argument("--eval-every", type=int, default=250, help="steps between measurements")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="curve JSON (a .png goes beside)")
    args = p.parse_args(argv)

    from transformers import AutoModelForCausalLM

    from dqnlm.errors import DQNLMError
    from dqnlm.lm.config import preset_config
    from dqnlm.lm.stargraph import StarGraphs, fit_config, resolve_model, word_tokenizer

    torch.set_num_threads(args.threads)
    try:
        family = StarGraphs(args.degree, args.arm_length, args.nodes).check()
        cfg = dataclasses.replace(
            preset_config("stargraph"),
            degree=args.degree, arm_length=args.arm_length, nodes=args.nodes,
        )  # fmt: skip
        source = resolve_model(fit_config(cfg))
    except DQNLMError as e:
        sys.exit(str(e))
    model = AutoModelForCausalLM.from_pretrained(source)
    torch.manual_seed(args.seed)
    if args.init == "scratch":
        model = AutoModelForCausalLM.from_config(model.config)
    tokenizer = word_tokenizer(args.nodes)
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 17]))
    held_ids, held_moves = first_moves(tokenizer, family.held_out(512), family.prompt_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)

    def held_out_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            guess = model(input_ids=held_ids).logits[:, -1].argmax(-1)
        model.train()
        return (guess == held_moves).float().mean().item()

    curve = [{"step": 0, "seconds": 0.0, "loss": None, "first_step_accuracy": held_out_accuracy()}]
    started, step = time.perf_counter(), 0
    bar = tqdm(desc="first-move supervision", unit="step")
    while time.perf_counter() - started < args.budget_s:
        if args.structured:
            graphs = with_every_goal(family.training(args.batch_size // args.degree, rng))
        else:
            graphs = family.training(args.batch_size, rng)
        ids, moves = first_moves(tokenizer, graphs, family.prompt_tokens)
        loss = F.cross_entropy(model(input_ids=ids).logits[:, -1], moves)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update()
        if step % args.eval_every == 0:
            accuracy = held_out_accuracy()
            seconds = time.perf_counter() - started
            curve.append({"step": step, "seconds": seconds, "loss": loss.item(),
                          "first_step_accuracy": accuracy})  # fmt: skip
            bar.set_postfix(loss=f"{loss.item():.3f}", first=f"{accuracy:.3f}")
    bar.close()
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "model": source, "curve": curve}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(curve, args, args.out.with_suffix(".png"))
    best = max(c["first_step_accuracy"] for c in curve)
    print(f"{step} steps in {args.budget_s:g} s: held-out first-step accuracy "
          f"{curve[0]['first_step_accuracy']:.3f} -> {curve[-1]['first_step_accuracy']:.3f} "
          f"(best {best:.3f}); wrote {args.out}")  # fmt: skip
    return 0


def plot(curve: list[dict], args, path: Path) -> None:
    from dqnlm.metrics import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([c["step"] for c in curve], [c["first_step_accuracy"] for c in curve], marker=".")
    ax.axhline(1 / args.degree, color="grey", linestyle=":", label="1/d (guessing)")
    ax.set(
        xlabel=f"steps of {args.batch_size} graphs",
        ylabel="held-out first-step accuracy",
        ylim=(0, 1),
        title=f"G({args.degree}, {args.arm_length}), N={args.nodes}: supervised first move "
        f"({args.init}{', structured' if args.structured else ''}, lr {args.learning_rate:g})",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
