"""The labeling loop in a real browser with sign-in on: an admin creates a campaign from an uploaded file, two
labelers in separate browser contexts vote by keyboard at /label (one skips a pair, which comes back to her last,
and undoes a vote), the answers sit side by side in boxes of one height, the vote buttons turn off when nothing is
left, and "Train DPO on this" fills the Train tab. Screenshots go to ``$LAB_SCREENSHOTS`` (else a temporary
folder)."""

from __future__ import annotations

import json
import re

import pytest

from tests.app_server import start_app_with_accounts
from tests.test_browser import (  # noqa: F401
    CHROMIUM,
    browser,
    choose,
    fill_checked,
    open_new_campaign,
    shots,
    snap,
    tab,
    upload_checked,
    wait_for_created,
    you_voted,
)
from tests.test_browser import signed_in_page as signed_in_as

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect
PASSWORDS = {"boss": "admin password", "ann": "ann password", "bob": "bob password"}
ACCOUNTS = {"boss": ("admin", PASSWORDS["boss"]), "ann": ("labeler", PASSWORDS["ann"]),
            "bob": ("labeler", PASSWORDS["bob"])}
LONG = ("Thank you for asking! Here is how:\n\n1. Add the numbers.\n2. Check the sum.\n\n```python\ndef add(a, b):\n"
        "    return a + b\n```\n\n" + "More detail on every step. " * 120)


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    yield from start_app_with_accounts(tmp_path_factory.mktemp("label-browser") / "home", ACCOUNTS)


def signed_in_page(browser, url: str, name: str):  # noqa: F811
    return signed_in_as(browser, url, name, PASSWORDS[name])


def answers_file(tmp_path) -> str:
    rows = [{"prompt": f"Question {i}: what is {i} + {i}?", "base": f"{2 * i}.",
             "tuned": LONG if i == 0 else f"**{2 * i}**. Thank you for asking!"} for i in range(6)]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def vote_by_key(page, key: str) -> None:
    page.locator("body").click(position={"x": 5, "y": 5})  # focus off any input, as a labeler's page is
    page.keyboard.press(key)


def better(page) -> str:
    return "1" if "Thank you" in page.locator("#lab-answer-a").inner_text() else "2"


def test_two_labelers_skip_undo_and_finish_then_dpo_is_proposed(browser, signed_app, shots, tmp_path):  # noqa: F811
    admin = signed_in_page(browser, signed_app.url, "boss")
    tab(admin, "Label").click()
    admin.get_by_text("No campaign yet: create one below").wait_for()  # a lab with no campaign says so, form open
    open_new_campaign(admin)
    # A textbox's accessible name includes its help text, hence the anchored patterns.
    upload_checked(admin, "#lab-responses_file", answers_file(tmp_path))  # uploaded before Create reads it
    fill_checked(admin.get_by_label("Votes per pair", exact=True), "2")
    admin.get_by_role("textbox", name=re.compile(r"^Guidelines\b")).fill("Prefer the **correct** answer; then the "
                                                                        "politer one.")
    admin.keyboard.press("Tab")
    # The name last, and checked: on a busy machine the form's boxes mount late, and an early fill was lost (CI).
    name_box = admin.get_by_role("textbox", name=re.compile(r"^Name\b")).filter(visible=True).first
    name_box.fill("browser-loop")
    expect(name_box).to_have_value("browser-loop")
    admin.get_by_role("button", name="Create campaign").click()
    wait_for_created(admin, "browser-loop", shots)
    admin.get_by_text("open for labeling · 0/12 votes").wait_for()
    snap(admin, shots, "30-label-campaign-created")

    ann = signed_in_page(browser, signed_app.url + "label/", "ann")
    bob = signed_in_page(browser, signed_app.url + "label/", "bob")
    for page in (ann, bob):  # the newest open campaign is chosen, and its first pair shown, on load
        page.get_by_text(you_voted(0)).wait_for()
    skipped = ann.locator(".block.lab-prompt").inner_text()
    snap(ann, shots, "31-label-pair")
    a_box, b_box = ann.locator("#lab-answer-a").bounding_box(), ann.locator("#lab-answer-b").bounding_box()
    assert a_box["y"] == b_box["y"] and a_box["height"] == b_box["height"], (a_box, b_box)  # side by side, aligned

    vote_by_key(ann, "s")
    ann.get_by_text("Skipped").wait_for()
    vote_by_key(ann, better(ann))
    expect(ann.get_by_text(you_voted(1))).to_be_visible()
    vote_by_key(ann, "u")  # undo: the pair comes back, the vote is retracted
    ann.get_by_text("Your last vote is undone").wait_for()
    expect(ann.get_by_text(you_voted(0))).to_be_visible()
    snap(ann, shots, "32-label-undone")
    ann.get_by_label("Show the answers as raw text").check()
    ann.get_by_text("Your last vote is undone").wait_for(state="detached")
    snap(ann, shots, "33-label-raw")
    ann.get_by_label("Show the answers as raw text").uncheck()

    for expected in range(1, 7):
        vote_by_key(bob, better(bob))
        expect(bob.get_by_text(you_voted(expected))).to_be_visible()
    expect(bob.locator("#lab-vote-a")).to_be_disabled()

    for expected in range(1, 7):
        if expected == 6:
            # The skipped pair came back last (waited for: the block shows Gradio's pending timer while it updates).
            expect(ann.locator(".block.lab-prompt")).to_have_text(skipped)
        vote_by_key(ann, better(ann))
        expect(ann.get_by_text(you_voted(expected))).to_be_visible()
    ann.get_by_text("campaign 100% (12/12 votes)").wait_for()
    for button in ("#lab-vote-a", "#lab-vote-b", "#lab-vote-tie", "#lab-vote-both_bad", "#lab-skip"):
        expect(ann.locator(button)).to_be_disabled()
    expect(ann.locator("#lab-prompt")).to_contain_text("Nothing left for you")  # said once, the answers hidden
    expect(ann.locator("#lab-answer-a")).to_be_hidden()
    expect(ann.get_by_text("Nothing left for you")).to_have_count(1)
    snap(ann, shots, "34-label-nothing-left")

    admin.get_by_text("every vote is in").wait_for(timeout=15_000)  # the state line follows the campaign
    admin.get_by_text("Leader: tuned").wait_for()
    admin.get_by_role("button", name="Export", exact=True).click()
    admin.get_by_text("Exported labels-browser-loop@").wait_for()
    choose(admin, "Policy to train with DPO", "tiny (built-in test model)")  # the campaign's answers came from a file
    admin.get_by_role("button", name="Train DPO on this").click()
    # The proposal reads the model's size (transformers loads on the first call): seconds, not milliseconds.
    expect(tab(admin, "Train")).to_have_attribute("aria-selected", "true", timeout=60_000)
    admin.get_by_text("optimizer step").filter(visible=True).first.wait_for()  # the proposal, in a toast
    expect(admin.get_by_label("Dataset", exact=True).filter(visible=True).first).to_have_value(
        re.compile(r"^labels-browser-loop@"))
    snap(admin, shots, "35-train-dpo-proposed")
