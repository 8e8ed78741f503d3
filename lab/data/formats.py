"""Detect a file's format from its columns and convert each record to the canonical form.

Every format is a renaming of the file's columns onto a few canonical fields (``messages`` or
``prompt``/``response``/``context``/``system``/``history`` for SFT; ``prompt``/``chosen``/
``rejected``/``system`` for preference pairs; ``prompt``/``completion``/``label``/``system`` for unpaired
replies; ``prompt``/``answer``/``system``/``meta`` for prompts) followed by one generic converter per kind. A
user's manual mapping (``--map COLUMN=FIELD``) is the same renaming, written by hand. Which fields each kind has is
``lab.data.kinds``'s to say.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.data.canonical import Kind, Message
from lab.data.kind_checks import (LABEL_WORDS, answer_text, check_prompts, check_unpaired, meta_object, meta_text,
                                  parse_label)
from lab.data.kinds import KINDS
from lab.data.validate import (RowProblem, check_conversation, check_preference, check_sft, json_text, normalise_messages,
                               require, text_of)
from lab.errors import LabError

# Fields a column can be mapped to by hand, per kind.
MAPPING_FIELDS: dict[str, list[str]] = {k.name: list(k.mapping_fields) for k in KINDS.values()}
# Fields that hold a whole conversation: mapped, they stand for a kind's required prompt and reply (SFT).
CONVERSATION_FIELDS = ("messages", "text")


@dataclass(frozen=True)
class Format:
    name: str
    kind: Kind
    label: str
    fields: dict[str, tuple[str, ...]]  # canonical field -> candidate column names, first present wins
    required: tuple[str, ...]
    test: Callable[[dict[str, Any]], bool] | None = None  # on a sample record, renamed
    absent: tuple[str, ...] = ()  # columns that must NOT exist (a prompt column rules out implicit prompts)
    # Makes prompt/chosen/rejected from a layout that gives them otherwise (scores, a winner), before conversion.
    pair: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Another reading of the same columns, said where the kind was detected (not chosen): the kind to choose for it.
    hint: str = ""


@dataclass
class Detected:
    """A format applied to one file: which column feeds which canonical field."""

    format: Format
    columns: dict[str, str]  # canonical field -> column
    name: str = ""
    sft_from_preference: bool = False

    def __post_init__(self) -> None:
        self.name = self.name or self.format.name

    @property
    def kind(self) -> Kind:
        return "sft" if self.sft_from_preference else self.format.kind

    def source_field(self, path: str | None) -> str | None:
        """Name a problem's field as the file calls it: ``messages[2]`` → ``conversations[2]``."""
        if path is None:
            return None
        head = re.match(r"[a-z_]+", path)
        if head is None:
            return path
        name = head.group(0)
        return self.columns.get(name, name) + path[len(name):]


# Python's parser takes about 480 bytes of memory per character of a literal: a 10 MB cell took 4.8 GB. Cells this
# long are JSON in practice (pandas' reprs are of short lists of messages), which is read without that cost.
LITERAL_MAX_CHARS = 100_000


def parse_json_cell(value: Any, field: str) -> Any:
    """CSV cells hold nested values as JSON text: ``"[{""role"": ...}]"``; parsed, they are checked as the
    readers check records (nesting, text), since nothing after this does. A cell that is not JSON but a Python
    literal (``[{'role': 'user', ...}]``: what pandas writes for a column of lists) is read as one."""
    if not (isinstance(value, str) and value.lstrip()[:1] in ("[", "{")):
        return value
    what = "a list or an object (the cell starts with [ or {)"
    try:
        return json_text(value, field, what=what)
    except RowProblem:
        if len(value) > LITERAL_MAX_CHARS:
            raise RowProblem(field, f"a cell of {len(value):,} characters that is not JSON; as a Python literal it "
                                    f"is too long to read safely (more than {LITERAL_MAX_CHARS:,} characters): "
                                    "write the file as JSON Lines, or its nested values as JSON") from None
        literal = python_literal(value)
        if literal is None:
            raise
        return json_text(json.dumps(literal), field, what=what)


