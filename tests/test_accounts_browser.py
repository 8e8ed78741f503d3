"""Accounts in a real browser with sign-in on: the lab's page says who is signed in and its Sign out link signs out
(on the server too); the Accounts panel changes a role and says why it will not remove the only admin, each in the
status line under its buttons."""

from __future__ import annotations

import httpx
import pytest

from tests.app_server import start_app_with_accounts
from tests.test_browser import CHROMIUM, browser, tab  # noqa: F401 - fixtures
from tests.test_browser import signed_in_page as signed_in_as

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect
ACCOUNTS = {"boss": ("admin", "admin password"), "ann": ("labeler", "ann password")}


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    yield from start_app_with_accounts(tmp_path_factory.mktemp("accounts-browser") / "home", ACCOUNTS)


def test_accounts_panel_and_sign_out(signed_app, browser):  # noqa: F811 - the fixture
    page = signed_in_as(browser, signed_app.url, "boss", "admin password")
    expect(page.get_by_text("Signed in as boss")).to_be_visible()
    tab(page, "Label").click()
    page.get_by_text("Accounts", exact=True).click()
    name = page.get_by_label("Name", exact=True).last
    under_buttons = page.locator(".block.lab-status").filter(has_text="only admin")
    name.fill("ann")
    page.get_by_role("button", name="Change role").click()
    expect(page.get_by_text("ann is a labeler, from their next click.")).to_be_visible()
    name.fill("boss")
    page.get_by_role("button", name="Remove account").click()
    expect(under_buttons).to_be_visible()
    button_box, status_box = (page.get_by_role("button", name="Remove account").bounding_box(),
                              under_buttons.bounding_box())
    assert 0 <= status_box["y"] - (button_box["y"] + button_box["height"]) < 80  # right under the buttons
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    page.get_by_role("link", name="Sign out").click()
    expect(page.get_by_label("username")).to_be_visible()  # the sign-in form, in this tab
    assert httpx.get(signed_app.url + "config", cookies=cookies, timeout=30).status_code == 401


def test_the_labeling_page_says_who_is_signed_in_and_signs_out_there(signed_app, browser):  # noqa: F811
    page = signed_in_as(browser, signed_app.url + "label/", "ann", "ann password")
    expect(page.get_by_text("Signed in as ann")).to_be_visible()
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    page.get_by_role("link", name="Sign out").click()
    expect(page.get_by_label("username")).to_be_visible()  # the labeling page's sign-in form, in this tab
    assert "/label" in page.url
    assert httpx.get(signed_app.url + "label/config", cookies=cookies, timeout=30).status_code == 401
