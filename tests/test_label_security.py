"""What a labeler can reach: the labeling page's file routes serve none of the admin's files (exports, Gradio's
cached copies of them, the store), and sign-in is throttled and hashes passwords off the event loop.

One app is started for the module, with accounts (so sign-in is on). Its throttle keeps its five-minute window: the
tests never wait for it to pass (the unit test at the end does that with a clock of its own), so they hold on a busy
machine too."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from lab.errors import LabError
from lab.home import lab_home
from lab.label import accounts
from lab.label.throttle import ACCOUNT_LIMIT, ADDRESS_LIMIT, SignInThrottle
from tests.app_server import ROOT, AppServer, start_app, stop_app

PASSWORDS = {"boss": "admin password", "ann": "ann password", "cat": "cat password"}
MARKER = "only-admins-read-this-row"
REFUSED = (401, 403, 404)


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("guarded")
    home = lab_home(root / "home")
    for name, role in (("boss", "admin"), ("ann", "labeler"), ("cat", "labeler")):
        accounts.add_account(name, role, PASSWORDS[name], home=home)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))  # Gradio's cache, where the admin's downloads are copied
        server = start_app(home.root)
    yield server
    stop_app(server.process)


@pytest.fixture(scope="module")
def admin_files(guarded_app: AppServer) -> list[Path]:
    """What the admin produced: a dataset (imported here) exported through the app and evaluations.csv in exports/,
    Gradio's copies of both, the imported file, and the store."""
    from lab.config import DataConfig
    from lab.data.pipeline import import_file

    home = lab_home(guarded_app.home)
    source = home.uploads / "secret.jsonl"
    source.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Question {i}: what is kept here?"},
        {"role": "assistant", "content": f"{MARKER} number {i}."}]}) + "\n" for i in range(10)))
    version = import_file(source, DataConfig(name="secret", skip_invalid=True), home=home)
    # Gradio's REST calls rather than gradio_client, whose open event stream would hold up the app's shutdown.
    with httpx.Client(base_url=guarded_app.url, cookies=sign_in(guarded_app.url, "boss", PASSWORDS["boss"],
                                                                  at="").cookies, timeout=60) as admin:
        for api, data in (("data_export", [version.ref, "JSONL"]), ("eval_csv", [])):
            event = admin.post(f"gradio_api/call/{api}", json={"data": data}).json()["event_id"]
            assert "event: complete" in admin.get(f"gradio_api/call/{api}/{event}").text
    exports = sorted(home.exports.iterdir())
    names = {e.name for e in exports}
    copies = [p for p in (home.root.parent / "gradio").rglob("*") if p.is_file() and p.name in names]
    assert len(exports) == 3 and len(copies) == 3, (exports, copies)
    return [*exports, *copies, source, home.store_path]


def sign_in(url: str, name: str, password: str, *, address: str = "127.0.0.1", at: str = "label/") -> httpx.Response:
    """POST the login form as Gradio's page does, as a proxy on this machine would (tests/app_server.py trusts it)."""
    return httpx.post(url + at + "login", data={"username": name, "password": password},
                      headers={"X-Forwarded-For": address}, timeout=30)