def python_literal(text: str) -> list[Any] | dict[str, Any] | None:
    """A list or dict written as a Python literal, else None (``ast.literal_eval`` reads literals only)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, (list, dict)) else None


def as_messages(value: Any, field: str, *, default_role: str) -> list[Message]:
    """A side given as text (one message of ``default_role``) or as a list of messages."""
    value = parse_json_cell(value, field)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return normalise_messages(value, field)
    if isinstance(value, list) and not value:
        return []
    return [{"role": default_role, "content": text_of(value, field)}]


def prompt_messages(value: Any, field: str) -> list[Message]:
    """A prompt as messages: a list of messages, an HH transcript ('Human: … Assistant: … Human: …', as the
    Dahoas/rm-static and Nectar files keep multi-turn prompts; its open 'Assistant:' at the end dropped), or one user
    message of plain text."""
    value = parse_json_cell(value, field)
    if is_hh_transcript(value):
        return parse_hh(re.sub(r"\n\nAssistant:\s*$", "", value), field)
    return as_messages(value, field, default_role="user")


def is_hh_transcript(value: Any) -> bool:
    """A text that *is* an HH transcript: it starts with a 'Human:' turn and has an 'Assistant:' turn after it (a
    question that merely mentions the markers is plain text)."""
    return isinstance(value, str) and value.lstrip().startswith("Human:") and "\n\nAssistant:" in value


def is_message_list(value: Any) -> bool:
    try:
        value = parse_json_cell(value, "")
    except RowProblem:
        return False
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def has_hh_markers(value: Any) -> bool:
    return isinstance(value, str) and "Human:" in value and "Assistant:" in value


def chosen_includes_prompt(record: dict[str, Any]) -> bool:
    value = parse_json_cell(record.get("chosen"), "chosen")
    return is_message_list(value) and str(value[0].get("role", value[0].get("from", ""))).lower() not in (
        "assistant", "gpt")


# Where raw UltraFeedback-style rows keep a completion's text and its score (the first present wins):
# UltraFeedback's fine-grained score is the mean of its four aspect ratings, the score its binarized version uses.
COMPLETION_TEXTS = ("response", "text", "completion", "output", "content", "answer")
COMPLETION_SCORES = ("fine-grained_score", "overall_score", "score", "rating", "reward", "rank")
# Scores where lower is better (Nectar's rank 1 is the best answer): negated, so that higher is better throughout.
LOWER_IS_BETTER = ("rank",)


def rated_completions(value: Any, field: str) -> list[tuple[float, str]]:
    """``[{"response": ..., "overall_score": ...}, ...]`` → [(score, text)], naming the first bad element."""
    value = parse_json_cell(value, field)
    if not isinstance(value, list):
        raise RowProblem(field, f"expected a list of rated completions, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise RowProblem(where, f"expected a completion object, got {type(item).__name__}")
        text_key = next((k for k in COMPLETION_TEXTS if k in item), None)
        score_key = next((k for k in COMPLETION_SCORES if isinstance(item.get(k), (int, float, str))
                          and not isinstance(item.get(k), bool)), None)
        if text_key is None:
            raise RowProblem(where, f"no completion text (expected one of {', '.join(COMPLETION_TEXTS)})")
        if score_key is None:
            raise RowProblem(where, f"no score (expected one of {', '.join(COMPLETION_SCORES)})")
        try:
            score = float(item[score_key])
        except ValueError:
            raise RowProblem(f"{where}.{score_key}", f"not a number: {item[score_key]!r}") from None
        out.append((-score if score_key in LOWER_IS_BETTER else score, text_of(item[text_key], f"{where}.{text_key}")))
    return out


def best_and_worst(value: Any, field: str) -> tuple[str, str]:
    """The highest-scored completion as chosen and the lowest as rejected (the first of equals). The lowest rather
    than a random one, as UltraFeedback's binarized set drew: the same file always gives the same pairs."""
    every = rated_completions(value, field)
    unrated = next((i for i, (score, text) in enumerate(every) if math.isnan(score) and text.strip()), None)
    if unrated is not None:  # NaN compares false with everything: max and min would both pick it
        raise RowProblem(f"{field}[{unrated}]", "its score is NaN (a missing rating?): rate it, or remove it")
    rated = [(score, text) for score, text in every if text.strip()]
    if len(rated) < 2:
        raise RowProblem(field, "fewer than two non-empty completions: no pair to make")
    best = max(rated, key=lambda pair: pair[0])
    worst = min(rated, key=lambda pair: pair[0])
    if best[0] == worst[0]:
        raise RowProblem(field, f"every completion has the same score ({best[0]:g}): no preference to learn")
    return best[1], worst[1]


ARENA_WINNERS = ("winner_model_a", "winner_model_b", "winner_tie")


def scored_pair(r: dict[str, Any]) -> dict[str, Any]:
    """Raw UltraFeedback, Nectar: the best- and worst-scored completions; Nectar's prompt is an HH transcript
    ending in an open 'Assistant:' turn."""
    chosen, rejected = best_and_worst(require(r, "completions"), "completions")
    return {**r, "prompt": prompt_messages(r.get("prompt"), "prompt"), "chosen": chosen, "rejected": rejected}


def better_id_pair(r: dict[str, Any]) -> dict[str, Any]:
    """PKU-SafeRLHF: ``better_response_id`` names the chosen one of response_0 and response_1."""
    better = str(require(r, "better")).strip()
    if better not in ("0", "1"):
        raise RowProblem("better", f"expected 0 or 1, got {r['better']!r}")
    return {**r, "chosen": require(r, f"response_{better}"), "rejected": require(r, f"response_{1 - int(better)}")}


def battle_pair(r: dict[str, Any]) -> dict[str, Any]:
    """lmsys/chatbot_arena_conversations: the two models' conversations and ``winner``."""
    winner = str(require(r, "winner")).strip().lower()
    if winner not in ("model_a", "model_b"):
        raise RowProblem("winner", f"{winner!r}: a tie or no winner, no preference to learn (expected model_a "
                                   "or model_b)")
    a = as_messages(require(r, "conversation_a"), "conversation_a", default_role="assistant")
    b = as_messages(require(r, "conversation_b"), "conversation_b", default_role="assistant")
    return winner_pair(a, b, winner == "model_a", ("conversation_a", "conversation_b"))


def arena_55k_pair(r: dict[str, Any]) -> dict[str, Any]:
    """arena-human-preference-55k: each side's turns as JSON lists of strings, and one-hot winner columns."""
    flags = {w: r.get(w) for w in ARENA_WINNERS}
    if any(v not in (0, 1, True, False, "0", "1") for v in flags.values()) or sum(map(int, flags.values())) != 1:
        raise RowProblem("winner_model_a", f"expected exactly one of {', '.join(ARENA_WINNERS)} to be 1, got {flags}")
    if int(flags["winner_tie"]):
        raise RowProblem("winner_tie", "a tie: no preference to learn")
    prompts = arena_turns(r, "prompt")
    a, b = (interleave(prompts, arena_turns(r, side), side) for side in ("response_a", "response_b"))
    return winner_pair(a, b, bool(int(flags["winner_model_a"])), ("response_a", "response_b"))


