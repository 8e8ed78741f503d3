"""The data kinds beyond SFT and preference: ``unpaired`` (prompt, completion, label: KTO's data) and ``prompts``
(prompt, reference answer, metadata: GRPO/RLOO's), from a file to the rows a trainer takes, and everything the
registry (``lab.data.kinds``) feeds: formats, hand mapping, checks, dedup, statistics, the row browser, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.config import DataConfig
from lab.data.canonical import Row
from lab.data.kind_checks import CHECKS, check_row, parse_label
from lab.data.kinds import KINDS, NAMES
from lab.data.pipeline import import_file, load_file
from lab.data.quality import exact_duplicates, near_duplicates
from lab.data.validate import RowProblem
from lab.errors import LabError
from tests.test_cli_data import as_json, lab


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def errors_of(parsed) -> list[tuple]:
    return [(e.line, e.field, e.reason) for e in parsed.errors]


UNPAIRED = [
    {"prompt": "What is 2 + 2?", "completion": "4", "label": True},
    {"prompt": [user("Name a colour.")], "completion": [assistant("Blue.")], "label": "yes"},
    {"prompt": "Say hi.", "completion": "Go away.", "label": "👎"},
    {"prompt": "Capital of France?", "completion": "Rome.", "label": 0},
    {"prompt": "Spell cat backwards.", "completion": "tac", "label": "sometimes"},
    {"prompt": "Thanks!", "completion": "You're welcome!", "label": "desirable"},
]


# ---------------------------------------------------------------- import


def test_trl_unpaired_jsonl_reads_text_and_conversations_and_names_a_bad_label(tmp_path):
    parsed = load_file(jsonl(tmp_path / "kto.jsonl", UNPAIRED))
    assert (parsed.kind, parsed.format, len(parsed.rows)) == ("unpaired", "trl-unpaired", 5)
    assert parsed.rows[0].data == {"prompt": [user("What is 2 + 2?")], "completion": [assistant("4")], "label": True}
    assert [row.data["label"] for row in parsed.rows] == [True, True, False, False, True]
    assert errors_of(parsed) == [(5, "label", ("'sometimes' is not a label: use true/false, 1/0 (or -1), yes/no, "
                                              "good/bad, up/down, 👍/👎 or desirable/undesirable"))]


def test_thumbs_csv_with_text_labels_and_errors_named_by_the_files_column(tmp_path):
    path = tmp_path / "feedback.csv"
    path.write_text("prompt,response,rating\nHi there,Hello!,up\nWhat is 3 + 4?,8,down\nBye,See you,meh\n"
                    "Tell me a joke,,up\n", encoding="utf-8")
    parsed = load_file(path)
    assert (parsed.kind, parsed.format) == ("unpaired", "thumbs-rating")
    assert [(r.data["completion"], r.data["label"]) for r in parsed.rows] == [([assistant("Hello!")], True),
                                                                              ([assistant("8")], False)]
    (line_meh, field_meh, reason_meh), (line_empty, field_empty, reason_empty) = errors_of(parsed)
    assert field_meh == "rating" and "'meh' is not a label" in reason_meh
    assert field_empty == "response" and reason_empty == "empty assistant reply"
    assert line_empty == line_meh + 1
    # Star ratings are scores, not thumbs: such a file stays SFT question/answer data.
    stars = tmp_path / "stars.csv"
    stars.write_text("prompt,response,rating\nHi,Hello,4\n")
    assert load_file(stars).kind == "sft"


def test_a_thumbs_up_column_of_booleans(tmp_path):
    parsed = load_file(jsonl(tmp_path / "t.jsonl", [{"question": "Hi?", "response": "Hello.", "thumbs_up": False}]))
    assert (parsed.format, parsed.rows[0].data["label"]) == ("thumbs", False)


@pytest.mark.parametrize("value, expected", [(True, True), (0, False), ("TRUE", True), ("no", False),
                                             ("👍🏽", True), ("👎", False), ("Undesirable", False), ("down", False),
                                             (-1, False), ("-1", False), (1.0, True), ("Good", True),
                                             ("negative", False)])
def test_labels_people_write(value, expected):
    assert parse_label(value) is expected


@pytest.mark.parametrize("value", ["", None, 2, -2, "okay", [True]])
def test_anything_else_is_no_label(value):
    with pytest.raises(RowProblem, match="is not a label"):
        parse_label(value, "label")


QA = [{"question": "What is 3 + 4?", "answer": 7, "source": "drill", "level": 1},
      {"question": "What is 5 + 1?", "answer": "6", "source": "drill", "level": 2}]


def test_questions_with_answers_stay_sft_unless_prompts_are_asked_for(tmp_path):
    path = jsonl(tmp_path / "qa.jsonl", QA)
    assert load_file(path).kind == "sft"
    parsed = load_file(path, kind="prompts")
    assert (parsed.kind, parsed.format) == ("prompts", "prompts")
    assert parsed.rows[0].data == {"prompt": [user("What is 3 + 4?")], "answer": "7",
                                   "meta": '{"source": "drill", "level": 1}'}


def test_a_file_of_prompts_alone_is_prompts_and_a_conversation_must_end_with_the_user(tmp_path):
    rows = [{"problem": "Add 2 and 2.", "id": 1}, {"problem": "", "id": 2},
            {"problem": "Say hi.", "ground_truth": "hi", "meta": {"difficulty": "easy"}, "id": 3}]
    parsed = load_file(jsonl(tmp_path / "p.jsonl", rows))
    assert (parsed.kind, [r.data["answer"] for r in parsed.rows]) == ("prompts", ["", "hi"])
    assert [json.loads(r.data["meta"]) for r in parsed.rows] == [{"id": 1}, {"id": 3, "difficulty": "easy"}]
    assert errors_of(parsed) == [(2, "problem[0]", "empty user message")]
    chats = [{"messages": [user("Hi"), assistant("Hello"), user("Name a fruit.")]},
             {"messages": [user("Hi"), assistant("Hello")]}]
    parsed = load_file(jsonl(tmp_path / "chats.jsonl", chats), kind="prompts")
    assert parsed.rows[0].data["prompt"][-1] == user("Name a fruit.")
    assert errors_of(parsed) == [(2, "messages", "the prompt must end with a user turn (the last turn is assistant)")]


def test_a_kind_the_file_does_not_hold_is_refused_with_what_it_holds(tmp_path):
    pairs = jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Hi", "chosen": "Hello", "rejected": "No"}])
    with pytest.raises(LabError, match=r"holds preference pairs \(TRL preference .*\), not unpaired replies"):
        load_file(pairs, kind="unpaired")


def test_mapping_by_hand(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("q,reply,ok,src\nWhy?,Because.,yes,web\nHow?,Somehow.,no,web\n")
    parsed = load_file(path, mapping={"q": "prompt", "reply": "completion", "ok": "label"})
    assert (parsed.kind, parsed.format, [r.data["label"] for r in parsed.rows]) == ("unpaired", "mapped", [True, False])
    prompts = load_file(path, mapping={"q": "prompt", "reply": "answer"})  # answer is a prompts field only
    assert prompts.kind == "prompts"
    assert prompts.rows[0].data == {"prompt": [user("Why?")], "answer": "Because.",
                                    "meta": '{"ok": "yes", "src": "web"}'}
    with pytest.raises(LabError, match="no column for label; unpaired data needs prompt and completion and label"):
        load_file(path, mapping={"q": "prompt", "reply": "completion"}, kind="unpaired")
    with pytest.raises(LabError, match="Cannot map to chosen for prompts data"):
        load_file(path, mapping={"q": "prompt", "reply": "chosen"}, kind="prompts")


# ---------------------------------------------------------------- checks and dedup


def test_every_kind_has_a_check_a_view_and_a_sample():
    from lab.data.sources import SAMPLES
    from lab.ui.data_tab import BODIES

    assert set(CHECKS) == set(BODIES) == set(NAMES) == {name.removeprefix("sample:") for name in SAMPLES}


def test_canonical_checks_of_the_new_kinds():
    check_row({"prompt": [user("Hi")], "completion": [assistant("Hello")], "label": False})
    check_row({"prompt": [user("Hi")], "answer": "", "meta": "{}"})
    with pytest.raises(RowProblem, match="expected true or false"):
        check_row({"prompt": [user("Hi")], "completion": [assistant("Hello")], "label": "yes"})
    with pytest.raises(RowProblem, match="empty assistant reply"):
        check_row({"prompt": [user("Hi")], "completion": [assistant(" ")], "label": True})
    with pytest.raises(RowProblem, match="expected a JSON object of metadata"):
        check_row({"prompt": [user("Hi")], "answer": "", "meta": "[1]"})
    with pytest.raises(RowProblem, match="must end with a user turn"):
        check_row({"prompt": [user("Hi"), assistant("Hello")], "answer": "x", "meta": "{}"}, "prompts")


def unpaired(prompt: str, completion: str, label: bool) -> Row:
    return Row({"prompt": [user(prompt)], "completion": [assistant(completion)], "label": label}, 1)


def test_dedup_keys_unpaired_rows_by_label_and_prompts_by_prompt_and_answer():
    long = "please explain in a few careful words how the tides of the sea follow the moon around the earth " * 2
    rows = [unpaired(long, "The moon pulls the water.", True), unpaired(long, "The moon pulls the water.", False),
            unpaired(long, "The moon pulls the water.", True), unpaired(long, "The moon pulls the water!", False)]
    assert [(p.keep, p.drop) for p in exact_duplicates(rows)] == [(0, 2)]
    # Near duplicates only among replies labelled alike: the same reply liked and disliked is two signals.
    assert [(p.keep, p.drop) for p in near_duplicates(rows)] == [(0, 2), (1, 3)]
    prompts = [Row({"prompt": [user("What is 3 + 4?")], "answer": "7", "meta": meta}, 1)
               for meta in ('{"id": 1}', '{"id": 2}')]
    prompts.append(Row({"prompt": [user("What is 3 + 4?")], "answer": "8", "meta": "{}"}, 3))
    assert [(p.keep, p.drop) for p in exact_duplicates(prompts)] == [(0, 1)]


# ---------------------------------------------------------------- versions, training rows, statistics, browser


@pytest.fixture
def saved(home, tmp_path):
    """An unpaired version and a prompts version, saved from files (no cleaning removes a row)."""
    kto = import_file(jsonl(tmp_path / "kto.jsonl", [r for r in UNPAIRED if r["label"] != "sometimes"]),
                      DataConfig(name="kto", val_fraction=0.2), home=home)
    rl = import_file(jsonl(tmp_path / "qa.jsonl", QA), DataConfig(name="rl", kind="prompts", val_fraction=0),
                     home=home)
    return kto, rl


def test_versions_round_trip_through_read_rows_and_export(home, saved, tmp_path):
    from lab.data.versions import export_version, read_rows

    kto, rl = saved
    assert (kto.kind, rl.kind, kto.rows["train"] + kto.rows["validation"], rl.rows["train"]) == (
        "unpaired", "prompts", 5, 2)
    for version in saved:
        rows = read_rows(version, "train", home)
        exported = export_version(version, "jsonl", dest=str(tmp_path / f"{version.name}.jsonl"), home=home)
        lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
        assert lines == [{f: row[f] for f in KINDS[version.kind].fields} for row in rows]
        again = load_file(exported, kind=version.kind)  # the export reads back as the same rows
        assert [r.data for r in again.rows] == lines and not again.errors
    assert {type(row["label"]) for row in read_rows(kto, "train", home)} == {bool}


def test_training_rows_are_trls_columns(home, saved):
    from lab.train.datasets import training_rows

    rows = training_rows("kto", "train", "unpaired", home)
    assert rows and all(set(row) == {"prompt", "completion", "label"} for row in rows)
    assert all(row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant" for row in rows)
    prompts = training_rows("rl", "train", "prompts", home)
    assert {json.loads(row["meta"])["source"] for row in prompts} == {"drill"} and {r["answer"] for r in prompts} == {
        "7", "6"}
    with pytest.raises(LabError, match=r"holds prompts \(for online RL.*\), but this run needs unpaired preference"):
        training_rows("rl", "train", "unpaired", home)


def test_bundled_samples_import_as_their_kinds(home):
    from lab.data.samples import SAMPLE_PROMPTS, SAMPLE_UNPAIRED
    from lab.data.samples.generate import write_rl_samples
    from lab.train.datasets import resolve_version, training_rows

    unpaired_rows = [json.loads(line) for line in SAMPLE_UNPAIRED.read_text(encoding="utf-8").splitlines()]
    assert len(unpaired_rows) == 40 and sum(r["label"] for r in unpaired_rows) == 20
    prompt_rows = [json.loads(line) for line in SAMPLE_PROMPTS.read_text(encoding="utf-8").splitlines()]
    assert len(prompt_rows) == 64
    for row in prompt_rows:  # "What is a + b?" with the sum as its answer, both digits 1 to 9
        a, b = (int(n) for n in row["prompt"][0]["content"].removeprefix("What is ").removesuffix("?").split(" + "))
        assert 1 <= a <= 9 and 1 <= b <= 9 and row["ground_truth"] == str(a + b)
    version = resolve_version("sample:prompts", home)
    assert (version.name, version.kind, version.rows["train"] + version.rows["validation"]) == (
        "sample-prompts", "prompts", 64)
    kto = training_rows("sample:unpaired", "train", "unpaired", home)
    assert {row["label"] for row in kto} == {True, False}
    written = write_rl_samples(home.root / "again")
    assert [p.read_bytes() for p in written] == [SAMPLE_UNPAIRED.read_bytes(), SAMPLE_PROMPTS.read_bytes()]


def test_statistics_per_kind(home, saved):
    from lab.data.stats import dataset_stats
    from lab.data.versions import version_rows

    kto, rl = saved
    stats = dataset_stats(version_rows(kto, home=home))
    assert (stats.kind, stats.reply, stats.n_rows) == ("unpaired", "completion", 5)
    assert stats.labels == {"👍 desirable": 3, "👎 undesirable": 2}
    assert stats.role_counts == {"user": 5, "👍 desirable": 3, "👎 undesirable": 2}
    assert sorted(stats.response_tokens) == [1, 1, 1, 2, 2] and stats.rejected_tokens == []
    assert stats.notes() == ["3 👍 desirable (60%)", "2 👎 undesirable (40%)"]
    rows = version_rows(rl, home=home) + [Row({"prompt": [user("Name a colour.")], "answer": "", "meta": "{}"}, 9)]
    stats = dataset_stats(rows)
    assert (stats.kind, stats.reply, stats.answered, stats.response_tokens) == ("prompts", "answer", 2, [1, 1])
    assert stats.prompt_tokens == [5, 5, 3] and stats.notes() == ["2 of 3 prompts have a reference answer"]


def test_the_browser_shows_labels_answers_and_metadata_and_filters_on_them(home, saved):
    from lab.data.browse import page_of
    from lab.data.versions import version_rows
    from lab.ui.data_tab import row_html

    kto, rl = saved
    rows = version_rows(kto, home=home)
    liked = page_of(rows, where="desirable", per_page=50)
    assert liked.matched == 3 and all(row.data["label"] for _, row in liked.rows)
    assert page_of(rows, where="undesirable").matched == 2
    number, row = page_of(rows, search="go away").rows[0]
    shown = row_html(row, number, len(rows), "go away")
    assert "👎 UNDESIRABLE" in shown and "Say hi." in shown and '<mark style="background:#fde68a;">Go away</mark>' in shown
    prompts = version_rows(rl, home=home)
    assert page_of(prompts, where="answered").matched == 2
    found = page_of(prompts, search="drill")  # the metadata is searched too
    assert found.matched == 2
    shown = row_html(found.rows[0][1], 1, 2)
    assert "REFERENCE ANSWER" in shown and "<b>source</b>: &quot;drill&quot;" in shown and "What is" in shown


# ---------------------------------------------------------------- the CLI


def test_cli_imports_an_unpaired_file_and_prompts_by_kind(tmp_path):
    path = jsonl(tmp_path / "kto.jsonl", [r for r in UNPAIRED if r["label"] != "sometimes"])
    done = lab("data", "import", str(path), "--kind", "unpaired", "--name", "thumbs", "--val-fraction", "0", "--json",
               home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (as_json(done)["kind"], as_json(done)["card"]["source_format"]) == ("unpaired", "trl-unpaired")
    shown = lab("data", "show", "thumbs", "--rows", "5", "--where", "undesirable", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "2 of 5 match" in shown.stdout and "👎 undesirable" in shown.stdout and "completion: Go away." in shown.stdout
    qa = jsonl(tmp_path / "qa.jsonl", QA)
    as_sft = as_json(lab("data", "check", str(qa), "--json", home=tmp_path))
    as_prompts = as_json(lab("data", "check", str(qa), "--kind", "prompts", "--json", home=tmp_path))
    assert (as_sft["kind"], as_prompts["kind"], as_prompts["rows"]) == ("sft", "prompts", 2)
