"""The whole loop as a team walks it, in a real browser, through the pickers (no id is ever typed):
import a dataset → SFT → a labeling campaign → two labelers vote by keyboard, each in their own browser →
export → "Train DPO on this" → Compare → Eval; the DPO model must differ from the SFT model, and Eval must show it.

The screenshots it takes are the README's tour: ``make screenshots`` runs this test with ``LAB_SCREENSHOTS=docs/img``.
One app (sign-in on: an admin and two labelers) and one pass through the loop: each step needs the one before it.
"""

from __future__ import annotations

import re

import pytest

from lab.home import lab_home
from tests.app_server import start_app_with_accounts
from tests.test_browser import (  # noqa: F401
    CHROMIUM,
    assert_no_gradio_failures,
    browser,
    fill_checked,
    open_new_campaign,
    shots,
    signed_in_page,
    snap,
    tab,
)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]
expect = pytest.importorskip("playwright.sync_api").expect
ACCOUNTS = {"lead": ("admin", "lead password"), "ann": ("labeler", "ann password"),
            "bob": ("labeler", "bob password")}
RUN_S = 240_000  # ms a tiny run may take on a busy 2-core machine


@pytest.fixture(scope="module")
def team_app(tmp_path_factory):
    yield from start_app_with_accounts(tmp_path_factory.mktemp("loop-browser") / "home", ACCOUNTS)


def signed_in(browser, url: str, name: str):  # noqa: F811
    return signed_in_page(browser, url, name, ACCOUNTS[name][1])


def pick(page, label: str, option: str | re.Pattern) -> None:
    """Open the visible picker labelled ``label`` and click the option whose name matches."""
    pick_many(page, label, option)


def pick_many(page, label: str, *options: str | re.Pattern) -> None:
    """Pick several options of the visible multi-select labelled ``label`` (its list stays open between picks)."""
    box = page.get_by_label(label, exact=True).filter(visible=True).first
    for option in options:
        box.click()
        page.get_by_role("option", name=option).filter(visible=True).first.click()
    page.keyboard.press("Escape")


def opened(page, group: str, label: str):
    """The field ``label`` of the form group ``group``, opening the group only if it is closed (a click on an open
    group closes it, and a value typed as it closes is lost)."""
    field = page.get_by_label(label, exact=True)
    if not field.is_visible():
        page.get_by_text(group, exact=True).click()
    expect(field).to_be_visible()
    return field


def visible(page, text: str | re.Pattern):
    return page.get_by_text(text).filter(visible=True).first


def start_and_finish(page) -> None:
    """Start the run the Train form holds and wait until its status line says it succeeded."""
    page.get_by_role("button", name="Start run").click()
    started = visible(page, re.compile(r"is (running|queued)|⚠"))
    started.wait_for(timeout=60_000)
    assert "⚠" not in started.inner_text(), started.inner_text()  # the refusal, said
    visible(page, "succeeded: final loss").wait_for(timeout=RUN_S)


def vote_shorter(page) -> bool:
    """Vote for the shorter answer by keyboard, as a labeler would; False when nothing is left for this labeler."""
    if not page.locator("#lab-vote-a").is_enabled():
        return False
    progress = page.get_by_text(re.compile(r"You: \d+ votes?\b")).first
    before = progress.inner_text()
    a, b = (page.locator(f"#lab-answer-{side}").inner_text() for side in "ab")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus off any input
    page.keyboard.press("1" if len(a.split()) <= len(b.split()) else "2")
    expect(progress).not_to_have_text(before)  # the vote counted and the next pair (or nothing) is shown
    return True


def test_a_team_runs_the_whole_loop_in_the_browser(browser, team_app, shots):  # noqa: F811
    lead = signed_in(browser, team_app.url, "lead")
    try:
        walk_the_loop(browser, team_app, shots, lead)
        assert_no_gradio_failures(lead)
    except Exception:
        snap(lead, shots, "loop-failed")  # what the page showed when a step did not come
        raise


