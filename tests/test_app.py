"""The web app through its API: the real ``python app.py`` subprocess driven by ``gradio_client``.

Each test calls the Data tab's handlers by their ``api_name`` the way a script would, with files
the test writes itself, and checks what comes back against what the file holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import Client

from tests.app_server import AppServer

START_LIMIT_S = 10.0


def sft(user: str, assistant: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})


# Line 3 is broken JSON, line 4 has no assistant reply, line 5 repeats line 1.
MALFORMED = "\n".join([
    sft("How do I reverse a list in Python?", "Use reversed(xs) or xs[::-1]."),
    sft("What is the capital of France?", "Paris."),
    '{"messages": [ this is not json',
    json.dumps({"messages": [{"role": "user", "content": "Only a question, no answer"}]}),
    sft("How do I reverse a list in Python?", "Use reversed(xs) or xs[::-1]."),
    sft("Name a prime number above 10.", "Eleven."),
]) + "\n"


@pytest.fixture()
def client(lab_app: AppServer) -> Client:  # noqa: F811
    """A fresh client: its own session, so state such as a column mapping does not leak between tests."""
    return Client(lab_app.url, verbose=False)


@pytest.fixture()
def malformed(tmp_path: Path) -> Path:
    path = tmp_path / "chats.jsonl"
    path.write_text(MALFORMED)
    return path


def value(update):
    """The value inside a component update (``{"__type__": "update", "value": ...}``), or the value."""
    return update.get("value") if isinstance(update, dict) and update.get("__type__") == "update" else update


def table(update) -> list[list]:
    return value(update)["data"]


def check(client: Client, source: str | Path, kind: str = "auto") -> tuple:
    return client.predict(source=str(source), kind=kind, api_name="/data_check")


def valid_rows(status: str) -> tuple[int, int]:
    match = re.search(r"\*\*Valid rows\*\* (\d+) / (\d+)", status)
    assert match, f"no 'Valid rows' count in the status: {status!r}"
    return int(match.group(1)), int(match.group(2))


def test_app_starts_in_under_ten_seconds(lab_app: AppServer):  # noqa: F811
    assert lab_app.started_in_s < START_LIMIT_S, f"the app took {lab_app.started_in_s:.1f}s to answer"


def test_check_bundled_sft_sample_reports_format_kind_and_rows(client: Client):
    from lab.data.pipeline import check_file
    from lab.data.sources import SAMPLES

    path = client.predict(choice="SFT conversations", api_name="/data_sample")
    assert path == "sample:sft"  # the sample's name, not its path on the server
    status, errors, *_ = check(client, path)
    expected = check_file(SAMPLES[path])
    assert expected.kind == "sft" and expected.rows > 0
    assert f"**Format** {expected.format}" in status
    assert "**Kind** sft" in status
    assert valid_rows(status) == (expected.rows, expected.total)
    assert value(errors)["data"] == [] and errors["visible"] is False


def test_check_preference_sample_is_detected_as_preference(client: Client):
    path = client.predict(choice="Preference pairs", api_name="/data_sample")
    status, *_ = check(client, path)
    assert "**Kind** preference" in status
    assert valid_rows(status)[0] > 0


def test_check_malformed_file_lists_each_bad_line(client: Client, malformed: Path):
    status, errors, *_ = check(client, malformed)
    assert valid_rows(status) == (4, 6)
    assert "2 invalid rows" in status
    assert errors["visible"] is True and errors["label"] == "Invalid rows (2)"
    lines = {row[0]: row for row in table(errors)}
    assert set(lines) == {3, 4}
    assert "json" in lines[3][2].lower()
    assert lines[4][1] == "messages" and "assistant" in lines[4][2]


def test_missing_file_shows_the_message_not_a_traceback(client: Client, tmp_path: Path):
    status, *_ = check(client, tmp_path / "nope.jsonl")
    assert "no such file" in status
    assert "Traceback" not in status and "nexpected" not in status


def test_unrecognised_columns_reveal_the_mapping_panel_and_mapping_works(client: Client, tmp_path: Path):
    path = tmp_path / "qa.csv"
    path.write_text("question_text,best_answer\nWhat is 2+2?,4\nName a colour.,Blue\n")
    # The API leaves out layout blocks (the mapping panel) and state: status, errors, then the 7 dropdowns.
    status, errors, *rest = check(client, path)
    dropdowns = rest[:7]
    assert "Unrecognised schema" in status and "question_text, best_answer" in status
    for dropdown in dropdowns:
        assert [c[0] for c in dropdown["choices"]] == ["(none)", "question_text", "best_answer"]
    status, *_ = client.predict(source=str(path), kind="auto", prompt="question_text", response="best_answer",
                                api_name="/data_check_mapped")
    assert "columns mapped by hand" in status and "**Kind** sft" in status
    assert valid_rows(status) == (2, 2)
    # The mapping is kept for this session: the preview reads the file through it.
    preview_status, steps, *_ = client.predict(source=str(path), kind="auto", api_name="/data_preview_cleaning")
    assert table(steps)[0][:3] == ["read", 2, 2], preview_status


def test_preview_cleaning_counts_steps_and_shows_duplicate_pairs(client: Client, malformed: Path):
    status, steps, pairs, filtered = client.predict(source=str(malformed), kind="auto", max_turns=0,
                                                    api_name="/data_preview_cleaning")
    by_step = {row[0]: row for row in table(steps)}
    assert by_step["read"][1:4] == [6, 4, 2]
    assert by_step["exact dedup"][1:4] == [4, 3, 1]
    assert "keep **3 of 4**" in status
    rows = table(pairs)
    assert len(rows) == 1 and rows[0][0] == "exact"
    assert rows[0][2].startswith("line 1:") and rows[0][3].startswith("line 5:")
    assert "reverse a list" in rows[0][2] and "reverse a list" in rows[0][3]
    assert table(filtered) == []


def test_preview_cleaning_shows_rows_the_filters_drop(client: Client, tmp_path: Path):
    path = tmp_path / "turns.jsonl"
    two_turns = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                              {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    path.write_text(sft("one turn", "only") + "\n" + json.dumps(two_turns) + "\n")
    status, steps, _pairs, filtered = client.predict(source=str(path), kind="auto", max_turns=1,
                                                     api_name="/data_preview_cleaning")
    assert {row[0]: row[3] for row in table(steps)}["turns"] == 1
    assert [row[0] for row in table(filtered)] == [2]


def test_bad_setting_is_refused_with_its_name(client: Client, malformed: Path):
    status, *_ = client.predict(source=str(malformed), kind="auto", min_turns=3, max_turns=1,
                                api_name="/data_preview_cleaning")
    assert "min_turns" in status and "max_turns" in status


def test_import_refuses_invalid_rows_then_saves_and_lists_the_version(client: Client, malformed: Path, tmp_path):
    refused, *_ = client.predict(source=str(malformed), kind="auto", name="chats", skip_invalid=False,
                                 api_name="/data_import")
    assert "2 of 6 rows are invalid" in refused
    status, card, versions, picker, explore = client.predict(source=str(malformed), kind="auto", name="chats",
                                                             skip_invalid=True, api_name="/data_import")
    match = re.search(r"Saved \*\*(chats@[0-9a-f]+)\*\*", status)
    assert match, status
    ref = match.group(1)
    assert value(explore) == ref
    # 6 read, 2 invalid, 1 exact duplicate: 3 rows, 1 held out for validation at the default 0.1.
    assert "2 train" in status and "1 validation" in status
    assert f"### {ref}" in card and "| exact dedup | 4 | 3 | 1 |" in card
    assert [ref, "sft", "openai", 2, 1] == table(versions)[0][:5]

    _table, listed_picker, _status = client.predict(selected=None, api_name="/data_versions")
    assert ref in [value for _label, value in listed_picker["choices"]]
    card, *_ = client.predict(ref=ref, api_name="/data_version_card")
    assert "| read | 6 | 4 | 2 |" in card and "chats.jsonl" in card

    files, note = client.predict(ref=ref, fmt="JSONL", api_name="/data_export")
    exported = {Path(f).name: Path(f).read_text().splitlines() for f in value(files)}
    assert len(exported) == 2
    train = next(lines for name, lines in exported.items() if "train" in name)
    assert len(train) == 2 and all("messages" in json.loads(line) for line in train)

    html_page, page, info, _ = client.predict(source=ref, kind="auto", page=1, api_name="/data_browse")
    assert "3 rows" in info and page == 1
    assert "capital of France" in html_page or "prime number" in html_page

    refused, *_ = client.predict(ref=ref, confirm=False, api_name="/data_delete")
    assert ref in client.predict(selected=None, api_name="/data_versions")[0]["data"][0]
    versions, _picker, status, _confirm, _card = client.predict(ref=ref, confirm=True, api_name="/data_delete")
    assert f"Deleted **{ref}**" in status and ref not in [row[0] for row in table(versions)]  # other tests share the app


def test_push_without_hf_token_says_so(client: Client, malformed: Path):
    status, *_ = client.predict(source=str(malformed), kind="auto", name="pushme", skip_invalid=True,
                                api_name="/data_import")
    ref = re.search(r"Saved \*\*(pushme@[0-9a-f]+)\*\*", status).group(1)
    message = client.predict(ref=ref, repo_id="someone/data", api_name="/data_push")
    assert "HF_TOKEN" in message


def test_browse_pages_and_escapes_html(client: Client, tmp_path: Path):
    path = tmp_path / "html.jsonl"
    rows = [sft(f"question {i}", f"answer {i}") for i in range(1, 8)]
    rows[0] = sft("<script>alert('x')</script>\nsecond line", "fine & dandy")
    path.write_text("\n".join(rows) + "\n")
    page_html, page, info, _ = client.predict(source=str(path), kind="auto", page=1, per_page=5,
                                              api_name="/data_browse")
    assert "page 1 of 2" in info and page == 1
    assert "&lt;script&gt;" in page_html and "<script>" not in page_html
    assert "fine &amp; dandy" in page_html and "question 5" in page_html and "question 6" not in page_html
    page_html, page, info, _ = client.predict(source=str(path), kind="auto", page=9, per_page=5,
                                              api_name="/data_browse")
    assert page == 2 and "question 7" in page_html and "question 1" not in page_html


def test_statistics_of_the_sample(client: Client):
    path = client.predict(choice="SFT conversations", api_name="/data_sample")
    status, summary, lengths, turns, roles = client.predict(source=path, kind="auto", tokenizer="tiny",
                                                            template="model", api_name="/data_stats")
    assert "rows (sft)" in status and "tokens" in status
    assert value(summary)["data"], "the summary table is empty"
    for plot in (lengths, turns, roles):
        figure = json.loads(value(plot)["plot"])
        assert figure["data"], "a figure has no traces"


def test_mask_view_highlights_the_loss_tokens(client: Client):
    path = client.predict(choice="SFT conversations", api_name="/data_sample")
    summary, warnings, html_view, status = client.predict(source=path, kind="auto", row=1, tokenizer="tiny",
                                                          template="chatml", max_length=1024,
                                                          api_name="/data_mask")
    match = re.search(r"(\d+) tokens, \*\*(\d+) carry loss", summary)
    assert match, summary
    assert 0 < int(match.group(2)) < int(match.group(1))
    assert html_view.count(LOSS_MARK) == int(match.group(2))
    assert NO_LOSS_MARK in html_view  # the prompt's tokens are there, masked
    assert status == ""
    *_, error = client.predict(source=path, kind="auto", row=10_000, tokenizer="tiny", template="chatml",
                               max_length=1024, api_name="/data_mask")
    assert error.startswith("**⚠ Row 10000 does not exist")


LOSS_MARK = 'title="carries loss"'  # lab.data.masking.mask_html marks each token box
NO_LOSS_MARK = 'title="no loss (-100)"'
