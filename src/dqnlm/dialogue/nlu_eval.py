"""Scoring the user NLU on utterances labelled by hand (format: docs/nlu-annotation.md).

Slot-value F1 counts (slot, value) pairs: a pair is right only with the right value
(``dont care`` included). Requests are scored as (slot) sets, the intent by accuracy.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dqnlm.dialogue.acts import UNKNOWN, Act
from dqnlm.dialogue.schema import Domain
from dqnlm.errors import ConfigError

MAX_FILE_BYTES = 64 * 2**20
"""Labelled files larger than this are refused unread."""
KEYS = ("domain", "text", "intent", "inform", "request")


@dataclass(frozen=True)
class Labelled:
    """One utterance and its gold act."""

    domain: str
    text: str
    gold: Act


def read_labelled(path: str | Path) -> list[Labelled]:
    """The utterances of a JSONL file, each line checked; a bad line is named in one error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such labelled file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    rows = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not valid JSON ({e.msg})") from None
            rows.append(_labelled(row, where))
    if not rows:
        raise ConfigError(f"{path}: no labelled utterances")
    return rows


def _labelled(row, where: str) -> Labelled:
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: must be a JSON object with {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in row]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    domain, text, intent = row["domain"], row["text"], row["intent"]
    inform, request = row["inform"], row["request"]
    if not all(isinstance(v, str) for v in (domain, text, intent)):
        raise ConfigError(f"{where}: domain, text and intent must be strings")
    if not isinstance(inform, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in inform.items()
    ):
        raise ConfigError(f"{where}: inform must map slot names to value strings")
    if not isinstance(request, list) or not all(isinstance(s, str) for s in request):
        raise ConfigError(f"{where}: request must be a list of slot names")
    return Labelled(domain, text, Act(intent, dict(inform), tuple(request)))


def check_labels(rows: list[Labelled], domain: Domain, source: str) -> None:
    """Every gold act names the domain's own intents and slots."""
    acts = (*domain.acts, UNKNOWN)
    for i, row in enumerate(rows, 1):
        bad = [s for s in (*row.gold.inform, *row.gold.request) if s not in domain.slot_names]
        if row.gold.intent not in acts:
            raise ConfigError(f"{source}: utterance {i}: unknown intent {row.gold.intent!r}")
        if bad:
            raise ConfigError(f"{source}: utterance {i}: {domain.name} has no slot {bad[0]!r}")


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def score(pairs: list[tuple[Act, Act]]) -> dict:
    """Scores of (gold, predicted) acts: slot-value and request precision, recall, F1
    (overall and per slot), intent accuracy and whole-act accuracy."""
    counts: dict[str, Counter] = {}
    total, requests = Counter(), Counter()
    right_intents = right_acts = 0
    for gold, got in pairs:
        gold_pairs, got_pairs = set(gold.inform.items()), set(got.inform.items())
        for slot, _ in gold_pairs | got_pairs:
            counts.setdefault(slot, Counter())
        for pair in gold_pairs & got_pairs:
            counts[pair[0]]["tp"] += 1
        for pair in got_pairs - gold_pairs:
            counts[pair[0]]["fp"] += 1
        for pair in gold_pairs - got_pairs:
            counts[pair[0]]["fn"] += 1
        gold_asked, asked = set(gold.request), set(got.request)
        requests.update(
            tp=len(gold_asked & asked), fp=len(asked - gold_asked), fn=len(gold_asked - asked)
        )
        right_intents += gold.intent == got.intent
        right_acts += gold_pairs == got_pairs and gold_asked == asked and gold.intent == got.intent
    for c in counts.values():
        total.update(c)
    n = max(len(pairs), 1)
    return {
        "utterances": len(pairs),
        "slots": _prf(total["tp"], total["fp"], total["fn"]),
        "per_slot": {s: _prf(c["tp"], c["fp"], c["fn"]) for s, c in sorted(counts.items())},
        "requests": _prf(requests["tp"], requests["fp"], requests["fn"]),
        "intent_accuracy": right_intents / n,
        "act_accuracy": right_acts / n,
    }
