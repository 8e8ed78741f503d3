"""Time the data pipeline on a synthetic chat dataset: read+convert+validate, exact dedup, near
dedup and split, with the peak memory of the whole process.

    python bench/data_pipeline.py                      # 100,000 conversations
    python bench/data_pipeline.py --rows 20000 --out /tmp/bench.json

The dataset is written to a temporary directory: OpenAI ``messages`` JSONL, 1–4 user turns,
20–400 words per conversation (about 150 on average) drawn from a Zipf-weighted vocabulary,
a system prompt on some rows, ~3% exact duplicates (half with whitespace changes) and ~3% near
duplicates (about 2% of the words replaced). The file is written row by row, so generating it
adds little to the peak memory reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.data.canonical import Row  # noqa: E402
from lab.data.kinds import row_parts  # noqa: E402
from lab.data.quality import PART_FLOOR, drop_rows, exact_duplicates, near_duplicates, split  # noqa: E402

T = TypeVar("T")
SYLLABLES = ("ka to ri ne sa mu lo pe di an el or is um ba ve qu ti ra so me ni co la de fi gu ho ja "
             "ly mo nu pa re si ta vo wa xe yo ze bri cha dro fla gre ine ost pla que sta tre ver").split()
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly and precisely.",
    "You are a friendly tutor who explains things step by step.",
    "You are an expert programmer. Answer with working code when you can.",
    "Answer in a formal tone.",
)
EXACT_SHARE = 0.03
NEAR_SHARE = 0.03
NEAR_EDIT_SHARE = 0.02  # words replaced in a planted near duplicate
THRESHOLD = 0.8
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "data_pipeline.json"


class Corpus:
    """Seeded random conversations with a Zipf-like word distribution."""

    def __init__(self, seed: int = 0, vocabulary: int = 20_000):
        self.rng = random.Random(seed)
        words = {"".join(self.rng.choices(SYLLABLES, k=self.rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(vocabulary)}
        self.words = sorted(words)
        self.rng.shuffle(self.words)
        self.cumulative = list(accumulate_weights([1 / (rank + 10) ** 1.05 for rank in range(len(self.words))]))

    def text(self, n_words: int) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=n_words)
        sentences, start = [], 0
        while start < len(words):
            end = start + self.rng.randint(5, 18)
            sentence = " ".join(words[start:end])
            sentences.append(sentence[:1].upper() + sentence[1:] + self.rng.choice(".....?!"))
            start = end
        return " ".join(sentences)

    def conversation(self) -> dict[str, Any]:
        total = min(400, max(20, int(self.rng.lognormvariate(4.85, 0.6))))
        turns = self.rng.choices((1, 2, 3, 4), weights=(70, 18, 8, 4))[0]
        messages: list[dict[str, str]] = []
        if self.rng.random() < 0.2:
            messages.append({"role": "system", "content": self.rng.choice(SYSTEM_PROMPTS)})
        per_turn = max(10, total // turns)
        for _ in range(turns):
            user = max(3, int(per_turn * self.rng.uniform(0.15, 0.4)))
            messages.append({"role": "user", "content": self.text(user)})
            messages.append({"role": "assistant", "content": self.text(max(3, per_turn - user))})
        return {"messages": messages}

    def whitespace_variant(self, row: dict[str, Any]) -> dict[str, Any]:
        messages = [dict(m) for m in row["messages"]]
        target = self.rng.choice(messages)
        target["content"] = "  " + target["content"].replace(" ", "  ", 3) + "\n"
        return {"messages": messages}

    def near_variant(self, row: dict[str, Any]) -> dict[str, Any]:
        messages = [dict(m) for m in row["messages"]]
        editable = [m for m in messages if m["role"] != "system"]
        n_words = sum(len(m["content"].split()) for m in editable)
        for _ in range(max(1, round(n_words * NEAR_EDIT_SHARE))):
            message = self.rng.choice(editable)
            words = message["content"].split()
            words[self.rng.randrange(len(words))] = self.rng.choice(self.words)
            message["content"] = " ".join(words)
        return {"messages": messages}


def accumulate_weights(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


@dataclass
class Planted:
    exact: int = 0
    near: list[tuple[int, int, float]] = field(default_factory=list)  # (original, copy, Jaccard): 0-based lines


def write_dataset(path: Path, n_rows: int, seed: int = 0) -> Planted:
    """Write ``n_rows`` conversations, planting duplicates of recent rows; returns what was planted."""
    corpus = Corpus(seed)
    recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=5_000)
    planted = Planted()
    with path.open("w", encoding="utf-8") as f:
        for index in range(n_rows):
            draw = corpus.rng.random()
            if recent and draw < EXACT_SHARE:
                _, original = corpus.rng.choice(recent)
                row = original if corpus.rng.random() < 0.5 else corpus.whitespace_variant(original)
                planted.exact += 1
            elif recent and draw < EXACT_SHARE + NEAR_SHARE:
                source, original = corpus.rng.choice(recent)
                row = corpus.near_variant(original)
                planted.near.append((source, index, jaccard(original, row)))
            else:
                row = corpus.conversation()
                recent.append((index, row))
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return planted


def jaccard(a: dict[str, Any], b: dict[str, Any], n: int = 5) -> float:
    """Exact Jaccard similarity of two rows' word 5-gram sets, as near-dedup defines it: that of what is asked and
    answered together, or 0 where either part is less than ``PART_FLOOR`` alike (a part empty in both is alike)."""
    def shingles(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"[a-z0-9]+", text.lower())
        return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()

    def alike(x: set, y: set) -> float:
        return len(x & y) / len(x | y) if x or y else 1.0

    parts = [(shingles(x), shingles(y)) for x, y in zip(row_parts(a), row_parts(b))]
    if any(alike(x, y) < PART_FLOOR for x, y in parts):
        return 0.0
    return alike(set().union(*(x for x, _ in parts)), set().union(*(y for _, y in parts)))


def near_recall(planted: Planted, dropped: set[int], threshold: float) -> dict[str, Any]:
    """Found/planted near-duplicates by true Jaccard band, and how many other rows were dropped.

    Copies just above the threshold are found only partly: a 128-permutation estimate has a
    standard deviation of ~0.035 there.
    """
    bands = {f"[{threshold:g}, {threshold + 0.05:g})": (threshold, threshold + 0.05),
             f">= {threshold + 0.05:g}": (threshold + 0.05, 2.0), f"< {threshold:g}": (0.0, threshold)}
    recall = {}
    for name, (low, high) in bands.items():
        copies = [copy for _, copy, similarity in planted.near if low <= similarity < high]
        recall[name] = f"{sum(copy in dropped for copy in copies)}/{len(copies)}"
    return {"found/planted by true Jaccard": recall,
            "dropped_not_planted": len(dropped - {copy for _, copy, _ in planted.near})}


def timed(stages: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    """Run a stage, record its seconds, and print them with the process's peak memory so far."""
    start = time.perf_counter()
    result = fn()
    stages[name] = round(time.perf_counter() - start, 3)
    print(f"  {name:<28} {stages[name]:8.2f} s   peak RSS so far {peak_rss_mb():6,.0f} MiB", flush=True)
    return result


