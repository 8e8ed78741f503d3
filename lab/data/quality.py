"""Cleaning steps on canonical rows: exact and near-duplicate removal, token-length and turn
filters, and a stable train/validation split. ``clean`` runs them in order and counts each step.

Everything is deterministic for a given seed and input. Near-dedup is MinHash + LSH banding
computed with Arrow and numpy over the whole dataset at once: 100,000 conversations of ~150
words take about 4 s on one core, where a ``datasketch.MinHash`` per row takes about 40 s.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lab.data.canonical import Message, Row, message_text
from lab.data.kinds import KEY_FIELDS, MESSAGES, flags, kind_of, row_parts
from lab.errors import LabError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PUNCTUATION = r"[^\p{L}\p{M}\p{N}\s]+"  # RE2: anything but letters, combining marks, digits and spaces
TEXT_CHUNK = 10_000  # documents tokenised at once: bounds the memory of the Arrow word arrays
MINHASH_CHUNK = 131_072  # shingles per MinHash block: big enough that numpy call overhead vanishes
BUCKET_WINDOW = 32  # in an LSH bucket, each row is compared with at most this many rows before it
VERIFY_CHUNK = 100_000  # candidate pairs compared at once
RECALL_WEIGHTS = (0.1, 0.9)  # LSH tuning favours recall: false candidates are verified away, misses are lost
TOKEN_BATCH = 512  # conversations rendered and tokenised per call
NUM_PERM = 128
SHINGLE = 5  # words per shingle
# Each part of a near-duplicate pair (what is asked, what is answered) must be at least this alike besides the whole
# row reaching the threshold: a long prompt shared by several replies no longer makes the replies duplicates, while a
# light edit of a short reply (one word of 30 leaves a Jaccard of 0.68) still counts.
PART_FLOOR = 0.5


@dataclass
class DuplicatePair:
    """``drop`` duplicates ``keep`` (the earlier row); both index the input list."""

    keep: int
    drop: int
    similarity: float


@dataclass
class StepCount:
    """One cleaning step as the dataset card records it."""

    step: str
    before: int
    after: int
    removed: int
    detail: str


@dataclass
class CleaningResult:
    """What ``clean`` kept, and why the rest went. Pair indices refer to the input list."""

    rows: list[Row]
    steps: list[StepCount] = field(default_factory=list)
    exact_pairs: list[DuplicatePair] = field(default_factory=list)
    near_pairs: list[DuplicatePair] = field(default_factory=list)
    removed_by_filters: dict[str, list[Row]] = field(default_factory=dict)  # step name -> rows
    indices: list[int] = field(default_factory=list)  # input index of each kept row


# ---------------------------------------------------------------- exact duplicates

def normalise_text(text: str) -> str:
    """Strip, collapse whitespace runs to one space, Unicode NFC; case is kept."""
    # isprintable() is False for every whitespace character but " ", so this skips the costly
    # split/join for text that has nothing to collapse (most single-line messages).
    if not (text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "):
        text = " ".join(text.split())
    return unicodedata.normalize("NFC", text)


def content_key(data: dict[str, Any]) -> bytes:
    """A digest of what identifies a row (its kind's ``dedup`` fields, ``lab.data.kinds``): each message's field,
    role and normalised content, a text's normalised content, a flag's value. Equal keys, equal rows: an unpaired
    row's label counts, a prompts row's metadata does not."""
    digest = hashlib.blake2b(digest_size=16)
    for name in KEY_FIELDS:  # every kind's, in one order: a row has only its own kind's
        value = data.get(name)
        if isinstance(value, list):
            for message in value:
                update(digest, f"{name}\0{message['role']}", message_text(message))  # its tool calls too
        elif isinstance(value, bool):
            digest.update(f"{name}\0{int(value)}\0".encode())
        elif isinstance(value, str):
            update(digest, name, value)
    return digest.digest()


def update(digest: Any, head: str, text: str) -> None:
    content = normalise_text(text).encode()
    digest.update(f"{head}\0{len(content)}\0".encode())  # the length: no ambiguity where one text ends
    digest.update(content)


def exact_duplicates(rows: list[Row]) -> list[DuplicatePair]:
    """Rows identical to an earlier row after whitespace and Unicode normalisation."""
    first: dict[bytes, int] = {}
    pairs: list[DuplicatePair] = []
    for index, row in enumerate(rows):
        keep = first.setdefault(content_key(row.data), index)
        if keep != index:
            pairs.append(DuplicatePair(keep, index, 1.0))
    return pairs


def drop_rows(rows: list[Row], pairs: list[DuplicatePair]) -> list[Row]:
    """The rows no pair drops, in order."""
    dropped = {pair.drop for pair in pairs}
    return [row for index, row in enumerate(rows) if index not in dropped]


# ---------------------------------------------------------------- near duplicates

def near_duplicates(rows: list[Row], threshold: float = 0.8, *, num_perm: int = NUM_PERM, shingle: int = SHINGLE,
                    seed: int = 0) -> list[DuplicatePair]:
    """Rows whose word-shingle Jaccard similarity with an earlier kept row is at least ``threshold``.

    A row's text is what is asked and what is answered (``kinds.row_parts``: system prompts left out, since one
    shared by every row made every row alike), and besides the whole reaching ``threshold`` each part must be at
    least ``PART_FLOOR`` alike: several replies to one prompt are not duplicates, nor are different questions with
    one stock answer. Texts are lowercased and stripped of punctuation, cut into ``shingle``-word n-grams (a text
    shorter than that is one shorter n-gram), and compared through MinHash signatures: LSH bands
    propose candidates, the signatures' agreement (the Jaccard estimate) confirms them. Rows are
    taken in order; each row is dropped at most once, pointing at its most similar earlier row
    that is itself kept. Pairs come sorted by ``drop``. Rows whose flags differ (an unpaired reply labelled
    desirable, the same reply labelled not) are compared only with rows flagged alike: they are not the same row.
    """
    if not 0 < threshold <= 1:
        raise LabError(f"Near-duplicate threshold must be in (0, 1], got {threshold}.")
    if num_perm < 2 or shingle < 1:
        raise LabError(f"Near-dedup needs num_perm >= 2 and shingle >= 1 (got {num_perm} and {shingle}).")
    if len(rows) < 2:
        return []
    groups: dict[tuple[bool, ...], list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(flags(row.data), []).append(index)
    if len(groups) > 1:
        pairs = [DuplicatePair(group[p.keep], group[p.drop], p.similarity) for group in groups.values()
                 for p in near_duplicates([rows[i] for i in group], threshold, num_perm=num_perm, shingle=shingle,
                                          seed=seed)]
        return sorted(pairs, key=lambda p: p.drop)
    texts = [list(part) for part in zip(*(row_parts(r.data) for r in rows))]
    whole = whole_signatures(texts, shingle, num_perm, seed)
    if whole[1].sum() < 2:
        return []
    bands, band_rows = lsh_parameters(threshold, num_perm)
    candidates = lsh_candidates(*whole, bands, band_rows, np.random.default_rng([seed, 1]))
    if not len(candidates):
        return []
    # Each part's signatures again, of the rows in a candidate pair only (the same values: the permutations come from
    # the seed alone), rather than kept for every row: near-dedup's memory was three arrays of signatures a row.
    involved, local = np.unique(candidates, return_inverse=True)
    parts = [part_signatures([part[i] for i in involved], shingle, num_perm, seed) for part in texts]
    keep, drop, similarity = verify([(whole[0][involved], whole[1][involved]), *parts], local.reshape(-1, 2),
                                    [threshold] + [PART_FLOOR] * len(parts))
    return choose_drops(involved[keep], involved[drop], similarity)


def part_signatures(texts: list[str], shingle: int, num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(MinHash signatures, whether each text has words) of one part of every row, under the permutations ``seed``
    draws: every part gets the same ones, so a row's signature of the whole is the parts' element-wise minimum."""
    rng = np.random.default_rng(seed)
    hashes, counts = shingle_hashes(texts, shingle, rng)
    return minhash_signatures(hashes, counts, num_perm, rng), counts > 0  # punctuation alone has no shingles


