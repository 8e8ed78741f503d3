"""The expected speed in the Train tab's estimate and a finished run's speed and phases, in a real browser (the
tiny run of tests/test_throughput.py, trained once for this module)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, browser, opened, snap, tab  # noqa: F401 - browser is a fixture
from tests.test_throughput import app, trained  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_estimate_and_the_outcome_show_speed(browser, app, trained, shots):  # noqa: F811
    run = trained[1]
    with opened(browser, app.url) as page:
        tab(page, "Train").click()
        page.get_by_role("button", name="Load recipe").click()
        page.get_by_text("Loaded tiny-sft.yaml").wait_for()
        page.get_by_role("button", name="Estimate").click()
        line = page.get_by_text("Expected speed:")
        line.wait_for(timeout=60_000)
        assert f"from run {run.name} on this machine" in line.inner_text()
        line.scroll_into_view_if_needed()
        snap(page, shots, "throughput-1-estimate")

        page.get_by_label("Run", exact=True).click()
        page.get_by_role("option", name=run.name).filter(visible=True).first.click()
        speed = page.get_by_text("Speed: measured")
        speed.wait_for(timeout=30_000)
        assert "phases: queue" in speed.inner_text()
        chart = page.get_by_text("by phase")  # the phases' chart title
        chart.first.wait_for(timeout=30_000)
        speed.scroll_into_view_if_needed()
        snap(page, shots, "throughput-2-outcome")