def load_rows(path: Path, stages: dict[str, float]) -> tuple[list[Row], str]:
    """Rows through the lab's own reader; a plain JSON read when ``lab.data.pipeline`` is missing."""
    try:
        from lab.data.pipeline import load_file
    except ImportError as err:
        print(f"  lab.data.pipeline.load_file is not available ({err}); timing a plain json read instead, "
              "which neither detects the format nor validates rows.")
        return timed(stages, "read (plain json, fallback)", lambda: plain_read(path)), "fallback"
    parsed = timed(stages, "read+convert+validate", lambda: load_file(path))
    if parsed.errors:
        print(f"  {len(parsed.errors)} rows failed validation, e.g. {parsed.errors[0]}")
    return parsed.rows, "load_file"


def plain_read(path: Path) -> list[Row]:
    with path.open(encoding="utf-8") as f:
        return [Row(json.loads(line), i, path.name) for i, line in enumerate(f, 1)]


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def run(n_rows: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chats.jsonl"
        start = time.perf_counter()
        planted = write_dataset(path, n_rows, seed)
        size_mb = round(path.stat().st_size / 2**20, 1)
        print(f"wrote {n_rows:,} conversations ({size_mb} MiB) in {time.perf_counter() - start:.1f} s; "
              f"planted {planted.exact:,} exact and {len(planted.near):,} near duplicates")
        rss_before = peak_rss_mb()
        stages: dict[str, float] = {}
        rows, loader = load_rows(path, stages)
    exact = timed(stages, "exact dedup", lambda: exact_duplicates(rows))
    remaining = drop_rows(rows, exact)
    near = timed(stages, f"near dedup ({THRESHOLD})", lambda: near_duplicates(remaining, THRESHOLD))
    kept = drop_rows(remaining, near)
    train, validation = timed(stages, "split (10%)", lambda: split(kept, 0.1, seed))
    total = round(sum(stages.values()), 3)
    print(f"  {'total':<28} {total:8.2f} s\n  peak RSS {peak_rss_mb():,.0f} MiB "
          f"(after writing the file: {rss_before:,.0f} MiB)")
    return {
        "rows": n_rows, "file_mib": size_mb, "loader": loader, "stages_s": stages, "total_s": total,
        "peak_rss_mib": peak_rss_mb(), "found": {"exact": len(exact), "near": len(near)},
        "planted_exact": planted.exact,
        "near_recall": near_recall(planted, {remaining[p.drop].line - 1 for p in near}, THRESHOLD),
        "split": {"train": len(train), "validation": len(validation)},
        "machine": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="conversations to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    args = parser.parse_args()
    result = run(args.rows, args.seed)
    recall = result["near_recall"]
    print(f"  found {result['found']['exact']:,} exact and {result['found']['near']:,} near duplicates; "
          f"split {result['split']['train']:,} / {result['split']['validation']:,}\n"
          f"  near duplicates found/planted by true Jaccard: "
          f"{', '.join(f'{band}: {count}' for band, count in recall['found/planted by true Jaccard'].items())}; "
          f"{recall['dropped_not_planted']:,} other rows dropped")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