def cookie_header(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return "; ".join(f"{name}={value}" for name, value in response.cookies.items())


def request(url: str, path: str, cookies: str, method: str = "GET", **kwargs) -> tuple[int, bytes]:
    """A request with the path sent exactly as given (no client-side normalising of '..' or '%')."""
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.request(method, path, headers={"Cookie": cookies, **kwargs.pop("headers", {})}, **kwargs)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def file_routes(path: Path, server: AppServer) -> list[str]:
    """Every way to name ``path`` to a Gradio app's file routes (relative to the mount)."""
    port = urlsplit(server.url).port
    text = str(path)
    dotted = str(path.parent) + "/../" + path.parent.name + "/" + path.name
    return [f"gradio_api/file={text}", f"gradio_api/file/{text}", f"gradio_api/file={quote(text, safe='')}",
            f"gradio_api/file%3D{quote(text)}", f"gradio_api/file={dotted}",
            f"gradio_api/file={os.path.relpath(path, ROOT)}",  # the app's working directory is the repository
            f"gradio_api/file=http://127.0.0.1:{port}/gradio_api/file={text}",
            f"gradio_api/proxy=http://127.0.0.1:{port}/gradio_api/file={text}"]


def contents(files: list[Path]) -> list[bytes]:
    """What must never come back: the exported rows, the store's password hashes, evaluations.csv (no rows yet)."""
    return [MARKER.encode(), b"pbkdf2_sha256", *(f.read_bytes() for f in files if f.suffix == ".csv")]


def leaks(status: int, body: bytes, secrets: list[bytes]) -> bool:
    return status not in REFUSED or any(secret in body for secret in secrets)


def test_a_labeler_reaches_no_admin_file_through_any_file_route(guarded_app, admin_files):
    url = guarded_app.url
    admin = cookie_header(sign_in(url, "boss", PASSWORDS["boss"], at=""))
    export = next(f for f in admin_files if f.name.endswith("-train.jsonl") and "exports" in f.parts)
    status, body = request(url, f"/gradio_api/file={export}", admin)
    assert status == 200 and MARKER.encode() in body  # the admin's own download works: the paths below are real

    labeler = cookie_header(sign_in(url, "ann", PASSWORDS["ann"]))
    assert request(url, "/label/", labeler)[0] == 200 and request(url, "/label/config", labeler)[0] == 200
    secrets, found = contents(admin_files), []
    for path in admin_files:
        for route in file_routes(path, guarded_app):
            for method in ("GET", "HEAD"):
                status, body = request(url, "/label/" + route, labeler, method)
                if leaks(status, body, secrets):
                    found.append((method, "/label/" + route, status))
            status, body = request(url, "/" + route, labeler)  # the admin app does not take a labeler's session
            if leaks(status, body, secrets):
                found.append(("GET", "/" + route, status))
    assert not found, found


def test_the_labeling_page_takes_no_uploads_and_serves_no_streams(guarded_app):
    url = guarded_app.url
    labeler = cookie_header(sign_in(url, "ann", PASSWORDS["ann"]))
    boundary = "lab-test-boundary"
    upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.txt\"\r\n"
              f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n")
    attempts = [("POST", "/label/gradio_api/upload", upload), ("POST", "/label/gradio_api/process_recording", upload),
                ("GET", "/label/gradio_api/upload_progress?upload_id=x", None),
                ("GET", "/label/gradio_api/deep_link?session_hash=x", None),
                ("GET", "/label/gradio_api/stream/x/0/1/playlist-file", None),
                ("GET", "/label/gradio_api/custom_component/x/client/y/index.js", None)]
    answers = {path: request(url, path, labeler, method, body=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})[0]
               for method, path, body in attempts}
    assert all(status in REFUSED for status in answers.values()), answers


def test_a_call_to_no_api_answers_404_with_its_name(guarded_app):
    """Gradio raises for an API name or function number it does not have; the server answered 500 and logged a
    traceback for each such probe."""
    labeler = sign_in(guarded_app.url, "ann", PASSWORDS["ann"]).cookies
    with httpx.Client(base_url=guarded_app.url, cookies=labeler, timeout=30) as client:
        named = client.post("label/gradio_api/call/no_such_api", json={"data": []})
        numbered = client.post("label/gradio_api/queue/join", json={"data": [], "fn_index": 9999, "session_hash": "x"})
    assert (named.status_code, numbered.status_code) == (404, 404)
    assert "no API named 'no_such_api'" in named.json()["detail"] and "9999" in numbered.json()["detail"]


