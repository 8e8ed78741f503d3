"""The thumbs labeling page in a real browser: one answer alone (no B column, no A/B/tie buttons), 👍/👎 by the
keys 1 and 2 and by the buttons, undo by u, and the buttons off once nothing is left. Screenshots go to
``$LAB_SCREENSHOTS`` (else a temporary folder)."""

from __future__ import annotations

import re

import pytest

from lab.config import CampaignConfig
from lab.home import lab_home
from lab.label import campaigns
from tests.test_browser import CHROMIUM, browser, shots, snap, you_voted  # noqa: F401 - fixtures
from tests.test_label_thumbs import REFUSAL, thumbs_file

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect


def press(page, key: str) -> None:
    page.locator("body").click(position={"x": 5, "y": 5})  # focus off any input, as a labeler's page is
    page.keyboard.press(key)


def thumb_key(page) -> str:
    return "2" if REFUSAL in page.locator("#lab-answer-a").inner_text() else "1"


def test_thumbs_page_votes_by_keys_and_buttons(browser, lab_app, shots, tmp_path):  # noqa: F811
    campaigns.create_campaign(CampaignConfig(name="thumbs-page", mode="thumbs", sources="", votes_per_pair=1,
                                             responses_file=thumbs_file(tmp_path, 2), guidelines="👍 a helpful answer."),
                              home=lab_home(lab_app.home))
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(lab_app.url + "label/")  # the newest open campaign is chosen, and its first answer shown, on load
    page.get_by_role("heading", name="Is this answer good?").wait_for()
    page.get_by_text(you_voted(0)).wait_for()
    for hidden in ("#lab-answer-b", "#lab-vote-a", "#lab-vote-b", "#lab-vote-tie", "#lab-vote-both_bad"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#lab-vote-up")).to_be_enabled()
    expect(page.locator("#lab-vote-up")).to_have_text("👍 Good")  # its key drawn beside the text: [1]
    expect(page.locator("#lab-vote-up")).to_have_class(re.compile(r"\blab-key-1\b"))
    expect(page.locator("#lab-vote-down")).to_have_text("👎 Bad")
    expect(page.locator("#lab-vote-down")).to_have_class(re.compile(r"\blab-key-2\b"))
    snap(page, shots, "thumbs-page")

    first = page.locator("#lab-answer-a").inner_text()
    press(page, thumb_key(page))
    expect(page.get_by_text(you_voted(1))).to_be_visible()
    press(page, "u")  # undo: the same answer comes back, the vote is retracted
    page.get_by_text("Your last vote is undone").wait_for()
    expect(page.get_by_text(you_voted(0))).to_be_visible()
    assert page.locator("#lab-answer-a").inner_text() == first
    for expected in range(1, 5):  # buttons this time
        good = REFUSAL not in page.locator("#lab-answer-a").inner_text()
        page.locator("#lab-vote-up" if good else "#lab-vote-down").click()
        expect(page.get_by_text(you_voted(expected))).to_be_visible()
    for button in ("#lab-vote-up", "#lab-vote-down", "#lab-skip"):
        expect(page.locator(button)).to_be_disabled()
    expect(page.locator("#lab-prompt")).to_contain_text("Nothing left for you")
    expect(page.locator("#lab-answer-a")).to_be_hidden()
    snap(page, shots, "thumbs-page-done")
    context.close()
