"""Tool-call conversations end to end: OpenAI's and ShareGPT's spellings imported into one canonical form, checked
(every call answered, ids matched, arguments JSON objects, functions declared), stored and read back exactly,
rendered by the tiny model's template as Qwen2.5's renders them, masked so that the model learns its calls and
replies but not the tools' results (token by token, and as TRL's own trainer builds the labels), and trained on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.config import DataConfig, load_yaml
from lab.data.masking import collated_labels, mask_view, spans_of_ones
from lab.data.pipeline import import_file, load_file
from lab.data.samples import SAMPLES_DIR
from lab.data.versions import export_version, read_rows, save_version, version_rows
from lab.errors import LabError
from lab.home import lab_home
from lab.models import load_model, load_tokenizer, tiny_model_path

SAMPLE_TOOLS = SAMPLES_DIR / "sample-tools.jsonl"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "content": "RESULT: 18 degrees and sunny", "tool_call_id": "call_1", "name": "get_weather"},
    {"role": "assistant", "content": "It is 18 degrees and sunny in Paris."},
]


@pytest.fixture(scope="module")
def tool_home(tmp_path_factory):
    """One lab home for the module, with the tiny model built once."""
    home = lab_home(tmp_path_factory.mktemp("tool_home"))
    tiny_model_path(home)
    return home


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def errors_of(parsed) -> list[tuple]:
    return [(e.line, e.field, e.reason) for e in parsed.errors]


# --------------------------------------------------------------------------- import


def test_the_openai_sample_imports_into_the_canonical_form():
    parsed = load_file(SAMPLE_TOOLS)
    assert parsed.format == "openai" and parsed.errors == [] and len(parsed.rows) == 20
    first = parsed.rows[0].data
    assert json.loads(first["tools"])[0]["function"]["name"] == "get_weather"
    call, result = first["messages"][2], first["messages"][3]
    # OpenAI writes the arguments as JSON text: they are read into an object, and content null into ""
    assert call == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_001", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
    assert result["role"] == "tool" and result["tool_call_id"] == "call_001" and result["name"] == "get_weather"
    parallel = next(r.data["messages"] for r in parsed.rows if len(r.data["messages"][1].get("tool_calls", [])) == 2)
    assert [m["tool_call_id"] for m in parallel[2:4]] == [c["id"] for c in parallel[1]["tool_calls"]]
    plain = parsed.rows[-1].data  # no call made: tools declared all the same
    assert [m["role"] for m in plain["messages"]] == ["user", "assistant"] and plain["tools"]


def test_sharegpt_function_call_and_observation_turns_read_as_openai_calls(tmp_path):
    """LLaMA-Factory's sharegpt tool layout (glaive, xlam): the call as JSON in a function_call turn, the result in
    an observation turn, the schemas in a tools column of JSON text; calls get ids by their place in the row."""
    tools = json.dumps([{"name": "get_weather", "description": "The weather.", "parameters": {"type": "object"}},
                        {"name": "get_time", "description": "The time.", "parameters": {"type": "object"}}])
    rows = [{"conversations": [
        {"from": "human", "value": "Weather and time in Paris?"},
        {"from": "function_call", "value": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}},
                                                       {"name": "get_time", "arguments": {"tz": "CET"}}])},
        {"from": "observation", "value": "18C"},
        {"from": "observation", "value": "14:00"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Rome"}})},
        {"from": "observation", "value": "25C"},
        {"from": "gpt", "value": "18C at 14:00 in Paris; Rome has 25C."}], "tools": tools}]
    parsed = load_file(write_jsonl(tmp_path / "glaive.jsonl", rows))
    assert parsed.format == "sharegpt" and parsed.errors == []
    data = parsed.rows[0].data
    assert data["tools"] == json.dumps(json.loads(tools))
    messages = data["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": {"tz": "CET"}}}]
    assert [(m["tool_call_id"], m["name"], m["content"]) for m in messages if m["role"] == "tool"] == [
        ("call_1", "get_weather", "18C"), ("call_2", "get_time", "14:00"), ("call_3", "get_weather", "25C")]


def test_openai_s_older_function_call_and_function_role(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Weather?"},
                          {"role": "assistant", "content": None,
                           "function_call": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
                          {"role": "function", "name": "get_weather", "content": "-2C"},
                          {"role": "assistant", "content": "-2C in Oslo."}]}]
    parsed = load_file(write_jsonl(tmp_path / "legacy.jsonl", rows))
    assert parsed.errors == [] and "tools" not in parsed.rows[0].data  # no tools column: none declared
    messages = parsed.rows[0].data["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert messages[2] == {"role": "tool", "content": "-2C", "tool_call_id": "call_1", "name": "get_weather"}


def call_row(*turns: dict, tools: list | None = None) -> dict:
    row = {"messages": [{"role": "user", "content": "Weather?"}, *turns]}
    return {**row, "tools": tools} if tools is not None else row


def assistant_calls(*calls: dict) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def fn(name: str = "get_weather", arguments=None, call_id: str | None = "c1") -> dict:
    call = {"type": "function", "function": {"name": name, "arguments": arguments if arguments is not None else "{}"}}
    return {"id": call_id, **call} if call_id else call


def tool(content: str = "18C", call_id: str | None = "c1", **more) -> dict:
    return {"role": "tool", "content": content, **({"tool_call_id": call_id} if call_id else {}), **more}


REPLY = {"role": "assistant", "content": "Done."}


@pytest.mark.parametrize("row, field, reason", [
    (call_row(tool(), REPLY), "messages[1]", "a tool result that answers no call"),
    (call_row(assistant_calls(fn()), REPLY), "messages[2]", "tool call 'c1' (get_weather) not answered"),
    (call_row(assistant_calls(fn()), tool(), tool(call_id="c2"), REPLY), "messages[3]",
     "a tool result that answers no call"),
    (call_row(assistant_calls(fn()), tool(call_id="c9"), REPLY), "messages[2].tool_call_id",
     "'c9' does not match the call this result answers"),
    (call_row(assistant_calls(fn(call_id="c1"), fn(call_id="c2")), tool(call_id="c2"), tool(call_id="c9"), REPLY),
     "messages[3].tool_call_id", "no call waiting for its result has this id (waiting: 'c1' (get_weather))"),
    (call_row(assistant_calls(fn(), fn()), tool(), tool(), REPLY), "messages[1].tool_calls[1].id",
     "duplicate tool call id 'c1'"),
    (call_row(assistant_calls(fn(arguments="{city: Paris}")), tool(), REPLY),
     "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
    (call_row(assistant_calls(fn(arguments="[\"Paris\"]")), tool(), REPLY),
     "messages[1].tool_calls[0].function.arguments", "expected a JSON object of arguments, got a list"),
    (call_row(assistant_calls({"id": "c1", "type": "function", "function": {"arguments": "{}"}}), tool(), REPLY),
     "messages[1].tool_calls[0].function.name", "missing field: every tool call names its function"),
    (call_row(assistant_calls(fn(name="get_wether")), tool(), REPLY, tools=[WEATHER]), "messages[1]",
     "calls get_wether, which the row's tools do not declare (declared: get_weather)"),
    (call_row(assistant_calls(fn()), tool(name="get_time"), REPLY), "messages[2].name",
     "'get_time', but the call this result answers is to get_weather"),
    (call_row(assistant_calls(fn()), tool(), REPLY, tools=[{"type": "function", "function": {"description": "x"}}]),
     "tools[0].function.name", "missing field"),
    (call_row(assistant_calls(fn()), tool(), REPLY, tools="[{\"name\": "), "tools", "not valid JSON"),
    ({"messages": [{"role": "user", "content": "Hi", "tool_calls": [fn()]}, REPLY]}, "messages[0].tool_calls",
     "only the assistant calls tools"),
    (call_row(assistant_calls(fn()), tool(), {"role": "user", "content": "And?"}), "messages[3]",
     "wrong role order: a user turn after a tool turn (expected tool or assistant)"),
], ids=["result-without-call", "call-unanswered", "more-results-than-calls", "id-mismatch", "unknown-id-of-two",
        "duplicate-id", "arguments-not-json", "arguments-not-object", "no-function-name", "undeclared-function",
        "result-name-mismatch", "tool-schema-without-name", "tools-not-json", "user-calls", "user-after-result"])
def test_invalid_tool_rows_are_named_by_line_field_and_reason(tmp_path, row, field, reason):
    good = call_row(assistant_calls(fn()), tool(), REPLY)
    parsed = load_file(write_jsonl(tmp_path / "tools.jsonl", [good, row]))
    assert len(parsed.rows) == 1 and parsed.rows[0].line == 1
    ((line, got_field, got_reason),) = errors_of(parsed)
    assert (line, got_field) == (2, field) and reason in got_reason, got_reason


def test_sharegpt_errors_name_the_file_s_own_fields(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "function_call", "value": "{oops"},
                               {"from": "observation", "value": "x"}, {"from": "gpt", "value": "Done."}]},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "observation", "value": "x"},
                               {"from": "gpt", "value": "Done."}]}]
    parsed = load_file(write_jsonl(tmp_path / "sharegpt.jsonl", rows))
    assert [(line, field) for line, field, _ in errors_of(parsed)] == [(1, "conversations[1].value"),
                                                                       (2, "conversations[1]")]
    assert 'expected the call as JSON, {"name": …, "arguments": {…}}' in parsed.errors[0].reason


def test_tool_calls_are_refused_outside_sft_with_the_reason(tmp_path):
    from lab.data.validate import TOOL_CALLS

    rows = [{"prompt": [{"role": "user", "content": "Weather?"}, assistant_calls(fn()), tool()],
             "chosen": "Sunny.", "rejected": "Rainy."}]
    parsed = load_file(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert errors_of(parsed) == [(1, "prompt[1]", TOOL_CALLS)]


# --------------------------------------------------------------------------- storage


def test_versions_store_tool_calls_and_read_them_back_exactly(tool_home, tmp_path):
    """Arguments of any shape (nested, unicode, numbers, key order) round-trip; a row without tools stays one; the
    same rows read back and saved again are the same version; an export imports back to the same version."""
    from lab.data.canonical import Row

    odd = {"zeta": 1.5, "alpha": [1, {"b": None, "a": "é✓"}], "n": -0.0001, "big": 12345678901234567890}
    conversation = copy.deepcopy(CONVERSATION)
    conversation[2]["tool_calls"] = [{"id": "x", "type": "function", "function": {"name": "f", "arguments": odd}}]
    conversation[3].update(tool_call_id="x", name="f")
    rows = [Row({"messages": conversation, "tools": json.dumps([{"name": "f", "description": "odd"}])}, 1, "a.jsonl"),
            Row({"messages": CONVERSATION[:2] + CONVERSATION[4:]}, 2, "a.jsonl")]
    version = save_version("tooly", "sft", "openai", rows, [], {}, home=tool_home)
    back = read_rows(version, home=tool_home)
    assert back[0]["messages"] == conversation and back[0]["tools"] == rows[0].data["tools"]
    assert list(back[0]["messages"][2]["tool_calls"][0]["function"]["arguments"]) == ["zeta", "alpha", "n", "big"]
    assert back[1]["messages"] == rows[1].data["messages"] and back[1]["tools"] == ""
    again = save_version("tooly", "sft", "openai", version_rows(version, home=tool_home, split="train"), [], {},
                         home=tool_home)
    assert again.reused and again.version == version.version
    exported = export_version(version, dest=tmp_path / "export.jsonl", home=tool_home)
    lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert set(lines[0]) == {"messages", "tools"} and set(lines[1]) == {"messages"}
    reimported = import_file(exported, DataConfig(name="tooly", val_fraction=0.0), home=tool_home)
    assert reimported.version == version.version


# --------------------------------------------------------------------------- template and loss mask


def test_the_tiny_template_renders_tool_calls_as_qwen2_5_does(tool_home):
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer = load_tokenizer(home=tool_home)
    qwen = copy.deepcopy(tokenizer)
    qwen.chat_template = qwen2_5_chat_template
    for conversation in (CONVERSATION, CONVERSATION[:2]):
        for tools in ([WEATHER], None):
            ours = tokenizer.apply_chat_template(conversation, tools=tools, tokenize=False)
            assert ours == qwen.apply_chat_template(conversation, tools=tools, tokenize=False)
    rendered = tokenizer.apply_chat_template(CONVERSATION, tools=[WEATHER], tokenize=False)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in rendered
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in rendered
    assert "<|im_start|>user\n<tool_response>\nRESULT: 18 degrees and sunny\n</tool_response><|im_end|>" in rendered


def test_loss_is_on_the_calls_and_replies_and_never_on_tool_results(tool_home):
    """Token by token against the template: the tokens that carry loss decode to the call and the reply with their
    end-of-turn tokens, nothing else; no token of the tools list or of the tool's result does; TRL's own trainer
    builds the same labels."""
    tokenizer = load_tokenizer(home=tool_home)
    tools = json.dumps([WEATHER])
    view = mask_view(CONVERSATION, tokenizer, tools=tools)
    assert view.warnings == []
    spans = spans_of_ones(view.mask)
    decoded = [tokenizer.decode(view.token_ids[start:end]) for start, end in spans]
    assert decoded == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
                       "It is 18 degrees and sunny in Paris.<|im_end|>"]
    encoded = tokenizer(view.rendered, add_special_tokens=False, return_offsets_mapping=True)
    assert encoded["input_ids"] == view.token_ids
    start = view.rendered.index("<tool_response>")
    end = view.rendered.index("</tool_response>") + len("</tool_response>")
    tools_block = (view.rendered.index("<tools>"), view.rendered.index("</tools>"))
    for (begin, stop), loss in zip(encoded["offset_mapping"], view.mask):
        if begin < end and stop > start or begin < tools_block[1] and stop > tools_block[0]:
            assert not loss, view.rendered[begin:stop]
    labels = collated_labels([CONVERSATION], tokenizer, model=load_model(home=tool_home), tools=[tools])[0]
    assert [int(label != -100) for label in labels] == view.mask


def test_qwen2_5_s_own_template_masks_the_tool_results_too(tool_home):
    """A real model's template, through TRL's training copy of it: the tools reach it, the results carry no loss."""
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer = copy.deepcopy(load_tokenizer(home=tool_home))
    tokenizer.chat_template = qwen2_5_chat_template
    view = mask_view(CONVERSATION, tokenizer, tools=[WEATHER])
    trained = tokenizer.decode([t for t, m in zip(view.token_ids, view.mask) if m])
    assert "get_weather" in trained and "sunny in Paris" in trained and "RESULT" not in trained
    assert '"description"' in view.rendered and view.warnings == []
    labels = collated_labels([CONVERSATION], tokenizer, model=load_model(home=tool_home), tools=[json.dumps([WEATHER])])
    assert [int(label != -100) for label in labels[0]] == view.mask


def test_a_template_that_drops_tool_calls_is_refused(tool_home):
    from lab.models import CHAT_TEMPLATES

    tokenizer = copy.deepcopy(load_tokenizer(home=tool_home))
    tokenizer.chat_template = CHAT_TEMPLATES["alpaca"]
    with pytest.raises(LabError, match="does not write tool calls"):
        mask_view(CONVERSATION, tokenizer)
    assert mask_view(CONVERSATION[:2] + CONVERSATION[4:], tokenizer).n_loss_tokens > 0  # no calls: as before


def test_chat_markdown_shows_calls_and_results_labelled():
    from lab.ui.common import chat_markdown

    text = chat_markdown(CONVERSATION)
    assert "**→ calls `get_weather`** with" in text and '"city": "Paris"' in text
    assert "**Tool result (get_weather):**\n```\nRESULT: 18 degrees and sunny\n```" in text
    assert "**Assistant:** It is 18 degrees and sunny in Paris." in text


# --------------------------------------------------------------------------- training


def test_training_rows_hand_the_tools_to_the_trainer(tool_home):
    from lab.train.datasets import training_rows

    version = import_file(SAMPLE_TOOLS, DataConfig(name="tools-rows", val_fraction=0.0), home=tool_home)
    rows = training_rows(version.ref, "train", "sft", tool_home)
    assert all(json.loads(row["tools"])[1]["function"]["name"] == "calculator" for row in rows)


def test_sft_on_an_imported_tool_call_file_trains_to_the_end(tool_home):
    from lab.train import runner

    version = import_file(SAMPLE_TOOLS, DataConfig(name="tools-train", val_fraction=0.0), home=tool_home)
    cfg = load_yaml("recipes/tiny-sft.yaml", overrides=[
        f"dataset={version.ref}", "report_to=none", "eval_split=none", "save_steps=0", "sample_prompts=0",
        "epochs=3", "batch_size=4", "logging_steps=3", "max_length=1024"])  # the tools' list: ~630 tiny tokens
    done = runner.wait(runner.create_run(cfg, home=tool_home)[0].id, tool_home, timeout_s=600)
    assert done.status == "succeeded", done.error
    run_dir = tool_home.runs / done.id
    assert "tokenising with the lab's assistant masks" in (run_dir / "log.txt").read_text()
    losses = [m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if m.get("split") == "train" and "loss" in m]
    assert len(losses) >= 4 and losses[-1] < 0.8 * losses[0], losses
