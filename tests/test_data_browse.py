"""The row browser's engine (search, filters, pages; ``lab.data.browse``), the names that stand for the lab's own
files (``lab.data.sources``), and ``python -m lab data show`` over them."""

from __future__ import annotations

import json

import pytest

from lab.data.browse import WHERE, matching, page_of
from lab.data.canonical import Row
from lab.data.pipeline import load_file
from lab.data.sources import SAMPLES, named_path, shown, source_name
from lab.data.uploads import keep
from lab.errors import LabError
from tests.test_cli_data import as_json, lab


def chat(*turns: str, system: str | None = None, context: bool = False) -> Row:
    """A conversation of alternating user/assistant turns; with ``context`` the first reply has weight 0."""
    messages = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        if context and i == 1:
            messages[-1]["weight"] = 0
    return Row({"messages": messages}, len(turns), "f.jsonl")


ROWS = [
    chat("How do I sort a list?", "Use sorted(xs)."),  # 1
    chat("Hello", "Hi", "Sort my LIST please", "Done.", context=True),  # 2: two user turns, a context reply
    chat("What is tea?", "A drink.", system="Be brief."),  # 3
    chat("How do I sort a list?", "Use sorted(xs)."),  # 4: an exact duplicate of 1
    *[chat(f"question {i}", f"answer {i}") for i in range(5, 13)],  # 5-12
]


def numbers(found) -> list[int]:
    return [number for number, _ in found]


def test_search_is_case_insensitive_over_all_text_and_rows_keep_their_numbers():
    assert numbers(matching(ROWS, search="  sort ")) == [1, 2, 4]
    assert numbers(matching(ROWS, search="brief")) == [3]  # the system prompt is searched too
    assert numbers(matching(ROWS, search="no such words")) == []


@pytest.mark.parametrize(("where", "expected"), [("all", list(range(1, 13))), ("multi-turn", [2]), ("system", [3]),
                                                 ("context", [2]), ("duplicate", [4])])
def test_each_filter_keeps_its_rows(where, expected):
    assert numbers(matching(ROWS, where=where)) == expected


def test_filters_and_search_combine_and_unknown_filters_are_named():
    assert numbers(matching(ROWS, search="sort", where="duplicate")) == [4]
    with pytest.raises(LabError, match="Unknown row filter 'long'.*multi-turn"):
        matching(ROWS, where="long")


def test_pages_are_counted_over_the_matches_and_clamped():
    page = page_of(ROWS, page=2, per_page=5)
    assert (page.page, page.pages, page.matched, page.total) == (2, 3, 12, 12)
    assert numbers(page.rows) == [6, 7, 8, 9, 10]
    last = page_of(ROWS, page=99, per_page=5, search="question")
    assert (last.page, last.pages, last.matched) == (2, 2, 8) and numbers(last.rows) == [10, 11, 12]
    assert numbers(page_of(ROWS, page=0, per_page=50).rows) == list(range(1, 13))
    empty = page_of(ROWS, search="nothing like this")
    assert (empty.page, empty.pages, empty.matched, empty.rows) == (1, 1, 0, [])
    with pytest.raises(LabError, match="Rows per page must be between 1 and 500"):
        page_of(ROWS, per_page=501)


def test_preference_rows_are_searched_on_every_side():
    rows = load_file(SAMPLES["sample:preference"]).rows
    some = rows[0].data["rejected"][0]["content"].split()[-1]
    assert 1 in numbers(matching(rows, search=some))
    assert set(numbers(matching(rows, where="multi-turn"))) < set(range(1, len(rows) + 1))


def test_sample_and_upload_names_stand_for_their_files_and_show_no_folder(home, tmp_path):
    sample = named_path("sample:sft", home)
    assert sample is not None and sample.is_file() and source_name(sample, home) == "sample:sft"
    assert named_path("/data/chats.jsonl", home) is None and named_path("owner/name", home) is None
    upload = tmp_path / "my chats.jsonl"
    upload.write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                               {"role": "assistant", "content": "b"}]}) + "\n")
    kept, _ = keep(home, upload, upload_folder=tmp_path)
    name = source_name(kept, home)
    assert name.startswith("upload:") and name.endswith("/my chats.jsonl") and str(home.root) not in name
    assert named_path(name, home) == kept
    for bad in ("upload:../../etc/passwd", "upload:0123456789ab/..", "upload:nothex"):
        with pytest.raises(LabError, match="not the name of an upload"):
            named_path(bad, home)
    with pytest.raises(LabError, match="no longer on this server"):
        named_path("upload:0123456789ab/gone.jsonl", home)
    assert shown(str(kept)) == "my chats.jsonl" and shown(name) == "my chats.jsonl"
    assert shown("owner/dataset") == "owner/dataset" and shown("campaign:7") == "campaign:7"


def test_only_a_file_in_the_upload_folder_is_kept_as_an_upload(home, tmp_path):
    """A request names its upload by path: a file outside the server's upload folder, a link in it to a file
    outside, or a folder is refused before anything is read or copied."""
    folder, outside = tmp_path / "uploads", tmp_path / "secret.jsonl"
    folder.mkdir()
    outside.write_text('{"messages": []}\n')
    (folder / "link.jsonl").symlink_to(outside)
    (folder / "sub").mkdir()
    for named in (outside, folder / "link.jsonl", folder / "sub", folder / ".." / "secret.jsonl"):
        with pytest.raises(LabError, match="did not come through the upload"):
            keep(home, named, upload_folder=folder)
    assert not home.uploads.exists() or not any(home.uploads.iterdir())


def test_cli_show_searches_filters_and_pages_a_version(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(row.data) + "\n" for row in ROWS))
    saved = lab("data", "import", str(path), "--name", "chats", "--val-fraction", "0", "--no-dedup-exact",
                "--no-dedup-near", "--json", home=tmp_path)
    assert saved.returncode == 0, saved.stderr
    found = as_json(lab("data", "show", "chats", "--search", "SORT", "--rows", "2", "--page", "2", "--json",
                        home=tmp_path))
    assert (found["matched"], found["pages"], found["page"]) == (3, 2, 2)
    assert [r["number"] for r in found["rows"]] == [4] and found["rows"][0]["source"] == "train · chats.jsonl"
    context = as_json(lab("data", "show", "chats", "--where", "context", "--json", home=tmp_path))
    assert [r["number"] for r in context["rows"]] == [2] and context["rows"][0]["messages"][1]["weight"] == 0
    human = lab("data", "show", "chats", "--where", "multi-turn", home=tmp_path)
    assert "rows 1 of 12 match" in human.stdout and "Sort my LIST" in human.stdout
    refused = lab("data", "show", "chats", "--where", "long", home=tmp_path)
    assert refused.returncode != 0 and "invalid choice: 'long'" in refused.stderr
    assert set(WHERE) <= set(lab("data", "show", "--help", home=tmp_path).stdout.replace(":", " ").split())


def test_cli_reads_samples_by_name_and_refuses_a_second_kind_under_one_name(tmp_path):
    report = as_json(lab("data", "check", "sample:preference", "--json", home=tmp_path))
    assert report["kind"] == "preference" and report["source"] == "preference.jsonl"
    assert lab("data", "import", "sample:sft", "--name", "mixed", home=tmp_path).returncode == 0
    refused = lab("data", "import", "sample:preference", "--name", "mixed", "--json", home=tmp_path)
    assert refused.returncode == 1
    assert "'mixed' holds SFT data" in as_json(refused)["error"] and "'mixed-preference'" in as_json(refused)["error"]
