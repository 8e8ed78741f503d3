"""Every supported format converts to the canonical rows, and every malformed case is reported
at its exact place (file line for JSONL, data row for CSV, element for JSON arrays)."""

from __future__ import annotations

import pytest

from lab.data.pipeline import load_file
from lab.errors import LabError
from tests.conftest import DATA


def user(text): return {"role": "user", "content": text}
def assistant(text): return {"role": "assistant", "content": text}
def system(text): return {"role": "system", "content": text}


def errors_of(parsed):
    return [(e.line, e.field, e.reason) for e in parsed.errors]


@pytest.mark.parametrize("name, fmt, first", [
    ("alpaca.json", "alpaca", [user("Add the two numbers.\n\n2 and 3"), assistant("2 plus 3 is 5.")]),
    ("alpaca_columns.json", "alpaca", [user("Say hi."), assistant("Hi!")]),
    ("sharegpt.jsonl", "sharegpt", [system("Be brief."), user("What is 2+2?"), assistant("4.")]),
    ("openai.jsonl", "openai", [system("You are helpful."), user("Hi"), assistant("Hello! How can I help?")]),
    ("prompt_completion.jsonl", "prompt-completion", [user("Translate 'cat' to French."), assistant("chat")]),
    ("dolly.jsonl", "dolly", [user("Summarise the text.\n\nThe sky is blue because of Rayleigh scattering."),
                              assistant("Scattering makes the sky blue.")]),
    ("messages.csv", "openai", [user("Hi"), assistant("Hello")]),
    ("qa.tsv", "question-answer", [user("What is H2O?"), assistant("Water.")]),
])
def test_sft_formats_convert_to_messages(name, fmt, first):
    parsed = load_file(DATA / name)
    assert (parsed.kind, parsed.format) == ("sft", fmt)
    assert parsed.errors == []
    assert parsed.rows[0].data == {"messages": first}
    assert parsed.rows[0].line == 1 and parsed.rows[0].source == name


def test_alpaca_history_and_system_come_before_the_instruction():
    rows = load_file(DATA / "alpaca.json").rows
    assert rows[2].data["messages"] == [system("You are terse."), user("Hi"), assistant("Hello!"),
                                        user("Continue the chat."), assistant("Sure, what next?")]


def test_openai_content_parts_are_joined_and_conversational_prompt_completion_is_kept():
    assert load_file(DATA / "openai.jsonl").rows[1].data["messages"][0] == user("Part one. Part two.")
    assert load_file(DATA / "prompt_completion.jsonl").rows[1].data == {
        "messages": [user("Spell dog backwards."), assistant("god")]}


def test_sharegpt_multi_turn_keeps_every_turn():
    rows = load_file(DATA / "sharegpt.jsonl").rows
    assert [m["role"] for m in rows[1].data["messages"]] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize("name, fmt, first", [
    ("trl_preference.jsonl", "trl-preference",
     {"prompt": [user("What is 3+4?")], "chosen": [assistant("3 plus 4 is 7.")], "rejected": [assistant("12")]}),
    ("trl_implicit.jsonl", "trl-preference-implicit",
     {"prompt": [user("Best pet?")], "chosen": [assistant("It depends on you.")], "rejected": [assistant("Rocks.")]}),
    ("hh_rlhf.jsonl", "hh-rlhf",
     {"prompt": [user("How do I boil an egg?")], "chosen": [assistant("Put it in boiling water for 8 minutes.")],
      "rejected": [assistant("Why would you?")]}),
    ("ultrafeedback.parquet", "ultrafeedback",
     {"prompt": [user("Write a haiku about rain.")],
      "chosen": [assistant("Soft rain on the roof\nwhispers to the sleeping town\nmorning comes washed clean")],
      "rejected": [assistant("Rain is wet.")]}),
])
def test_preference_formats_convert_to_prompt_chosen_rejected(name, fmt, first):
    parsed = load_file(DATA / name)
    assert (parsed.kind, parsed.format) == ("preference", fmt)
    assert parsed.errors == []
    assert parsed.rows[0].data == first


def test_hh_rlhf_multi_turn_prompt_keeps_the_earlier_turns():
    row = load_file(DATA / "hh_rlhf.jsonl").rows[1].data
    assert row["prompt"] == [user("Hi"), assistant("Hello!"), user("Tell me a joke.")]
    assert row["rejected"] == [assistant("No.")]


