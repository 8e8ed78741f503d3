"""Managing accounts: remove, change role, set password (engine and CLI), and what each does to sessions of the
running app at once; sign-out ending a session on the server at either app; sessions' lifetime; sign-in names
refused before the throttle keeps them.

One app is started for the module with accounts (sign-in on); each live test changes its own account through the
CLI, in another process, as an operator would. One more app, with a lifetime of seconds, checks that a session
ends by itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi import HTTPException

from lab.errors import LabError
from lab.home import lab_home
from lab.label import accounts, serving
from lab.label.accounts import LAST_ADMIN
from lab.label.throttle import SignInThrottle
from lab.store import Store
from lab.ui import server
from tests.app_server import ROOT, AppServer, start_app, stop_app
from tests.test_label import file_campaign

PASSWORDS = {"boss": "admin password", "lead": "lead password", "ann": "ann password", "bob": "bob password",
             "cat": "cat password", "dan": "dan password", "eve": "eve password"}
ROLES = {"boss": "admin", "lead": "admin", "ann": "labeler", "bob": "labeler", "cat": "labeler", "dan": "labeler",
         "eve": "labeler"}


@pytest.fixture(scope="module")
def managed_app(tmp_path_factory: pytest.TempPathFactory):
    home = lab_home(tmp_path_factory.mktemp("managed") / "home")
    for name, role in ROLES.items():
        accounts.add_account(name, role, PASSWORDS[name], home=home)
    server_ = start_app(home.root)
    yield server_
    stop_app(server_.process)


def lab_cli(home, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "LAB_HOME": str(home), **(env or {})}, check=False)


AdminCookies = tuple[AppServer, httpx.Cookies]


def sign_in(app: AppServer, name: str, password: str | None = None, *, at: str = "label/",
            address: str = "127.0.0.1") -> httpx.Response:
    return httpx.post(app.url + at + "login", data={"username": name, "password": password or PASSWORDS[name]},
                      headers={"X-Forwarded-For": address}, timeout=30)


def status(app: AppServer, path: str, cookies: httpx.Cookies) -> int:
    return httpx.get(app.url + path, cookies=cookies, timeout=30, follow_redirects=False).status_code


def call(app: AppServer, api: str, cookies: httpx.Cookies, at: str = "") -> int:
    return httpx.post(f"{app.url}{at}gradio_api/call/{api}", json={"data": []}, cookies=cookies,
                      timeout=30).status_code


# --------------------------------------------------------------------------- the engine's rules


def test_the_only_admin_can_be_neither_removed_nor_demoted_while_others_exist(home):
    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)
    accounts.add_account("ann", "labeler", PASSWORDS["ann"], home=home)
    for change, also in ((lambda: accounts.set_role("boss", "labeler", home=home), ""),
                         (lambda: accounts.remove_account("boss", home=home), ", or remove the other accounts")):
        with pytest.raises(LabError) as refused:
            change()
        assert str(refused.value) == LAST_ADMIN.format(name="boss", also=also)
    assert accounts.set_role("ann", "admin", home=home).role == "admin"
    assert accounts.set_role("boss", "labeler", home=home).role == "labeler"  # ann is an admin now
    with pytest.raises(LabError, match="ann is the only admin"):
        accounts.set_role("ann", "labeler", home=home)
    with pytest.raises(LabError, match="Role must be admin or labeler, not 'owner'"):
        accounts.set_role("boss", "owner", home=home)
    with pytest.raises(LabError, match=r"^No account is named 'mallory' \(python -m lab label user list"):
        accounts.remove_account("mallory", home=home)
    with pytest.raises(LabError, match="at least 8"):
        accounts.set_password("boss", "short", home=home)
    accounts.remove_account("boss", home=home)
    assert accounts.remove_account("ann", home=home).role == "admin"  # the last account of all: the lab is open
    assert not accounts.list_accounts(home=home) and not accounts.sign_in_required(home)


def test_a_removed_labelers_votes_stay_under_their_name(home, tmp_path):
    from lab.label.results import agreement

    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)
    accounts.add_account("ann", "labeler", PASSWORDS["ann"], home=home)
    campaign = file_campaign(home, tmp_path, n=3, votes=1)
    pair = serving.next_pair(campaign.id, "ann", home=home)
    assert serving.vote(pair.token, "ann", "a", home=home)
    accounts.remove_account("ann", home=home)
    assert accounts.verify("ann", PASSWORDS["ann"], home=home) is None
    assert accounts.identity_of("ann", home=home) is None
    votes = Store(home).query("SELECT labeler FROM live_votes WHERE campaign_id = ?", (campaign.id,))
    assert votes == [{"labeler": "ann"}]
    assert [row["labeler"] for row in agreement(campaign.id, home=home)["per_labeler"]] == ["ann"]


def test_a_session_is_bound_to_the_password_it_began_with(home):
    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)
    signed_in = accounts.verify("boss", PASSWORDS["boss"], home=home)
    assert accounts.identity_of("boss", stamp=signed_in.stamp, home=home).is_admin
    accounts.set_password("boss", "a new password", home=home)
    assert accounts.identity_of("boss", stamp=signed_in.stamp, home=home) is None
    assert accounts.verify("boss", PASSWORDS["boss"], home=home) is None
    again = accounts.verify("boss", "a new password", home=home)
    assert accounts.identity_of("boss", stamp=again.stamp, home=home).is_admin


def test_cli_manages_accounts(home):
    add = lab_cli(home.root, "label", "user", "add", "boss", "--role", "admin", "--password-env", "PW",
                  env={"PW": PASSWORDS["boss"]})
    assert add.returncode == 0, add.stderr
    lab_cli(home.root, "label", "user", "add", "ann", "--password-env", "PW", env={"PW": PASSWORDS["ann"]})
    refused = lab_cli(home.root, "label", "user", "set-role", "boss", "labeler")
    assert refused.returncode == 1 and refused.stderr.strip() == "error: " + LAST_ADMIN.format(name="boss", also="")
    promoted = lab_cli(home.root, "label", "user", "set-role", "ann", "admin", "--json")
    assert json.loads(promoted.stdout) == {"name": "ann", "role": "admin"}
    changed = lab_cli(home.root, "label", "user", "set-password", "ann", "--password-env", "NEW",
                      env={"NEW": "ann's new password"})
    assert changed.returncode == 0 and "sessions have ended" in changed.stderr
    assert accounts.verify("ann", "ann's new password", home=home)
    unset = lab_cli(home.root, "label", "user", "set-password", "ann", "--password-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 1 and "at least 8 characters" in unset.stderr
    removed = lab_cli(home.root, "label", "user", "remove", "boss")
    assert removed.returncode == 0 and removed.stdout == "removed boss (admin)\n"
    assert "their votes stay under that name" in removed.stderr
    last = lab_cli(home.root, "label", "user", "remove", "ann")
    assert last.returncode == 0 and "sign-in is off" in last.stderr
    unknown = lab_cli(home.root, "label", "user", "remove", "ann")
    assert unknown.returncode == 1 and "No account is named 'ann'" in unknown.stderr


# --------------------------------------------------------------------------- the running app, at once


def test_removing_an_account_ends_its_session_at_once(managed_app):
    ann = sign_in(managed_app, "ann").cookies
    assert status(managed_app, "label/config", ann) == 200
    assert lab_cli(managed_app.home, "label", "user", "remove", "ann").returncode == 0
    assert status(managed_app, "label/config", ann) == 401
    assert call(managed_app, "label_campaigns", ann, at="label/") == 401
    assert sign_in(managed_app, "ann").status_code == 400


def test_an_admin_made_a_labeler_loses_the_lab_at_once(managed_app):
    lead = sign_in(managed_app, "lead", at="").cookies
    assert status(managed_app, "config", lead) == 200 and call(managed_app, "label_campaigns", lead) == 200
    assert lab_cli(managed_app.home, "label", "user", "set-role", "lead", "labeler").returncode == 0
    assert status(managed_app, "", lead) == 303  # sent on to the labeling page
    assert status(managed_app, "config", lead) == 401 and call(managed_app, "label_campaigns", lead) == 401
    assert status(managed_app, "label/config", lead) == 200  # still signed in, as a labeler
    assert lab_cli(managed_app.home, "label", "user", "set-role", "lead", "admin").returncode == 0
    assert status(managed_app, "config", lead) == 200


def test_a_new_password_ends_every_session_of_the_account(managed_app):
    desktop, phone = sign_in(managed_app, "bob").cookies, sign_in(managed_app, "bob", at="").cookies
    assert status(managed_app, "label/config", desktop) == status(managed_app, "label/config", phone) == 200
    changed = lab_cli(managed_app.home, "label", "user", "set-password", "bob", "--password-env", "NEW",
                      env={"NEW": "bob's new password"})
    assert changed.returncode == 0, changed.stderr
    assert status(managed_app, "label/config", desktop) == status(managed_app, "label/config", phone) == 401
    assert sign_in(managed_app, "bob").status_code == 400
    again = sign_in(managed_app, "bob", "bob's new password").cookies
    assert status(managed_app, "label/config", again) == 200


@pytest.mark.parametrize("at", ["", "label/"])
def test_signing_out_at_either_app_ends_a_labelers_sessions_on_the_server(managed_app, at):
    """Gradio's /logout asked get_current_user whose sessions to end, and at / that is nobody for a labeler: the
    cookie was cleared in the browser, and a copy of it stayed signed in."""
    cat, other = sign_in(managed_app, "cat").cookies, sign_in(managed_app, "cat").cookies
    assert status(managed_app, "label/config", cat) == 200
    assert status(managed_app, at + "logout", cat) == 302
    assert status(managed_app, "label/config", cat) == 401  # the copy of the cookie: ended on the server
    assert status(managed_app, "label/config", other) == 401  # and her other sessions, as Gradio's route means


def test_signing_out_of_this_browser_only_keeps_the_others(managed_app):
    dan, other = sign_in(managed_app, "dan").cookies, sign_in(managed_app, "dan").cookies
    assert status(managed_app, "logout?all_session=false", dan) == 302
    assert status(managed_app, "label/config", dan) == 401 and status(managed_app, "label/config", other) == 200


def test_a_name_no_account_can_have_is_refused_before_the_throttle_counts_it(managed_app):
    """A failed sign-in's name is kept for the throttle's window: 1 MB names held 400 MB. Refused at once, such
    names are not counted either, so the address still signs in after more than its limit of them."""
    for _ in range(25):  # more than the address's limit of 20 failures
        refused = sign_in(managed_app, "x" * 100_000, "some password", address="10.7.7.7")
        assert refused.status_code == 400 and refused.json()["detail"].startswith("Account name 'xxxx")
        assert "at most 64 characters" in refused.json()["detail"]
    assert sign_in(managed_app, "boss", at="", address="10.7.7.7").status_code == 200


def panel(app: AdminCookies, api: str, *data: str) -> str:
    """What the Accounts panel's status line says after its button ``api`` ran with ``data``."""
    with httpx.Client(base_url=app[0].url, cookies=app[1], timeout=60) as admin:
        started = admin.post(f"gradio_api/call/{api}", json={"data": list(data)})
        assert started.status_code == 200, started.text
        answer = admin.get(f"gradio_api/call/{api}/{started.json()['event_id']}").text
    assert "event: complete" in answer, answer
    return json.loads(answer.split("data: ", 1)[1].splitlines()[0])[0]


