"""The Data tab through its API (``gradio_client`` against the real app): each new file starts a clean form, one
name holds one kind, no server path is shown, the row browser searches, filters and pages, and a save updates the
pickers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.app_server import AppServer
from tests.test_app import value


@pytest.fixture()
def client(lab_app: AppServer) -> Client:
    return Client(lab_app.url, verbose=False)


def check(client: Client, source: str) -> dict:
    """data_check's outputs by what they are (the name box is the last one)."""
    from lab.ui.data_tab import MAPPING_TARGETS

    out = client.predict(source=source, kind="auto", api_name="/data_check")
    n = len(MAPPING_TARGETS)  # one column-mapping dropdown per field a column can feed, before the rest
    return {"status": out[0], "errors": out[1], "explore": out[2 + n], "clean": out[3 + n], "save": out[7 + n],
            "card": out[8 + n], "name": out[-1]}


def import_as(client: Client, source: str, name: str) -> tuple:
    return client.predict(source=source, kind="auto", name=name, skip_invalid=True, api_name="/data_import")


def chats(path: Path, n: int, *, extra: list[dict] | None = None) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"question {i}"},
                          {"role": "assistant", "content": f"answer {i}"}]} for i in range(1, n + 1)] + (extra or [])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_new_file_resets_the_form_and_one_name_holds_one_kind(client: Client, tmp_path: Path):
    sft = check(client, client.predict(choice="SFT conversations", api_name="/data_sample"))
    assert sft["name"] == "sft" and "**Kind** sft" in sft["status"] and value(sft["explore"]) == "sample:sft"
    status, *_ = import_as(client, "sample:sft", "flow-chats")
    assert "Saved **flow-chats@" in status

    # The preference sample next: a name of its own, and nothing of the SFT file's save left on screen.
    preference = check(client, client.predict(choice="Preference pairs", api_name="/data_sample"))
    assert preference["name"] == "preference" and "**Kind** preference" in preference["status"]
    assert preference["save"] == "" and preference["card"] == ""
    assert preference["clean"].startswith("Nothing is removed")

    refused, *_ = import_as(client, "sample:preference", "flow-chats")
    assert "the name 'flow-chats' holds SFT data" in refused and "'flow-chats-preference'" in refused
    # Checking the same file again leaves the name box as it is; a file whose name holds the other kind gets another.
    assert not isinstance(check(client, "sample:preference")["name"], str)
    path = chats(tmp_path / "flow-chats.jsonl", 3)
    pref_path = tmp_path / "flow-chats.csv"
    pref_path.write_text("prompt,chosen,rejected\nWhy?,Because.,No.\n")
    assert check(client, str(pref_path))["name"] == "flow-chats-preference"
    assert check(client, str(path))["name"] == "flow-chats"
    # A file typed over the checked one is checked before it is previewed or saved.
    unchecked, *_ = import_as(client, str(pref_path), "flow-chats")
    assert "Press Check file first" in unchecked and "flow-chats.jsonl" in unchecked and str(tmp_path) not in unchecked
    preview, *_ = client.predict(source=str(pref_path), kind="auto", api_name="/data_preview_cleaning")
    assert "Press Check file first" in preview


def test_an_unreadable_file_clears_the_previous_files_results(client: Client, tmp_path: Path):
    good = check(client, str(chats(tmp_path / "good.jsonl", 3, extra=[{"messages": []}])))
    assert "1 invalid row" in good["status"] and good["errors"]["visible"] is True
    bad = check(client, str(tmp_path / "missing-file.jsonl"))
    assert bad["status"].startswith("**⚠") and "no such file" in bad["status"]
    assert bad["errors"]["visible"] is False and bad["name"] == "missing-file"


def test_uploads_and_cards_show_file_names_never_server_paths(client: Client, tmp_path: Path,
                                                             lab_app: AppServer):
    upload = chats(tmp_path / "team chats.jsonl", 4)
    out = client.predict(upload=handle_file(str(upload)), kind="auto", api_name="/data_upload")
    box, status, name = out[0], out[1], out[-1]
    assert re.fullmatch(r"upload:[0-9a-f]{12}/team chats\.jsonl", box), box
    assert "team chats.jsonl" in status and name == "team-chats"
    for text in map(str, out):
        assert str(lab_app.home) not in text and "/tmp/" not in text, text
    saved = import_as(client, box, "team-chats")
    ref = value(saved[4])
    card, *_ = client.predict(ref=ref, api_name="/data_version_card")
    assert "**Source** `team chats.jsonl`" in card and str(lab_app.home) not in card
    # The upload's name opens it in Explore, whose rows name the file, not where the server keeps it.
    rows_html, *_ = client.predict(source=box, kind="auto", page=1, api_name="/data_browse")
    assert "team chats.jsonl line 1" in rows_html and str(lab_app.home) not in rows_html


def test_save_updates_the_version_and_explore_pickers(client: Client, tmp_path: Path):
    status, card, table, picker, explore = import_as(client, str(chats(tmp_path / "picked.jsonl", 5)), "picked")
    ref = re.search(r"Saved \*\*(picked@[0-9a-f]+)\*\*", status).group(1)
    assert f"### {ref}" in card
    assert picker["value"] == ref and ref in [v for _label, v in picker["choices"]]
    label = next(label for label, v in picker["choices"] if v == ref)
    assert label.startswith(f"picked@{ref.split('@')[1][:8]} · sft · ")  # by name, as lab.catalog labels it
    assert explore["value"] == ref and {ref, "sample:sft"} <= {v for _label, v in explore["choices"]}
    assert table["data"][0][0] == ref  # newest first


def test_row_browser_searches_filters_and_pages(client: Client, tmp_path: Path):
    weighted = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hm.", "weight": 0},
                             {"role": "user", "content": "The NEEDLE here"}, {"role": "assistant", "content": "Ok."}]}
    path = str(chats(tmp_path / "browse.jsonl", 30, extra=[weighted]))
    html, page, info, _ = client.predict(source=path, kind="auto", page=2, per_page=25, api_name="/data_browse")
    assert page == 2 and "page 2 of 2 · 31 rows" in info and "Row 26 of 31" in html and "Row 25 of" not in html
    html, page, info, _ = client.predict(source=path, kind="auto", page=1, search="needle", api_name="/data_browse")
    assert "1 of 31 rows match" in info and "Row 31 of 31" in html
    assert '<mark style="background:#fde68a;">NEEDLE</mark>' in html
    html, _, info, _ = client.predict(source=path, kind="auto", page=1, where="context", api_name="/data_browse")
    assert "1 of 31 rows match" in info and "weight 0: context" in html
    html, _, info, _ = client.predict(source=path, kind="auto", page=1, search="no such text", api_name="/data_browse")
    assert "0 of 31 rows match" in info and "No row matches" in html
    status, *_ = import_as(client, path, "browsed")
    ref = re.search(r"Saved \*\*(browsed@[0-9a-f]+)\*\*", status).group(1)
    html, _, info, _ = client.predict(source=ref, kind="auto", page=1, per_page=50, where="multi-turn",
                                      api_name="/data_browse")
    assert "1 of 31 rows match" in info and "NEEDLE" in html