def winner_pair(a: list[Message], b: list[Message], a_won: bool, fields: tuple[str, str]) -> dict[str, Any]:
    """A battle's two conversations as a pair: their shared turns are the prompt, the winner's last reply chosen.
    Conversations that differ before their last reply (a multi-turn battle) share no prompt."""
    for field, messages in zip(fields, (a, b)):
        if not messages or messages[-1]["role"] != "assistant":
            raise RowProblem(field, "the battle does not end with the model's reply")
    if a[:-1] != b[:-1]:
        raise RowProblem(fields[1], "a multi-turn battle: the two conversations differ before their final replies, "
                                    "so they share no prompt to make a pair from")
    chosen, rejected = (a, b) if a_won else (b, a)
    return {"prompt": a[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def arena_turns(r: dict[str, Any], field: str) -> list[str]:
    """The 55k set stores each side's turns as a JSON list of strings (a single string also works)."""
    value = parse_json_cell(require(r, field), field)
    turns = value if isinstance(value, list) else [value]
    for i, turn in enumerate(turns):
        if turn is not None and not isinstance(turn, str):
            raise RowProblem(f"{field}[{i}]", f"expected text, got {type(turn).__name__}")
        if not turn or not turn.strip():
            raise RowProblem(f"{field}[{i}]", "missing or empty turn")
    return turns


def interleave(prompts: list[str], replies: list[str], field: str) -> list[Message]:
    if len(prompts) != len(replies):
        raise RowProblem(field, f"{len(replies)} replies for {len(prompts)} prompts")
    return [m for user, reply in zip(prompts, replies)
            for m in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})]


PROMPTS = ("prompt", "question", "instruction", "input", "query", "problem")
RESPONSES = ("answer", "response", "output", "target", "completion", "solution")
# Prompt datasets for online RL: the prompt (text, or messages ending with the user's turn) and a reference answer
# (GSM8K's answer, MATH's solution, ground_truth as in verl's layout).
RL_PROMPTS = ("prompt", "question", "problem", "query", "messages")
ANSWERS = ("answer", "solution", "ground_truth", "target", "reference")
META = ("meta", "metadata")
TOOLS = ("tools", "functions")  # functions: the schemas of OpenAI's older function-calling fine-tuning files
# A preference layout's columns rule out an unpaired one: they hold pairs, not one labelled reply each.
NOT_UNPAIRED = ("chosen", "rejected", "completions")
REPLIES = ("response", "completion", "output", "answer")
# A rating column holds thumbs (up/down) in feedback exports; star ratings (1-5) are scores, not labels.
THUMBS = {"up", "down", "thumbs_up", "thumbs_down", "👍", "👎"}


