"""The built-in tiny model, and the loss-mask view checked against TRL's own collated batch."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from lab.data.masking import collated_labels, mask_html, mask_view
from lab.errors import LabError
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


def test_a_reply_of_weight_0_is_context_in_the_view_and_in_the_trainers_batch(tiny_home):
    """OpenAI's per-message weight 0: the reply stays in the prompt and carries no loss."""
    from lab.data.masking import spans_of_ones

    tokenizer = load_tokenizer(home=tiny_home)
    weighted = [dict(m) for m in MULTI]
    weighted[2]["weight"] = 0  # "Rome." as context only
    expected = expected_mask(MULTI, tokenizer)
    start, end = spans_of_ones(expected)[0]
    expected[start:end] = [0] * (end - start)
    view = mask_view(weighted, tokenizer)
    assert view.mask == expected and view.warnings == []
    assert tokenizer.decode([t for t, m in zip(view.token_ids, view.mask) if m]) == "Madrid is Spain's capital.<|im_end|>"
    assert view.token_ids == mask_view(MULTI, tokenizer).token_ids  # the weight changes no token
    labels = collated_labels([weighted, SINGLE], tokenizer, model=load_model(home=tiny_home))
    assert [int(x != -100) for x in labels[0]] == expected
    single = expected_mask(SINGLE, tokenizer)  # a row without weights in the same batch is untouched
    assert [int(x != -100) for x in labels[1]] == single + [0] * (len(labels[1]) - len(single))


def test_weights_in_one_split_tokenise_every_split_with_the_lab_s_masks(tiny_home):
    """assistant_only_loss is one setting for the run: a validation split with weights must not leave the train
    split to TRL's own tokenising with it off (every token in the loss)."""
    from lab.data.masking import tokenize_like_trl, trainer_splits

    tokenizer = load_tokenizer(home=tiny_home)
    weighted = [dict(m) for m in MULTI]
    weighted[2]["weight"] = 0
    (train, validation), tokenized = trainer_splits([[{"messages": SINGLE}], [{"messages": weighted}]], tokenizer)
    assert tokenized and train == [dict(zip(("input_ids", "assistant_masks"), tokenize_like_trl(SINGLE, tokenizer)))]
    assert train[0]["assistant_masks"] == expected_mask(SINGLE, tokenizer)
    assert "input_ids" in validation[0]
    assert trainer_splits([[{"messages": SINGLE}], []], tokenizer) == ([[{"messages": SINGLE}], []], False)


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


def test_template_without_markers_has_its_replies_found_by_rendering(tiny_home):
    """TRL cannot mark such a template (it would refuse assistant-only loss); the lab finds the replies as the
    text each assistant turn adds, and warns when that includes more than the reply (here the role label)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(tiny_home))
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    view = mask_view(SINGLE, tokenizer)
    assert tokenizer.decode([t for t, m in zip(view.token_ids, view.mask) if m]).strip() == "17 plus 25 is 42."
    assert view.warnings == []
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    view = mask_view(SINGLE, tokenizer)  # no generation prompt: the role label comes with the reply
    assert any("prompt (system or user) tokens carry loss" in w for w in view.warnings)


def test_a_template_that_renders_turns_by_position_cannot_be_masked_and_says_so(tiny_home):
    from transformers import AutoTokenizer

    from lab.data.masking import trainer_splits

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(tiny_home))
    tokenizer.chat_template = ("{% for m in messages %}{% if loop.last %}[last] {% endif %}{{ m['role'] }}: "
                               "{{ m['content'] }}\n{% endfor %}")
    view = mask_view(SINGLE, tokenizer)
    assert any("cannot be found" in w for w in view.warnings) and all(view.mask)
    with pytest.raises(LabError, match="cannot be found for assistant-only loss"):
        trainer_splits([[{"messages": SINGLE}]], tokenizer)


@pytest.mark.parametrize("name", ["llama3_1", "qwen2_5"])
def test_real_model_templates_mask_the_replies_as_the_trainer_does(tiny_home, name):
    """Llama 3.1's template has no markers and TRL has no training version of it (TRL alone refuses it);
    Qwen2.5's TRL swaps for its own. Either way the view and the trainer's batch mark exactly the replies and
    their end-of-turn token. The templates are TRL's own copies of the models' templates."""
    import copy

    from trl import chat_template_utils

    tokenizer = copy.deepcopy(load_tokenizer(home=tiny_home))
    tokenizer.chat_template = getattr(chat_template_utils, f"{name}_chat_template")
    end_of_turn = {"llama3_1": "<|eot_id|>", "qwen2_5": "<|im_end|>"}[name]
    view = mask_view(MULTI, tokenizer)
    trained = tokenizer.decode([t for t, m in zip(view.token_ids, view.mask) if m])
    assert "".join(trained.split()) == "".join(f"{m['content']}{end_of_turn}" for m in MULTI
                                               if m["role"] == "assistant").replace(" ", "")
    assert view.warnings == []
    labels = collated_labels([MULTI], tokenizer, model=load_model(home=tiny_home))[0]
    assert [int(label != -100) for label in labels] == view.mask


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
