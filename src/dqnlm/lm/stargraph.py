"""Path-finding on star graphs (Bachmann & Nagarajan 2024, "The pitfalls of next-token
prediction"): where next-token prediction learns a shortcut and a learned value must plan.

A star graph G(d, l) over node labels 0..N-1 has a centre and ``d`` arms; a path from the
centre to the end of an arm has ``l`` nodes, centre included (the papers' "path length":
G(2, 5) has arms of 4 nodes). The prompt lists the edges in random order, then the start
(the centre) and the goal (the end of one arm); the answer is the path::

    32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=    (prompt)
    32,34,6,16,12                                          (answer)

the format of the papers' code (``data/graphs.py`` of Next-Token-Failures, kept by Q#).
A model trained by teacher forcing learns that each node after the first is the child of
the one before (one edge lookup: the "Clever Hans" shortcut), so only the first step
needs planning, and it guesses it: path accuracy ~ 1/d.

The text is tokenizer-independent; the embedded model reads it with a word-level
tokenizer that drops the commas (each node label, ``|``, ``/`` and ``=`` one token: the
numeral tokenizer of Next-Token-Failures), and answers with space-separated nodes, which
the reward reads as well as commas.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dqnlm.core.checkpoint import atomic_dir
from dqnlm.errors import ConfigError, DQNLMError
from dqnlm.lm.quiet import quiet_transformers

EOS = "<eos>"
SUMMARY = "stargraph.json"
HELD_OUT = 1000  # held-out graphs: the evaluation set (its first eval_prompts are scored)
TRAIN_PROMPTS = 200_000  # graphs post-training samples prompts from (the papers: 200k)


@dataclass(frozen=True)
class Graph:
    edges: tuple[tuple[int, int], ...]  # in the order the prompt lists them
    start: int
    goal: int
    path: tuple[int, ...]  # start ... goal

    def prompt(self) -> str:
        edges = "|".join(f"{a},{b}" for a, b in self.edges)
        return f"{edges}/{self.start},{self.goal}="

    def answer(self) -> str:
        return ",".join(map(str, self.path))

    def key(self) -> tuple:
        """Identity of a graph as a task (edge order aside)."""
        return (frozenset(self.edges), self.goal)


@dataclass(frozen=True)
class StarGraphs:
    """The family G(degree, arm_length) over ``nodes`` labels, with its fixed split."""

    degree: int = 2
    arm_length: int = 5
    nodes: int = 50
    seed: int = 0  # the split: which graphs are held out

    def check(self) -> StarGraphs:
        problems = []
        if self.degree < 2:
            problems.append(f"degree must be >= 2, got {self.degree}")
        if self.arm_length < 2:
            problems.append(f"arm_length must be >= 2, got {self.arm_length}")
        needed = 1 + self.degree * (self.arm_length - 1)
        if not problems and self.nodes < needed:
            problems.append(
                f"nodes={self.nodes} is too few for degree={self.degree} and "
                f"arm_length={self.arm_length}: a graph has {needed} distinct nodes"
            )
        if self.nodes > 100_000:
            problems.append(f"nodes must be <= 100000, got {self.nodes}")
        if problems:
            raise ConfigError("invalid star graph: " + "; ".join(problems))
        return self

    @property
    def edges(self) -> int:
        return self.degree * (self.arm_length - 1)

    @property
    def prompt_tokens(self) -> int:
        """Word-level tokens of a prompt: E edges of 2, E - 1 bars, then ``/ s g =``."""
        return 3 * self.edges + 3

    @property
    def new_tokens(self) -> int:
        """An answer: l nodes, then end-of-text."""
        return self.arm_length + 1

    def sample(self, rng: np.random.Generator) -> Graph:
        labels = rng.choice(self.nodes, size=1 + self.edges, replace=False).tolist()
        start, arms = labels[0], np.array(labels[1:]).reshape(self.degree, -1).tolist()
        edges = [(start, arm[0]) for arm in arms]
        edges += [(arm[i], arm[i + 1]) for arm in arms for i in range(len(arm) - 1)]
        order = rng.permutation(len(edges))
        path = (start, *arms[int(rng.integers(self.degree))])
        return Graph(tuple(edges[i] for i in order), start, path[-1], path)

    def _streams(self) -> tuple[np.random.Generator, np.random.Generator]:
        held, train = np.random.SeedSequence([self.seed, 15]).spawn(2)
        return np.random.default_rng(held), np.random.default_rng(train)

    def held_out(self, n: int = HELD_OUT) -> list[Graph]:
        """The first ``n`` of the fixed held-out graphs, which are never trained on: 1,000,
        or a fifth of the family's tasks when it has fewer than 5,000."""
        return self._held_out[:n]

    @functools.cached_property
    def _held_out(self) -> list[Graph]:
        n = min(HELD_OUT, max(1, int(_family_size(self) // 5)))
        return _distinct(self, self._streams()[0], n, frozenset())

    @functools.cached_property
    def _held_out_keys(self) -> frozenset:
        return frozenset(g.key() for g in self._held_out)

    def training(self, n: int, rng: np.random.Generator | None = None) -> list[Graph]:
        """``n`` training graphs, none of them held out; from the split's own stream
        unless ``rng`` is given (pretraining draws fresh ones every step)."""
        stream = rng if rng is not None else self._streams()[1]
        return _distinct(self, stream, n, self._held_out_keys)


def _distinct(family: StarGraphs, rng: np.random.Generator, n: int, excluded: frozenset) -> list:
    """``n`` graphs, none in ``excluded``, without repeats until the family runs out of
    others (tiny families repeat)."""
    pool = _family_size(family) - len(excluded)
    graphs, seen = [], set()
    for _ in range(100 * n + 10_000):
        if len(graphs) == n:
            return graphs
        graph = family.sample(rng)
        key = graph.key()
        if key in excluded or (key in seen and len(seen) < pool):
            continue
        seen.add(key)
        graphs.append(graph)
    raise DQNLMError(
        f"could not draw {n} star graphs from G({family.degree}, {family.arm_length}) over "
        f"{family.nodes} nodes"
    )


def _family_size(family: StarGraphs) -> float:
    """How many distinct (graph, goal) tasks the family has (a lower bound suffices)."""
    labelled = math.perm(family.nodes, 1 + family.edges) / math.factorial(family.degree)
    return labelled * family.degree


# ------------------------------------------------------------------ reading texts back
_EDGE = re.compile(r"(\d+),(\d+)")
_PROMPT = re.compile(r"^(?P<edges>[\d,|]+)/(?P<start>\d+),(?P<goal>\d+)=$")
_PATH = re.compile(r"^\d+(\s*,\s*\d+|\s+\d+)*$")  # commas or spaces between nodes


def parse_prompt(prompt: str) -> tuple[dict[int, list[int]], int, int]:
    """``(children of each node, start, goal)`` of a prompt in the format above."""
    match = _PROMPT.match("".join(prompt.split()))
    if match is None:
        raise DQNLMError(f"not a star-graph prompt: {prompt[:80]!r}")
    children: dict[int, list[int]] = {}
    for a, b in _EDGE.findall(match["edges"]):
        children.setdefault(int(a), []).append(int(b))
    return children, int(match["start"]), int(match["goal"])


def solve(prompt: str) -> list[int]:
    """The path from start to goal in the prompt's graph (depth-first over its edges)."""
    children, start, goal = parse_prompt(prompt)
    stack, seen = [[start]], {start}
    while stack:
        path = stack.pop()
        if path[-1] == goal:
            return path
        for child in children.get(path[-1], []):
            if child not in seen:
                seen.add(child)
                stack.append([*path, child])
    raise DQNLMError(f"the goal is not reachable in star-graph prompt {prompt[:80]!r}")


def parse_path(completion: str) -> list[int] | None:
    """The node labels of an answer, ``n,n,...`` or ``n n ...``, or None if it is neither."""
    text = completion.strip()
    return [int(n) for n in re.split(r"[\s,]+", text)] if _PATH.match(text) else None


def path_scores(prompts: list[str], completions: list[str], partial: bool = False) -> list[float]:
    """1 for the exact path from start to goal, else 0. ``partial``: the share of the
    true path matched from its start, over the longer of the two paths (so extra nodes
    cost too); an answer that is not a comma-separated list of nodes scores 0."""
    scores = []
    for prompt, completion in zip(prompts, completions, strict=True):
        truth, path = solve(prompt), parse_path(completion)
        if path is None:
            scores.append(0.0)
        elif not partial:
            scores.append(float(path == truth))
        else:
            matched = next((i for i, (a, b) in enumerate(zip(path, truth)) if a != b), None)
            matched = min(len(path), len(truth)) if matched is None else matched
            scores.append(matched / max(len(path), len(truth)))
    return scores


def first_step_correct(prompt: str, completion: str) -> bool:
    """Whether the answer's first move (its second node) is the true path's."""
    path, truth = parse_path(completion), solve(prompt)
    return path is not None and len(path) > 1 and path[:2] == truth[:2]


# ------------------------------------------------------------------ pretraining
@dataclass(frozen=True)
class PretrainStarConfig:
    """Teacher forcing on correct paths: the loss is on the answer tokens only."""

    steps: int = 2000
    """Optimizer steps; every step draws fresh training graphs (about 8 minutes on one
    CPU core for G(2, 5))."""
    batch_size: int = 64
    """Graphs per step."""
    n_layer: int = 4
    """Transformer blocks: deep enough for the l - 1 hops from the goal back to the first
    step (two layers learn the shortcut too, but Q-learning could not lift them)."""
    n_embd: int = 128
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    learning_rate: float = 1e-3
    """Peak AdamW step size: warm-up over 5% of steps, then cosine decay to 10% (3e-3 kept
    4 layers on the plateau past step 3,400)."""
    eval_every: int = 250
    """Steps between held-out measurements (first-step and path accuracy, greedy)."""
    seed: int = 0
    """Seeds the weights and the training graphs (not the split: that is the family's)."""


def word_tokenizer(nodes: int):
    """Each node label, ``|``, ``/`` and ``=`` one token, commas dropped (an edge is two
    adjacent tokens); end-of-text pads. Decodes to space-separated tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [EOS, "|", "/", "=", *map(str, range(nodes))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=EOS))
    tok.normalizer = normalizers.Replace(",", " ")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation("isolated")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS
    )


def model_dir(family: StarGraphs, config: PretrainStarConfig) -> Path:
    """The cached pretrained model of a family: one folder per family and settings."""
    from dqnlm.lm.pretrain import cache_root

    tag = f"d{family.degree}-l{family.arm_length}-n{family.nodes}-split{family.seed}"
    return cache_root() / "stargraph" / f"{tag}-seed{config.seed}-steps{config.steps}"


def _encode(tokenizer, graphs: list[Graph]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of prompt + answer + end-of-text, and labels (-100 on the prompt)."""
    texts = [g.prompt() + g.answer() for g in graphs]
    ids = torch.tensor(tokenizer(texts, add_special_tokens=False)["input_ids"])
    ids = torch.cat([ids, torch.full((len(graphs), 1), tokenizer.eos_token_id)], 1)
    labels = ids.clone()
    prompt = len(tokenizer(graphs[0].prompt(), add_special_tokens=False)["input_ids"])
    labels[:, :prompt] = -100
    return ids, labels


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: list[str], prompt_tokens: int, new_tokens: int):
    """The argmax token at every step (as the papers evaluate), 256 prompts at a time."""
    from dqnlm.lm.generation import decode_completions, sample

    texts = []
    for start in range(0, len(prompts), 256):
        chunk = prompts[start : start + 256]
        batch = sample(model, tokenizer, chunk, prompt_tokens, new_tokens, top_k=1)
        texts += decode_completions(tokenizer, batch)
    return texts


def accuracies(prompts: list[str], answers: list[str]) -> dict[str, float]:
    """Path and first-step accuracy of ``answers``."""
    n = max(len(prompts), 1)
    return {
        "path_accuracy": sum(path_scores(prompts, answers)) / n,
        "first_step_accuracy": sum(map(first_step_correct, prompts, answers)) / n,
    }


def pretrain_stargraph(
    family: StarGraphs,
    config: PretrainStarConfig = PretrainStarConfig(),
    out: Path | None = None,
    progress: bool = True,
) -> Path:
    """Teacher-force a small GPT-2 on correct paths of fresh training graphs; write the
    model, its tokenizer and ``stargraph.json`` (family, config, held-out accuracy as it
    trained) to ``out`` atomically."""
    from dqnlm.lm.pretrain import small_gpt2, warmup_cosine

    family.check()
    out = Path(out) if out is not None else model_dir(family, config)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 16]))
    tokenizer = word_tokenizer(family.nodes)
    held = [g.prompt() for g in family.held_out(256)]
    context = family.prompt_tokens + family.new_tokens
    model = small_gpt2(tokenizer, context, config.n_embd, config.n_layer, config.n_head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)

    history = []
    bar = tqdm(
        range(config.steps), desc="pretraining star graphs", unit="step", disable=not progress
    )
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, config.steps, config.learning_rate)
        ids, labels = _encode(tokenizer, family.training(config.batch_size, rng))
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            model.eval()
            # up to 2l tokens, as the cached models were measured: each greedy step draws
            # from the torch RNG that dropout uses, so this length is part of the run
            answers = greedy_answers(
                model, tokenizer, held, family.prompt_tokens, 2 * family.arm_length
            )
            model.train()
            accuracy = accuracies(held, answers)
            history.append({"step": step + 1, "loss": loss.item(), **accuracy})
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                first=f"{accuracy['first_step_accuracy']:.2f}",
                path=f"{accuracy['path_accuracy']:.2f}",
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        summary = {
            "family": asdict(family),
            "config": asdict(config),
            "history": history,
            "seconds": time.perf_counter() - started,
        }
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    return out


