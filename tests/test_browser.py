"""The web app in a real browser (Playwright + Debian's chromium): what a person sees and clicks.

Screenshots go to ``$LAB_SCREENSHOTS`` when set (else a temporary folder), one per step, so a
person can look at the pages the test walked through.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.app_server import AppServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
# expect's own 5 s default is too short for a busy 2-core CI machine (it failed a labeler's intro once); every
# browser test imports this module, so this one line sets every assertion's wait to the page's.
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Every toast the page shows, kept as it appears (toasts fade): registered before the page's own scripts run.
RECORD_TOASTS = """
window.labToasts = [];
new MutationObserver(() => {
  for (const toast of document.querySelectorAll('.toast-body')) {
    const said = toast.className + ': ' + toast.innerText.replace(/\\s+/g, ' ');
    if (!window.labToasts.includes(said)) window.labToasts.push(said);
  }
}).observe(document, {subtree: true, childList: true});
"""
# What Gradio itself says when a handler's return does not fit its outputs: never a message for people, always a
# bug of the lab's, so any browser test that meets one fails (the toasts a test provokes on purpose say other things).
GRADIO_FAILURES = ("Returned dictionary included some keys", "return enough output values",
                   "returned too many output values")


def toasts(page) -> list[str]:
    """Every toast ``page`` has shown since it opened (``RECORD_TOASTS``), as 'classes: text'."""
    return page.evaluate("window.labToasts || []")


def assert_no_gradio_failures(page) -> None:
    """No toast of Gradio's own failures (``GRADIO_FAILURES``) was shown on ``page`` (closed: nothing to ask)."""
    failures = [] if page.is_closed() else [t for t in toasts(page) if any(p in t for p in GRADIO_FAILURES)]
    assert not failures, f"Gradio could not show a handler's result: {failures}"


