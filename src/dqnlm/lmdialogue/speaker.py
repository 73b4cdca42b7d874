"""The embedded dialogue speaker: a small GPT-2 that reads a dialogue and writes the
agent's turn, pretrained offline on dialogues the package renders itself.

The corpus is the rule agent's dialogues on the domain's *training* goals, played in
words through :class:`~dqnlm.dialogue.text_env.TextDialogueEnv`. A share ``explore`` of
agent turns is a random non-closing action instead of the rule's, so every act of the
domain appears in the text and the speaker gives each some probability (what
Q-learning explores from); the rest is the rule agent's, so the speaker imitates the
rule agent and nothing else (no learned policy is copied). A byte-level BPE tokenizer is
trained on the same text: any string an agent writes encodes, for every schema domain.

One dialogue is one sequence: environment segments (user turn, state line, ``agent:``
cue) and agent segments (``" " + words`` then end-of-text), tokenised one segment at a
time and concatenated, so rollouts and training see exactly the same ids. The loss is on
the agent's tokens only: the speaker learns to answer, not to predict the user.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dqnlm.core.checkpoint import atomic_dir
from dqnlm.dialogue.agent_nlu import placeholder
from dqnlm.dialogue.agents import RuleAgent
from dqnlm.dialogue.config import DialogueConfig
from dqnlm.dialogue.schema import load_domain
from dqnlm.dialogue.text_env import TextDialogueEnv
from dqnlm.lm.generation import keeps_logits
from dqnlm.lm.pretrain import cache_root, small_gpt2, train_tokenizer, warmup_cosine
from dqnlm.lm.quiet import quiet_transformers

SUMMARY = "speaker.json"
RECIPE = 3
"""Version of the pretraining procedure, part of the cache key: a changed recipe trains
a new speaker instead of reusing one trained the old way. 2 (length-grouped batches)
imitated worse, 0.43 test success against 0.57; 3 is random batches run in chunks."""

Segments = list[tuple[str, bool]]
"""A dialogue as text segments, each flagged True when the agent wrote it."""


@dataclass(frozen=True)
class SpeakerConfig:
    dialogues: int = 4000
    """Rendered training dialogues (rule agent on training goals)."""
    explore: float = 0.2
    """Share of agent turns that are a random non-closing action instead of the rule's."""
    vocab_size: int = 1024
    """Byte-level BPE vocabulary, end-of-text included."""
    context: int = 1024
    """Maximum tokens the model reads (n_positions): a whole dialogue fits."""
    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 128
    """Hidden width."""
    n_head: int = 4
    """Attention heads."""
    steps: int = 1200
    """Optimizer steps."""
    batch_size: int = 16
    """Dialogues per step."""
    learning_rate: float = 2e-3
    """Peak AdamW step size (warm-up, then cosine decay)."""
    seed: int = 0
    """Seeds the corpus, the batches and the initial weights."""
    state_line: bool = True
    """The corpus shows the agent its state line (as the run that uses the speaker does)."""


def rendered_dialogue(env: TextDialogueEnv, choose, goal: int, seed: int) -> tuple[Segments, dict]:
    """One dialogue in words: ``choose(env) -> action`` picks each agent turn, spoken
    through :meth:`TextDialogueEnv.say`. Returns the segments and the last ``info``."""
    segments: Segments = [(env.reset(seed=seed, goal=goal), False)]
    done, info = False, {}
    while not done:
        words = env.say(choose(env))
        observation, _, done, info = env.step(words)
        segments.append((words, True))
        if not done:
            segments.append((observation, False))
    return segments, info


def clean(dialogue: DialogueConfig) -> DialogueConfig:
    """The training goals with no simulated noise: one speaker serves a domain's clean and
    noisy runs, and noise is what Q-learning, not imitation, has to cope with."""
    return replace(dialogue, split="train", slot_error_rate=0.0, intent_error_rate=0.0)


def rule_corpus(
    dialogue: DialogueConfig, n: int, explore: float, seed: int, state_line: bool = True
) -> list[Segments]:
    """``n`` rule-agent dialogues on training goals, ``explore`` of turns random."""
    env = TextDialogueEnv(clean(dialogue), state_line)
    rule = RuleAgent(env.domain)
    actions = env.domain.agent_actions
    open_ended = [i for i, a in enumerate(actions) if a.intent not in ("thanks", "closing")]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))

    def choose(env: TextDialogueEnv) -> int:
        rule_action = rule.act(None, env.env.tracker)  # keeps the rule's memory current
        if rng.random() < explore:
            return int(rng.choice(open_ended))
        return rule_action

    corpus = []
    for _ in range(n):
        rule.reset()
        goal = int(rng.integers(len(env.goals)))
        corpus.append(rendered_dialogue(env, choose, goal, int(rng.integers(2**31)))[0])
    return corpus