def test_a_request_under_another_host_name_is_refused(guarded_app, monkeypatch):
    """A web page whose name its author points at 127.0.0.1 (DNS rebinding) reaches the server under that name: the
    lab answers only to the names it is served by."""
    from lab.ui.server import ALLOWED_HOSTS_ENV, allowed_hosts

    port = urlsplit(guarded_app.url).port
    for path in ("config", "label/config", "login"):
        assert httpx.get(guarded_app.url + path, headers={"Host": f"attacker.example:{port}"}).status_code == 400
    assert httpx.get(guarded_app.url + "label/login").status_code != 400  # its own name still answers
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "lab.example.com")
    assert allowed_hosts("0.0.0.0") == ["127.0.0.1", "localhost", "::1", "[::1]", "lab.example.com"]
    monkeypatch.delenv(ALLOWED_HOSTS_ENV)
    assert allowed_hosts("0.0.0.0") == ["*"] and "10.0.0.5" in allowed_hosts("10.0.0.5")


def test_no_other_origin_may_read_the_lab_with_a_visitors_cookie(tmp_path):
    """Off localhost (a Space, a LAN address) Gradio's own CORS answered any origin, with credentials."""
    from starlette.testclient import TestClient

    from lab.ui.app import server_app

    client = TestClient(server_app(lab_home(tmp_path / "home")), base_url="https://lab.example")
    for path in ("/config", "/gradio_api/info", "/label/config"):
        asked = client.options(path, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        sent = client.get(path, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in asked.headers and "access-control-allow-origin" not in sent.headers


def test_an_admin_cannot_pass_a_server_file_off_as_an_upload(guarded_app, tmp_path):
    """A file input names its file by path: Gradio's own check (that it came through the upload route) must run
    although the app is mounted, not launched, and the lab refuses it too. Before, Data's upload copied any
    readable server file into LAB_HOME/uploads and showed its rows."""
    secret = tmp_path / "server-only.jsonl"
    secret.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                               {"role": "assistant", "content": "server-only-secret"}]}) + "\n")
    home = lab_home(guarded_app.home)
    with httpx.Client(base_url=guarded_app.url, cookies=sign_in(guarded_app.url, "boss", PASSWORDS["boss"],
                                                                  at="").cookies, timeout=60) as admin:
        payload = {"data": [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "auto"]}
        event = admin.post("gradio_api/call/data_upload", json=payload).json()["event_id"]
        answer = admin.get(f"gradio_api/call/data_upload/{event}").text
    assert "event: error" in answer and "server-only-secret" not in answer
    kept = [p for p in home.uploads.rglob("*") if p.is_file()] if home.uploads.is_dir() else []
    assert not any("server-only-secret" in p.read_text(errors="ignore") for p in kept)


def test_wrong_passwords_lock_the_account_even_with_the_right_one(guarded_app):
    url = guarded_app.url
    answers = [sign_in(url, "cat", "not my password", address="10.0.0.1") for _ in range(20)]
    details = [r.json()["detail"] for r in answers]
    assert {r.status_code for r in answers} == {400}
    assert details[:ACCOUNT_LIMIT] == ["Incorrect credentials."] * ACCOUNT_LIMIT
    assert all(d.startswith("Too many failed sign-ins for cat; try again in") for d in details[ACCOUNT_LIMIT:]), details
    for at in ("label/", ""):  # the right password, from elsewhere, at either app: still refused for the window
        refused = sign_in(url, "cat", PASSWORDS["cat"], address="10.0.0.2", at=at)
        assert refused.status_code == 400 and "Too many failed sign-ins for cat" in refused.json()["detail"]


def test_parallel_guesses_from_one_address_are_cut_off_at_its_limit(guarded_app):
    url = guarded_app.url
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda i: sign_in(url, f"guess{i}", "password1", address="10.0.0.9"), range(30)))
    details = [r.json()["detail"] for r in answers]
    assert details.count("Incorrect credentials.") == ADDRESS_LIMIT  # each attempt counts from the moment it starts
    assert sum(d.startswith("Too many failed sign-ins from 10.0.0.9") for d in details) == 30 - ADDRESS_LIMIT
    refused = sign_in(url, "ann", PASSWORDS["ann"], address="10.0.0.9")
    assert "from 10.0.0.9" in refused.json()["detail"]
    assert sign_in(url, "ann", PASSWORDS["ann"], address="10.0.0.10").status_code == 200  # others are not held up


