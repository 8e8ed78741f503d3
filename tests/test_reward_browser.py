"""The reward model in the browser: picked by its name in the Eval tab's reward-model form and as Compare's scorer,
its scores shown beside the answers (Chromium, the real app on a home that holds a finished reward run)."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import browser, opened, pytestmark, shots, snap, tab  # noqa: F401
from tests.test_reward_model import app, home, pairs, reward_run  # noqa: F401


@pytest.fixture()
def page(browser, app):  # noqa: F811
    with opened(browser, app.url) as page:
        yield page


def test_the_reward_model_scores_answers_in_eval_and_compare(page, shots, reward_run):  # noqa: F811
    tab(page, "Compare").click()
    page.wait_for_timeout(2000)  # the tab refreshes its pickers when shown: pick once they are drawn again
    pick(page, "Score with a reward model", reward_run.name)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.locator(".lab-status").filter(has_text=f"scored by {reward_run.name}").first.wait_for(timeout=120_000)
    assert page.get_by_text("mean reward").first.is_visible()
    snap(page, shots, "reward-compare")

    tab(page, "Eval").click()
    page.wait_for_timeout(2000)
    tab(page, "Reward model").click()
    pick(page, "Reward model", reward_run.name)
    page.get_by_label("Max rows", exact=True).filter(visible=True).fill("3")  # each kind has its own form
    page.get_by_role("button", name="Score with the reward model").click()
    # The job finishes in the background; the timer brings its numbers, its details and its examples.
    page.get_by_text(re.compile(r"scored by the reward model .* mean reward [+-]\d")).first.wait_for(timeout=180_000)
    page.get_by_text("Best examples (by reward)").first.wait_for()
    snap(page, shots, "reward-eval")


def pick(page, label: str, name: str) -> None:
    """Pick the option of the dropdown labelled ``label`` that starts with ``name`` (a run's label adds its method
    and time)."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=re.compile("^" + re.escape(name))).filter(visible=True).first.click()