def test_preference_file_imported_as_sft_trains_on_chosen():
    parsed = load_file(DATA / "trl_preference.jsonl", kind="sft")
    assert parsed.kind == "sft" and parsed.format.startswith("trl-preference")
    assert parsed.rows[0].data == {"messages": [user("What is 3+4?"), assistant("3 plus 4 is 7.")]}


def test_sft_file_as_preference_is_refused_with_the_reason():
    with pytest.raises(LabError, match="holds SFT conversations"):
        load_file(DATA / "openai.jsonl", kind="preference")


def test_invalid_sft_rows_are_named_by_line_field_and_reason():
    parsed = load_file(DATA / "invalid_sft.jsonl")
    assert len(parsed.rows) == 1 and parsed.total == 9
    assert errors_of(parsed) == [
        (2, "messages[1]", "empty assistant reply"),
        (3, "messages", "conversation does not end with an assistant reply (the last turn is user)"),
        (4, "messages[1].role", "unknown role 'robot' (expected one of system, user, assistant or human/gpt)"),
        (5, "messages[1]", "wrong role order: two user turns in a row"),
        (6, "messages[1].content", "missing field"),
        (7, "messages", "missing field"),
        (8, "messages[0]", "wrong role order: the conversation starts with assistant, expected user"),
        (9, "messages[1]", "wrong role order: a system message may only come first"),
    ]


def test_invalid_preference_rows():
    parsed = load_file(DATA / "invalid_preference.jsonl")
    assert errors_of(parsed) == [
        (2, "rejected", "chosen is identical to rejected"),
        (3, "chosen", "empty assistant reply"),
        (4, "rejected", "missing field"),
    ]


def test_fields_are_named_as_in_the_source_file():
    alpaca = load_file(DATA / "alpaca.csv")
    assert errors_of(alpaca) == [(3, "output", "empty assistant reply")]  # data row 3, past a multi-line cell


def test_broken_json_lines_are_reported_and_the_rest_is_kept():
    parsed = load_file(DATA / "broken.jsonl")
    assert [r.line for r in parsed.rows] == [1, 4]
    assert [(e.line, e.field) for e in parsed.errors] == [(2, None), (3, None)]
    assert parsed.errors[0].reason.startswith("broken JSON")
    assert parsed.errors[1].reason == "expected a JSON object, got an array"


def test_broken_json_array_keeps_elements_before_the_error_and_names_the_element():
    parsed = load_file(DATA / "broken_array.json")
    assert [r.line for r in parsed.rows] == [1, 2]
    assert parsed.errors[0].line == 3
    assert "file line 4" in parsed.errors[0].reason


def test_non_utf8_line_is_reported_with_the_byte():
    parsed = load_file(DATA / "latin1.jsonl")
    assert [r.line for r in parsed.rows] == [1, 3]
    assert parsed.rows[0].data["messages"][0]["content"] == "café?"
    assert errors_of(parsed)[0][:2] == (2, None)
    assert "not valid UTF-8: byte 0xE9" in parsed.errors[0].reason


def test_ragged_csv_row_is_reported():
    parsed = load_file(DATA / "ragged.csv")
    assert errors_of(parsed) == [(2, None, "has 3 fields, the header has 2")]


@pytest.mark.parametrize("name, message", [
    ("empty.jsonl", "is empty"),
    ("binary.json", "not a text file"),
    ("unrecognised.csv", "columns found: foo, bar, baz"),
])
def test_unusable_files_raise_one_clear_sentence(name, message):
    with pytest.raises(LabError, match=message):
        load_file(DATA / name)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(LabError, match="no such file"):
        load_file(tmp_path / "nope.jsonl")
    with pytest.raises(LabError, match="is a folder"):
        load_file(tmp_path)


def test_hub_id_without_network_says_so():
    with pytest.raises(LabError, match="Hugging Face Hub"):
        load_file("some-owner/surely-not-a-local-dataset")


