"""The admin's flywheel panels in a real browser with sign-in on: a pair two labelers split on is decided (and the
next one shown), the reliability table flags and highlights a labeler who votes against the rule, and "Next round"
creates round 2, selects it and shows both rounds in the chain view, whose report downloads. Votes come from
simulated labelers (``lab.label.simulate``) through the real serving. Screenshots go to ``$LAB_SCREENSHOTS`` (else a
temporary folder)."""

from __future__ import annotations

import re

import pytest

from lab.home import lab_home
from lab.label import simulate
from tests.app_server import start_app_with_accounts
from tests.test_browser import CHROMIUM, browser, choose, fill_checked, shots, snap, tab  # noqa: F401 - fixtures
from tests.test_browser import signed_in_page as signed_in_as
from tests.test_label_flywheel_app import contrary, file_campaign, honest

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect
ACCOUNTS = {"boss": ("admin", "admin password")}


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    yield from start_app_with_accounts(tmp_path_factory.mktemp("admin-browser") / "home", ACCOUNTS)


def pick_campaign(page, name: str) -> None:
    """Choose a campaign in the admin's picker (the second "Campaign" dropdown: the labeling page's comes first)."""
    page.get_by_label("Campaign", exact=True).nth(1).click()
    page.get_by_role("option", name=re.compile(rf"^{name} · ")).filter(visible=True).first.click()


def test_an_admin_adjudicates_sees_a_flagged_labeler_and_starts_the_next_round(browser, signed_app, shots,  # noqa: F811
                                                                               tmp_path):
    home = lab_home(signed_app.home)
    split = file_campaign(home, tmp_path, "split", 3, votes_per_pair=2, extra_votes=0)
    simulate.label(split.id, [honest("ann"), contrary("bob")], home=home)  # every pair 1-1: each awaits a decision
    trust = file_campaign(home, tmp_path, "trust", 12, votes_per_pair=3, extra_votes=0, max_new_tokens=8)
    simulate.label(trust.id, [honest("ann"), honest("bob"), contrary("cy")], home=home)

    admin = signed_in_as(browser, signed_app.url, "boss", ACCOUNTS["boss"][1])
    tab(admin, "Label").click()
    pick_campaign(admin, "split")
    admin.get_by_text("3 pairs awaiting your decision").wait_for()
    expect(admin.locator("#lab-adjudicate-a, #lab-adjudicate-b").filter(has_text="Thank you")).to_have_count(1)
    admin.get_by_text("1 vote for A").wait_for()  # the panel opened by itself: pairs await a decision
    admin.get_by_text("Adjudication · 3 awaiting your decision").scroll_into_view_if_needed()
    snap(admin, shots, "40-admin-adjudication")
    first = admin.locator("#lab-adjudicate-prompt").inner_text()
    assert "Question" in first
    admin.get_by_label("Note (optional)").fill("The sum is right in both; A thanks.")
    admin.get_by_role("button", name="A is better", exact=True).click()
    admin.get_by_text("Decided: A is better.").wait_for()
    admin.get_by_text("2 pairs awaiting your decision").wait_for()
    admin.get_by_text("Adjudication · 2 awaiting your decision").wait_for()  # its title counts them too
    expect(admin.locator("#lab-adjudicate-prompt")).not_to_have_text(first)  # the next pair is shown
    expect(admin.get_by_label("Note (optional)")).to_have_value("")

    pick_campaign(admin, "trust")
    admin.locator("#lab-reliability").scroll_into_view_if_needed()  # the table draws its rows once on screen
    flagged = admin.locator("#lab-reliability [role=row]").filter(has_text="⚠ flagged")
    expect(flagged).to_have_count(1, timeout=30_000)
    expect(flagged).to_contain_text("cy")
    colours = flagged.evaluate("row => [row, ...row.querySelectorAll('*')]"
                               ".map(e => getComputedStyle(e).backgroundColor)")
    assert "rgb(254, 226, 226)" in colours, colours  # the flagged row is highlighted
    admin.get_by_text("Adjudication · none awaiting a decision").wait_for()  # its panel stays closed
    expect(admin.get_by_text("No pair awaits a decision")).to_be_hidden()
    expect(admin.get_by_label("With earlier rounds")).not_to_be_checked()  # a first round has none
    admin.get_by_text("Labelers' reliability · 1 flagged").scroll_into_view_if_needed()
    snap(admin, shots, "41-admin-reliability")

    choose(admin, "Challenger", "tiny (built-in test model)")
    from lab.models import tiny_model_path

    incumbent = admin.get_by_label("Incumbent", exact=True)
    incumbent.fill(str(tiny_model_path(home)))  # the same weights by path: a second model
    incumbent.press("Enter")
    choose(admin, "Fresh prompts", "sample:sft (bundled sample)")
    fill_checked(admin.get_by_label("Max fresh prompts"), "2")
    admin.get_by_role("button", name="Next round").click()
    admin.get_by_text("Created round 2: campaign trust-r2").wait_for()
    chain = admin.locator("#lab-chain")
    chain.scroll_into_view_if_needed()  # the table draws its rows once on screen
    expect(chain.locator("[role=row]").filter(has_text="trust-r2")).to_have_count(1)  # the new round, selected
    expect(chain.locator("[role=row]").filter(has_text="trust")).to_have_count(2)
    expect(chain).to_contain_text("tiny vs ")
    expect(admin.get_by_label("With earlier rounds")).to_be_checked()  # round 2's export carries round 1's pairs
    admin.get_by_role("button", name="Report").click()
    admin.get_by_text("Wrote the report of trust-r2's rounds").wait_for()
    expect(admin.locator("#lab-rounds-report a")).to_have_attribute("download", re.compile(r"^rounds-trust-r2-.*\.md$"))
    admin.get_by_text("Rounds", exact=True).scroll_into_view_if_needed()
    snap(admin, shots, "42-admin-chain")

    # Votes that come in while the admin watches show in the Rounds table within seconds, without a new selection
    # (the fits follow activity_mark: at most every FITS_EVERY_S = 10 s, on the 3 s timer).
    live = file_campaign(home, tmp_path, "live", 4, votes_per_pair=1, extra_votes=0)
    pick_campaign(admin, "live")
    row = chain.locator("[role=row]").filter(has_text="live")
    expect(row).to_contain_text("0/4")
    assert simulate.label(live.id, [honest("dee")], home=home, max_votes=2) == 2
    expect(row).to_contain_text("2/4", timeout=20_000)
