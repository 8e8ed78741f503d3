"""Start the real web app as a subprocess for tests: ``python app.py --port <free port>``.

Use the ``lab_app`` fixture (session-scoped; import it into a test module, or register this
module in ``conftest.py`` with ``pytest_plugins = ["tests.app_server"]``)::

    def test_something(lab_app):
        client = gradio_client.Client(lab_app.url)

The app runs with ``LAB_HOME`` set to a fresh temporary folder; its output goes to
``<home>/../app.log``, quoted in the error if it does not come up. Tests hand it files they write under the
session's temporary folder by path, so that folder is allowed (``--allow-path``), as an operator would allow a
data folder; the rest of the disk is not.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0


@dataclass
class AppServer:
    url: str
    home: Path
    log: Path
    started_in_s: float  # from process start until the app answered HTTP
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "config", timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as err:
        return err.code == 401  # up, with sign-in on
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start_app(home: Path, *, timeout: float = START_TIMEOUT_S) -> AppServer:
    """Launch ``app.py`` on a free port with ``LAB_HOME=home`` and wait until it answers; ``home`` is made by
    ``tmp_path_factory.mktemp(...) / "home"``, so ``home.parent.parent`` is the session's temporary folder."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home.parent / f"app-{port}.log"
    # FORWARDED_ALLOW_IPS: the tests play a proxy on this machine, naming their callers' addresses in X-Forwarded-For
    env = {**os.environ, "LAB_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
           "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    for name in ("LAB_PORT", "LAB_HOST", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LAB_ALLOWED_PATHS"):  # tests never reach the hub
        env.pop(name, None)
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port),
                                    "--allow-path", str(home.parent.parent)], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while not answers(url):
        if process.poll() is not None or time.monotonic() - started > timeout:
            stop_app(process)
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"The app did not come up on {url} (exit code {process.returncode}). Log:\n{tail}")
        time.sleep(0.1)
    return AppServer(url, home, log, time.monotonic() - started, process)


def stop_app(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def add_accounts(home: Path, accounts: dict[str, tuple[str, str]]) -> None:
    """``{name: (role, password)}`` added through the CLI, as an operator would (the first should be an admin)."""
    for name, (role, password) in accounts.items():
        added = subprocess.run([sys.executable, "-m", "lab", "label", "user", "add", name, "--role", role,
                                "--password-env", "PW"], capture_output=True, text=True, cwd=ROOT,
                               env={**os.environ, "LAB_HOME": str(home), "PW": password})
        assert added.returncode == 0, added.stderr


def start_app_with_accounts(home: Path, accounts: dict[str, tuple[str, str]]) -> Iterator[AppServer]:
    """For a module-scoped fixture: the app on a home that holds ``accounts``, so sign-in is on."""
    add_accounts(home, accounts)
    server = start_app(home)
    try:
        yield server
    finally:
        stop_app(server.process)


@pytest.fixture(scope="session")
def lab_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The real app, started once per test session with an empty temporary ``LAB_HOME``."""
    server = start_app(tmp_path_factory.mktemp("lab-app") / "home")
    try:
        yield server
    finally:
        stop_app(server.process)