def walk_the_loop(browser, team_app, shots, lead) -> None:  # noqa: F811
    lead.get_by_role("heading", name="Fine-tuning lab").wait_for()

    # Data: the bundled SFT sample, saved under a name of ours.
    lead.get_by_role("button", name="Load sample").click()
    lead.locator(".lab-status").filter(has_text="Kind sft").first.wait_for()
    lead.get_by_placeholder("e.g. support-chats").fill("team-chats")
    lead.get_by_role("button", name="Save version").click()
    visible(lead, "Saved team-chats@").wait_for()
    snap(lead, shots, "loop-1-data")

    # Train: the tiny recipe on the dataset just saved, picked by its name.
    tab(lead, "Train").click()
    lead.get_by_role("button", name="Load recipe").click()
    visible(lead, "Loaded tiny-sft.yaml").wait_for()
    pick(lead, "Dataset", re.compile(r"^team-chats@"))
    # A textbox's accessible name includes its help text, hence the anchored patterns.
    fill_checked(lead.get_by_role("textbox", name=re.compile(r"^Name\b")).filter(visible=True).first, "team-sft")
    fill_checked(opened(lead, "Optimisation", "Max steps"), "40")
    lead.keyboard.press("Tab")
    expect(lead.get_by_label("Max steps", exact=True)).to_have_value("40")
    opened(lead, "Reporting", "Report to")
    pick(lead, "Report to", "none")
    start_and_finish(lead)
    snap(lead, shots, "loop-2-train")

    # Label: a campaign on the same dataset's prompts, the SFT run against the base, both picked by name.
    tab(lead, "Label").click()
    open_new_campaign(lead)  # a lab with no campaign opens the form itself
    pick(lead, "Prompts", re.compile(r"^team-chats@"))
    pick_many(lead, "Sources", re.compile(r"^team-sft · SFT"), re.compile(r"^tiny "))
    fill_checked(lead.get_by_label("Max prompts", exact=True), "6")
    fill_checked(lead.get_by_label("Max new tokens", exact=True).filter(visible=True).first, "24")
    fill_checked(lead.get_by_label("Votes per pair", exact=True), "1")
    fill_checked(lead.get_by_role("textbox", name=re.compile(r"^Guidelines\b")), "Prefer the **shorter** answer.")
    lead.keyboard.press("Tab")
    # The name last, and checked: on a busy machine the form's boxes mount late, and an early fill was lost (CI).
    name_box = lead.get_by_role("textbox", name=re.compile(r"^Name\b")).filter(visible=True).first
    name_box.fill("team-round")
    expect(name_box).to_have_value("team-round")
    lead.get_by_role("button", name="Create campaign").click()
    visible(lead, "Created campaign team-round").wait_for()
    visible(lead, re.compile(r"open for labeling · 0/6 votes")).wait_for(timeout=RUN_S)  # answers generated
    snap(lead, shots, "loop-3-campaign")

    # Two labelers, each in their own browser, vote by keyboard until every pair has its vote.
    ann = signed_in(browser, team_app.url + "label/", "ann")
    bob = signed_in(browser, team_app.url + "label/", "bob")
    for page in (ann, bob):
        page.get_by_text("You: 0 votes").wait_for()
    snap(ann, shots, "loop-4-labeling")
    for _ in range(12):
        if not (vote_shorter(ann) | vote_shorter(bob)):
            break
    for page in (ann, bob):
        expect(page.locator("#lab-vote-a")).to_be_disabled()  # nothing left for either of them
    home = lab_home(team_app.home)
    from lab.store import Store

    votes = Store(home).query("SELECT labeler, COUNT(*) AS n FROM live_votes GROUP BY labeler")
    assert {v["labeler"] for v in votes} == {"ann", "bob"} and sum(v["n"] for v in votes) == 6, votes

    # Export the votes, then "Train DPO on this": the Train tab is filled with settings that train.
    visible(lead, "every vote is in").wait_for(timeout=15_000)
    lead.get_by_role("button", name="Export", exact=True).click()
    visible(lead, "Exported labels-team-round@").wait_for()
    expect(lead.get_by_label("Policy to train with DPO", exact=True).filter(visible=True).first).to_have_value(
        re.compile(r"^team-sft · SFT"))  # the campaign's labeled run
    # the lead's own voting panel names the campaign with its state now, not the "generating" it was read with
    expect(lead.get_by_label("Campaign", exact=True).first).to_have_value(re.compile(r"^team-round · open"))
    snap(lead, shots, "loop-5-export")
    lead.get_by_role("button", name="Train DPO on this").click()
    expect(tab(lead, "Train")).to_have_attribute("aria-selected", "true", timeout=60_000)
    visible(lead, "optimizer step").wait_for()
    start_and_finish(lead)
    snap(lead, shots, "loop-6-dpo")

    # Compare: SFT and DPO side by side, by name.
    tab(lead, "Compare").click()
    pick_many(lead, "Checkpoints", re.compile(r"^team-sft · SFT"), re.compile(r" · DPO"))
    lead.get_by_label("Max new tokens").filter(visible=True).first.fill("16")
    lead.get_by_role("button", name="Compare", exact=True).click()
    visible(lead, re.compile(r"\d checkpoints answered")).wait_for(timeout=RUN_S)  # tiny is there by default too
    for name in ("team-sft", "dpo-labels-team-round"):  # the answer columns, by run name
        expect(lead.get_by_role("columnheader", name=re.compile(name)).first).to_be_visible()
    snap(lead, shots, "loop-7-compare")

    # Eval: held-out perplexity of both; the numbers differ because the weights do.
    tab(lead, "Eval").click()
    pick(lead, "Dataset", re.compile(r"^team-chats@"))
    pick_many(lead, "Models", re.compile(r"^team-sft · SFT"), re.compile(r" · DPO"))
    lead.get_by_role("button", name="Evaluate perplexity").click()
    visible(lead, re.compile(r"perplexity of team-sft: loss")).wait_for(timeout=RUN_S)
    visible(lead, re.compile(r"perplexity of .*dpo.*: loss", re.I)).wait_for(timeout=RUN_S)
    snap(lead, shots, "loop-8-eval")

    from lab.eval.jobs import list_evals
    from lab.train.runner import list_runs

    runs = {r.train_config.objective: r for r in list_runs(home, status="succeeded")}
    assert set(runs) == {"sft", "dpo"}, runs
    assert runs["dpo"].model == f"run:{runs['sft'].id}" and runs["dpo"].dataset.startswith("labels-team-round@")
    assert adapter_moved(runs["dpo"].run_dir / "final"), "the DPO adapter is still zero: DPO trained nothing"
    losses = {job.model: job.results["loss"] for job in list_evals(home) if job.status == "succeeded"}
    assert losses[f"run:{runs['sft'].id}"] != losses[f"run:{runs['dpo'].id}"], losses


def adapter_moved(final) -> bool:
    """A LoRA adapter starts with every lora_B at zero: any non-zero one means the model changed."""
    from safetensors.torch import load_file

    weights = load_file(str(final / "adapter_model.safetensors"))
    return any(name.count("lora_B") and bool(tensor.abs().sum() > 0) for name, tensor in weights.items())