def is_thumb(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in THUMBS


def is_label(value: Any) -> bool:
    try:
        parse_label(value)
    except RowProblem:
        return False
    return True


FORMATS: list[Format] = [
    Format("trl-unpaired", "unpaired",
           "TRL unpaired preference (prompt/completion/label: a label of true marks a desirable completion, false "
           "an undesirable one; as KTO takes)",
           {"prompt": ("prompt",), "completion": ("completion",), "label": ("label",), "system": ("system",)},
           ("prompt", "completion", "label"), test=lambda r: is_label(r.get("label")), absent=NOT_UNPAIRED),
    Format("thumbs", "unpaired", "thumbs up/down feedback (prompt/response + thumbs_up: true is desirable)",
           {"prompt": PROMPTS, "completion": REPLIES, "label": ("thumbs_up", "thumbs"), "system": ("system",)},
           ("prompt", "completion", "label"), test=lambda r: is_label(r.get("label")), absent=NOT_UNPAIRED),
    Format("thumbs-rating", "unpaired", "thumbs up/down feedback (prompt/response + rating: up or down)",
           {"prompt": PROMPTS, "completion": REPLIES, "label": ("rating", "feedback"), "system": ("system",)},
           ("prompt", "completion", "label"), test=lambda r: is_thumb(r.get("label")), absent=NOT_UNPAIRED),
    Format("hh-rlhf", "preference", "HH-RLHF transcripts ('\\n\\nHuman: … \\n\\nAssistant: …')",
           {"chosen": ("chosen",), "rejected": ("rejected",)}, ("chosen", "rejected"),
           test=lambda r: has_hh_markers(r.get("chosen")), absent=PROMPTS),
    Format("ultrafeedback", "preference", "UltraFeedback-binarized (prompt + full chosen/rejected conversations)",
           {"prompt": PROMPTS, "chosen": ("chosen",), "rejected": ("rejected",), "system": ("system",)},
           ("prompt", "chosen", "rejected"), test=chosen_includes_prompt),
    Format("ultrafeedback-raw", "preference",
           "UltraFeedback raw (instruction + rated completions: the best is chosen, the worst rejected)",
           {"prompt": PROMPTS, "completions": ("completions",), "system": ("system",)}, ("prompt", "completions"),
           test=lambda r: len(rated_completions(r.get("completions"), "completions")) >= 2, pair=scored_pair),
    Format("nectar", "preference", "Nectar (prompt + ranked answers: rank 1 is chosen, the last rank rejected)",
           {"prompt": PROMPTS, "completions": ("answers",)}, ("prompt", "completions"),
           test=lambda r: len(rated_completions(r.get("completions"), "answers")) >= 2, pair=scored_pair),
    Format("arena", "preference", "Chatbot Arena battles (conversation_a/conversation_b + winner)",
           {"conversation_a": ("conversation_a",), "conversation_b": ("conversation_b",), "winner": ("winner",)},
           ("conversation_a", "conversation_b", "winner"), pair=battle_pair),
    Format("arena-55k", "preference",
           "Arena human preference (prompt + response_a/response_b + winner_model_a/winner_model_b/winner_tie)",
           {"prompt": ("prompt",), "response_a": ("response_a",), "response_b": ("response_b",),
            **{w: (w,) for w in ARENA_WINNERS}}, ("prompt", "response_a", "response_b", *ARENA_WINNERS),
           pair=arena_55k_pair),
    Format("pku-saferlhf", "preference", "PKU-SafeRLHF (prompt + response_0/response_1 + better_response_id)",
           {"prompt": PROMPTS, "response_0": ("response_0",), "response_1": ("response_1",),
            "better": ("better_response_id",)}, ("prompt", "response_0", "response_1", "better"),
           pair=better_id_pair),
    Format("trl-preference", "preference", "TRL preference with explicit prompt (prompt/chosen/rejected)",
           {"prompt": PROMPTS, "chosen": ("chosen", "chosen_response", "response_chosen", "response_j"),
            "rejected": ("rejected", "rejected_response", "response_rejected", "response_k"),
            "system": ("system",)},
           ("prompt", "chosen", "rejected")),
    Format("trl-preference-implicit", "preference", "TRL preference with implicit prompt (chosen/rejected conversations)",
           {"chosen": ("chosen",), "rejected": ("rejected",)}, ("chosen", "rejected"),
           test=lambda r: is_message_list(r.get("chosen")), absent=PROMPTS),
    Format("openai", "sft", "OpenAI messages (role/content; tool_calls/tool turns and a tools column)",
           {"messages": ("messages",), "system": ("system",), "tools": TOOLS}, ("messages",)),
    Format("sharegpt", "sft", "ShareGPT conversations (from/value; function_call/observation turns and tools)",
           {"messages": ("conversations", "conversation"), "system": ("system",), "tools": TOOLS},
           ("messages",)),
    Format("alpaca", "sft", "Alpaca (instruction/input/output)",
           {"prompt": ("instruction",), "context": ("input",), "response": ("output",), "system": ("system",),
            "history": ("history",)}, ("prompt", "response")),
    Format("dolly", "sft", "Dolly (instruction/context/response)",
           {"prompt": ("instruction",), "context": ("context",), "response": ("response",)}, ("prompt", "response")),
    Format("prompt-completion", "sft", "prompt/completion",
           {"prompt": ("prompt",), "response": ("completion",), "system": ("system",)}, ("prompt", "response")),
    Format("chat-text", "sft", "chat transcripts in one text column (### Human:/### Assistant:, Human:/Assistant:, "
           "Alpaca's ### Instruction:/### Response:, or text a chat template rendered: ChatML, Llama 2 [INST], Llama 3, "
           "Gemma)", {"text": ("text",)}, ("text",),
           test=lambda r: chat_text_style(r.get("text")) is not None),
    Format("question-answer", "sft", "question/answer pairs",
           {"prompt": PROMPTS, "response": RESPONSES, "system": ("system", "system_prompt"),
            "context": ("context",)},
           ("prompt", "response"),
           hint="choose kind prompts to read them as prompts with reference answers, for GRPO/RLOO"),
    # Last: a prompt with an answer also reads as an SFT question/answer pair above, and stays one unless the
    # kind asked for is prompts; a file of prompts alone (or with a ground_truth/reference column) is found here.
    Format("prompts", "prompts",
           "prompts for online RL (prompt, question, problem, query, or messages ending with the user's turn; an "
           "optional reference answer: answer, solution, ground_truth, target or reference; every other column "
           "kept as the row's metadata)",
           {"prompt": RL_PROMPTS, "answer": ANSWERS, "system": ("system",), "meta": META}, ("prompt",)),
]
FORMATS_BY_NAME = {f.name: f for f in FORMATS}


def describe_format(name: str, *, detected: bool = True) -> str:
    """A format's name with what it means, for people checking that detection got their file right: ``arena —
    Chatbot Arena battles …``; with ``detected`` (the kind was not chosen), its other reading (``hint``); a name
    without a known format (a mapping) as it is."""
    fmt = FORMATS_BY_NAME.get(name)
    if not fmt:
        return name
    return f"{name} — {fmt.label}" + (f" ({fmt.hint})" if detected and fmt.hint else "")


def sample_record(records: list[tuple[int, dict[str, Any]]], limit: int = 50) -> dict[str, Any]:
    """The first non-empty value of every column among the first records: enough to tell formats apart."""
    sample: dict[str, Any] = {}
    for _, record in records[:limit]:
        for key, value in record.items():
            if key not in sample and value not in (None, "", []):
                sample[key] = value
    return sample


def bind(fmt: Format, columns: list[str]) -> dict[str, str] | None:
    """Which column feeds each canonical field, or None if a required field has no column."""
    # Names as people write them: "Instruction", " output " (an exact name first where two differ only so).
    present = {c: c for c in columns}
    for c in columns:
        present.setdefault(c.strip().lower(), c)
    if set(present) & set(fmt.absent):
        return None
    bound: dict[str, str] = {}
    used: set[str] = set()
    for canonical, candidates in fmt.fields.items():
        column = next((present[c] for c in candidates if c in present and present[c] not in used), None)
        if column is not None:
            bound[canonical] = column
            used.add(column)
    return bound if all(f in bound for f in fmt.required) else None


def detect(columns: list[str], records: list[tuple[int, dict[str, Any]]], *, kind: Kind | None, source: str) -> Detected:
    """The first format whose columns are present (and whose sample test passes). With a ``kind`` asked for, formats
    of other kinds are passed over (a question/answer file is SFT data, or prompts when asked for), except that
    preference pairs asked for as SFT give their chosen conversations."""
    sample = sample_record(records)
    other: Format | None = None  # the first format of another kind that fits: what the file holds, if none of kind
    unfit: tuple[Format, dict[str, Any]] | None = None  # the first of the kind asked for whose values do not fit
    for fmt in FORMATS:
        bound = bind(fmt, columns)
        if bound is None:
            continue
        renamed = {canonical: sample.get(column) for canonical, column in bound.items()}
        if fmt.test and not safe_test(fmt.test, renamed):
            unfit = unfit or ((fmt, renamed) if fmt.kind == kind else None)
            continue
        if kind is None or kind == fmt.kind:
            if kind is None and fmt.kind == "sft":
                refuse_unread_labels(columns, records, bound, source)
            return Detected(fmt, bound)
        if kind == "sft" and fmt.kind == "preference":
            return Detected(fmt, bound, name=f"{fmt.name} (chosen replies as SFT)", sft_from_preference=True)
        other = other or fmt
    if unfit is not None and "label" in unfit[1]:
        try:
            parse_label(unfit[1]["label"], "label")
        except RowProblem as problem:
            raise LabError(f"{source} has the columns of {unfit[0].label}, but its first label cannot be read: "
                           f"{problem.reason}.") from None
    if other is not None and kind is not None:
        raise LabError(f"{source} holds {KINDS[other.kind].rows} ({other.label}), not {KINDS[kind].rows}. Import it "
                       f"as {other.kind}, or map its columns to {', '.join(MAPPING_FIELDS[kind])} by hand.")
    raise LabError(unrecognised(source, columns))


LABEL_COLUMNS = ("label", "labels")


def refuse_unread_labels(columns: list[str], records: list[tuple[int, dict[str, Any]]], bound: dict[str, str],
                         source: str) -> None:
    """A file read as SFT that leaves a label column with two values unread: they likely mark good and bad replies
    in words the lab does not know, and read as SFT every bad reply would be trained on. Refused, saying how to
    import it either way (a category column is passed over when SFT is asked for)."""
    column = next((c for c in columns if c.strip().lower() in LABEL_COLUMNS and c not in bound.values()), None)
    if column is None:
        return
    values = {json.dumps(r.get(column), ensure_ascii=False) if not isinstance(r.get(column), str) else r[column]
              for _, r in records[:200] if r.get(column) not in (None, "")}
    if len(values) != 2:
        return
    shown = " and ".join(repr(v) for v in sorted(values))
    raise LabError(f"{source} has replies and a '{column}' column with two values, {shown}, that the lab does not "
                   f"read as labels. If they mark desirable and undesirable replies (KTO), write them as "
                   f"{LABEL_WORDS} and import the file as unpaired; if the column is a category, choose kind sft "
                   f"(the column is then left out).")


def safe_test(test: Callable[[dict[str, Any]], bool], record: dict[str, Any]) -> bool:
    try:
        return bool(test(record))
    except RowProblem:
        return False


def column_names(columns: list[str], limit: int = 30) -> str:
    """The file's columns for a message: plain names as they are, odd ones (a line break, a control character, a
    name longer than a line) quoted and cut, so that the message stays one line; at most ``limit`` of them."""
    shown = [c if c.isprintable() and len(c) <= 80 else repr(c[:80]) + ("…" if len(c) > 80 else "")
             for c in columns[:limit]]
    return (", ".join(shown) or "(none)") + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def unrecognised(source: str, columns: list[str]) -> str:
    found = column_names(columns)
    if {"message_id", "parent_id"} <= set(columns):
        return (f"{source} is a message tree (one message per row, linked by message_id and parent_id, as "
                "OpenAssistant's oasst1 is): the lab reads one conversation per row. Rebuild each thread from its root "
                f"message down to a reply, then import the threads as messages. Columns found: {found}.")
    if "text" in columns and not set(columns) & {"messages", "conversations", "prompt", "instruction", "chosen"}:
        return (f"{source} has a 'text' column without chat markers ({CHAT_MARKERS}): plain text, as for continued "
                "pre-training, which the lab does not train on; "
                "it trains on conversations, with the loss on the assistant's replies. Columns found: "
                f"{found}. If the text holds conversations in another layout, convert them to messages first.")
    return (f"Unrecognised schema in {source}: columns found: {found}. Expected one of: messages (OpenAI), "
            "conversations (ShareGPT), instruction/input/output (Alpaca), instruction/context/response (Dolly), "
            "prompt/completion, question/answer, prompt/chosen/rejected or chosen/rejected (preference), "
            "conversation_a/conversation_b/winner (Chatbot Arena), prompt/answers with ranks (Nectar), "
            "prompt/completion/label or prompt/response/thumbs_up (unpaired), a prompt or question column alone "
            "(prompts). Map the columns by hand (UI: column mapping; CLI: --map COLUMN=FIELD with FIELD one of "
            + "; ".join(f"{', '.join(fields)} for {kind}" for kind, fields in MAPPING_FIELDS.items()) + ").")


def from_mapping(mapping: dict[str, str], columns: list[str], *, kind: Kind | None, source: str) -> Detected:
    """A user's ``{column: field}`` mapping as a detected format."""
    missing = [c for c in mapping if c not in columns]
    if missing:
        raise LabError(f"{source}: mapped column(s) {', '.join(missing)} not in the file; "
                       f"columns found: {column_names(columns)}.")
    fields = set(mapping.values())
    # Unless asked for, the first kind that takes every mapped field: a prompt alone is SFT still lacking its reply.
    mapped_kind: Kind = kind or next((k for k, allowed in MAPPING_FIELDS.items() if fields <= set(allowed)), "sft")
    allowed = MAPPING_FIELDS[mapped_kind]
    wrong = sorted(fields - set(allowed))
    if wrong:
        raise LabError(f"Cannot map to {', '.join(wrong)} for {mapped_kind} data; fields: {', '.join(allowed)}.")
    if len(fields) != len(mapping):
        raise LabError("Two columns are mapped to the same field; map each field once.")
    conversation = [f for f in CONVERSATION_FIELDS if f in fields]
    required = tuple(conversation[:1]) or KINDS[mapped_kind].required
    lacking = [f for f in required if f not in fields]
    if lacking:
        raise LabError(f"The mapping gives no column for {', '.join(lacking)}; {mapped_kind} data needs "
                       f"{' and '.join(required)}.")
    bound = {f: c for c, f in mapping.items()}
    fmt = Format("mapped", mapped_kind, "columns mapped by hand", {f: (c,) for f, c in bound.items()}, required)
    return Detected(fmt, bound)


# Fields a row may leave out, where the text a missing value became ("nan" after pandas' astype(str), "None" from
# str(None), a database's "NULL") means nothing was written: taken as text, it was appended to the user's turn or
# became the system prompt.
OPTIONAL_FIELDS = ("system", "context", "history", "tools", "meta", "answer")
MISSING_TEXT = ("nan", "none", "null", "n/a", "-")


def missing_as_none(field: str, value: Any) -> Any:
    """A value as the row means it: NaN (pandas' missing value, which json.dump writes as NaN) is None in any
    field, and the text of a missing value is None in an optional field."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if field in OPTIONAL_FIELDS and isinstance(value, str) and value.strip().lower() in MISSING_TEXT:
        return None
    return value


def convert(record: dict[str, Any], detected: Detected) -> dict[str, Any]:
    """One record → one canonical row; raises ``RowProblem`` with the field named as in the file."""
    renamed = {canonical: missing_as_none(canonical, record.get(column))
               for canonical, column in detected.columns.items()}
    try:
        if detected.format.kind == "sft":
            return convert_sft(renamed)
        if detected.format.kind == "unpaired":
            return convert_unpaired(renamed)
        if detected.format.kind == "prompts":
            used = set(detected.columns.values())
            return convert_prompts(renamed, {c: v for c, v in record.items() if c not in used})
        if detected.format.pair:
            renamed = detected.format.pair(renamed)
        row = convert_preference(renamed, hh=detected.format.name == "hh-rlhf")
        if detected.sft_from_preference:
            messages = row["prompt"] + row["chosen"]
            check_conversation(messages, "chosen")
            return {"messages": messages}
        return row
    except RowProblem as problem:
        problem.field = detected.source_field(problem.field)
        raise


def with_system(messages: list[Message], system: Any) -> list[Message]:
    if system is None or (messages and messages[0]["role"] == "system"):
        return messages
    text = text_of(system, "system")
    return [{"role": "system", "content": text}] + messages if text.strip() else messages


def convert_sft(r: dict[str, Any]) -> dict[str, Any]:
    if "text" in r:
        messages = with_system(parse_chat_text(require(r, "text"), "text"), r.get("system"))
        check_conversation(messages, "text")
        return {"messages": messages}
    if "messages" in r:
        messages = as_messages(require(r, "messages"), "messages", default_role="user")
        if not messages:
            raise RowProblem("messages", "empty conversation")
        return check_sft(with_system(messages, r.get("system")), "messages", r.get("tools"))
    prompt = parse_json_cell(require(r, "prompt"), "prompt")
    response = parse_json_cell(require(r, "response"), "response")
    if isinstance(prompt, list) or is_hh_transcript(prompt):  # TRL conversational prompt/completion; HH prompts
        messages = prompt_messages(prompt, "prompt") + as_messages(response, "response", default_role="assistant")
        return check_sft(with_system(messages, r.get("system")), "prompt", r.get("tools"))
    if isinstance(response, list) and response and all(isinstance(m, dict) for m in response):
        # A text prompt with the reply as messages: every message kept (the first alone dropped the rest).
        messages = [{"role": "user", "content": text_of(prompt, "prompt")}] + as_messages(
            response, "response", default_role="assistant")
        return check_sft(with_system(messages, r.get("system")), "response", r.get("tools"))
    user = text_of(prompt, "prompt").strip()
    context = text_of(r["context"], "context").strip() if r.get("context") is not None else ""
    if context:
        user = f"{user}\n\n{context}" if user else context
    if not user:
        raise RowProblem("prompt", "empty user message")
    reply = text_of(response, "response")
    if not reply.strip():
        raise RowProblem("response", "empty assistant reply")
    history = history_messages(r.get("history"))
    messages = with_system(history + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                           r.get("system"))
    check_conversation(messages, "history")
    return {"messages": messages}


def history_messages(value: Any) -> list[Message]:
    """Alpaca's optional ``history``: ``[[user, assistant], ...]`` earlier turns."""
    value = parse_json_cell(value, "history")
    if value in (None, "", []):
        return []
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise RowProblem("history", "expected a list of [user, assistant] pairs")
    messages: list[Message] = []
    for i, (user, assistant) in enumerate(value):
        messages.append({"role": "user", "content": text_of(user, f"history[{i}][0]")})
        messages.append({"role": "assistant", "content": text_of(assistant, f"history[{i}][1]")})
    return messages


HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")

# Chat transcripts kept as one string, as in the QLoRA tutorials' datasets (openassistant-guanaco's
# '### Human: … ### Assistant: …', guanaco-llama2's '<s>[INST] … [/INST] … </s>'), Alpaca's prompt template
# ('### Instruction: … ### Response: …') and text that a chat template has already rendered (ChatML, Llama 3, Gemma).
CHAT_TEXT_TURNS = {
    "guanaco": re.compile(r"###\s*(Human|Assistant|System)\s*:[ \t]?"),
    "chatml": re.compile(r"<\|im_start\|>(system|user|assistant|tool)[ \t]*\n?"),
    "llama3": re.compile(r"<\|start_header_id\|>(system|user|assistant|ipython|tool)<\|end_header_id\|>\s*"),
    "gemma": re.compile(r"<start_of_turn>(system|user|model)[ \t]*\n?"),
    "alpaca": re.compile(r"###\s*(Instruction|Input|Response)\s*:\s*"),
    "hh": HH_TURN,
}
CHAT_TEXT_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "system": "system", "model": "assistant",
                   "instruction": "user", "input": "user", "response": "assistant", "tool": "tool", "ipython": "tool"}
