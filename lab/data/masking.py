"""Which tokens carry the SFT loss, computed the way the trainer computes them.

TRL (``assistant_only_loss=True``) tokenises a conversation with its chat template and
``return_assistant_tokens_mask=True`` (the template's ``{% generation %}`` blocks mark the assistant's
replies; for templates without them TRL swaps in its own training version where it has one), sets labels
to -100 outside the mask, then truncates to ``max_length`` keeping the start, and drops examples left with
no loss token. For templates TRL cannot mark (Llama 3.1's, SmolLM2's), for replies of weight 0 and for
conversations with tool calls, the lab finds the replies itself and hands TRL the tokens with their masks
(:func:`trainer_splits`). ``mask_view`` goes through the same function and applies the same truncation, so what
the Data tab shows is what the trainer trains on.

A tool call is part of the assistant's turn and carries loss; a tool's result is input, as the user's turns are,
and carries none (the template writes it in a user turn, outside ``{% generation %}``). The row's ``tools`` go to
the template, which lists them in the system turn.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.data.canonical import Message, has_tool_calls, is_context, tool_list
from lab.errors import LabError
from lab.models import template_has_generation_markers


@dataclass
class MaskView:
    token_ids: list[int]
    mask: list[int]  # 1 where the token carries loss
    tokens: list[tuple[str, bool]]  # (text, carries loss) a piece: one token, or those of a character split over several
    rendered: str
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    max_length: int | None = None
    full_length: int = 0  # tokens before truncation

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(self.mask)


UNMARKABLE = ("This chat template neither marks the assistant's replies ({% generation %}) nor renders earlier "
              "turns the same whatever follows, so the replies cannot be found for assistant-only loss.")
_MARKED: dict[tuple[int, str], str | None] = {}  # marked_template's answers, per tokenizer and template


def marked_template(tokenizer: Any) -> str | None:
    """The template TRL tokenises with under assistant-only loss: the tokenizer's own when it marks the
    assistant's replies with ``{% generation %}``, else TRL's training version of it (TRL ships them for Qwen,
    Gemma, Phi-3, Llama 3 and more). None when TRL has none (Llama 3.1, SmolLM2, Mistral, …): the lab then
    finds the replies itself (:func:`tokenize_by_prefix`)."""
    from trl.chat_template_utils import get_training_chat_template

    own = tokenizer.chat_template
    if template_has_generation_markers(own):
        return own
    key = (id(tokenizer), str(own))  # TRL renders test conversations to decide: once per tokenizer, not per row
    if key not in _MARKED:
        try:
            _MARKED[key] = get_training_chat_template(tokenizer)  # a marked copy of an unmarked template
        except ValueError:  # "patching is not supported for this template"
            _MARKED[key] = None
    return _MARKED[key]


def tokenize_like_trl(messages: list[Message], tokenizer: Any,
                      tools: str | list[dict[str, Any]] | None = None) -> tuple[list[int], list[int] | None]:
    """Token ids and the mask of the tokens that carry loss: TRL's own preprocessing with its template
    (:func:`marked_template`), or the lab's reply-finding for templates TRL cannot mark; the replies of weight 0
    (OpenAI's per-message weight: context, not trained on) are then taken out of the mask. ``tools`` (a row's
    ``tools``) go to the template, which lists them for the model. The mask is None only for a template without
    markers that is not prefix-preserving either (nothing can tell the replies apart)."""
    from trl.data_utils import _tokenize

    plain = [template_message(m) for m in messages]
    schemas = tool_list(tools)
    if schemas or has_tool_calls(messages):
        refuse_toolless_template(tokenizer)
    template = marked_template(tokenizer)
    if template is not None:
        out = _tokenize(tokenizer, plain, return_assistant_tokens_mask=True, chat_template=template, tools=schemas)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    else:
        ids, mask = tokenize_by_prefix(plain, tokenizer, schemas)
    weights = [not is_context(m) for m in messages if m["role"] == "assistant"]
    if mask is None or all(weights):
        return ids, mask
    spans = spans_of_ones(mask)
    if len(spans) != len(weights):
        raise LabError(f"The chat template marks {len(spans)} assistant spans for {len(weights)} replies, so the "
                       "replies of weight 0 cannot be told apart; use a template with one {% generation %} block "
                       "per reply (such as chatml).")
    for (start, end), weight in zip(spans, weights):
        if not weight:
            mask[start:end] = [0] * (end - start)
    return ids, mask


def template_message(message: Message) -> Message:
    """A message as chat templates take it: without the lab's ``weight``."""
    return {k: v for k, v in message.items() if k != "weight"}


