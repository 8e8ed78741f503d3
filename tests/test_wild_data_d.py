"""Datasets as a second probe found them (round 2 of the wild-data walk): layouts that were read into something else
without a word (a KTO file's labels in words the lab did not know, so its bad replies became SFT targets; missing
values stored as the text "nan"; reasoning and function schemas dropped; an end-of-text token kept in a reply), and
common layouts refused or misnamed (SlimOrca's weights, text a chat template rendered, an oasst1 message tree)."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.data.pipeline import load_file
from lab.errors import LabError


def jsonl(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def errors_of(parsed) -> list[tuple[int, str, str]]:
    return [(e.line, e.field, e.reason) for e in parsed.errors]


def test_kto_labels_in_feedback_words_are_read_and_unknown_ones_are_not_taken_for_sft(tmp_path):
    words = [{"prompt": f"q{i}", "completion": f"a{i}", "label": label}
             for i, label in enumerate(["good", "bad", "Positive", "negative", -1, 1])]
    parsed = load_file(jsonl(tmp_path / "kto.jsonl", words))
    assert (parsed.kind, [r.data["label"] for r in parsed.rows]) == ("unpaired", [True, False, True, False, False,
                                                                                  True])
    unknown = jsonl(tmp_path / "unknown.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}",
                                                  "label": ["great", "awful"][i % 2]} for i in range(4)])
    with pytest.raises(LabError, match="two values, 'awful' and 'great', that the lab does not read as labels"):
        load_file(unknown)
    with pytest.raises(LabError, match="first label cannot be read: 'great' is not a label"):
        load_file(unknown, kind="unpaired")  # not "holds SFT conversations: import it as sft"


def test_a_missing_value_is_not_the_text_nan(tmp_path):
    nan_input = tmp_path / "alpaca.json"  # json.dump of pandas records writes a missing value as NaN
    nan_input.write_text('[{"instruction": "Translate it.", "input": NaN, "output": "Traduisez."}]')
    assert load_file(nan_input).rows[0].data == {"messages": [user("Translate it."), assistant("Traduisez.")]}
    csv = tmp_path / "orca.csv"  # after df.astype(str): the missing system prompt is "nan"
    csv.write_text("system_prompt,question,response\nnan,What is 2+2?,4\nNULL,What is 3+3?,6\n"
                   "You are terse.,What is 1+1?,2\n")
    assert [r.data["messages"][0] for r in load_file(csv).rows] == [
        user("What is 2+2?"), user("What is 3+3?"), {"role": "system", "content": "You are terse."}]
    answer = tmp_path / "nan_reply.json"  # a missing reply is missing, not a reply reading "nan"
    answer.write_text('[{"instruction": "Say hi.", "output": NaN}]')
    assert errors_of(load_file(answer)) == [(1, "output", "missing field")]


def test_slimorca_turn_weights_are_read_and_a_user_turn_weighted_1_is_refused(tmp_path):
    conversation = [{"from": "system", "value": "You are an AI assistant.", "weight": None},
                    {"from": "human", "value": "Translate: the house.", "weight": 0.0},
                    {"from": "gpt", "value": "La maison.", "weight": 1.0}]
    parsed = load_file(jsonl(tmp_path / "slimorca.jsonl", [{"conversations": conversation}]))
    assert parsed.rows[0].data["messages"][1:] == [user("Translate: the house."), assistant("La maison.")]
    trained_user = [{**conversation[1], "weight": 1}, conversation[2]]
    refused = load_file(jsonl(tmp_path / "user_weight.jsonl", [{"conversations": trained_user}]))
    assert errors_of(refused)[0][:2] == (1, "conversations[0].weight") and "weight 1 on a user turn" in \
        errors_of(refused)[0][2]


def test_reasoning_kept_apart_is_put_before_the_reply_in_think_tags(tmp_path):
    rows = [{"messages": [user("What is 0*7?"), {"role": "assistant", "reasoning_content": "7 times 0 is 0.",
                                                 "content": "0"}]},
            {"messages": [user("Hi"), {"role": "assistant", "reasoning": "A greeting.", "content": "Hello!"}]}]
    parsed = load_file(jsonl(tmp_path / "r1.jsonl", rows))
    assert [r.data["messages"][1]["content"] for r in parsed.rows] == [
        "<think>\n7 times 0 is 0.\n</think>\n\n0", "<think>\nA greeting.\n</think>\n\nHello!"]


def test_openais_older_functions_column_declares_the_tools(tmp_path):
    row = {"functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
           "messages": [user("Weather in Oslo?"),
                        {"role": "assistant", "content": None,
                         "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                        {"role": "function", "name": "get_weather", "content": {"temp": 3}},
                        assistant("3 °C.")]}
    parsed = load_file(jsonl(tmp_path / "functions.jsonl", [row, {**row, "functions": [{"name": "other"}]}]))
    data = parsed.rows[0].data
    assert json.loads(data["tools"]) == row["functions"] and data["messages"][2]["content"] == '{"temp": 3}'
    assert "calls get_weather, which the row's tools do not declare" in errors_of(parsed)[0][2]


@pytest.mark.parametrize("text", [
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|endoftext|>",
    ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"),
    "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n<eos>",
    "### Instruction:\nWhat is 2+2?\n\n### Response:\n4</s>",
])
def test_text_a_chat_template_rendered_is_read_without_its_special_tokens(tmp_path, text):
    parsed = load_file(jsonl(tmp_path / "text.jsonl", [{"text": text}]))
    assert (parsed.format, parsed.rows[0].data) == ("chat-text", {"messages": [user("What is 2+2?"), assistant("4")]})


def test_alpacas_template_keeps_its_preamble_as_the_system_prompt_and_its_input_in_the_ask(tmp_path):
    text = ("Below is an instruction that describes a task.\n\n### Instruction:\nTranslate.\n\n### Input:\nHello"
            "\n\n### Response:\nBonjour")
    assert load_file(jsonl(tmp_path / "alpaca_text.jsonl", [{"text": text}])).rows[0].data["messages"] == [
        {"role": "system", "content": "Below is an instruction that describes a task."}, user("Translate.\n\nHello"),
        assistant("Bonjour")]


def test_a_tool_turn_in_rendered_text_and_a_message_tree_are_named_for_what_they_are(tmp_path):
    text = ("<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>{}</tool_call><|im_end|>\n"
            "<|im_start|>tool\n<tool_response>3</tool_response><|im_end|>\n<|im_start|>assistant\n3 °C<|im_end|>")
    assert "a tool turn: tool calls in rendered text are not read" in errors_of(
        load_file(jsonl(tmp_path / "tool_text.jsonl", [{"text": text}])))[0][2]
    tree = [{"message_id": "m1", "parent_id": None, "role": "prompter", "text": "Hi"},
            {"message_id": "m2", "parent_id": "m1", "role": "assistant", "text": "Hello"}]
    with pytest.raises(LabError, match="is a message tree"):
        load_file(jsonl(tmp_path / "oasst1.jsonl", tree))


def test_a_nan_rating_is_named_rather_than_making_chosen_and_rejected_one_answer(tmp_path):
    path = tmp_path / "ultrafeedback.jsonl"
    completions = [{"response": "A", "overall_score": math.nan}, {"response": "B", "overall_score": 7},
                   {"response": "C", "overall_score": 3}]
    path.write_text(json.dumps({"instruction": "Write.", "completions": completions}) + "\n")
    reason = "its score is NaN (a missing rating?): rate it, or remove it"
    assert errors_of(load_file(path)) == [(1, "completions[0]", reason)]


def test_prompts_take_verls_nested_ground_truth_and_keep_meta_as_strict_json_without_bytes(tmp_path):
    verl = [{"data_source": "gsm8k", "prompt": [user("What is 2+2?")],
             "reward_model": {"style": "rule", "ground_truth": "4"}}]
    assert load_file(jsonl(tmp_path / "verl.jsonl", verl), kind="prompts").rows[0].data["answer"] == "4"
    path = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"question": ["What is 1+1?"], "answer": ["2"], "difficulty": [math.nan],
                             "image": [{"bytes": b"\x89PNG\x00", "path": "a.png"}]}), path)
    meta = load_file(path, kind="prompts").rows[0].data["meta"]
    assert json.loads(meta) == {"difficulty": None, "image": {"path": "a.png"}} and "NaN" not in meta


def test_responses_api_text_parts_are_text(tmp_path):
    rows = [{"messages": [{"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
                          {"role": "assistant", "content": [{"type": "output_text", "text": "Hi there!"}]}]}]
    assert load_file(jsonl(tmp_path / "responses.jsonl", rows)).rows[0].data == {
        "messages": [user("Hello"), assistant("Hi there!")]}


def test_a_role_carrying_an_invisible_character_is_read(tmp_path):
    rows = [{"messages": [{"role": "user\u200b", "content": "Hi"}, {"role": "\ufeffassistant", "content": "Hello"}]}]
    assert load_file(jsonl(tmp_path / "zw.jsonl", rows)).rows[0].data == {"messages": [user("Hi"), assistant("Hello")]}