def new_page(browser, width: int = 1400):
    """A page in a browser context of its own (its own cookies: one person), ``width`` px wide, recording its toasts
    (``toasts``)."""
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.add_init_script(RECORD_TOASTS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@contextmanager
def opened(browser, url: str):
    """A fresh browser context on the lab at ``url``, once its heading is drawn; on leaving, no toast of Gradio's
    own failures (``GRADIO_FAILURES``) may have been shown."""
    page = new_page(browser)
    context = page.context
    page.goto(url)
    page.get_by_role("heading", name="Fine-tuning lab").wait_for()
    try:
        yield page
        assert_no_gradio_failures(page)
    finally:
        context.close()


@pytest.fixture()
def page(browser, lab_app: AppServer):  # noqa: F811
    with opened(browser, lab_app.url) as page:
        yield page


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snap(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def wait_for_created(page, name: str, shots: Path) -> None:
    """Wait for "Created campaign NAME"; if it does not come, fail with what the page said instead (its status lines
    and toasts: a toast fades, the status line stays) and a screenshot. CI has timed out here with no clue."""
    try:
        page.get_by_text(f"Created campaign {name}").filter(visible=True).first.wait_for(timeout=60_000)
    except sync_api.TimeoutError:
        snap(page, shots, f"campaign-{name}-not-created")
        said = page.locator(".lab-status").all_inner_texts() + page.locator(".toast-body").all_inner_texts()
        raise AssertionError(f"no 'Created campaign {name}' within 60 s; the page said: {said}") from None


def you_voted(n: int) -> str:
    """The start of the labeling page's progress line after ``n`` votes."""
    return f"You: {n} vote{'s' if n != 1 else ''} ·"


def fill_checked(box, value: str) -> None:
    """Fill ``box`` and see that the value held: on a busy machine a box that has just been shown (an accordion
    opened, a form drawn by a tab's refresh) can mount after the fill and drop it, and the test then goes on with
    the default (CI: a rubric lost, a learning rate of 1e-30 left at the recipe's)."""
    for _ in range(3):
        box.fill(value)
        try:
            expect(box).to_have_value(value, timeout=5_000)
            return
        except AssertionError:
            continue
    expect(box).to_have_value(value)


def upload_checked(page, component: str, path) -> None:
    """Upload ``path`` into the file component ``component`` (a CSS selector) and see its name shown: a form that
    has just opened can redraw the component after the upload and drop it (a busy machine: the Label tab's New
    campaign form, opened by the tab itself, lost its responses file once). Uploads again only while the component
    still offers its file input: once it holds the file the input is gone, and a slow upload is waited for (CI's
    2-core machine took over 10 s to show a name, and a second upload then waited for an input that was gone)."""
    name = Path(path).name
    shown = page.locator(component).get_by_text(name)
    file_input = page.locator(f"{component} input[type=file]")
    for _ in range(3):
        if file_input.count():
            file_input.set_input_files(str(path))
        try:
            shown.wait_for(timeout=20_000)
            return
        except sync_api.TimeoutError:
            continue
    shown.wait_for()


def open_new_campaign(page) -> None:
    """Open the Label tab's New campaign form unless it is open: while no campaign exists the tab opens it by itself
    (as it is shown), and a click then would close it."""
    field = page.get_by_label("Votes per pair", exact=True)
    for _ in range(3):  # the tab's own opening may land between a look and a click: look again
        if field.is_visible():
            return
        page.get_by_text("New campaign", exact=True).click()
        try:
            expect(field).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            continue
    expect(field).to_be_visible()


def signed_in_page(browser, url: str, name: str, password: str, width: int = 1400):
    """A page of its own (``new_page``), signed in as ``name``."""
    page = new_page(browser, width)
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    return page


def tab(page, name: str):
    return page.get_by_role("tab", name=name, exact=True)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the dropdown labelled ``label``."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).filter(visible=True).first.click()


def test_all_five_tabs_are_there(page, shots):
    for name in ("Data", "Train", "Compare", "Label", "Eval"):
        assert tab(page, name).is_visible(), f"no {name} tab"
    snap(page, shots, "01-data-tab-empty")
    for name, text in (("Compare", "Pick up to four checkpoints"), ("Eval", "Held-out loss and perplexity")):
        tab(page, name).click()
        page.get_by_text(text).first.wait_for()
        snap(page, shots, f"06-{name.lower()}-tab")




def test_a_page_just_opened_shows_no_error_while_every_tab_s_timers_tick(browser, lab_app, shots):
    """A newcomer opens the app and looks at each tab: the timers that keep the tabs current (the Eval tab's every
    2 s, the Label tab's every 3 s) must not fail on a page where nothing has been started yet. One did: the Eval
    tab's timer raised on every fresh page, a red "Error" toast whatever tab was shown. And what a screen reader says
    of the page is words: the ↻ buttons' names, the status line after an event."""
    with opened(browser, lab_app.url) as page:
        for name in ("Train", "Compare", "Label", "Eval", "Data"):
            tab(page, name).click()
            page.wait_for_timeout(1_500)
        page.wait_for_timeout(6_000)  # three ticks of the 2 s timers, two of the 3 s ones
        errors = [t for t in toasts(page) if "error" in t.lower()]
        if errors:
            snap(page, shots, "fresh-page-error")
        assert not errors, errors
        tab(page, "Eval").click()  # a ↻ beside a picker has a name a screen reader can say, and a tooltip
        expect(page.get_by_role("button", name="Refresh the list", exact=True).first).to_be_visible()
        tab(page, "Data").click()
        # What a screen reader is told after an event: words, not Gradio's untranslated keys ("common.complete").
        page.get_by_role("button", name="Load sample").click()  # reads the sample, saves nothing
        page.locator(".lab-status").filter(has_text="Valid rows").first.wait_for()
        said = page.locator("div.sr-only[role=status]")
        expect(said.first).not_to_have_text("")
        assert not [s for s in said.all_inner_texts() if s.startswith("common.")], said.all_inner_texts()


def test_data_tab_sample_check_preview_save_and_explore(page, shots):
    page.get_by_role("button", name="Load sample").click()
    summary = page.locator(".lab-status").filter(has_text="Valid rows").first
    summary.wait_for()
    assert "Kind sft" in summary.inner_text()
    assert "openai" in summary.inner_text() or "Format" in summary.inner_text()
    # The dataset name is suggested from the file name (a step chained after the check).
    expect(page.get_by_placeholder("e.g. support-chats")).to_have_value("sft")
    snap(page, shots, "02-data-checked-sample")

    page.get_by_role("button", name="Preview cleaning").click()
    page.get_by_text("Cleaning would keep").wait_for()
    snap(page, shots, "03-data-preview-cleaning")

    page.get_by_role("button", name="Save version").click()
    saved = page.get_by_text("Saved sft@").first  # the status line and, for a moment, the progress bar
    saved.wait_for()
    ref = saved.inner_text().split("Saved ")[1].split(":")[0]
    snap(page, shots, "04-data-saved")

    tab(page, "Versions").click()
    page.get_by_role("heading", name=ref).wait_for()  # the card of the version just saved
    snap(page, shots, "05-data-versions")

    tab(page, "Explore").click()
    name, version = ref.split("@")
    expect(page.get_by_label("Dataset", exact=True).filter(visible=True)).to_have_value(
        re.compile(rf"^{name}@{version[:8]} · sft · "))
    page.get_by_role("button", name="Compute statistics").click()
    page.get_by_text("Statistics of").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    snap(page, shots, "07-data-explore-statistics")

    tab(page, "Rows").click()
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("page 1 of").wait_for()
    assert page.get_by_text("Row 1 of").is_visible()
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text("page 2 of").wait_for()
    snap(page, shots, "08-data-explore-rows")

    tab(page, "Loss mask").click()
    page.get_by_role("button", name="Show loss mask").click()
    page.locator(".lab-mask").wait_for()
    assert page.locator('.lab-mask span[title="carries loss"]').count() > 0
    assert page.get_by_text("Row 1 of").filter(visible=True).count() > 0
    snap(page, shots, "09-data-explore-loss-mask")
    page.get_by_label("Max length (tokens)").fill("8")
    page.get_by_role("button", name="Show loss mask").click()
    warning = page.locator(".prose.lab-warning")
    warning.wait_for()
    assert "Truncated" in warning.inner_text()
    snap(page, shots, "09b-data-explore-loss-mask-warning")


def test_preference_sample_shows_chosen_and_rejected_side_by_side(page, shots):
    choose(page, "… or a bundled sample", "Preference pairs")
    page.get_by_role("button", name="Load sample").click()
    page.locator(".lab-status").filter(has_text="Kind preference").first.wait_for()
    tab(page, "Explore").click()
    tab(page, "Rows").click()
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("✓ CHOSEN").first.wait_for()
    assert page.get_by_text("✗ REJECTED").first.is_visible()
    snap(page, shots, "10-data-explore-preference-rows")


def test_a_reply_of_weight_0_shows_as_context_in_the_rows_and_the_loss_mask(page, shots, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": "A refusal kept as context.", "weight": 0},
                          {"role": "user", "content": "Please answer."},
                          {"role": "assistant", "content": f"The answer is {i}."}]} for i in range(4)]
    path = tmp_path / "weighted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    box = page.get_by_label("… or a local path or Hugging Face dataset id")
    box.fill(str(path))
    box.press("Enter")
    page.locator(".lab-status").filter(has_text="Valid rows").first.wait_for()
    page.get_by_role("button", name="Save version").click()
    page.get_by_text("Saved weighted@").first.wait_for()
    tab(page, "Explore").click()
    tab(page, "Rows").click()
    page.get_by_role("button", name="Show rows").click()
    page.get_by_text("page 1 of").wait_for()
    snap(page, shots, "08c-data-rows-weight-0")
    page.get_by_text("weight 0: context, not trained on").first.wait_for()
    tab(page, "Loss mask").click()
    page.get_by_role("button", name="Show loss mask").click()
    page.locator(".lab-mask").wait_for()
    trained = "".join(page.locator('.lab-mask span[title="carries loss"]').all_inner_texts())
    assert "answer·is" in trained and "refusal" not in trained, trained
    snap(page, shots, "09c-data-loss-mask-weight-0")


