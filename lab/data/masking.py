"""Which tokens carry the SFT loss, computed the way TRL's SFTTrainer computes them.

TRL (``assistant_only_loss=True``) tokenises a conversation with its chat template and
``return_assistant_tokens_mask=True`` (the template's ``{% generation %}`` blocks mark the
assistant's replies), sets labels to -100 outside the mask, then truncates to ``max_length`` keeping
the start, and drops examples left with no loss token. ``mask_view`` calls the same TRL function
and applies the same truncation, so what the Data tab shows is what the trainer trains on.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from lab.data.canonical import Message
from lab.models import template_has_generation_markers


@dataclass
class MaskView:
    token_ids: list[int]
    mask: list[int]  # 1 where the token carries loss
    tokens: list[tuple[str, bool]]
    rendered: str
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    max_length: int | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(self.mask)


def tokenize_like_trl(messages: list[Message], tokenizer: Any) -> tuple[list[int], list[int] | None]:
    """Token ids and assistant mask through TRL's own preprocessing helper."""
    from trl.data_utils import _tokenize

    out = _tokenize(tokenizer, messages, return_assistant_tokens_mask=True)
    return list(out["input_ids"]), list(out["assistant_masks"]) if "assistant_masks" in out else None


def mask_view(messages: list[Message], tokenizer: Any, *, max_length: int | None = 1024) -> MaskView:
    """Every token of ``messages`` as the trainer sees it, with whether it carries loss."""
    warnings: list[str] = []
    template = tokenizer.chat_template
    if not template_has_generation_markers(template):
        warnings.append("This chat template does not mark the assistant's reply, so assistant-only loss cannot be "
                        "applied: TRL would refuse to train, or (with assistant_only_loss off) train on every token "
                        "including the prompt. Choose a template with {% generation %} markers, such as chatml.")
    ids, assistant = tokenize_like_trl(messages, tokenizer)
    mask = assistant if assistant is not None and template_has_generation_markers(template) else [1] * len(ids)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
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
    elif template_has_generation_markers(template) and prompt_tokens_in_loss(messages, ids, mask, tokenizer):
        warnings.append("Some prompt (system or user) tokens carry loss: the template's generation markers cover more "
                        "than the assistant's replies, so the model would learn to write prompts.")
    pieces = [(tokenizer.decode([token]), bool(bit)) for token, bit in zip(ids, mask)]
    return MaskView(ids, mask, pieces, rendered, warnings, truncated, max_length)


def prompt_tokens_in_loss(messages: list[Message], ids: list[int], mask: list[int], tokenizer: Any) -> bool:
    """Whether the loss tokens spell more than the assistants' replies (plus end-of-turn tokens)."""
    loss_text = tokenizer.decode([t for t, m in zip(ids, mask) if m], skip_special_tokens=True)
    replies = "".join(m["content"] for m in messages if m["role"] == "assistant")
    return len(loss_text.replace(tokenizer.eos_token or "", "").strip()) > len(replies.strip()) + 2 * len(messages)


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
                    model: Any = None) -> list[list[int]]:
    """Labels of one collated batch from a real ``trl.SFTTrainer`` (its dataset preparation and its
    collator): the ground truth that ``mask_view`` must match. Used by the tests."""
    import tempfile

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, assistant_only_loss=True, max_length=max_length, report_to="none",
                         per_device_train_batch_size=len(conversations), shuffle_dataset=False, use_cpu=True)
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                             train_dataset=Dataset.from_list([{"messages": m} for m in conversations]))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    return [[int(x) for x in row] for row in batch["labels"]]