# ------------------------------------------------------------------ the task in a run
def family_of(config) -> StarGraphs:
    """The graph family an LMConfig with ``task = stargraph`` names."""
    return StarGraphs(config.degree, config.arm_length, config.nodes).check()


def fit_config(config):
    """A validated config; with ``task = stargraph``, with the text lengths the family's
    prompts and answers take."""
    import dataclasses

    config = config.validate()
    if not config.task:
        return config
    family = family_of(config)
    return dataclasses.replace(
        config, prompt_tokens=family.prompt_tokens, new_tokens=family.new_tokens, min_new_tokens=0
    )


def train_prompts(config) -> list[str]:
    """The prompts post-training samples: training graphs of the family, never held out."""
    family = family_of(config)
    n = int(min(TRAIN_PROMPTS, max(1000, 5 * _family_size(family))))  # tiny families repeat
    return [g.prompt() for g in family.training(n)]


def evaluation_prompts(config) -> list[str]:
    """A run's held-out prompts: the family's fixed held-out graphs with a task, else the
    config's ``eval_set``."""
    if not config.task:
        from dqnlm.lm.data import load_prompts

        return load_prompts(config.eval_set)
    return [g.prompt() for g in family_of(config).held_out()]


def model_spec(config, progress: bool = True) -> str:
    """The model a config loads: its ``model``, else the task's pretrained one (pretrained
    on first use), else "" (the embedded default)."""
    return config.model or (resolve_model(config, progress) if config.task else "")


def resolve_model(config, progress: bool = True) -> str:
    """The family's pretrained model, pretrained on first use and cached."""
    import sys

    family, pretraining = family_of(config), PretrainStarConfig()
    out = model_dir(family, pretraining)
    if not (out / SUMMARY).is_file():
        print(
            f"no pretrained model for G({family.degree}, {family.arm_length}) over "
            f"{family.nodes} nodes in {out} yet: pretraining it first, once "
            "(`dqnlm lm pretrain --task stargraph` does it ahead of time)",
            file=sys.stderr,
        )
        pretrain_stargraph(family, pretraining, out, progress)
    return str(out)


def task_metrics(policy, prompts: list[str]) -> dict:
    """Path and first-step accuracy of the policy's greedy answers, with a few of them."""
    cfg = policy.config
    texts = greedy_answers(
        policy.model, policy.tokenizer, prompts, cfg.prompt_tokens, cfg.new_tokens
    )
    samples = [{"prompt": p, "completion": t} for p, t in zip(prompts[:5], texts[:5])]
    return {**accuracies(prompts, texts), "greedy_samples": samples}
