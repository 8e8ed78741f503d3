"""A tool-call file in the Data tab, in a real browser: it imports, and the loss mask trains on the assistant's call
and reply but not on the tool's result. Screenshots go where ``tests/test_browser.py`` puts them."""

from __future__ import annotations

import pytest

from lab.data.samples import SAMPLES_DIR
from tests.test_browser import CHROMIUM, browser, page, shots, snap, tab  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


def test_a_tool_call_file_imports_and_its_loss_mask_leaves_out_the_results(page, shots):  # noqa: F811
    box = page.get_by_label("… or a local path or Hugging Face dataset id")
    box.fill(str(SAMPLES_DIR / "sample-tools.jsonl"))
    box.press("Enter")
    page.locator(".lab-status").filter(has_text="Valid rows").first.wait_for()
    page.get_by_placeholder("e.g. support-chats").fill("weather-tools")
    page.get_by_role("button", name="Save version").click()
    page.get_by_text("Saved weather-tools@").first.wait_for()
    tab(page, "Explore").click()
    tab(page, "Rows").click()
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("page 1 of").wait_for()
    snap(page, shots, "tools-01-rows")
    tab(page, "Loss mask").click()
    page.get_by_role("button", name="Show loss mask").click()
    page.locator(".lab-mask").wait_for()
    trained = "".join(page.locator('.lab-mask span[title="carries loss"]').all_inner_texts())
    masked = "".join(page.locator('.lab-mask span[title="no loss (-100)"]').all_inner_texts())
    assert "tool_call" in trained and "get_weather" in trained and "Paris·right·now" in trained, trained
    assert "sunny" not in trained.split("</tool_call>")[0] and "temperature" not in trained, trained
    assert "tool_response" in masked and "temperature" in masked
    snap(page, shots, "tools-02-loss-mask")