def test_the_password_is_hashed_off_the_event_loop(home, monkeypatch):
    """Structural rather than timed (timings belong to benchmarks): the loop must keep turning while a password is
    checked; a check on the loop would block it here until the wait below gives up, and the sign-in would fail."""
    from lab.ui import server

    accounts.add_account("boss", "admin", PASSWORDS["boss"], home=home)  # the first account is an admin
    accounts.add_account("ann", "labeler", PASSWORDS["ann"], home=home)
    checking, release = threading.Event(), threading.Event()
    real_check = accounts.check_password

    def slow_check(password: str, stored: str) -> bool:
        checking.set()
        return release.wait(timeout=5) and real_check(password, stored)

    monkeypatch.setattr(accounts, "check_password", slow_check)
    authenticate = server.authenticator(home, SignInThrottle())

    async def sign_in_while_the_loop_runs() -> bool:
        attempt = asyncio.create_task(authenticate("ann", PASSWORDS["ann"]))
        while not checking.is_set():
            await asyncio.sleep(0.01)
        release.set()  # only reached if the loop ran on while the password was being checked
        return await attempt

    assert asyncio.run(sign_in_while_the_loop_runs())


def test_the_throttle_counts_per_account_and_per_address_within_its_window():
    now = [0.0]
    throttle = SignInThrottle(account_limit=2, address_limit=2, window_s=60, clock=lambda: now[0])
    throttle.begin("ann", "10.0.0.1")
    throttle.begin("ann", "10.0.0.2")
    with pytest.raises(LabError, match=r"^Too many failed sign-ins for ann; try again in 60 s\.$"):
        throttle.begin("ann", "10.0.0.3")
    throttle.begin("bob", "10.0.0.1")
    with pytest.raises(LabError, match="from 10.0.0.1; try again in 60 s"):
        throttle.begin("cat", "10.0.0.1")
    throttle.succeeded("bob", "10.0.0.1")  # bob's attempt is given back to the address, its other failure is not
    throttle.begin("cat", "10.0.0.1")
    with pytest.raises(LabError, match="from 10.0.0.1"):
        throttle.begin("dan", "10.0.0.1")
    now[0] = 59.5
    with pytest.raises(LabError, match="for ann; try again in 1 s"):
        throttle.begin("ann", "10.0.0.4")
    now[0] = 60.5
    throttle.begin("ann", "10.0.0.4")  # the first failures have left the window
    throttle.succeeded("ann", "10.0.0.4")
    throttle.begin("ann", "10.0.0.5")
    throttle.begin("ann", "10.0.0.5")  # a success starts the account afresh


def test_the_throttle_s_address_is_not_the_caller_s_to_choose():
    """Off a Space uvicorn believes X-Forwarded-For from no proxy unless the operator names one, so a caller through
    a tunnel cannot pick a fresh address per guess; behind a Space's proxy the address is the last public hop, the
    one the proxy appended, not what the caller wrote to its left."""
    from lab.ui.server import client_address, forwarded_allow_ips

    assert forwarded_allow_ips({}) == "" and forwarded_allow_ips({"FORWARDED_ALLOW_IPS": "10.1.1.1"}) == "10.1.1.1"

    def scope(*forwarded: str) -> dict:
        return {"client": ("10.16.3.80", 5000), "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded]}

    forged = scope("1.2.3.4, 81.2.69.160", "10.16.0.5")  # the caller's forged entry, the proxy's, an inner proxy's
    assert client_address(forged, proxied=True) == "81.2.69.160"
    assert client_address(forged, proxied=False) == "10.16.3.80"  # off a Space: the connection (uvicorn's to set)
    assert client_address(scope(), proxied=True) == "10.16.3.80"
    assert client_address(scope("10.0.0.1, 127.0.0.1"), proxied=True) == "10.16.3.80"  # no public hop
    assert client_address(scope("2a00:1450:4001::1, not-an-address"), proxied=True) == "not-an-address"