def test_unrecognised_file_reveals_the_mapping_panel(page, shots, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question_text,best_answer\nWhat is 2+2?,4\nName a colour.,Blue\n")
    box = page.get_by_label("… or a local path or Hugging Face dataset id")
    box.fill(str(path))
    box.press("Enter")
    page.get_by_text("Map the columns by hand.").wait_for()
    choose(page, "prompt", "question_text")
    choose(page, "response", "best_answer")
    page.get_by_role("button", name="Check again with this mapping").click()
    page.locator(".lab-status").filter(has_text="columns mapped by hand").first.wait_for()
    snap(page, shots, "11-data-mapping")


def test_errors_show_as_a_message_not_a_traceback(page, shots, tmp_path):
    path = tmp_path / "broken.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path.write_text(json.dumps(good) + "\n{not json\n")
    box = page.get_by_label("… or a local path or Hugging Face dataset id")
    box.fill(str(path))
    box.press("Enter")
    page.get_by_text("1 invalid row").wait_for()
    assert page.get_by_text("Invalid rows (1)").first.is_visible()
    page.get_by_role("button", name="Save version").click()
    page.get_by_text("1 of 2 rows are invalid").first.wait_for()
    assert page.get_by_text("Traceback").count() == 0
    snap(page, shots, "12-data-invalid-rows")


def test_uploaded_file_is_kept_under_lab_home_and_checked(page, shots, tmp_path, lab_app):  # noqa: F811
    path = tmp_path / "uploaded chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"question {i}"},
                          {"role": "assistant", "content": f"answer {i}"}]} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page.locator("input[type=file]").first.set_input_files(str(path))
    summary = page.locator(".lab-status").filter(has_text="Valid rows").first
    summary.wait_for()
    assert "3 / 3" in summary.inner_text()
    shown = page.get_by_label("… or a local path or Hugging Face dataset id").input_value()
    digest = re.fullmatch(rf"upload:([0-9a-f]{{12}})/{re.escape(path.name)}", shown).group(1)
    assert (lab_app.home / "uploads" / digest / path.name).is_file()
    snap(page, shots, "13-data-uploaded")