# What a rendered template leaves around the turns: the start of the text, and the end of a turn or of the text,
# which the tokenizer turns into its special tokens (kept, the model would learn to write them out as text).
TEXT_START = re.compile(r"^\s*(?:<\|begin_of_text\|>|<bos>|<s>)")
TURN_END = re.compile(r"(?:\s*(?:<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|<\|end_of_text\|>|<end_of_turn>|<eos>|"
                      r"</s>))+\s*$")
CHAT_MARKERS = ("### Human:/### Assistant:, Human:/Assistant:, <|im_start|>, [INST], <|start_header_id|>, "
                "<start_of_turn>, ### Instruction:/### Response:")
LLAMA2_TURN = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|$)", re.S)
LLAMA2_SYSTEM = re.compile(r"^\s*<<SYS>>(.*?)<</SYS>>", re.S)


def chat_text_style(text: Any) -> str | None:
    """Which transcript style a text holds, by its markers; None for plain text."""
    if not isinstance(text, str):
        return None
    if "[INST]" in text and "[/INST]" in text:
        return "llama2"
    if "<|im_start|>" in text:
        return "chatml"
    if "<|start_header_id|>" in text:
        return "llama3"
    if "<start_of_turn>" in text:
        return "gemma"
    if re.search(r"###\s*Instruction\s*:", text) and re.search(r"###\s*Response\s*:", text):
        return "alpaca"
    if re.search(r"###\s*Human\s*:", text) and re.search(r"###\s*Assistant\s*:", text):
        return "guanaco"
    return "hh" if has_hh_markers(text) else None