def whole_signatures(parts: list[list[str]], shingle: int, num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The signatures of each row's parts together (the minimum over the parts that have words; the shingles that
    would span two parts are not counted), and whether each row has words at all. One part's signatures are held at
    a time."""
    signatures, words = None, None
    for texts in parts:
        values, has = part_signatures(texts, shingle, num_perm, seed)
        values[~has] = np.iinfo(np.uint32).max  # a part without words leaves the minimum to the others
        signatures = values if signatures is None else np.minimum(signatures, values, out=signatures)
        words = has if words is None else words | has
    return signatures, words


def shingle_hashes(texts: list[str], shingle: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every text's word n-grams, concatenated, and the number per text."""
    position_weights = rng.integers(0, 2**32, shingle, dtype=np.uint32) | np.uint32(1)
    pieces: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for start in range(0, len(texts), TEXT_CHUNK):
        words, per_text = word_hashes(texts[start:start + TEXT_CHUNK])
        pieces.append(ngram_hashes(words, per_text, position_weights))
        counts.append(np.minimum(per_text, np.maximum(per_text - shingle + 1, 1)))
    return np.concatenate(pieces), np.concatenate(counts)


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the lowercased words of each text, concatenated, and the word count per text.

    Arrow cleans, splits and dictionary-encodes the words in C++, so each distinct word is hashed once.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    lowered = pc.utf8_lower(pc.utf8_normalize(pa.array(texts, type=pa.large_string()), "NFC"))
    # RE2's \s is ASCII, so other spaces go with the punctuation and an ASCII split is enough;
    # replacing then splitting is 3x faster than splitting on a regex.
    cleaned = pc.ascii_trim_whitespace(pc.replace_substring_regex(lowered, PUNCTUATION, " "))
    has_words = pc.greater(pc.binary_length(cleaned), 0)  # splitting "" would give one empty word
    split = pc.ascii_split_whitespace(cleaned.filter(has_words))
    per_text = np.zeros(len(texts), np.int64)
    per_text[has_words.to_numpy(zero_copy_only=False)] = pc.list_value_length(split).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(split.flatten())
    vocabulary = encoded.dictionary.to_numpy(zero_copy_only=False)
    distinct = pd.util.hash_array(vocabulary, categorize=False) if len(vocabulary) else np.empty(0, np.uint64)
    return distinct.astype(np.uint32)[encoded.indices.to_numpy()], per_text


