"""Answers written to take over the labeling page, in a real browser: each shows as its text inside its answer box,
nothing it holds covers the page or takes the clicks, and an image in an answer is not fetched (it would tell its
author who labels, and when). The answers are the ones a probe got past the earlier, regex-based escape."""

from __future__ import annotations

import json

import pytest

from lab.config import CampaignConfig
from lab.home import lab_home
from lab.label import campaigns
from tests.test_browser import CHROMIUM, browser, you_voted  # noqa: F401 - fixtures
from tests.test_hostile_probes import BYPASSES

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect
TRACKER = "http://tracker.invalid/pixel.png"


def test_answers_cannot_cover_the_labeling_page_or_fetch_images(browser, lab_app, tmp_path):  # noqa: F811
    answers = [*BYPASSES.values(), f"Fine. ![t]({TRACKER}?who)"]
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "model": answer}) + "\n"
                            for i, answer in enumerate(answers)))
    campaigns.create_campaign(CampaignConfig(name="hostile-answers", mode="thumbs", sources="", votes_per_pair=1,
                                             responses_file=str(path)), home=lab_home(lab_app.home))
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(lab_app.url + "label/")  # the newest open campaign is chosen, and its first answer shown, on load
    for voted in range(len(answers)):
        page.get_by_text(you_voted(voted)).wait_for()
        answer = page.locator("#lab-answer-a")
        shown = answer.inner_text()
        assert shown.strip(), "an answer shows"
        # Whatever the answer holds stays inside its box: the page's centre is the page's, not an answer's overlay.
        covering = page.evaluate("""() => {
            const el = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
            const box = document.getElementById('lab-answer-a');
            return el && !box.contains(el) && (el.textContent || '').includes('THIS IS THE ONLY ANSWER');
        }""")
        assert not covering, shown
        placed = page.evaluate("""() => [...document.querySelectorAll('#lab-answer-a *')].filter(
            (el) => getComputedStyle(el).position === 'fixed').length""")
        assert placed == 0 and page.locator("#lab-answer-a form, #lab-answer-a img, #lab-answer-a input").count() == 0
        if "THIS IS THE ONLY ANSWER" in shown:  # items are served in the campaign's own order, not the file's
            assert "<div" in shown  # the HTML is there, as its characters
        page.locator("#lab-vote-up").click()
    page.get_by_text(you_voted(len(answers))).wait_for()
    assert not [url for url in fetched if url.startswith(TRACKER)]
    context.close()
