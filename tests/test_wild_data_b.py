"""Files from the wild-dataset acceptance test (report D5a, D6, D7, D9-D13), written as people write them and read
through the lab's own import path and command line: lists of strings in a reply, pandas' JSON, JSON arrays and
pretty-printed objects under any name, mixed ShareGPT/OpenAI keys, mistyped paths and an unreachable hub, parallel
tool results by id, the developer role and float labels, the loss-mask view of non-Latin text, and a closed pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.data.pipeline import load_file
from lab.data.readers import read_table
from lab.errors import LabError

ROOT = Path(__file__).resolve().parents[1]


def user(text): return {"role": "user", "content": text}
def assistant(text): return {"role": "assistant", "content": text}
def system(text): return {"role": "system", "content": text}


def errors_of(parsed):
    return [(e.line, e.field, e.reason) for e in parsed.errors]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


ALPACA = [{"instruction": f"Name a colour ({i}).", "input": "", "output": f"Colour number {i} is blue."}
          for i in range(3)]


def lab(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120, check=False)


# D5a: text parts and lists of strings


def test_a_list_of_several_strings_as_a_reply_is_refused_naming_the_field(tmp_path):
    rows = [{"instruction": "List two steps to boil water.", "input": "",
             "output": ["Fill the kettle.", "Switch it on."]},
            {"instruction": "Say hi.", "input": "", "output": ["Hi!"]},  # one string is that text
            {"instruction": "Say bye.", "input": "", "output": "Bye."}]
    parsed = load_file(write_jsonl(tmp_path / "steps.jsonl", rows))
    assert [r.data["messages"][-1] for r in parsed.rows] == [assistant("Hi!"), assistant("Bye.")]
    ((line, field, reason),) = errors_of(parsed)
    assert (line, field) == (1, "output")
    assert "a list of 2 texts" in reason and "joined with line breaks" in reason


def test_openai_text_parts_are_joined_as_written(tmp_path):
    rows = [{"messages": [{"role": "user", "content": [{"type": "text", "text": "Read this:"},
                                                       {"type": "text", "text": "\nthe end."}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "Done"}]}]}]
    parsed = load_file(write_jsonl(tmp_path / "parts.jsonl", rows))
    assert parsed.rows[0].data["messages"] == [user("Read this:\nthe end."), assistant("Done")]


# D6: how people save JSON


@pytest.mark.parametrize("orient", ["columns", "index"])
def test_pandas_to_json_reads_as_rows(tmp_path, orient):
    import pandas as pd

    path = tmp_path / "alpaca.json"
    pd.DataFrame(ALPACA).to_json(path, orient=orient)  # "columns" is what df.to_json(path) writes
    parsed = load_file(path)
    assert parsed.format == "alpaca" and parsed.errors == []
    assert [r.data["messages"] for r in parsed.rows] == [
        [user(r["instruction"]), assistant(r["output"])] for r in ALPACA]
    assert [r.line for r in parsed.rows] == [1, 2, 3]


def test_an_object_of_objects_that_is_no_pandas_table_stays_one_record(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"a": {"x": 1}, "b": {"y": 2}}))
    assert [record for _, record in read_table(path).records] == [{"a": {"x": 1}, "b": {"y": 2}}]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.ndjson", "rows.txt"])
def test_a_pretty_json_array_under_a_json_lines_name_is_read(tmp_path, name):
    path = tmp_path / name
    path.write_text(json.dumps(ALPACA, indent=2))
    parsed = load_file(path)
    assert parsed.errors == [] and len(parsed.rows) == 3
    assert parsed.rows[2].data["messages"][1] == assistant("Colour number 2 is blue.")


@pytest.mark.parametrize("name", ["rows.json", "rows.jsonl"])
def test_pretty_printed_objects_one_after_another_are_read_with_their_lines(tmp_path, name):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, indent=2) + "\n" for r in ALPACA))  # 5 lines each
    parsed = load_file(path)
    assert parsed.errors == [] and len(parsed.rows) == 3
    assert [r.line for r in parsed.rows] == [1, 6, 11]


def test_a_broken_pretty_object_is_named_by_file_and_line_and_the_rows_before_it_kept(tmp_path):
    path = tmp_path / "rows.json"
    good = json.dumps(ALPACA[0], indent=2)
    path.write_text(f"{good}\n{good.replace('blue.', 'red.')}\n{{\n  \"instruction\": \"x\"\n  \"output\": \"y\"\n}}\n")
    parsed = load_file(path)
    assert len(parsed.rows) == 2
    ((line, _, reason),) = errors_of(parsed)
    assert line == 11 and reason.startswith("broken JSON at line 13, column 3: Expecting ',' delimiter")
    assert str(parsed.errors[0]).startswith("rows.json:11: ")
    path.write_text('{\n  "instruction": "x",\n  "output": \n}\n' + good)
    with pytest.raises(LabError, match=r"rows\.json: the JSON value that starts at line 1 cannot be read: broken JSON "
                                       r"at line 4, column 1"):
        load_file(path)


def test_json_lines_with_a_cut_first_line_is_still_read_line_by_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(r) for r in ALPACA]
    path.write_text(lines[0][:40] + "\n" + "\n".join(lines[1:]) + "\n")
    parsed = load_file(path)
    assert len(parsed.rows) == 2 and [e.line for e in parsed.errors] == [1]
    assert parsed.errors[0].reason.startswith("broken JSON")


def test_text_after_a_pretty_array_is_reported_not_dropped(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ALPACA, indent=2) + "\n" + json.dumps(ALPACA[:1], indent=2))
    parsed = load_file(path)
    assert len(parsed.rows) == 3
    assert [e.reason for e in parsed.errors] == [
        "text after the array's closing ']' (line 18) was not read: a JSON file holds one array of rows"]


# D7: ShareGPT and OpenAI keys mixed


def test_role_and_content_are_taken_from_either_spelling(tmp_path):
    rows = [{"conversations": [{"from": "human", "content": "Q1"}, {"role": "assistant", "value": "A1"}]},
            {"conversations": [{"role": "user", "value": "Q2"}, {"from": "gpt", "content": "A2"}]}]
    parsed = load_file(write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert parsed.errors == []
    assert [r.data["messages"] for r in parsed.rows] == [[user("Q1"), assistant("A1")], [user("Q2"), assistant("A2")]]


def test_a_message_missing_its_content_names_the_keys_it_has(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "text": "A"}]},
            {"conversations": [{"speaker": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
            {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt"}]}]
    parsed = load_file(write_jsonl(tmp_path / "keys.jsonl", rows))
    assert errors_of(parsed) == [
        (1, "conversations[1].value", "missing field: expected 'value' (or 'content'); the message has 'from', 'text'"),
        (2, "conversations[0].from", "missing field: expected 'from' (or 'role'); the message has 'speaker', 'value'"),
        (3, "conversations[1].value", "missing field")]  # nothing else there to name


# D9: mistyped paths and an unreachable hub


def test_a_mistyped_path_is_no_such_file_at_once(tmp_path, monkeypatch):
    (tmp_path / "files").mkdir()
    write_jsonl(tmp_path / "files" / "02_alpaca.jsonl", ALPACA)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(LabError) as typo:
        read_table("files/02_alpaca.jsonI")  # matches the hub id pattern owner/name
    assert str(typo.value) == "no such file: files/02_alpaca.jsonI"
    with pytest.raises(LabError) as elsewhere:
        read_table("data/train.jsonl")  # a data suffix: a path, though its folder is not here
    assert str(elsewhere.value) == "no such file: data/train.jsonl"
    with pytest.raises(LabError, match=r"^no such file: \./owner/name$"):
        read_table("./owner/name")
    with pytest.raises(LabError, match=r"^no such file: alpaca, and not a hub dataset id like 'owner/name'$"):
        read_table("alpaca")
    assert time.monotonic() - started < 2  # no hub attempt


def test_a_hub_id_in_offline_mode_fails_at_once_saying_so():
    import datasets

    assert datasets.config.HF_HUB_OFFLINE  # tests/conftest.py sets HF_HUB_OFFLINE for every test
    started = time.monotonic()
    with pytest.raises(LabError, match="offline mode is on"):
        read_table("lab-tests/no-such-dataset-xyz")
    assert time.monotonic() - started < 10


def test_an_unreachable_hub_fails_at_once_instead_of_retrying(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                                             "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), LAB_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lab", "data", "check", "lab-tests/no-such-dataset"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "the Hugging Face Hub (http://127.0.0.1:9) cannot be reached" in result.stderr, result.stderr
    assert "Retrying" not in result.stderr
    assert time.monotonic() - started < 20  # the five retries alone took about 25 s


# D10: parallel tool results by id


def call(call_id: str, name: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def parallel(first: str, second: str) -> dict:
    return {"messages": [user("Weather and time in Oslo?"),
                         {"role": "assistant", "content": None,
                          "tool_calls": [call("A", "get_weather"), call("B", "get_time")]},
                         {"role": "tool", "tool_call_id": first, "content": f"result {first}"},
                         {"role": "tool", "tool_call_id": second, "content": f"result {second}"},
                         assistant("-2C, and it is noon.")]}


def test_parallel_tool_results_are_matched_by_id_in_any_order(tmp_path):
    parsed = load_file(write_jsonl(tmp_path / "tools.jsonl", [parallel("B", "A"), parallel("A", "B"),
                                                               parallel("B", "C")]))
    assert [r.line for r in parsed.rows] == [1, 2]
    results = [m for m in parsed.rows[0].data["messages"] if m["role"] == "tool"]
    assert results == [{"role": "tool", "content": "result B", "tool_call_id": "B", "name": "get_time"},
                       {"role": "tool", "content": "result A", "tool_call_id": "A", "name": "get_weather"}]
    ((line, field, reason),) = errors_of(parsed)
    assert (line, field) == (3, "messages[3].tool_call_id")
    assert reason == ("'C' does not match the call this result answers: no call waiting for its result has this id "
                      "(waiting: 'A' (get_weather))")


def test_results_without_ids_still_answer_the_calls_in_order(tmp_path):
    row = parallel("B", "A")
    for message in row["messages"][2:4]:
        del message["tool_call_id"]
    parsed = load_file(write_jsonl(tmp_path / "tools.jsonl", [row]))
    assert [(m["tool_call_id"], m["content"]) for m in parsed.rows[0].data["messages"] if m["role"] == "tool"] == [
        ("A", "result B"), ("B", "result A")]


# D11: the developer role, float labels


def test_the_developer_role_is_the_system_turn(tmp_path):
    rows = [{"messages": [{"role": "developer", "content": "Be brief."}, user("Hi"), assistant("Hello.")]}]
    parsed = load_file(write_jsonl(tmp_path / "dev.jsonl", rows))
    assert parsed.rows[0].data["messages"] == [system("Be brief."), user("Hi"), assistant("Hello.")]


def test_kto_labels_written_as_floats_are_read(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"prompt": ["Q1", "Q2", "Q3"], "completion": ["good", "bad", "meh"],
                          "label": [1, 0, None]})  # a missing label makes pandas write the column as floats
    frame.to_csv(tmp_path / "kto.csv", index=False)
    parsed = load_file(tmp_path / "kto.csv")
    assert parsed.kind == "unpaired"
    assert [r.data["label"] for r in parsed.rows] == [True, False]
    assert [(e.line, e.field) for e in parsed.errors] == [(3, "label")]
    floats = load_file(write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "Q1", "completion": "good", "label": 1.0},
                                                            {"prompt": "Q2", "completion": "bad", "label": 0.0}]))
    assert [r.data["label"] for r in floats.rows] == [True, False]


# D12: the loss-mask view of text that is not Latin


def test_mask_view_shows_whole_characters_and_keeps_the_loss_bits(tiny_home):
    from lab.data.masking import mask_html, mask_view
    from lab.models import load_tokenizer

    tokenizer = load_tokenizer("tiny", template="chatml", home=tiny_home)
    reply = "我很好，谢谢！ شكرا 🎉👍🏽 ok \ufffd done"  # U+FFFD written in the text stays a piece of its own
    messages = [user("你好吗？ مرحبا 👩‍👩‍👧"), assistant(reply)]
    view = mask_view(messages, tokenizer)
    texts = [text for text, _ in view.tokens]
    assert "".join(texts) == tokenizer.decode(view.token_ids)
    assert [t for t in texts if "\ufffd" in t] == ["\ufffd"]
    assert len(view.tokens) < view.n_tokens  # byte-level pieces were merged
    trained = tokenizer.decode([t for t, m in zip(view.token_ids, view.mask) if m])
    assert "".join(text for text, loss in view.tokens if loss) == trained
    assert trained.startswith(reply)
    assert "谢" in mask_html(view) and "🎉" in mask_html(view)


# D13: a reader that goes away


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    home = tmp_path / "home"
    imported = lab("data", "import", str(write_jsonl(tmp_path / "a.jsonl", ALPACA)), "--name", "pipe", home=home)
    assert imported.returncode == 0, imported.stderr
    env = {**os.environ, "LAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "lab", "data", "show", "pipe"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=ROOT)
    child.stdout.close()  # the reader is gone before the first line, as `| head -0` would be
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 141, stderr.decode()
    assert stderr.decode() == ""
    assert not (home / "logs" / "cli-errors.log").exists()
