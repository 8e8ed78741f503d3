"""Shared fixtures: a fresh LAB_HOME per test, and the fixture files' folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.home import Home, lab_home

# Tests never reach a hub: fail fast instead of waiting on network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

pytest_plugins = ["tests.app_server"]  # the real app, started once per session

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """An empty lab home, also set as $LAB_HOME for code that reads the environment."""
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "lab_home"))
    return lab_home(tmp_path / "lab_home")


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A lab home with the tiny model built once for the whole session (read-only use)."""
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("tiny_home"))
    tiny_model_path(home)
    return home


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that used a running app gets the app's log tail in its report: a browser test's time-out says
    only what it waited for, and the app's traceback (or its silence) says why it never came."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    from tests.app_server import AppServer

    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, AppServer) and value.log.exists():
            tail = value.log.read_text(errors="replace")[-4000:]
            report.sections.append((f"app log ({value.log.name}, last 4000 characters)", tail))