def test_the_accounts_panel_changes_roles_passwords_and_removes(managed_app):
    eve = sign_in(managed_app, "eve").cookies
    boss = (managed_app, sign_in(managed_app, "boss", at="").cookies)
    assert panel(boss, "label_set_role", "eve", "admin") == "**✓ eve is an admin, from their next click.**"
    assert status(managed_app, "config", eve) == 200
    assert panel(boss, "label_set_password", "eve", "eve's new password").startswith("**✓ New password for eve")
    assert status(managed_app, "config", eve) == 401
    assert panel(boss, "label_set_password", "eve", "short") == "**⚠ Choose a password of at least 8 characters.**"
    assert panel(boss, "label_remove_account", "eve") == ("**✓ Removed eve: they can no longer sign in; their votes "
                                                          "stay.**")
    assert panel(boss, "label_remove_account", "eve").startswith("**⚠ No account is named 'eve'")
    assert "eve" not in {a["name"] for a in accounts.list_accounts(home=lab_home(managed_app.home))}
    labeler = sign_in(managed_app, "dan").cookies
    assert call(managed_app, "label_remove_account", labeler) == 401  # the lab's API is closed to labelers


def test_each_page_says_who_is_signed_in_with_its_own_way_out(home):
    from lab.ui.common import signed_in_update

    assert signed_in_update(home, "local", "/logout")["visible"] is False  # no accounts: nobody signs in
    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)
    shown = signed_in_update(home, "boss", "/logout")
    assert shown["visible"] and shown["value"] == 'Signed in as <b>boss</b> · <a href="/logout" target="_self">Sign out</a>'
    assert 'href="/label/logout"' in signed_in_update(home, "ann", "/label/logout")["value"]  # the labeling page's