def ngram_hashes(words: np.ndarray, per_text: np.ndarray, position_weights: np.ndarray) -> np.ndarray:
    """Order-sensitive hashes of each text's ``len(position_weights)``-word windows, in text order.

    A window is a weighted sum of its word hashes (mod 2**32), then mixed. A text shorter than
    the window is one n-gram of all its words.
    """
    n, total = len(position_weights), len(words)
    padded = np.concatenate([words, np.zeros(n, np.uint32)])
    combined = words * position_weights[0]
    for offset in range(1, n):
        combined += padded[offset:offset + total] * position_weights[offset]
    starts = np.cumsum(per_text) - per_text
    within = np.arange(total) - np.repeat(starts, per_text)
    keep = within <= np.repeat(per_text - n, per_text)  # windows that end inside their text
    short = np.flatnonzero((per_text > 0) & (per_text < n))
    if len(short):
        # Windows of short texts ran into the next text: recompute them from their own words.
        first, length = starts[short], per_text[short]
        partial = np.zeros(len(short), np.uint32)
        for offset in range(n - 1):
            partial += np.where(offset < length, padded[first + offset] * position_weights[offset], np.uint32(0))
        combined[first] = partial
        keep[first] = True
    return mix32(combined[keep])


def mix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: every input bit flips each output bit with probability ~1/2."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def minhash_signatures(hashes: np.ndarray, counts: np.ndarray, num_perm: int, rng: np.random.Generator) -> np.ndarray:
    """``(len(counts), num_perm)`` uint32 MinHash signatures (rows with no shingles: meaningless).

    The permutations are ``x -> a*x + b mod 2**32`` with odd ``a`` (bijections of uint32), not
    mod a Mersenne prime: without AVX-512 numpy has no vector 64-bit multiply, and 32-bit lanes
    are several times faster. The inputs are already well-mixed hashes, so the estimates
    match the binomial spread of ideal permutations (tested). Texts are grouped by shingle
    count into ``(longest, texts)`` blocks so the minimum is a plain reduction over rows;
    shorter texts are padded with their own first shingle, which cannot change a minimum.
    """
    multipliers = rng.integers(0, 2**32, num_perm, dtype=np.uint32) | np.uint32(1)
    offsets = rng.integers(0, 2**32, num_perm, dtype=np.uint32)
    signatures = np.zeros((len(counts), num_perm), dtype=np.uint32)
    if len(hashes) == 0:
        return signatures
    starts = np.cumsum(counts) - counts
    last = np.maximum(counts - 1, 0)
    for block in length_blocks(counts):
        step = np.arange(max(int(counts[block[-1]]), 1))[:, None]
        values = hashes[np.minimum(starts[block] + np.minimum(step, last[block]), len(hashes) - 1)]
        signatures[block] = block_minhash(values, multipliers, offsets).T
    return signatures