def add_slot_tokens(tokenizer, slots) -> None:
    """Each slot name and its placeholder one token: answering "asks video_format" with
    "<video_format>" is then a one-token copy, not a spelling of BPE pieces."""
    from tokenizers import AddedToken

    names = [AddedToken(s, single_word=True) for s in slots]
    tokenizer.add_tokens(names + [AddedToken(placeholder(s)) for s in slots])


def encode_segment(tokenizer, text: str, agent: bool) -> list[int]:
    """A segment's ids: agent words get a leading space and end-of-text after them."""
    if agent:
        return tokenizer(" " + text, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_dialogue(tokenizer, segments: Segments) -> tuple[list[int], list[int]]:
    """Ids of a whole dialogue and a 0/1 flag per id: 1 on what the agent wrote."""
    ids, agent = [], []
    for text, by_agent in segments:
        piece = encode_segment(tokenizer, text, by_agent)
        ids += piece
        agent += [int(by_agent)] * len(piece)
    return ids, agent


def _domain_digest(dialogue: DialogueConfig) -> str:
    """The schema's content, so an edited schema file gets its own speaker."""
    return hashlib.sha256(Path(load_domain(dialogue.domain).source).read_bytes()).hexdigest()[:16]


def speaker_dir(dialogue: DialogueConfig, config: SpeakerConfig) -> Path:
    """The cached speaker of a domain, its dialogue settings (turn limit; noise is left
    out, see :func:`clean`) and the speaker's own settings, under the dqnlm cache."""
    name = load_domain(dialogue.domain).name
    tag = _settings_tag(dialogue, config)
    return cache_root() / "dialogue-speaker" / f"{name}-{_domain_digest(dialogue)}-{tag}"


def _settings_tag(dialogue: DialogueConfig, config: SpeakerConfig, *extra) -> str:
    """The recipe, the imitation settings and the dialogue settings that shape the corpus."""
    rendered = {k: v for k, v in asdict(clean(dialogue)).items() if k not in ("domain", "split")}
    settings = json.dumps([RECIPE, asdict(config), rendered, *extra], sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:8]


def _batch(rows: list[tuple[list[int], list[int]]], pad: int, context: int):
    """Right-padded ids, attention and labels for a list of dialogues: the loss is on
    the agent's tokens only (imitation), -100 on what the user and the tracker said."""
    width = min(context, max(len(ids) for ids, _ in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    agent = torch.zeros_like(ids)
    for r, (seq, flags) in enumerate(rows):
        seq, flags = seq[:width], flags[:width]
        ids[r, : len(seq)] = torch.tensor(seq)
        attention[r, : len(seq)] = 1
        agent[r, : len(flags)] = torch.tensor(flags)
    labels = ids.masked_fill(agent == 0, -100)
    return ids, attention, labels


def imitation_loss(model, ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor):
    """Summed cross-entropy of the agent's tokens and their count. The output layer runs
    only where the next token is the agent's (a quarter of a dialogue)."""
    keep = {"logits_to_keep": 1} if keeps_logits(model) else {}  # skip the model's own head
    out = model(input_ids=ids, attention_mask=attention, output_hidden_states=True, **keep)
    target = labels[:, 1:]
    scored = target != -100
    logits = model.get_output_embeddings()(out.hidden_states[-1][:, :-1][scored])
    loss = torch.nn.functional.cross_entropy(logits.float(), target[scored], reduction="sum")
    return loss, int(scored.sum())


IMITATION_CHUNKS = 4
"""A batch runs as this many length-sorted chunks: the gradient of the whole batch,
without padding short dialogues out to the longest (about twice as fast)."""


def imitate(model, encoded, pad: int, config: SpeakerConfig, desc: str, progress: bool) -> list:
    """``config.steps`` AdamW steps of the mean :func:`imitation_loss` of random batches,
    on the trainable weights of ``model``; returns the loss every 100 steps."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 18]))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=0.01)
    model.train()
    history = []
    bar = tqdm(range(config.steps), desc=desc, unit="step", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, config.steps, config.learning_rate)
        rows = sorted(
            (encoded[i] for i in rng.integers(len(encoded), size=config.batch_size)),
            key=lambda row: len(row[0]),
        )
        parts = np.array_split(np.arange(len(rows)), min(IMITATION_CHUNKS, len(rows)))
        chunks = [_batch([rows[i] for i in part], pad, config.context) for part in parts]
        scored = sum(int((labels[:, 1:] != -100).sum()) for _, _, labels in chunks)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for chunk in chunks:
            loss = imitation_loss(model, *chunk)[0] / max(1, scored)
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            history.append({"step": step + 1, "loss": total})
            bar.set_postfix(loss=f"{total:.3f}")
    return history


def pretrain_speaker(
    dialogue: DialogueConfig,
    config: SpeakerConfig = SpeakerConfig(),
    out: Path | None = None,
    progress: bool = True,
) -> Path:
    """Render the corpus, train tokenizer and model, write them and ``speaker.json`` to
    ``out`` (default: :func:`speaker_dir`) atomically."""
    out = Path(out) if out is not None else speaker_dir(dialogue, config)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    corpus = rule_corpus(dialogue, config.dialogues, config.explore, config.seed, config.state_line)
    # as encode_segment writes them: agent words after a space
    texts = ["".join(" " * agent + text for text, agent in segments) for segments in corpus]
    tokenizer = train_tokenizer(texts, config.vocab_size)
    tokenizer.pad_token = tokenizer.eos_token
    add_slot_tokens(tokenizer, load_domain(dialogue.domain).slot_names)
    encoded = [encode_dialogue(tokenizer, segments) for segments in corpus]
    lengths = [len(ids) for ids, _ in encoded]
    model = small_gpt2(tokenizer, config.context, config.n_embd, config.n_layer, config.n_head)
    history = imitate(
        model, encoded, tokenizer.eos_token_id, config, "pretraining speaker", progress
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        summary = {
            "domain": load_domain(dialogue.domain).name,
            "config": asdict(config),
            "recipe": RECIPE,
            "tokens_per_dialogue": {"median": float(np.median(lengths)), "max": max(lengths)},
            "history": history,
            "seconds": time.perf_counter() - started,
        }
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    return out


def resolve_speaker(
    dialogue: DialogueConfig, config: SpeakerConfig = SpeakerConfig(), progress: bool = True
) -> Path:
    """The cached speaker of ``dialogue``'s domain, pretrained on first use."""
    path = speaker_dir(dialogue, config)
    if not (path / SUMMARY).is_file():
        pretrain_speaker(dialogue, config, path, progress)
    return path


def _model_digest(source: str) -> str:
    """A model folder's config and weights (a hub name stands for itself)."""
    folder = Path(source)
    if not folder.is_dir():
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()[:16]


def resolve_imitation(
    dialogue: DialogueConfig,
    spec: str,
    config: SpeakerConfig,
    lora: tuple[int, float] = (0, 16.0),
    trust_code: bool = False,
    progress: bool = True,
) -> Path:
    """A given model (a Hugging Face folder or name) fine-tuned to imitate the rule agent on
    the domain's rendered dialogues, cached like the embedded speaker. With a LoRA rank the
    fine-tuning trains adapters and merges them, so the result is a plain model folder.
    Only ``dialogues``, ``explore``, ``steps``, ``batch_size``, ``learning_rate``, ``seed``
    and ``state_line`` of ``config`` apply."""
    from dqnlm.lm.models import add_lora, load_checked, resolve_model_source

    source = resolve_model_source(spec, progress)
    name = load_domain(dialogue.domain).name
    tag = _settings_tag(dialogue, config, list(lora))
    folder = f"{name}-{_domain_digest(dialogue)}-{_model_digest(source)}-{tag}"
    out = cache_root() / "dialogue-imitation" / folder
    if (out / SUMMARY).is_file():
        return out
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    _, tokenizer, model = load_checked(
        spec, "float32", torch.device("cpu"), lora[0] > 0, trust_code, progress
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    corpus = rule_corpus(dialogue, config.dialogues, config.explore, config.seed, config.state_line)
    encoded = [encode_dialogue(tokenizer, segments) for segments in corpus]
    if lora[0] > 0:
        model = add_lora(model, *lora)
    history = imitate(
        model, encoded, tokenizer.pad_token_id, config, "imitating the rule agent", progress
    )
    if lora[0] > 0:
        model = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        with quiet_transformers():
            model.eval().save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        summary = {
            "domain": name,
            "model": spec,
            "config": asdict(config),
            "lora": list(lora),
            "recipe": RECIPE,
            "history": history,
            "seconds": time.perf_counter() - started,
        }
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    return out