def test_train_tab_estimates_and_runs_a_tiny_recipe(page, shots):
    tab(page, "Train").click()
    page.get_by_role("button", name="Load recipe").click()
    page.get_by_text("Loaded tiny-sft.yaml").wait_for()
    page.get_by_role("button", name="Estimate").click()
    page.get_by_text("Estimate ready").wait_for(timeout=60_000)
    assert page.get_by_text("steps in all").first.is_visible()
    snap(page, shots, "14-train-estimate")
    memory_group = page.get_by_role("button", name=re.compile(r"^Memory\b"))
    memory_group.click()
    page.get_by_text("offloading, tiling) plan for it").wait_for()  # gpu_memory_gib's help text
    snap(page, shots, "14b-train-memory-group")
    memory_group.click()
    page.get_by_text("Optimisation", exact=True).click()
    page.get_by_text("Reporting", exact=True).click()
    fill_checked(page.get_by_label("Max steps", exact=True), "6")
    page.keyboard.press("Tab")
    page.get_by_label("Report to", exact=True).click()
    page.get_by_role("option", name="none", exact=True).filter(visible=True).first.click()
    page.get_by_role("button", name="Start run").click()
    page.get_by_text("is running").or_(page.get_by_text("is queued")).first.wait_for(timeout=30_000)
    progress = page.get_by_text("· succeeded ·")  # the selected run's progress line, refreshed by the timer
    progress.first.wait_for(timeout=120_000)
    assert "step 6/6" in progress.first.inner_text()
    snap(page, shots, "15-train-run-finished")
    page.get_by_text("Memory: estimated").wait_for(timeout=10_000)
    assert page.get_by_text("before (base)").first.is_visible()
    page.get_by_text("Memory: estimated").scroll_into_view_if_needed()
    snap(page, shots, "16-train-run-outcome")