def parse_chat_text(text: Any, field: str) -> list[Message]:
    """A transcript string → messages (the style found by :func:`chat_text_style`)."""
    style = chat_text_style(text)
    if style is None:
        raise RowProblem(field, f"no chat markers ({CHAT_MARKERS}) in this text")
    if style == "llama2":
        body = text.replace("<s>", "").replace("</s>", "")
        messages: list[Message] = []
        turns = LLAMA2_TURN.findall(body)
        if body[:body.find("[INST]")].strip():
            raise RowProblem(field, "text before the first [INST]")
        for i, (user, reply) in enumerate(turns):
            system = LLAMA2_SYSTEM.match(user) if i == 0 else None
            if system:
                messages.append({"role": "system", "content": system.group(1).strip()})
                user = user[system.end():]
            messages.append({"role": "user", "content": user.strip()})
            if reply.strip():
                messages.append({"role": "assistant", "content": reply.strip()})
        return messages
    pieces = CHAT_TEXT_TURNS[style].split(TEXT_START.sub("", text.strip()))
    messages = [{"role": "system", "content": pieces[0].strip()}] if style == "alpaca" and pieces[0].strip() else []
    if pieces[0].strip() and not messages:  # Alpaca's preamble ("Below is an instruction…") is its system prompt
        raise RowProblem(field, f"text before the first turn marker: {pieces[0].strip()[:40]!r}")
    for who, body in zip(pieces[1::2], pieces[2::2]):
        role, content = CHAT_TEXT_ROLES[who.lower()], TURN_END.sub("", body.replace("<|im_end|>", "")).strip()
        if role == "tool":
            raise RowProblem(field, "a tool turn: tool calls in rendered text are not read; give the conversation "
                                    "as messages with tool_calls and tool turns")
        if who.lower() == "input" and messages and messages[-1]["role"] == "user":  # Alpaca's input joins the ask
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{content}" if content else messages[-1]["content"]
            continue
        messages.append({"role": role, "content": content})
    return messages


