"""The built-in tiny model, and the loss-mask view checked against TRL's own collated batch."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from lab.data.masking import collated_labels, mask_html, mask_view
from lab.home import lab_home
from lab.models import TINY_DIR, load_model, load_tokenizer, tiny_model_path

SYSTEM = {"role": "system", "content": "You are a careful assistant."}
SINGLE = [SYSTEM, {"role": "user", "content": "What is 17 plus 25?"},
          {"role": "assistant", "content": "17 plus 25 is 42."}]
MULTI = [SYSTEM, {"role": "user", "content": "Capital of Italy?"}, {"role": "assistant", "content": "Rome."},
         {"role": "user", "content": "And of Spain?"}, {"role": "assistant", "content": "Madrid is Spain's capital."}]


def expected_mask(messages, tokenizer):
    """Independently of TRL: a token carries loss iff its characters lie inside an assistant reply
    (or its end-of-turn marker) in the rendered text."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, start = [], 0
    for message in messages:
        if message["role"] == "assistant":
            begin = text.index(message["content"] + "<|im_end|>", start)
            end = begin + len(message["content"]) + len("<|im_end|>")
            spans.append((begin, end))
            start = end
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [int(any(b <= s and e <= end for b, end in spans)) for s, e in encoded["offset_mapping"]]


def test_tiny_model_is_a_few_million_parameter_llama(tiny_home):
    path = tiny_model_path(tiny_home)
    info = json.loads((path / "lab_model.json").read_text())
    model = load_model(home=tiny_home)
    params = sum(p.numel() for p in model.parameters())
    assert model.config.model_type == "llama" and 1_000_000 < params < 10_000_000
    assert info["parameters"] == params


def test_tokenizer_round_trips_and_renders_chatml(tiny_home):
    tokenizer = load_tokenizer(home=tiny_home)
    text = "Hello, wörld! 12 + 30 = 42 ✓"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    rendered = tokenizer.apply_chat_template(SINGLE[1:2], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nWhat is 17 plus 25?<|im_end|>\n<|im_start|>assistant\n"


def build_in(root: str) -> str:
    return str(tiny_model_path(lab_home(root)))


def test_concurrent_builds_give_one_valid_model(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = pool.map(build_in, [str(tmp_path)] * 2)
    assert paths[0] == paths[1]
    assert [p.name for p in tmp_path.joinpath("models").iterdir() if not p.name.startswith(".")] == [TINY_DIR]
    assert load_model(str(paths[0])).config.num_hidden_layers == 4


@pytest.mark.parametrize("messages", [SINGLE, MULTI], ids=["single-turn", "multi-turn"])
def test_mask_is_exactly_the_assistant_tokens_and_matches_trls_collator(tiny_home, messages):
    tokenizer = load_tokenizer(home=tiny_home)
    expected = expected_mask(messages, tokenizer)
    view = mask_view(messages, tokenizer)
    assert view.mask == expected and view.warnings == []
    labels = collated_labels([messages], tokenizer, model=load_model(home=tiny_home))[0]
    assert [int(label != -100) for label in labels] == expected
    assert view.n_loss_tokens == sum(expected) > 0


def test_batch_of_different_lengths_pads_with_minus_100(tiny_home):
    tokenizer = load_tokenizer(home=tiny_home)
    labels = collated_labels([SINGLE, MULTI], tokenizer, model=load_model(home=tiny_home))
    short = expected_mask(SINGLE, tokenizer)
    assert [int(x != -100) for x in labels[0]] == short + [0] * (len(labels[0]) - len(short))


def test_alpaca_template_masks_the_responses(tiny_home):
    tokenizer = load_tokenizer(home=tiny_home, template="alpaca")
    view = mask_view(MULTI, tokenizer)
    trained = tokenizer.decode([t for t, m in zip(view.token_ids, view.mask) if m])
    assert trained == "Rome.<|im_end|>Madrid is Spain's capital.<|im_end|>"
    assert "### Instruction:" in view.rendered and view.warnings == []


def test_template_without_markers_warns_and_marks_everything(tiny_home):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(tiny_home))
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    view = mask_view(SINGLE, tokenizer)
    assert any("does not mark the assistant" in w for w in view.warnings)
    assert all(view.mask)


def test_truncation_is_reported_like_the_trainer_applies_it(tiny_home):
    tokenizer = load_tokenizer(home=tiny_home)
    full = mask_view(MULTI, tokenizer, max_length=None)
    view = mask_view(MULTI, tokenizer, max_length=20)
    assert view.truncated and view.token_ids == full.token_ids[:20]
    assert any("Truncated" in w for w in view.warnings)
    assert any("No token carries loss" in w for w in view.warnings)  # the trainer would drop this row


def test_mask_html_escapes_and_highlights(tiny_home):
    tokenizer = load_tokenizer(home=tiny_home)
    messages = [{"role": "user", "content": "<script>alert(1)</script>"}, {"role": "assistant", "content": "no"}]
    page = mask_html(mask_view(messages, tokenizer))
    assert "<script>" not in page and "&lt;" in page
    assert "carries loss" in page and "masked (-100)" in page