def test_manual_mapping_reads_unrecognised_columns(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("q,best,worst\nWhy?,Because.,No\n")
    sft = load_file(path, mapping={"q": "prompt", "best": "response"})
    assert (sft.kind, sft.format) == ("sft", "mapped")
    assert sft.rows[0].data == {"messages": [user("Why?"), assistant("Because.")]}
    pref = load_file(path, mapping={"q": "prompt", "best": "chosen", "worst": "rejected"})
    assert pref.kind == "preference"
    assert pref.rows[0].data["rejected"] == [assistant("No")]


@pytest.mark.parametrize("mapping, message", [
    ({"nope": "prompt"}, "not in the file"),
    ({"q": "prompt"}, "no column for response"),
    ({"q": "prompt", "best": "banana"}, "Cannot map to banana"),
])
def test_bad_mappings_are_explained(tmp_path, mapping, message):
    path = tmp_path / "custom.csv"
    path.write_text("q,best\nWhy?,Because.\n")
    with pytest.raises(LabError, match=message):
        load_file(path, mapping=mapping)


def test_json_file_that_is_really_jsonl_and_gzip(tmp_path):
    import gzip

    body = b'{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n'
    (tmp_path / "rows.json").write_bytes(body)
    assert len(load_file(tmp_path / "rows.json").rows) == 2
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(body))
    assert len(load_file(tmp_path / "rows.jsonl.gz").rows) == 2


def test_wrapped_json_and_bom(tmp_path):
    (tmp_path / "wrapped.json").write_text('{"data": [{"question": "q", "answer": "a"}]}')
    assert load_file(tmp_path / "wrapped.json").rows[0].data["messages"][1] == assistant("a")
    (tmp_path / "bom.csv").write_bytes("\ufeffinstruction,output\nhi,there\n".encode())
    assert load_file(tmp_path / "bom.csv").format == "alpaca"


