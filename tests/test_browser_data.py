"""The Data tab in a real browser: a new file resets the form, no server path is shown, long steps say what they
do while they work, the row browser searches, filters and pages, and the pickers list what exists now.

Screenshots go where ``tests/test_browser.py`` puts them (``$LAB_SCREENSHOTS``)."""

from __future__ import annotations

import json
import re

import pytest

from lab.data.browse import WHERE, matching
from lab.data.pipeline import load_file
from lab.data.sources import SAMPLES
from tests.app_server import AppServer
from tests.test_browser import CHROMIUM, browser, choose, page, shots, snap, tab  # noqa: F401 - fixtures
from tests.test_cli_data import lab

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect

NAME_BOX = "e.g. support-chats"
PATH_BOX = "… or a local path or Hugging Face dataset id"
# Records every text the page shows while a handler works, so a progress message that lasts a moment is seen.
WATCH = """() => { window.seen = []; new MutationObserver(() => window.seen.push(document.body.innerText))
                   .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def status_with(page, text: str):  # noqa: F811
    return page.locator(".lab-status").filter(has_text=text).first


def test_each_file_starts_a_clean_form_and_one_name_holds_one_kind(page, shots, tmp_path,  # noqa: F811
                                                                   lab_app: AppServer):
    page.get_by_role("button", name="Load sample").click()
    status_with(page, "Kind sft").wait_for()
    expect(page.get_by_placeholder(NAME_BOX)).to_have_value("sft")
    expect(page.get_by_label(PATH_BOX)).to_have_value("sample:sft")
    page.get_by_role("button", name="Preview cleaning").click()
    page.get_by_text("Cleaning would keep").wait_for()
    page.get_by_placeholder(NAME_BOX).fill("reset-sft")
    page.get_by_role("button", name="Save version").click()
    page.get_by_text("Saved reset-sft@").first.wait_for()
    snap(page, shots, "40-data-sft-sample-saved")

    choose(page, "… or a bundled sample", "Preference pairs")
    page.get_by_role("button", name="Load sample").click()
    status_with(page, "Kind preference").wait_for()
    expect(page.get_by_placeholder(NAME_BOX)).to_have_value("preference")  # never the SFT dataset's name
    expect(page.get_by_text("Saved reset-sft@")).to_have_count(0)  # the last file's success is gone
    expect(page.get_by_text("Cleaning would keep")).to_have_count(0)  # and its preview
    snap(page, shots, "41-data-preference-after-sft")

    page.get_by_placeholder(NAME_BOX).fill("reset-sft")
    page.get_by_role("button", name="Save version").click()
    refusal = page.get_by_text("the name 'reset-sft' holds SFT data").first
    refusal.wait_for()
    assert "'reset-sft-preference'" in refusal.inner_text()
    snap(page, shots, "42-data-one-name-one-kind")

    upload = tmp_path / "team chats.jsonl"
    upload.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                       {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                              for i in range(3)))
    page.locator("input[type=file]").first.set_input_files(str(upload))
    status_with(page, "team chats.jsonl").wait_for()
    expect(page.get_by_placeholder(NAME_BOX)).to_have_value("team-chats")
    expect(page.get_by_label(PATH_BOX)).to_have_value(re.compile(r"^upload:[0-9a-f]{12}/team chats\.jsonl$"))
    expect(page.locator(".lab-status").filter(has_text="one name holds one kind")).to_have_count(0)  # toasts fade
    page.get_by_role("button", name="Save version").click()
    page.get_by_text("Saved team-chats@").first.wait_for()
    tab(page, "Versions").click()
    page.locator("code", has_text="team chats.jsonl").filter(visible=True).first.wait_for()  # the card's source
    text = page.locator("body").inner_text()
    assert str(lab_app.home) not in text and "/tmp/" not in text and "/uploads/" not in text
    snap(page, shots, "43-data-upload-after-sample-card")


def test_statistics_and_the_cleaning_preview_say_what_they_are_doing(page, shots):  # noqa: F811
    page.get_by_role("button", name="Load sample").click()
    status_with(page, "Kind sft").wait_for()
    page.evaluate(WATCH)
    page.get_by_label("Min tokens", exact=True).fill("3")  # a token filter: the preview loads a tokenizer
    page.keyboard.press("Tab")
    page.get_by_role("button", name="Preview cleaning").click()
    page.get_by_text("Cleaning would keep").wait_for(timeout=60_000)
    seen = "\n".join(page.evaluate("window.seen"))
    assert "Previewing the cleaning of sample:sft…" in seen, seen[-2000:]  # at once; each step's progress over it

    tab(page, "Explore").click()
    page.evaluate(WATCH)
    page.get_by_role("button", name="Compute statistics").click()
    page.get_by_text("Statistics of").wait_for(timeout=60_000)
    seen = "\n".join(page.evaluate("window.seen"))
    assert "Computing statistics of sample:sft…" in seen, seen[-2000:]
    snap(page, shots, "44-data-statistics-done")


def test_row_browser_searches_filters_and_pages(page, shots):  # noqa: F811
    rows = load_file(SAMPLES["sample:sft"]).rows
    tab(page, "Explore").click()
    choose(page, "Dataset", "sample:sft (bundled sample)")
    tab(page, "Rows").click()
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("page 1 of 40 · 400 rows").wait_for()
    choose(page, "Rows per page", "25")
    page.get_by_text("page 1 of 16 · 400 rows").wait_for()
    assert page.get_by_text(re.compile(r"^Row \d+ of 400")).count() == 25
    system = len(matching(rows, where="system"))
    choose(page, "Show", WHERE["system"].label)
    page.get_by_text(f"page 1 of {-(-system // 25)} · {system} of 400 rows match").wait_for()
    search = page.get_by_label("Search")
    search.fill("LIST")
    search.press("Enter")
    found = len(matching(rows, search="list", where="system"))
    assert 0 < found < system
    page.get_by_text(f"page 1 of 1 · {found} of 400 rows match").wait_for()
    assert page.locator("mark").filter(has_text=re.compile("^list$", re.IGNORECASE)).count() >= found
    snap(page, shots, "45-data-rows-search-filter")


def test_pickers_list_versions_saved_elsewhere_when_the_tab_is_shown(page, shots, tmp_path,  # noqa: F811
                                                                    lab_app: AppServer):
    saved = lab("data", "import", "sample:sft", "--name", "made-by-cli", "--max-rows", "20", home=lab_app.home)
    assert saved.returncode == 0, saved.stderr
    tab(page, "Train").click()
    tab(page, "Data").click()
    tab(page, "Versions").click()
    page.get_by_label("Version", exact=True).filter(visible=True).click()
    page.get_by_role("option", name=re.compile(r"^made-by-cli@")).first.wait_for()
    snap(page, shots, "46-data-versions-picker")
    page.keyboard.press("Escape")
    tab(page, "Explore").click()
    page.get_by_label("Dataset", exact=True).filter(visible=True).click()
    page.get_by_role("option", name=re.compile(r"^made-by-cli@")).first.wait_for()
