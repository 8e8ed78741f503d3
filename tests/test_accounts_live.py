"""Accounts take effect at once, on the real app: open with no account, sign-in asked for from the first one on,
roles read on every request, a labeler who signs in at / sent on to /label/. One app is started for the module;
the tests run in order on its home (open first, then with accounts)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from lab.errors import LabError
from lab.home import lab_home
from lab.label import accounts
from lab.store import Store
from tests.app_server import AppServer, start_app, stop_app

PASSWORDS = {"boss": "admin password", "ann": "ann password"}


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory):
    server = start_app(tmp_path_factory.mktemp("live") / "home")
    yield server
    stop_app(server.process)


def get(server: AppServer, path: str, cookies: httpx.Cookies | None = None) -> httpx.Response:
    return httpx.get(server.url + path, cookies=cookies, timeout=30, follow_redirects=False)


def sign_in(server: AppServer, name: str, *, at: str) -> httpx.Response:
    return httpx.post(server.url + at + "login", data={"username": name, "password": PASSWORDS[name]}, timeout=30)


def call(server: AppServer, api: str, cookies: httpx.Cookies | None = None, at: str = "") -> int:
    """Start an API call the way gradio_client's REST twin does; the status of the request that starts it."""
    return httpx.post(f"{server.url}{at}gradio_api/call/{api}", json={"data": []}, cookies=cookies,
                      timeout=30).status_code


def test_the_first_account_must_be_an_admin(home):
    with pytest.raises(LabError) as refused:
        accounts.add_account("ann", "labeler", PASSWORDS["ann"], home=home)
    assert str(refused.value) == accounts.FIRST_ADMIN and not accounts.list_accounts(home=home)
    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)
    assert accounts.add_account("ann", "labeler", PASSWORDS["ann"], home=home).role == "labeler"


def test_without_accounts_the_lab_is_open(live_app: AppServer):
    assert get(live_app, "config").status_code == 200 and get(live_app, "label/config").status_code == 200
    assert call(live_app, "label_campaigns") == 200 and call(live_app, "label_campaigns", at="label/") == 200


def test_the_first_account_asks_everyone_to_sign_in_at_once(live_app: AppServer):
    home = lab_home(live_app.home)
    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)  # as the CLI or the Accounts panel would
    for path in ("config", "label/config"):
        assert get(live_app, path).status_code == 401
    page = get(live_app, "")
    assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")  # Gradio's sign-in page
    assert call(live_app, "label_campaigns") == 401 and call(live_app, "label_campaigns", at="label/") == 401
    boss = sign_in(live_app, "boss", at="")
    assert boss.status_code == 200, boss.text
    assert get(live_app, "config", boss.cookies).status_code == 200
    assert get(live_app, "label/config", boss.cookies).status_code == 200  # one session for both pages


def test_a_labeler_signing_in_at_the_lab_is_sent_to_the_labeling_page(live_app: AppServer):
    accounts.add_account("ann", "labeler", PASSWORDS["ann"], home=lab_home(live_app.home))
    ann = sign_in(live_app, "ann", at="")
    assert ann.status_code == 200, ann.text  # not "Incorrect credentials"
    page = get(live_app, "", ann.cookies)
    assert page.status_code == 303 and page.headers["location"] == "label/"
    labeling = get(live_app, "label/", ann.cookies)
    assert labeling.status_code == 200 and "auth_required" not in labeling.text
    assert get(live_app, "config", ann.cookies).status_code == 401  # the lab's API stays closed to her
    assert call(live_app, "label_campaigns", ann.cookies) == 401
    assert call(live_app, "label_campaigns", ann.cookies, at="label/") == 200


def test_a_role_change_applies_to_the_next_request(live_app: AppServer):
    home = lab_home(live_app.home)
    ann = sign_in(live_app, "ann", at="label/").cookies
    with Store(home).write() as conn:
        conn.execute("UPDATE accounts SET role = 'admin' WHERE name = 'ann'")
    assert get(live_app, "config", ann).status_code == 200
    with Store(home).write() as conn:
        conn.execute("DELETE FROM accounts WHERE name = 'ann'")
    assert get(live_app, "label/config", ann).status_code == 401  # a removed account's session ends with it


@pytest.mark.browser
def test_in_a_browser_a_labeler_signing_in_at_the_lab_lands_on_the_labeling_page(live_app: AppServer):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    PASSWORDS["cat"] = "cat password"
    accounts.add_account("cat", "labeler", PASSWORDS["cat"], home=lab_home(live_app.home))
    shots = Path(os.environ.get("LAB_SCREENSHOTS") or live_app.home.parent / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for name, lands_on, heading in (("cat", "/label/", "Which answer is better?"),
                                            ("boss", "/", "Fine-tuning lab")):
                page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(live_app.url)
                page.get_by_label("username").fill(name)
                page.get_by_label("password").fill(PASSWORDS[name])
                page.screenshot(path=str(shots / f"sign-in-{name}.png"))
                page.get_by_role("button", name="Login").click()
                page.get_by_role("heading", name=heading).wait_for()
                assert page.url == live_app.url.rstrip("/") + lands_on
                page.screenshot(path=str(shots / f"signed-in-{name}.png"))
                page.context.close()
        finally:
            browser.close()