def parse_hh(text: Any, field: str) -> list[Message]:
    """'\\n\\nHuman: … \\n\\nAssistant: …' → messages."""
    if not isinstance(text, str):
        raise RowProblem(field, f"expected an HH-RLHF transcript string, got {type(text).__name__}")
    pieces = HH_TURN.split(text.lstrip("\n") if text.startswith("\n\n") else text)
    if len(pieces) < 3:
        raise RowProblem(field, "expected a transcript of '\\n\\nHuman: …' and '\\n\\nAssistant: …' turns")
    if pieces[0].strip():
        raise RowProblem(field, "text before the first 'Human:' turn")
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(pieces[1::2], pieces[2::2])]


def split_shared_prompt(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], list[Message],
                                                                                    list[Message]]:
    """Implicit prompt: the messages chosen and rejected share before they differ."""
    shared = 0
    while (shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]):
        shared += 1
    if shared == 0 or chosen[shared - 1]["role"] == "assistant":
        # Step back to the last user turn so the prompt ends with the user.
        while shared > 0 and chosen[shared - 1]["role"] != "user":
            shared -= 1
    if shared == 0:
        raise RowProblem("rejected", "chosen and rejected share no prompt (the conversations differ from the start)")
    if chosen[:shared] != rejected[:shared]:
        raise RowProblem("rejected", "the conversation before the final reply differs from chosen's")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def convert_preference(r: dict[str, Any], *, hh: bool = False) -> dict[str, Any]:
    if hh:
        chosen_all = parse_hh(require(r, "chosen"), "chosen")
        rejected_all = parse_hh(require(r, "rejected"), "rejected")
        prompt, chosen, rejected = split_final_reply(chosen_all, rejected_all)
    elif r.get("prompt") is None and "prompt" not in r:
        chosen_all = as_messages(require(r, "chosen"), "chosen", default_role="assistant")
        rejected_all = as_messages(require(r, "rejected"), "rejected", default_role="assistant")
        prompt, chosen, rejected = split_shared_prompt(chosen_all, rejected_all)
    else:
        prompt = prompt_messages(require(r, "prompt"), "prompt")
        chosen = as_messages(require(r, "chosen"), "chosen", default_role="assistant")
        rejected = as_messages(require(r, "rejected"), "rejected", default_role="assistant")
        prompt, chosen, rejected = split_repeated_prompt(prompt, chosen, rejected)
        if is_hh_transcript(parse_json_cell(r["prompt"], "prompt")):
            # "…Assistant:" + " reply": the space belongs to the transcript, not to the reply the model learns.
            chosen, rejected = ([{**m, "content": str(m["content"]).lstrip()} if isinstance(m.get("content"), str)
                                 else m for m in side] for side in (chosen, rejected))
    prompt = with_system(prompt, r.get("system"))
    check_preference(prompt, chosen, rejected)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def split_final_reply(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], list[Message],
                                                                              list[Message]]:
    """HH-RLHF: the prompt is everything before chosen's final reply, and rejected must share it."""
    prompt = chosen[:-1]
    if rejected[:-1] != prompt:
        raise RowProblem("rejected", "the conversation before the final reply differs from chosen's")
    return prompt, chosen[-1:], rejected[-1:]