TOOL_PROBE = [{"role": "user", "content": "?"},
              {"role": "assistant", "content": "", "tool_calls": [
                  {"id": "call_1", "type": "function", "function": {"name": "lab_probe_call", "arguments": {}}}]},
              {"role": "tool", "content": "lab_probe_result", "tool_call_id": "call_1", "name": "lab_probe_call"},
              {"role": "assistant", "content": "!"}]
_SPEAKS_TOOLS: dict[tuple[int, str], bool] = {}  # per tokenizer and template


def refuse_toolless_template(tokenizer: Any) -> None:
    """A LabError when the chat template drops tool calls or their results (one written before tools existed):
    the model would learn replies to calls it never sees, or train on the results as if it had written them."""
    key = (id(tokenizer), str(tokenizer.chat_template))
    if key not in _SPEAKS_TOOLS:
        try:
            text = tokenizer.apply_chat_template(TOOL_PROBE, tokenize=False)
        except Exception:  # noqa: BLE001 - a template may raise on roles it does not know
            text = ""
        _SPEAKS_TOOLS[key] = "lab_probe_call" in text and "lab_probe_result" in text
    if not _SPEAKS_TOOLS[key]:
        raise LabError("This chat template does not write tool calls and tool results, and this conversation has "
                       "them; use a template that does (chatml, the tiny model's, or a model's own such as "
                       "Qwen2.5's).")


def tokenize_by_prefix(messages: list[Message], tokenizer: Any,
                       tools: list[dict[str, Any]] | None = None) -> tuple[list[int], list[int] | None]:
    """The replies found by rendering: the text an assistant turn adds to the conversation before it (with the
    generation prompt) is that reply and its end-of-turn marker, for any template that renders earlier turns the
    same whatever follows (prefix-preserving). None for the mask when the template is not."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, tools=tools)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True, tools=tools)
        upto = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False, tools=tools)
        if not (upto.startswith(before) and text.startswith(upto)):
            spans = None
            break
        spans.append((len(before), len(upto)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=spans is not None)
    ids = list(encoded["input_ids"])
    if spans is None:
        return ids, None
    # A token carries loss when it overlaps a reply (as transformers maps {% generation %} spans to tokens)
    mask = [int(any(start < end and stop > begin for begin, end in spans)) for start, stop in encoded["offset_mapping"]]
    return ids, mask


def spans_of_ones(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of every run of 1s."""
    spans, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append((start, i))
            start = None
    return spans


def has_weights(rows: list[dict[str, Any]]) -> bool:
    """Whether any SFT row has a reply of weight 0."""
    return any(is_context(m) for row in rows for m in row["messages"])


def has_tools(rows: list[dict[str, Any]]) -> bool:
    """Whether any SFT row calls tools or declares some."""
    return any(row.get("tools") or has_tool_calls(row["messages"]) for row in rows)


def tokenized_here(rows: list[dict[str, Any]], tokenizer: Any) -> bool:
    """Whether the lab must tokenise these SFT rows for TRL: some reply has weight 0 (TRL knows no weights), some
    row has tool calls (a ``datasets`` column would merge every call's arguments into one struct, adding the other
    calls' argument names as nulls), or TRL cannot mark the replies of this template (it would refuse assistant-only
    loss)."""
    return has_weights(rows) or has_tools(rows) or marked_template(tokenizer) is None


