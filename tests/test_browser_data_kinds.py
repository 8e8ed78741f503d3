"""The Data tab in a real browser with the kinds beyond SFT and preference: the unpaired sample saved as a version
shows its completions under 👍/👎 in the row browser, filters on the label and counts labels in the statistics; the
prompts sample shows its reference answers. Screenshots go where ``tests/test_browser.py`` puts them."""

from __future__ import annotations

import pytest

from lab.ui.data_tab import sample_label
from tests.test_browser import CHROMIUM, browser, choose, page, shots, snap, tab  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


def status_with(page, text: str):  # noqa: F811
    return page.locator(".lab-status").filter(has_text=text).first


def test_an_unpaired_version_and_the_prompts_sample_in_the_row_browser(page, shots):  # noqa: F811
    choose(page, "… or a bundled sample", sample_label("sample:unpaired"))
    page.get_by_role("button", name="Load sample").click()
    status_with(page, "Kind unpaired").wait_for()
    page.get_by_placeholder("e.g. support-chats").fill("thumbs")
    page.get_by_role("button", name="Save version").click()
    page.get_by_text("Saved thumbs@").first.wait_for()

    tab(page, "Explore").click()
    page.get_by_role("button", name="Compute statistics").click()
    status_with(page, "👍 desirable (50%)").wait_for()
    tab(page, "Rows").click()
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("👍 DESIRABLE", exact=True).first.wait_for()  # exact: the charts name the labels in lowercase
    snap(page, shots, "60-data-unpaired-version-rows")
    assert page.get_by_text("👎 UNDESIRABLE", exact=True).first.is_visible()
    assert page.get_by_text("thumbs@").filter(visible=True).count()  # the page line names the saved version
    snap(page, shots, "60-data-unpaired-version-rows")
    choose(page, "Show", "labelled 👎 undesirable (unpaired)")
    page.get_by_text("rows match").first.wait_for()
    assert page.get_by_text("👍 DESIRABLE", exact=True).count() == 0
    snap(page, shots, "61-data-unpaired-undesirable-only")

    tab(page, "Import").click()
    choose(page, "… or a bundled sample", sample_label("sample:prompts"))
    page.get_by_role("button", name="Load sample").click()
    status_with(page, "Kind prompts").wait_for()
    tab(page, "Explore").click()
    tab(page, "Rows").click()
    choose(page, "Show", "all rows")
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("REFERENCE ANSWER", exact=True).first.wait_for()
    snap(page, shots, "62-data-prompts-sample-rows")