def test_raw_ultrafeedback_pairs_the_best_and_worst_rated_completions(tmp_path):
    import json

    def completion(text, **scores):
        return {"model": "m", "response": text, **scores}

    rows = [
        {"instruction": "Write a haiku", "completions": [
            completion("Leaves fall", **{"fine-grained_score": 4.5, "overall_score": 2}),
            completion("no", **{"fine-grained_score": 1.25, "overall_score": 9}),
            completion("Autumn wind", **{"fine-grained_score": 3.0, "overall_score": 5})]},
        {"instruction": "Add 2+2", "completions": [completion("4", overall_score=9), completion("5", overall_score=1)]},
        {"instruction": "Tie", "completions": [completion("a", overall_score=5), completion("b", overall_score=5)]},
        {"instruction": "Bad", "completions": [completion("a", overall_score="high"), completion("b", overall_score=1)]},
    ]
    path = tmp_path / "ultrafeedback_raw.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parsed = load_file(path)
    assert parsed.format == "ultrafeedback-raw" and parsed.kind == "preference"
    assert [r.data for r in parsed.rows] == [  # the fine-grained score ranks before the overall one
        {"prompt": [user("Write a haiku")], "chosen": [assistant("Leaves fall")], "rejected": [assistant("no")]},
        {"prompt": [user("Add 2+2")], "chosen": [assistant("4")], "rejected": [assistant("5")]}]
    assert errors_of(parsed) == [
        (3, "completions", "every completion has the same score (5): no preference to learn"),
        (4, "completions[0].overall_score", "not a number: 'high'")]


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_arena_battles_become_pairs_with_the_winner_chosen_and_ties_reported(tmp_path):
    """lmsys/chatbot_arena_conversations (conversation_a/b + winner) and the arena-human-preference-55k layout
    (JSON lists of turns + one-hot winner columns)."""
    import json

    def battle(question, a, b, winner):
        return {"question_id": question, "model_a": "m1", "model_b": "m2", "winner": winner, "turn": 1,
                "conversation_a": [user(question), assistant(a)], "conversation_b": [user(question), assistant(b)]}

    parsed = load_file(write_jsonl(tmp_path / "arena.jsonl", [
        battle("2+2?", "4", "5", "model_a"), battle("hi", "go", "Hello!", "model_b"),
        battle("x", "y", "z", "tie (bothbad)")]))
    assert parsed.format == "arena" and parsed.kind == "preference"
    from lab.data.formats import describe_format

    assert describe_format(parsed.format) == "arena — Chatbot Arena battles (conversation_a/conversation_b + winner)"
    assert [r.data for r in parsed.rows] == [
        {"prompt": [user("2+2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]},
        {"prompt": [user("hi")], "chosen": [assistant("Hello!")], "rejected": [assistant("go")]}]
    assert errors_of(parsed) == [(3, "winner", "'tie (bothbad)': a tie or no winner, no preference to learn "
                                               "(expected model_a or model_b)")]

    def flags(a, b, tie):
        return {"winner_model_a": a, "winner_model_b": b, "winner_tie": tie}

    parsed = load_file(write_jsonl(tmp_path / "arena55k.jsonl", [
        {"id": 1, "prompt": json.dumps(["2+2?"]), "response_a": json.dumps(["5"]), "response_b": json.dumps(["4"]),
         **flags(0, 1, 0)},
        {"id": 2, "prompt": json.dumps(["a", "b"]), "response_a": json.dumps(["c", "d"]),
         "response_b": json.dumps(["e", "f"]), **flags(1, 0, 0)},
        {"id": 3, "prompt": json.dumps(["q"]), "response_a": json.dumps([None]), "response_b": json.dumps(["r"]),
         **flags(1, 0, 0)},
        {"id": 4, "prompt": json.dumps(["q"]), "response_a": json.dumps(["s"]), "response_b": json.dumps(["r"]),
         **flags(0, 0, 1)},
        {"id": 5, "prompt": json.dumps(["q"]), "response_a": json.dumps(["s"]), "response_b": json.dumps(["r"]),
         **flags(1, 1, 0)}]))
    assert parsed.format == "arena-55k"
    assert [r.data for r in parsed.rows] == [
        {"prompt": [user("2+2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]}]
    assert [(line, field) for line, field, _ in errors_of(parsed)] == [
        (2, "response_b"), (3, "response_a[0]"), (4, "winner_tie"), (5, "winner_model_a")]
    assert "multi-turn battle" in errors_of(parsed)[0][2]


def test_ranked_paired_and_turn_pair_layouts_of_common_hub_sets(tmp_path):
    """Nectar (ranked answers to an HH prompt), stack-exchange-paired (response_j is the better answer), PKU-SafeRLHF,
    Capybara ({input, output} exchanges), NuminaMath (problem/solution), OpenOrca (system_prompt)."""
    nectar = load_file(write_jsonl(tmp_path / "nectar.jsonl", [{
        "prompt": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant:", "turns": 2,
        "answers": [{"answer": "Teal", "model": "a", "rank": 2}, {"answer": "Blue.", "model": "b", "rank": 1},
                    {"answer": "no", "model": "c", "rank": 3}]}]))
    assert nectar.format == "nectar"
    assert [r.data for r in nectar.rows] == [{"prompt": [user("Hi"), assistant("Hello."), user("Name a colour.")],
                                              "chosen": [assistant("Blue.")], "rejected": [assistant("no")]}]
    paired = load_file(write_jsonl(tmp_path / "se.jsonl", [
        {"qid": 1, "question": "How to sort?", "response_j": "Use sorted().", "response_k": "No idea."}]))
    assert [r.data for r in paired.rows] == [{"prompt": [user("How to sort?")], "chosen": [assistant("Use sorted().")],
                                              "rejected": [assistant("No idea.")]}]
    capybara = load_file(write_jsonl(tmp_path / "capybara.jsonl", [
        {"source": "x", "conversation": [{"input": "hi", "output": "hello"}, {"input": "and?", "output": "bye"}]}]))
    assert [r.data for r in capybara.rows] == [
        {"messages": [user("hi"), assistant("hello"), user("and?"), assistant("bye")]}]
    numina = load_file(write_jsonl(tmp_path / "numina.jsonl", [{"problem": "Solve x+1=2", "solution": "x=1"}]))
    assert [r.data for r in numina.rows] == [{"messages": [user("Solve x+1=2"), assistant("x=1")]}]
    pku = load_file(write_jsonl(tmp_path / "pku.jsonl", [
        {"prompt": "How do I pick a lock?", "response_0": "Like this: ...", "response_1": "Call a locksmith.",
         "better_response_id": 1, "safer_response_id": 1},
        {"prompt": "q", "response_0": "a", "response_1": "b", "better_response_id": None}]))
    assert pku.format == "pku-saferlhf"
    assert [r.data for r in pku.rows] == [{"prompt": [user("How do I pick a lock?")],
                                           "chosen": [assistant("Call a locksmith.")],
                                           "rejected": [assistant("Like this: ...")]}]
    assert errors_of(pku) == [(2, "better_response_id", "missing field")]
    orca = load_file(write_jsonl(tmp_path / "orca.jsonl", [
        {"id": "1", "system_prompt": "Be exact.", "question": "2+2?", "response": "4"}]))
    assert [r.data for r in orca.rows] == [{"messages": [system("Be exact."), user("2+2?"), assistant("4")]}]


def test_tool_calls_import_and_a_result_without_a_call_is_named(tmp_path):
    import json

    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    rows = [{"messages": [user("Weather?"), {"role": "assistant", "content": None, "tool_calls": [call]},
                          {"role": "tool", "tool_call_id": "c1", "content": "18C"}, assistant("18C.")]},
            {"messages": [user("Hi"), {"role": "function", "name": "f", "content": "x"}]},
            {"messages": [user("Hi"), assistant("Hello")]}]
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parsed = load_file(path)
    assert [row.line for row in parsed.rows] == [1, 3]
    [(line, field, reason)] = errors_of(parsed)
    assert (line, field) == (2, "messages[1]") and reason.startswith("a tool result that answers no call")


@pytest.mark.parametrize("text, messages", [
    ("### Human: What is 2+2?### Assistant: 4.### Human: And 3+3?### Assistant: 6.",  # openassistant-guanaco
     [user("What is 2+2?"), assistant("4."), user("And 3+3?"), assistant("6.")]),
    ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST] Goodbye </s>",  # Llama 2
     [system("Be brief."), user("Hi"), assistant("Hello"), user("Bye"), assistant("Goodbye")]),
    ("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
     [system("Be kind."), user("Hi"), assistant("Hello!")]),
    ("\n\nHuman: Hi\n\nAssistant: Hello", [user("Hi"), assistant("Hello")]),
])
def test_chat_transcripts_in_a_text_column_become_messages(tmp_path, text, messages):
    import json

    path = tmp_path / "text.jsonl"
    path.write_text(json.dumps({"text": text}) + "\n" + json.dumps({"text": "plain words, no markers"}) + "\n")
    parsed = load_file(path)
    assert parsed.format == "chat-text" and [r.data for r in parsed.rows] == [{"messages": messages}]
    assert [(e.line, e.field) for e in parsed.errors] == [(2, "text")]  # a row without markers is named


def test_plain_text_is_refused_as_pretraining_data(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text('{"text": "Once upon a time."}\n{"text": "The end."}\n')
    with pytest.raises(LabError, match="plain text, as for continued pre-training"):
        load_file(path)


def test_a_transcript_column_can_be_mapped_to_text(tmp_path):
    path = tmp_path / "dialogue.jsonl"
    path.write_text('{"dialogue": "### Human: Hi### Assistant: Hello"}\n')
    parsed = load_file(path, mapping={"dialogue": "text"})
    assert [r.data for r in parsed.rows] == [{"messages": [user("Hi"), assistant("Hello")]}]


def test_openai_weights_keep_a_reply_as_context_and_bad_weights_are_named(tmp_path):
    import json

    rows = [{"messages": [user("Hi"), {**assistant("Go away."), "weight": 0}, user("Please?"),
                          {**assistant("Hello!"), "weight": 1}]},
            {"messages": [{**user("Hi"), "weight": 1}, assistant("Hello")]},
            {"messages": [user("Hi"), {**assistant("Hello"), "weight": 0.5}]},
            {"messages": [user("Hi"), {**assistant("Hello"), "weight": 0}]}]
    path = tmp_path / "weights.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parsed = load_file(path)
    assert [r.data for r in parsed.rows] == [{"messages": [user("Hi"), {**assistant("Go away."), "weight": 0},
                                                           user("Please?"), assistant("Hello!")]}]
    assert errors_of(parsed) == [
        (2, "messages[0].weight", "weight 1 on a user turn: the lab trains on assistant replies only (the loss is "
                                  "never on other turns); write 0 or leave the weight out"),
        (3, "messages[1].weight", "expected 0 or 1, got 0.5"),
        (4, "messages", "every assistant reply has weight 0: nothing to train on")]
