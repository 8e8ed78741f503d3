"""The labeler's view of a graded campaign with a rubric and aspects, in a real browser with sign-in on: an admin
creates it from an uploaded responses file in the New campaign form; a labeler at /label first sees the
introduction (guidelines, rubric, keys) with the pair held back behind it, starts, opens the rubric beside the pair,
votes by the keys 1-6 (one vote with two aspects rated, the focus left on an aspect's radio button), and the store
holds each vote's strength and aspects by source. A second labeler reads the same pages in a window 900 px wide.
Screenshots go to ``$LAB_SCREENSHOTS`` (else a temporary folder)."""

from __future__ import annotations

import json
import re

import pytest

from lab.home import lab_home
from lab.label.campaigns import list_campaigns
from lab.label.results import campaign_votes
from tests.app_server import start_app_with_accounts
from tests.test_browser import (  # noqa: F401
    CHROMIUM,
    TIMEOUT_MS,
    browser,
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
from tests.test_label import responses_file

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect
PASSWORDS = {"boss": "admin password", "ann": "ann password", "bob": "bob password"}
ACCOUNTS = {name: ("admin" if name == "boss" else "labeler", password) for name, password in PASSWORDS.items()}
GUIDELINES = "Prefer the **correct** answer; then the politer one."
RUBRIC = ("**A ≫ B**: A is correct and B is wrong.\n\n**A > B**: both are correct; A is clearer or kinder.\n\n"
          "**Tie**: no difference that matters.\n\n"
          + "\n".join(f"- Example {i}: *What is {i} + {i}?* — '{2 * i}.' beats '{2 * i + 1}.'" for i in range(40)))
ASPECTS = ("helpful", "follows instructions")
# The keys 1-6 and what each records: (choice as shown, strength).
KEYS = {"1": ("a", 2), "2": ("a", 1), "3": ("tie", None), "4": ("b", 1), "5": ("b", 2), "6": ("both_bad", None)}


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    yield from start_app_with_accounts(tmp_path_factory.mktemp("label-flywheel-browser") / "home", ACCOUNTS)


def labeler_page(browser, url: str, name: str, width: int = 1400):  # noqa: F811
    """A labeler's own browser window at /label, signed in; ``width`` px wide."""
    return signed_in_as(browser, url + "label/", name, PASSWORDS[name], width)


def create_graded_campaign(admin, shots, tmp_path) -> None:  # noqa: F811
    tab(admin, "Label").click()
    open_new_campaign(admin)
    # A textbox's accessible name includes its help text, hence the anchored patterns.
    upload_checked(admin, "#lab-responses_file", responses_file(tmp_path, 6))  # uploaded before Create
    fill_checked(admin.get_by_label("Votes per pair", exact=True), "2")
    fill_checked(admin.get_by_role("textbox", name=re.compile(r"^Guidelines\b")), GUIDELINES)
    admin.get_by_text("Labeling: rubric, graded and per-aspect votes").click()
    fill_checked(admin.get_by_role("textbox", name=re.compile(r"^Rubric\b")), RUBRIC)
    admin.get_by_role("checkbox", name=re.compile(r"^Graded\b")).check()
    fill_checked(admin.get_by_role("textbox", name=re.compile(r"^Aspects\b")), ", ".join(ASPECTS))
    admin.get_by_text("Quality: which pair next, gold pairs, extra votes, the LLM judge").click()  # shown, as set
    # The name last, and checked: on a busy machine the form's boxes mount late, and an early fill was lost (CI).
    fill_checked(admin.get_by_role("textbox", name=re.compile(r"^Name\b")).filter(visible=True).first, "graded-page")
    expect(admin.get_by_role("textbox", name=re.compile(r"^Rubric\b"))).to_have_value(RUBRIC)  # still, at Create
    snap(admin, shots, "E1-new-campaign-form")
    admin.get_by_role("button", name="Create campaign").click()
    wait_for_created(admin, "graded-page", shots)


def test_graded_campaign_with_rubric_and_aspects_from_the_labelers_page(browser, signed_app, shots,  # noqa: F811
                                                                        tmp_path):
    admin = signed_in_as(browser, signed_app.url, "boss", PASSWORDS["boss"])
    create_graded_campaign(admin, shots, tmp_path)
    home = lab_home(signed_app.home)
    campaign = next(c for c in list_campaigns(home) if c.name == "graded-page")
    assert campaign.config["graded"] is True and campaign.config["aspects"] == ", ".join(ASPECTS)

    ann = labeler_page(browser, signed_app.url, "ann")
    ann.get_by_role("heading", name="Which answer is better, and by how much?").wait_for()
    intro = ann.locator("#lab-intro")
    # the intro shows once the page's load events have run: seconds on a busy 2-core machine, past expect's 5 s
    expect(intro).to_contain_text("Before you start: graded-page", timeout=TIMEOUT_MS)
    expect(intro).to_contain_text("Prefer the correct answer")
    expect(intro).to_contain_text("A ≫ B: A is correct and B is wrong.")
    expect(intro).to_contain_text("1 (A ≫ B), 2 (A > B), 3 (Tie), 4 (B > A), 5 (B ≫ A), 6 (Both bad)")
    expect(ann.locator("#lab-vote-a2")).to_be_hidden()  # the pair waits behind the introduction
    snap(ann, shots, "E2-intro")
    ann.locator("body").click(position={"x": 5, "y": 5})
    ann.keyboard.press("1")  # no visible vote button: a key does nothing
    ann.get_by_role("button", name="Start labeling").click()

    expect(ann.locator("#lab-vote-a2")).to_be_visible()
    expect(intro).to_be_hidden()
    for button, label, key in (("a2", "A ≫ B", 1), ("a1", "A > B", 2), ("tie", "Tie", 3), ("b1", "B > A", 4),
                               ("b2", "B ≫ A", 5), ("both_bad", "Both bad", 6)):  # the key is drawn beside the text
        expect(ann.locator(f"#lab-vote-{button}")).to_have_text(label)
        expect(ann.locator(f"#lab-vote-{button}")).to_have_class(re.compile(rf"\blab-key-{key}\b"))
        expect(ann.locator(f"#lab-vote-{button}")).to_be_enabled()
    for hidden in ("#lab-vote-a", "#lab-vote-b", "#lab-vote-up"):
        expect(ann.locator(hidden)).to_be_hidden()
    expect(ann.get_by_text(you_voted(0))).to_be_visible()
    expect(ann.locator(".block.lab-guidelines")).to_contain_text("Prefer the correct answer")
    ann.locator("#lab-rubric").get_by_text("Rubric").click()  # the rubric beside the pair, closed until asked for
    expect(ann.locator("#lab-rubric")).to_contain_text("A > B: both are correct")
    snap(ann, shots, "E3-pair-rubric-open")
    ann.locator("#lab-rubric").get_by_text("Rubric").first.click()

    for i, aspect in enumerate(ASPECTS):
        expect(ann.locator(f"#lab-aspect-{i}")).to_contain_text(aspect)
    expect(ann.locator("#lab-aspect-2")).to_be_hidden()
    ann.locator("#lab-aspect-0").get_by_label("B", exact=True).check()
    ann.locator("#lab-aspect-1").get_by_label("Tie", exact=True).check()  # the focus stays on this radio button
    snap(ann, shots, "E4-aspects-rated")
    for expected, key in enumerate(KEYS, start=1):
        ann.keyboard.press(key)
        expect(ann.get_by_text(you_voted(expected))).to_be_visible()
        if expected == 1:  # the aspects are cleared for the next pair
            expect(ann.locator("#lab-aspect-0").get_by_label("–", exact=True)).to_be_checked()
            snap(ann, shots, "E5-after-first-vote")
            ann.locator("body").click(position={"x": 5, "y": 5})
    expect(ann.locator("#lab-prompt")).to_contain_text("Nothing left for you")
    expect(ann.locator("#lab-vote-a2")).to_be_disabled()
    snap(ann, shots, "E6-done")

    votes = campaign_votes(campaign.id, home)
    assert [(v["choice"], v["strength"]) for v in votes] == list(KEYS.values())
    for vote in votes:  # a and b are sides as shown; the store keeps the winning source
        right = vote["source_2"] if vote["left_source"] == vote["source_1"] else vote["source_1"]
        assert vote["winner"] == {"a": vote["left_source"], "b": right}.get(vote["choice"]), vote
    first = votes[0]
    right = first["source_2"] if first["left_source"] == first["source_1"] else first["source_1"]
    assert json.loads(first["aspects"]) == {"helpful": right, "follows instructions": "tie"}
    assert all(json.loads(v["aspects"]) == {} for v in votes[1:])

    bob = labeler_page(browser, signed_app.url, "bob", width=900)  # a narrow window: the same pages fit
    expect(bob.locator("#lab-intro")).to_contain_text("Before you start: graded-page", timeout=TIMEOUT_MS)
    snap(bob, shots, "E7-intro-900px")
    bob.get_by_role("button", name="Start labeling").click()
    bob.locator("#lab-rubric").get_by_text("Rubric").click()
    expect(bob.locator("#lab-vote-b2")).to_be_visible()
    snap(bob, shots, "E8-pair-900px")


def test_graded_votes_with_aspects_through_the_api(signed_app, tmp_path):
    """The page's endpoints as a client calls them: a graded button's vote with the aspects rated, in the
    campaign's order (an aspect left at '' is not voted on)."""
    from gradio_client import Client

    from lab.config import CampaignConfig
    from lab.label.campaigns import create_campaign

    home = lab_home(signed_app.home)
    campaign = create_campaign(CampaignConfig(name="graded-api", sources="", votes_per_pair=1, graded=True,
                                              aspects=", ".join(ASPECTS), responses_file=responses_file(tmp_path, 2)),
                               home=home)
    ann = Client(signed_app.url + "label/", auth=("ann", PASSWORDS["ann"]), verbose=False)
    pair = ann.predict(campaign.id, False, api_name="/label_next")
    after = ann.predict(campaign.id, pair[1], "", False, "", "a", api_name="/label_vote_b2")
    assert "You: **1** vote ·" in after[2], after[2]
    after = ann.predict(campaign.id, after[1], "", False, api_name="/label_vote_a")  # graded: A > B
    assert "You: **2** votes ·" in after[2], after[2]
    first, second = campaign_votes(campaign.id, home)
    assert (first["choice"], first["strength"], second["choice"], second["strength"]) == ("b", 2, "a", 1)
    assert json.loads(first["aspects"]) == {"follows instructions": first["left_source"]}