def length_blocks(counts: np.ndarray) -> list[np.ndarray]:
    """Text indices sorted by shingle count, cut so each padded block holds ~MINHASH_CHUNK values."""
    order = np.argsort(counts, kind="stable")
    ordered = np.maximum(counts[order], 1)
    blocks: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = min(len(order), start + max(1, MINHASH_CHUNK // int(ordered[start])))
        # Counts grow along the order, so the block's last text sets its padded length.
        while end - start > 1 and int(ordered[end - 1]) * (end - start) > MINHASH_CHUNK:
            end = start + (end - start) // 2
        blocks.append(order[start:end])
        start = end
    return blocks


def block_minhash(values: np.ndarray, multipliers: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(num_perm, texts)`` minima of each permutation over each column of ``values``."""
    out = np.empty((len(multipliers), values.shape[1]), np.uint32)
    scratch = np.empty_like(values)
    for i, (a, b) in enumerate(zip(multipliers, offsets)):
        np.multiply(values, a, out=scratch)
        np.add(scratch, b, out=scratch)
        np.min(scratch, axis=0, out=out[i])
    return out


def lsh_parameters(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band for the threshold, from datasketch's optimiser, weighted for recall."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, *RECALL_WEIGHTS)


def lsh_candidates(signatures: np.ndarray, eligible: np.ndarray, bands: int, band_rows: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Unique ``(earlier, later)`` index pairs that share a band, as an ``(m, 2)`` int64 array."""
    weights = rng.integers(1, 2**63, band_rows, dtype=np.uint64) | np.uint64(1)
    rows = np.flatnonzero(eligible)
    n = len(signatures)
    codes: list[np.ndarray] = []
    for band in range(bands):
        block = signatures[rows, band * band_rows:(band + 1) * band_rows].astype(np.uint64)
        keys = (block * weights).sum(axis=1)  # a 64-bit collision only adds a candidate to verify
        codes.append(bucket_pairs(rows, keys, n))
    unique = np.unique(np.concatenate(codes)) if codes else np.empty(0, np.int64)
    return np.stack([unique // n, unique % n], axis=1)


def bucket_pairs(rows: np.ndarray, keys: np.ndarray, n: int) -> np.ndarray:
    """Pairs of rows with equal keys, coded ``earlier * n + later``.

    Each row is paired with up to BUCKET_WINDOW rows before it in its bucket and with the
    bucket's first row, so a bucket of thousands (a boilerplate-heavy dataset) stays linear.
    """
    order = np.argsort(keys, kind="stable")  # stable: rows within a bucket stay in index order
    ids, sorted_keys = rows[order], keys[order]
    new_bucket = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
    first = ids[np.maximum.accumulate(np.where(new_bucket, np.arange(len(ids)), 0))]
    found = [first[~new_bucket] * n + ids[~new_bucket]]
    for gap in range(1, BUCKET_WINDOW + 1):
        same = sorted_keys[gap:] == sorted_keys[:-gap]
        if not same.any():
            break
        found.append(ids[:-gap][same] * n + ids[gap:][same])
    return np.concatenate(found).astype(np.int64)


def verify(signatures: list[tuple[np.ndarray, np.ndarray]], candidates: np.ndarray,
           thresholds: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs whose estimated Jaccard (share of equal signature values) reaches its threshold in every
    one of ``signatures`` (each ``(signatures, has words)``), with the first's estimate as their similarity. Texts
    without words are alike only to each other."""
    keep, drop, similarity = [], [], []
    for start in range(0, len(candidates), VERIFY_CHUNK):
        pairs = candidates[start:start + VERIFY_CHUNK]
        first, second = pairs[:, 0], pairs[:, 1]
        hit = np.ones(len(pairs), bool)
        for index, ((values, words), threshold) in enumerate(zip(signatures, thresholds)):
            alike = (values[first] == values[second]).mean(axis=1)
            alike = np.where(words[first] & words[second], alike, (~words[first] & ~words[second]).astype(float))
            hit &= alike >= threshold - 1e-9  # k/num_perm compared with a float threshold
            if index == 0:
                estimate = alike
        keep.append(first[hit])
        drop.append(second[hit])
        similarity.append(estimate[hit])
    if not keep:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return np.concatenate(keep), np.concatenate(drop), np.concatenate(similarity)


def choose_drops(keep: np.ndarray, drop: np.ndarray, similarity: np.ndarray) -> list[DuplicatePair]:
    """Walk rows in order: a row goes if it matches an earlier row that stayed (the most similar one).

    Chains resolve in order: if B ~ A and C ~ B but not A, B goes and C stays, since what C
    resembles is gone and C is not a duplicate of anything left.
    """
    order = np.lexsort((keep, -similarity, drop))
    dropped: set[int] = set()
    pairs: list[DuplicatePair] = []
    for i in order:
        earlier, later = int(keep[i]), int(drop[i])
        if later in dropped or earlier in dropped:
            continue
        dropped.add(later)
        pairs.append(DuplicatePair(earlier, later, round(float(similarity[i]), 4)))
    return pairs


# ---------------------------------------------------------------- filters

def conversations(data: dict[str, Any]) -> list[list[Message]]:
    """The sequences a trainer sees for a row: the conversation, prompt + each reply, or the prompt alone (a
    prompts row: the replies are generated in training)."""
    messages = [f for f, how in kind_of(data).fields.items() if how == MESSAGES]
    if "prompt" not in messages:
        return [data[f] for f in messages]
    replies = [data["prompt"] + data[f] for f in messages if f != "prompt"]
    return replies or [data["prompt"]]


def token_lengths(rows: list[Row], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Tokens in each row's full conversation, rendered with the chat template when there is one.

    Preference rows count their longer side (prompt + chosen or prompt + rejected), which is
    what a DPO batch must fit.
    """
    from lab.data.canonical import tool_list

    owners: list[int] = []
    sequences: list[list[Message]] = []
    tools: list[list[dict[str, Any]] | None] = []  # the functions a row declares: the template lists them
    for index, row in enumerate(rows):
        for sequence in conversations(row.data):
            owners.append(index)
            sequences.append(sequence)
            tools.append(tool_list(row.data.get("tools")))
    counts = [0] * len(rows)
    templated = bool(getattr(tokenizer, "chat_template", None))
    for start in range(0, len(sequences), TOKEN_BATCH):
        batch = sequences[start:start + TOKEN_BATCH]
        if templated:
            texts = [tokenizer.apply_chat_template(s, tools=t, tokenize=False)
                     for s, t in zip(batch, tools[start:start + TOKEN_BATCH])]
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"]  # the template holds them
        else:
            ids = tokenizer(["\n".join(m["content"] for m in s) for s in batch])["input_ids"]
        for owner, tokens in zip(owners[start:start + TOKEN_BATCH], ids):
            counts[owner] = max(counts[owner], len(tokens))
    return counts


def filter_by_tokens(rows: list[Row], lengths: list[int], min_tokens: int | None = None,
                     max_tokens: int | None = None) -> tuple[list[Row], list[Row]]:
    """``(kept, removed)``: rows whose token length is within the inclusive bounds."""
    if len(lengths) != len(rows):
        raise LabError(f"Token filter: {len(lengths)} lengths for {len(rows)} rows; compute them with "
                       "token_lengths on the same rows.")
    return partition(rows, [within(n, min_tokens, max_tokens) for n in lengths])


def turn_count(row: Row) -> int:
    """User turns in the conversation (for a row with a prompt field: preference, unpaired, prompts, in its prompt)."""
    messages = row.data["messages"] if "messages" in row.data else row.data["prompt"]
    return sum(1 for m in messages if m["role"] == "user")


def filter_by_turns(rows: list[Row], min_turns: int | None = None,
                    max_turns: int | None = None) -> tuple[list[Row], list[Row]]:
    """``(kept, removed)``: rows whose user-turn count is within the inclusive bounds."""
    return partition(rows, [within(turn_count(row), min_turns, max_turns) for row in rows])


def within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def partition(rows: list[Row], keep: list[bool]) -> tuple[list[Row], list[Row]]:
    kept = [row for row, k in zip(rows, keep) if k]
    removed = [row for row, k in zip(rows, keep) if not k]
    return kept, removed


# ---------------------------------------------------------------- split

def split(rows: list[Row], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Row], list[Row]]:
    """``(train, validation)``, each in input order.

    Validation holds the ``round(n * val_fraction)`` rows (at least 1 when the fraction is
    positive and there are 2 rows or more; never all of them) whose content hash with the seed
    is smallest. A row's hash depends only on its own content, so it tends to stay on its side
    when other rows come or go, and copies of a row land on the same side (unless they straddle
    the cut-off) when exact dedup is off.
    """
    if not 0 <= val_fraction < 1:
        raise LabError(f"Validation fraction must be at least 0 and below 1, got {val_fraction}.")
    size = validation_size(len(rows), val_fraction)
    salt = seed.to_bytes(8, "little", signed=True)
    ranks = sorted(range(len(rows)), key=lambda i: (split_hash(rows[i].data, salt), i))
    chosen = set(ranks[:size])
    validation = [row for i, row in enumerate(rows) if i in chosen]
    train = [row for i, row in enumerate(rows) if i not in chosen]
    return train, validation


def validation_size(n: int, val_fraction: float) -> int:
    if val_fraction == 0 or n < 2:
        return 0
    return min(max(round(n * val_fraction), 1), n - 1)


def split_hash(data: dict[str, Any], salt: bytes) -> bytes:
    return hashlib.blake2b(content_key(data), digest_size=8, key=salt).digest()


# ---------------------------------------------------------------- all steps

def clean(rows: list[Row], *, exact: bool = True, near: bool = True, threshold: float = 0.8,
          lengths: list[int] | None = None, min_tokens: int | None = None, max_tokens: int | None = None,
          min_turns: int | None = None, max_turns: int | None = None) -> CleaningResult:
    """Exact dedup → near dedup → token filter → turn filter, each on what the one before left.

    ``lengths`` are token counts of the input rows (``token_lengths``), needed only for the
    token filter. Steps that are off are not recorded.
    """
    if (min_tokens is not None or max_tokens is not None) and lengths is None:
        raise LabError("The token-length filter needs token lengths: pass lengths=token_lengths(rows, tokenizer).")
    if lengths is not None and len(lengths) != len(rows):
        raise LabError(f"Token filter: {len(lengths)} lengths for {len(rows)} rows.")
    result = CleaningResult(rows=list(rows), indices=list(range(len(rows))))
    if exact:
        result.exact_pairs = remap(exact_duplicates(result.rows), result.indices)
        apply_pairs(result, "exact dedup", result.exact_pairs,
                    "identical to an earlier row after normalising whitespace and Unicode")
    if near:
        result.near_pairs = remap(near_duplicates(result.rows, threshold), result.indices)
        apply_pairs(result, "near dedup", result.near_pairs,
                    f"MinHash Jaccard >= {threshold:g} with an earlier row ({SHINGLE}-word shingles, "
                    f"{NUM_PERM} permutations)")
    if lengths is not None and (min_tokens is not None or max_tokens is not None):
        keep = [within(lengths[i], min_tokens, max_tokens) for i in result.indices]
        apply_filter(result, "token length", keep, f"tokens {bounds(min_tokens, max_tokens)}")
    if min_turns is not None or max_turns is not None:
        keep = [within(turn_count(row), min_turns, max_turns) for row in result.rows]
        apply_filter(result, "turns", keep, f"user turns {bounds(min_turns, max_turns)}")
    return result


def remap(pairs: list[DuplicatePair], indices: list[int]) -> list[DuplicatePair]:
    """Pairs found on a subset, re-indexed to the original rows."""
    return [DuplicatePair(indices[p.keep], indices[p.drop], p.similarity) for p in pairs]


def apply_pairs(result: CleaningResult, step: str, pairs: list[DuplicatePair], detail: str) -> None:
    dropped = {p.drop for p in pairs}
    keep = [index not in dropped for index in result.indices]
    record(result, step, keep, detail)


def apply_filter(result: CleaningResult, step: str, keep: list[bool], detail: str) -> None:
    result.removed_by_filters[step] = [row for row, k in zip(result.rows, keep) if not k]
    record(result, step, keep, detail)


def record(result: CleaningResult, step: str, keep: list[bool], detail: str) -> None:
    before = len(result.rows)
    result.rows = [row for row, k in zip(result.rows, keep) if k]
    result.indices = [index for index, k in zip(result.indices, keep) if k]
    after = len(result.rows)
    result.steps.append(StepCount(step, before, after, before - after, detail))


def bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"