def test_label_tab_campaign_votes_by_keyboard_and_leaderboard(page, shots, tmp_path):
    from tests.test_label import responses_file

    tab(page, "Label").click()
    open_new_campaign(page)
    # A textbox's accessible name includes its help text, hence the anchored patterns.
    responses = responses_file(tmp_path, 4)
    upload_checked(page, "#lab-responses_file", responses)  # uploaded before Create
    fill_checked(page.get_by_label("Votes per pair", exact=True), "1")
    page.keyboard.press("Tab")
    # The name last, and checked: on a busy machine the form's boxes mount late, and an early fill was lost (CI).
    name_box = page.get_by_role("textbox", name=re.compile(r"^Name\b")).filter(visible=True).first
    name_box.fill("browser-campaign")
    expect(name_box).to_have_value("browser-campaign")
    page.get_by_role("button", name="Create campaign").click()
    wait_for_created(page, "browser-campaign", shots)
    # Creating selects the campaign in the voting panel too (its first pair waits for Start: no lease yet).
    expect(page.get_by_label("Campaign", exact=True).filter(visible=True).first).to_have_value(
        re.compile(r"^browser-campaign · open"))
    page.get_by_text("browser-campaign is chosen: press Start").wait_for()
    page.get_by_role("button", name="Start", exact=True).click()
    progress = page.get_by_text("votes · ").first
    progress.wait_for()
    assert "You: 0 votes" in progress.inner_text()
    snap(page, shots, "20-label-pair")
    for expected in range(1, 5):
        answer_a = page.locator(".lab-response").first.inner_text()
        page.locator("body").click(position={"x": 5, "y": 5})  # focus off any input, as a labeler's page is
        page.keyboard.press("1" if "Thank you" in answer_a else "2")
        expect(page.get_by_text(you_voted(expected))).to_be_visible()
    page.get_by_text("Nothing left for you in this campaign").first.wait_for()
    page.get_by_text("Leader: tuned").wait_for(timeout=15_000)  # the admin view refreshes on a timer
    snap(page, shots, "21-label-admin")


def test_chat_playground_two_at_once(page, shots):
    tab(page, "Compare").click()
    tab(page, "Chat playground").click()
    page.get_by_label("Two at once").check()
    expect(page.get_by_label("Checkpoint B")).to_be_visible()
    page.get_by_label("System prompt").fill("You are a concise assistant.")
    page.get_by_label("Max new tokens").filter(visible=True).fill("16")
    box = page.get_by_placeholder("Your message (Enter sends)")
    box.fill("Hello there, who are you?")
    box.press("Enter")
    # B answers after A; the first reply waits for torch to import and the model to load.
    page.get_by_text(re.compile(r"B \(.+\): \d+ tokens")).wait_for(timeout=60_000)
    for side in "AB":  # each conversation shows the message and its own reply
        conversation = page.locator(f"#lab-chat-{side.lower()}")
        # (its accessible name carries the message as rendered HTML, "<p>Hello…</p>": found by its text instead)
        expect(conversation.locator(".user-row").filter(has_text="Hello there, who are you?")).to_be_visible()
        expect(conversation.locator(".bot-row")).to_have_count(1)
        # The label badge has a row of its own (it covered the first message), and the one way to clear is "✕ Clear".
        badge = conversation.get_by_test_id("block-label").bounding_box()
        first = conversation.locator(".message-row").first.bounding_box()
        assert badge["y"] + badge["height"] <= first["y"], (badge, first)
        expect(conversation.locator('button[aria-label="Clear"]')).to_be_hidden()
    expect(box).to_have_value("")
    snap(page, shots, "31-compare-chat-two-at-once")


def test_eval_tab_judge_prompt_follows_the_mode(page, shots):
    tab(page, "Eval").click()
    tab(page, "LLM judge").click()
    prompt = page.get_by_role("textbox", name=re.compile(r"^Judge prompt"))
    expect(prompt).to_have_value(re.compile(r"\{answer_b\}"))
    page.get_by_role("combobox", name="Mode", exact=True).filter(visible=True).first.click()
    page.get_by_role("option", name="single", exact=True).filter(visible=True).first.click()
    expect(prompt).to_have_value(re.compile(r"\[\[rating\]\]"))
    snap(page, shots, "32-eval-judge-single")
