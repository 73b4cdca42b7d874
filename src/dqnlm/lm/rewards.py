"""Rewards on finished texts, chosen with ``dqnlm lm train --reward NAME[:ARG]``.

A reward scores a whole batch at once (a classifier is far faster batched than per text)
and returns one float per text, in order. Each prints as the spec that built it, so run
logs can record which reward a model was tuned toward.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dqnlm.errors import DQNLMError
from dqnlm.trust import UntrustedInput, is_own_module

Reward = Callable[[list[str]], list[float]]

_USAGE = {
    "vader": "vader",
    "keyword": "keyword:WORD1,WORD2",
    "regex": "regex:PATTERN",
    "length": "length:N",
    "classifier": "classifier:PATH[@LABEL]",
    "python": "python:module:function",
    "stargraph": "stargraph",
    "stargraph-partial": "stargraph-partial",
}
REWARD_NAMES = tuple(_USAGE)


@dataclass(frozen=True)
class NamedReward:
    """A reward that prints as its spec (``keyword:great,fun``), for run logs.
    ``prompted``: it also reads each text's prompt (a task checking an answer)."""

    name: str
    score: Callable
    prompted: bool = False

    def __call__(self, texts: list[str], prompts: list[str] | None = None) -> list[float]:
        if not self.prompted:
            return self.score(texts)
        if prompts is None:
            raise DQNLMError(f"reward {self.name!r} needs each text's prompt")
        return self.score(prompts, texts)

    def __repr__(self) -> str:
        return self.name


def parse_reward(spec: str, trust_code: bool = False) -> Reward:
    """The reward a ``NAME[:ARG]`` spec names; ``module:function`` imports a user callable.

    ``trust_code`` lets a ``classifier:PATH`` model load pickled weights (safetensors only
    otherwise).
    """
    spec = spec.strip()
    name, colon, arg = spec.partition(":")
    if name == "vader":
        if colon:
            raise DQNLMError(f"the vader reward takes no argument, got {spec!r}")
        return NamedReward(spec, _vader())
    if name in ("stargraph", "stargraph-partial"):
        if colon:
            raise DQNLMError(f"the {name} reward takes no argument, got {spec!r}")
        from dqnlm.lm.stargraph import path_scores

        partial = name == "stargraph-partial"
        return NamedReward(spec, lambda p, t: path_scores(p, t, partial), prompted=True)
    if name in _USAGE and not arg:
        raise DQNLMError(f"reward {spec!r} needs an argument: {_USAGE[name]}")
    if name == "classifier":
        return NamedReward(spec, _classifier(arg, trust_code))
    if name in _BUILDERS:
        return NamedReward(spec, _BUILDERS[name](arg))
    if colon:
        return NamedReward(spec, _python(spec))
    valid = ", ".join(_USAGE.values())
    raise DQNLMError(f"unknown reward {spec!r}; valid rewards: {valid}, or module:function")


def score_texts(reward: Reward, spec: str, texts: list[str], prompts: list[str] | None = None):
    """``reward(texts)`` as a float32 tensor, refused in one line unless it is one finite
    float per text; a reward that reads prompts gets ``prompts`` too."""
    import torch

    values = reward(texts, prompts) if getattr(reward, "prompted", False) else reward(texts)
    scores = torch.tensor(values, dtype=torch.float32)
    if scores.shape != (len(texts),) or not torch.isfinite(scores).all():
        raise DQNLMError(
            f"reward {spec!r} must return one finite float per text, got {scores.tolist()[:8]}"
        )
    return scores


def reward_module(spec: str) -> str | None:
    """The module a reward spec would import (``module:function``), or None for built-ins."""
    name, colon, _ = spec.strip().partition(":")
    if not colon or name in _USAGE and name != "python":
        return None
    return spec.strip().removeprefix("python:").partition(":")[0]


def check_reward_module(spec: str, source: str, trust_code: bool) -> None:
    """Refuse a reward read from ``source`` (a file) that would import a module outside
    dqnlm, unless the user passed ``--trust-code``."""
    module = reward_module(spec)
    if module is not None and not trust_code and not is_own_module(module):
        raise UntrustedInput(
            f"{source} sets reward = {spec!r}, which would import module {module!r}; "
            "refused: pass --trust-code if you trust this file"
        )


def reward_path(spec: str) -> str | None:
    """The model directory a ``classifier:PATH[@LABEL]`` spec reads, or None."""
    name, _, arg = spec.strip().partition(":")
    if name != "classifier":
        return None
    path, at, _ = arg.rpartition("@")
    return path if at else arg