def split_repeated_prompt(prompt: list[Message], chosen: list[Message], rejected: list[Message]) -> tuple[
        list[Message], list[Message], list[Message]]:
    """UltraFeedback and Capybara repeat the conversation inside chosen/rejected, up to the last user turn; that
    conversation is the prompt the replies answer, system turn and earlier turns included (keeping the prompt column
    instead lost them, and paired a follow-up's replies with the first question). The prompt column must agree with
    it: its last user turn is one of the conversation's user turns (Capybara's prompt is the first, UltraFeedback's
    the only one); one that is not means the replies answer another question."""
    chosen_prompt, chosen = split_at_last_user(chosen, "chosen")
    rejected_prompt, rejected = split_at_last_user(rejected, "rejected")
    if chosen_prompt and rejected_prompt and chosen_prompt != rejected_prompt:
        raise RowProblem("rejected", "the conversation before the final reply differs from chosen's")
    conversation = chosen_prompt or rejected_prompt
    if not conversation:
        return prompt, chosen, rejected
    asked = [plain(m["content"]) for m in conversation if m["role"] == "user"]
    question = next((plain(m["content"]) for m in reversed(prompt) if m["role"] == "user"), None)
    if question is not None and question not in asked:
        raise RowProblem("prompt", f"the prompt ({question[:60]!r}) is not a user turn of the conversation in "
                                   f"chosen/rejected ({asked[-1][:60]!r}): the replies answer another question")
    if prompt and prompt[0]["role"] == "system" and conversation[0]["role"] != "system":
        conversation = prompt[:1] + conversation  # a system turn only the prompt column has
    return conversation, chosen, rejected


def split_at_last_user(side: list[Message], field: str) -> tuple[list[Message], list[Message]]:
    """(the conversation up to and with its last user turn, what follows); a side that is only the reply has no
    conversation."""
    if not side or side[0]["role"] == "assistant":
        return [], side
    last_user = max((i for i, m in enumerate(side) if m["role"] == "user"), default=-1)
    if last_user < 0:
        raise RowProblem(f"{field}[0]", f"expected the assistant's reply, got a {side[0]['role']} turn")
    return side[:last_user + 1], side[last_user + 1:]


def plain(text: Any) -> str:
    """A message's text with its whitespace runs made one space, for comparing a prompt column with a turn."""
    return " ".join(str(text).split())


def convert_unpaired(r: dict[str, Any]) -> dict[str, Any]:
    """TRL's unpaired layout (or a thumbs export renamed to it): a prompt, one completion and its label."""
    prompt = with_system(prompt_messages(require(r, "prompt"), "prompt"), r.get("system"))
    completion = as_messages(require(r, "completion"), "completion", default_role="assistant")
    label = parse_label(r.get("label"), "label")
    check_unpaired(prompt, completion, label)
    return {"prompt": prompt, "completion": completion, "label": label}


def nested_ground_truth(others: dict[str, Any]) -> Any:
    """verl's layout keeps the reference answer inside its reward_model column: {"ground_truth": …, "style": …}."""
    spec = parse_json_cell(others.get("reward_model"), "reward_model")
    return spec.get("ground_truth") if isinstance(spec, dict) else None


def convert_prompts(r: dict[str, Any], others: dict[str, Any]) -> dict[str, Any]:
    """A prompt for online RL, its reference answer ("" when there is none), and as ``meta`` the record's other
    columns (with a metadata column's own object over them) as a JSON object in text, for reward functions."""
    prompt = with_system(as_messages(require(r, "prompt"), "prompt", default_role="user"), r.get("system"))
    given = r.get("answer") if r.get("answer") is not None else nested_ground_truth(others)
    answer = answer_text(given, "answer")  # as written: an answer such as "[1, 2]" is text, not JSON
    meta = meta_text({**others, **meta_object(parse_json_cell(r.get("meta"), "meta"), "meta")})
    check_prompts(prompt, answer, meta)
    return {"prompt": prompt, "answer": answer, "meta": meta}