# --------------------------------------------------------------------------- sessions' lifetime, names refused


def test_a_session_ends_when_its_lifetime_is_over(tmp_path_factory, monkeypatch):
    home = lab_home(tmp_path_factory.mktemp("brief") / "home")
    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)
    monkeypatch.setenv(server.SESSION_HOURS_ENV, "0.001")  # 3.6 s
    app = start_app(home.root)
    try:
        boss = sign_in(app, "boss", at="").cookies
        began = time.monotonic()  # the session began before this
        assert status(app, "config", boss) == 200
        time.sleep(max(0.0, 3.6 - (time.monotonic() - began)) + 0.5)
        assert status(app, "config", boss) == 401
    finally:
        stop_app(app.process)


def test_sessions_expire_and_are_forgotten_in_order():
    now = [0.0]
    sessions = server.Sessions(60, clock=lambda: now[0])
    with pytest.raises(RuntimeError, match="login route differs"):
        sessions["t0"] = "boss"  # stored without the lab's sign-in having checked a password just before
    signing_in = server.SIGNING_IN.set(accounts.Identity("boss", "admin", "stamp"))
    try:
        sessions["t1"] = "boss"
        now[0] = 30
        sessions["t2"] = "boss"
        assert sessions.session("t1") == server.Session("boss", "stamp", 0) and sessions.get("t2") == "boss"
        now[0] = 60
        assert sessions.session("t1") is None and sessions.get("t1") is None and list(sessions) == ["t2"]
        now[0] = 95
        sessions["t3"] = "boss"  # a new session forgets the expired ones before it
        assert list(sessions) == ["t3"]
        sessions["t4"] = "boss"
        sessions.end("t3", everywhere=True)
        assert not sessions
    finally:
        server.SIGNING_IN.reset(signing_in)


@pytest.mark.parametrize("value", ["0", "-1", "a day", "inf", "nan"])
def test_a_session_lifetime_that_is_no_number_of_hours_is_named(monkeypatch, value):
    monkeypatch.setenv(server.SESSION_HOURS_ENV, value)
    with pytest.raises(LabError, match=f"^LAB_SESSION_HOURS is how many hours .* \\(got '{value}'\\)"):
        server.session_lifetime_s()
    monkeypatch.setenv(server.SESSION_HOURS_ENV, "0.5")
    assert server.session_lifetime_s() == 1800
    monkeypatch.delenv(server.SESSION_HOURS_ENV)
    assert server.session_lifetime_s() == 24 * 3600


def test_the_name_check_runs_before_the_throttle(home):
    """Unit twin of the live test: the throttle never sees a name the account rule refuses."""
    throttle = SignInThrottle()
    authenticate = server.authenticator(home, throttle)
    with pytest.raises(HTTPException) as refused:
        asyncio.run(authenticate("y" * 1_000_000, "password"))
    assert refused.value.status_code == 400 and refused.value.detail.startswith("Account name 'yyyy")
    assert not throttle.failures and not throttle.timeline