def _vader() -> Reward:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise DQNLMError("the vader reward needs the lm extra: pip install 'dqnlm[lm]'") from None
    analyzer = SentimentIntensityAnalyzer()  # loads its lexicon: once, not per batch
    return lambda texts: [analyzer.polarity_scores(text)["compound"] for text in texts]


def _keyword(arg: str) -> Reward:
    words = [word.strip() for word in arg.split(",") if word.strip()]
    if not words:
        raise DQNLMError(f"keyword reward needs words: keyword:WORD1,WORD2, got {arg!r}")
    # Lookarounds rather than \b, so words that start or end with punctuation still work.
    alternatives = "|".join(re.escape(word) for word in words)
    found = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE).search
    return lambda texts: [1.0 if found(text) else 0.0 for text in texts]


def _regex(pattern: str) -> Reward:
    try:
        found = re.compile(pattern).search
    except re.error as e:
        raise DQNLMError(f"invalid regex reward pattern {pattern!r}: {e}") from None
    return lambda texts: [1.0 if found(text) else 0.0 for text in texts]


def _length(arg: str) -> Reward:
    try:
        target = int(arg)
    except ValueError:
        target = 0
    if target <= 0:
        raise DQNLMError(f"length reward needs a positive whole number of words, got {arg!r}")
    return lambda texts: [1.0 - min(1.0, abs(len(t.split()) - target) / target) for t in texts]


def _classifier(arg: str, trust_code: bool = False) -> Reward:
    """Probability of LABEL (after the last ``@``; default the highest id) from a local model."""
    path, at, label = arg.rpartition("@")
    if not at:
        path, label = arg, None
    if not Path(path).is_dir():
        raise DQNLMError(f"classifier model directory not found: {path}")
    try:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    except ImportError:
        raise DQNLMError(
            "the classifier reward needs the lm extra: pip install 'dqnlm[lm]'"
        ) from None
    try:  # local_files_only: a reward never downloads anything; pickles only if trusted
        model = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, use_safetensors=None if trust_code else True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        reason = " ".join(str(e).split())  # transformers' messages span lines; the CLI prints one
        raise DQNLMError(f"cannot load a text classifier from {path}: {reason}") from None
    id2label = model.config.id2label
    label = id2label[max(id2label)] if label is None else label
    if label not in id2label.values():
        labels = ", ".join(id2label[i] for i in sorted(id2label))
        raise DQNLMError(f"label {label!r} is not one of {path}'s labels: {labels}")
    classify = pipeline(
        "text-classification",
        model=model,
        tokenizer=tokenizer,
        top_k=None,
        truncation=True,
        device="cpu",
    )
    batch_size = 1 if tokenizer.pad_token_id is None else 32  # batching needs padding

    def score(texts: list[str]) -> list[float]:
        if not texts:
            return []
        outputs = classify(texts, batch_size=batch_size)
        return [next(d["score"] for d in scores if d["label"] == label) for scores in outputs]

    return score


def _python(spec: str) -> Reward:
    """A user callable ``f(texts) -> floats``; its results are checked on every batch."""
    module_name, _, attr = spec.removeprefix("python:").partition(":")
    if not module_name or not attr:
        raise DQNLMError(f"reward {spec!r} must be module:function or python:module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise DQNLMError(f"cannot import module {module_name!r} for reward {spec!r}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DQNLMError(f"module {module_name!r} has no function {attr!r} (reward {spec!r})")

    def score(texts: list[str]) -> list[float]:
        try:
            values = fn(texts)
        except (KeyboardInterrupt, DQNLMError):
            raise
        except BaseException as e:  # SystemExit(0) too: a failing reward must not end a run with 0
            reason = " ".join(str(e).split())
            raise DQNLMError(f"reward {spec!r} raised {type(e).__name__}: {reason}") from None
        try:
            scores = [float(value) for value in values]
        except (TypeError, ValueError):
            raise DQNLMError(f"reward {spec!r} must return a list of floats") from None
        if len(scores) != len(texts):
            raise DQNLMError(
                f"reward {spec!r} returned {len(scores)} scores for {len(texts)} texts"
            )
        if not all(math.isfinite(s) for s in scores):
            raise DQNLMError(f"reward {spec!r} returned a NaN or infinite score")
        return scores

    return score


_BUILDERS: dict[str, Callable[[str], Reward]] = {
    "keyword": _keyword,
    "regex": _regex,
    "length": _length,
}