def trainer_splits(splits: list[list[dict[str, Any]]], tokenizer: Any,
                   progress: Callable[[int, int], None] | None = None) -> tuple[list[list[dict[str, Any]]], bool]:
    """SFT splits as TRL takes them, and whether the lab tokenised them: as they are, or (:func:`tokenized_here`)
    as ``input_ids`` and ``assistant_masks`` from :func:`tokenize_like_trl`, which TRL takes as given and builds
    the labels from. Decided once for all splits: the run's ``assistant_only_loss`` is one setting for both, and
    rows TRL tokenises itself with it off would train on every token. ``progress(done, total)`` is called every 5%
    of the rows (at least 1,000) and at the end when the lab tokenises, since a large dataset takes minutes."""
    if not tokenized_here([row for rows in splits for row in rows], tokenizer):
        return [[{"messages": row["messages"]} for row in rows] for rows in splits], False  # no row has tools
    total, done = sum(len(rows) for rows in splits), 0
    every = max(total // 20, 1000)  # and at the end
    out = []
    for rows in splits:
        tokenized = []
        for row in rows:
            done += 1
            if progress and (done % every == 0 or done == total):
                progress(done, total)
            ids, mask = tokenize_like_trl(row["messages"], tokenizer, row.get("tools"))
            if mask is None:
                raise LabError(UNMARKABLE + " Use a tokenizer whose chat_template does (e.g. chatml, in its "
                               "tokenizer_config.json).")
            tokenized.append({"input_ids": ids, "assistant_masks": mask})
        out.append(tokenized)
    return out, True


def mask_view(messages: list[Message], tokenizer: Any, *, tools: str | list[dict[str, Any]] | None = None,
              max_length: int | None = 1024) -> MaskView:
    """Every token of ``messages`` (with the row's ``tools``) as the trainer sees it, with whether it carries loss."""
    warnings: list[str] = []
    ids, assistant = tokenize_like_trl(messages, tokenizer, tools)
    if assistant is None:
        warnings.append(UNMARKABLE + " Training refuses it; choose a template with {% generation %} markers, such "
                        "as chatml.")
    mask = assistant if assistant is not None else [1] * len(ids)
    rendered = tokenizer.apply_chat_template([template_message(m) for m in messages], tokenize=False,
                                             tools=tool_list(tools))
    full = len(ids)
    truncated = max_length is not None and full > max_length
    if truncated:
        cut_loss = sum(mask[max_length:])
        ids, mask = ids[:max_length], mask[:max_length]
        warnings.append(f"Truncated: {full} tokens, max length {max_length}; the last {full - max_length} tokens are "
                        f"cut{f', {cut_loss} of them from assistant replies' if cut_loss else ''}. Raise max_length "
                        "or filter long rows.")
    if not any(mask):
        warnings.append("No token carries loss: the trainer drops this example. "
                        + ("Truncation cut every assistant token." if truncated else
                           "The conversation has no assistant reply the template marks."))
    elif assistant is not None and prompt_tokens_in_loss(messages, ids, mask, tokenizer):
        warnings.append("Some prompt (system or user) tokens carry loss: the template's generation markers cover more "
                        "than the assistant's replies, so the model would learn to write prompts.")
    return MaskView(ids, mask, token_pieces(ids, mask, tokenizer), rendered, warnings, truncated, max_length, full)


MAX_MERGE = 16  # tokens merged into one piece at most: a character is 4 bytes at most, so only a chain gets near


def token_pieces(ids: list[int], mask: list[int], tokenizer: Any) -> list[tuple[str, bool]]:
    """Each token's text with whether it carries loss, for display. Byte-level tokenizers split a character that is
    not ASCII (CJK, Arabic, emoji) over several tokens, each of which decodes alone to "\ufffd"; such tokens are
    merged into one piece until it no longer ends in part of a character, so the box shows the character. Never
    across a change of the loss bit: a character that straddles one is shown as it is, so every piece's bit is its
    tokens' bit; there may be fewer pieces than tokens."""
    pieces: list[tuple[str, bool]] = []
    start = 0
    while start < len(ids):
        end = start + 1
        text = tokenizer.decode(ids[start:end])
        while (text.endswith("\ufffd") and end < len(ids) and mask[end] == mask[start]
               and end - start < MAX_MERGE):
            longer = tokenizer.decode(ids[start:end + 1])
            if longer != text and longer.startswith(text):
                break  # the next token only adds text: this "\ufffd" is the text's own (or bytes that never complete)
            end, text = end + 1, longer  # it completed the character, or is more of it
        pieces.append((text, bool(mask[start])))
        start = end
    return pieces


def prompt_tokens_in_loss(messages: list[Message], ids: list[int], mask: list[int], tokenizer: Any) -> bool:
    """Whether the loss tokens spell more than the assistants' replies and calls: what is left of the loss text once
    each reply and each call's function name and arguments are taken out, less end-of-turn markers (``<|…|>``,
    ``</s>``), what templates write around a call (``<tool_call>``, the keys, JSON's punctuation) and whitespace, is
    more than a few characters a message. A tool's result in the loss is left over, and so found."""
    import json
    import re

    left = tokenizer.decode([t for t, m in zip(ids, mask) if m], skip_special_tokens=True)
    for message in messages:
        if message["role"] == "assistant" and not is_context(message):
            left = left.replace(message["content"].strip(), "", 1)
            for call in message.get("tool_calls") or []:
                arguments = json.dumps(call["function"]["arguments"], ensure_ascii=False)
                left = left.replace(arguments, "", 1).replace(f'"{call["function"]["name"]}"', "", 1)
    if has_tool_calls(messages):
        left = re.sub(r'</?tool_call>|"(name|arguments|parameters)"|[{}\[\]":,]', "", left)
    left = re.sub(r"<\|[^|<>]*\|>|</?s>|\s", "", left.replace(tokenizer.eos_token or "\0", ""))
    return len(left) > 2 * len(messages)


def visible(text: str) -> str:
    """Whitespace made visible, HTML-escaped."""
    return html.escape(text).replace(" ", "·").replace("\n", "↵<br>").replace("\t", "→")


def mask_html(view: MaskView) -> str:
    """Tokens as small boxes: green where they carry loss, grey where they do not."""
    boxes = []
    for text, loss in view.tokens:
        style = ("background:#c8f2c8;border:1px solid #3a9a3a;color:#0b3d0b" if loss else
                 "background:#eeeeee;border:1px solid #d0d0d0;color:#777")
        title = "carries loss" if loss else "no loss (-100)"
        boxes.append(f'<span title="{title}" style="{style};border-radius:3px;padding:0 2px;margin:1px;'
                     f'font-family:monospace;font-size:13px;display:inline-block;white-space:pre">'
                     f"{visible(text)}</span>")
    legend = ('<div style="margin-bottom:6px;font-size:13px">'
              '<span style="background:#c8f2c8;border:1px solid #3a9a3a;padding:0 4px">trained on</span> '
              '<span style="background:#eeeeee;border:1px solid #d0d0d0;padding:0 4px;color:#777">masked (-100)</span>'
              f" &nbsp; {view.n_loss_tokens} of {view.n_tokens} tokens carry loss"
              f"{' · truncated at ' + str(view.max_length) if view.truncated else ''}</div>")
    return f'<div class="lab-mask">{legend}<div style="line-height:1.9">{"".join(boxes)}</div></div>'


def collated_labels(conversations: list[list[Message]], tokenizer: Any, *, max_length: int = 1024,
                    model: Any = None, tools: list[str] | None = None) -> list[list[int]]:
    """Labels of one collated batch from a real ``trl.SFTTrainer`` (its dataset preparation and its
    collator), given the rows as the worker gives them (:func:`trainer_splits`; ``tools``: each row's, "" for
    none): the ground truth that ``mask_view`` must match. Used by the tests."""
    import tempfile

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as out:
        rows = [{"messages": m, "tools": t} for m, t in zip(conversations, tools or [""] * len(conversations))]
        (rows,), tokenized = trainer_splits([rows], tokenizer)
        args = SFTConfig(output_dir=out, assistant_only_loss=not tokenized, max_length=max_length,
                         report_to="none", per_device_train_batch_size=len(conversations), shuffle_dataset=False,
                         use_cpu=True)  # as the worker sets it
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                             train_dataset=Dataset.from_list(rows))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    return [[int(x) for x in row] for row in batch["labels"]]
