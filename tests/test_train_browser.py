"""The Train tab in Debian's chromium: pickers that know what exists now, a status line that follows the run,
and a log box that shows its end."""

from __future__ import annotations

import json
import time

import pytest

from tests.test_browser import CHROMIUM, browser, expect, fill_checked, page, shots, snap, tab  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


def start_with(page, fields: dict[str, str]) -> None:  # noqa: F811 - the page, not the fixture
    """Open the Optimisation group, fill ``fields`` (label → value), report to nothing, and press Start."""
    page.get_by_text("Optimisation", exact=True).click()
    for label, value in fields.items():
        fill_checked(page.get_by_label(label, exact=True), value)
    page.keyboard.press("Tab")
    page.get_by_text("Reporting", exact=True).click()
    page.get_by_label("Report to", exact=True).click()
    page.get_by_role("option", name="none", exact=True).filter(visible=True).first.click()
    page.get_by_role("button", name="Start run").click()


def wait_for_an_idle_queue(lab_app, limit: float = 300) -> None:
    """Let runs that other modules started on the shared app finish first, so this module's runs do not wait
    behind them inside their own time limits (a 2-core machine trains one at a time)."""
    from lab.home import lab_home
    from lab.train.runner import list_runs

    home = lab_home(lab_app.home)
    deadline = time.time() + limit
    while (list_runs(home, status="running") or list_runs(home, status="queued")) and time.time() < deadline:
        time.sleep(1)


def test_a_dataset_saved_after_the_page_loaded_is_picked_and_the_run_is_followed(page, lab_app, shots,  # noqa: F811
                                                                                 tmp_path):
    from lab.config import DataConfig
    from lab.data.pipeline import import_file
    from lab.home import lab_home

    path = tmp_path / "later.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {w}."},
                                                     {"role": "assistant", "content": f"{w}."}]}) + "\n"
                            for w in ("apple", "river", "stone", "cloud", "maple", "ocean")))
    import_file(str(path), DataConfig(name="saved-later", val_fraction=0), home=lab_home(lab_app.home))
    tab(page, "Train").click()  # showing the tab refreshes its pickers
    page.get_by_label("Dataset", exact=True).click()
    option = page.get_by_role("option", name="saved-later@", exact=False).filter(visible=True).first
    option.wait_for()
    assert "6 train + 0 val" in option.inner_text()
    option.click()
    # The chosen name ends before the picker's arrow (it ran under it): cut with "…", the arrow kept clear.
    picker = page.get_by_label("Dataset", exact=True)
    text_end, arrow_start = picker.evaluate("""box => [box.getBoundingClientRect().right
        - parseFloat(getComputedStyle(box).paddingRight), box.parentElement.querySelector('.icon-wrap')
        .getBoundingClientRect().left]""")
    assert text_end <= arrow_start and picker.evaluate("box => getComputedStyle(box).textOverflow") == "ellipsis"
    page.get_by_role("button", name="Estimate", exact=True).click()
    page.get_by_text("steps in all").first.wait_for(timeout=60_000)
    wait_for_an_idle_queue(lab_app)
    start_with(page, {"Max steps": "4", "Batch size": "2"})
    page.get_by_text("is running").or_(page.get_by_text("is queued")).first.wait_for(timeout=30_000)
    # The estimate was of other settings (Max steps and Batch size changed since): it says so, in the browser.
    expect(page.get_by_text("Settings changed since this estimate").first).to_be_visible()
    assert not page.get_by_text("steps in all").count()
    # The status line follows the run: "is running" becomes "succeeded" without a click.
    page.get_by_text("succeeded: final loss").first.wait_for(timeout=120_000)
    assert not page.get_by_text("is running.").count()
    log = page.get_by_label("Log (last 40 lines)")
    log.scroll_into_view_if_needed()
    at_end = log.evaluate("box => box.scrollHeight - box.scrollTop - box.clientHeight")
    assert at_end < 5, at_end  # the log box shows its last lines
    snap(page, shots, "train-run-followed")


def test_a_run_that_did_not_change_the_model_is_shown_failed_in_red(page, lab_app, shots):  # noqa: F811
    tab(page, "Train").click()
    wait_for_an_idle_queue(lab_app)
    start_with(page, {"Learning rate": "1e-30", "Max steps": "2"})
    failed = page.get_by_text("failed: The model did not change").first
    failed.wait_for(timeout=120_000)
    assert failed.evaluate("node => getComputedStyle(node).color") == "rgb(185, 28, 28)"
    snap(page, shots, "train-run-unchanged-red")


def test_choosing_an_objective_shows_its_settings_and_hides_the_others(page, shots):  # noqa: F811
    """The objective picker lists every registered objective; its settings row shows while it is chosen (DPO and
    KTO share one row for the settings both read), the others' rows are hidden."""
    from lab.train.methods import NAMES

    tab(page, "Train").click()
    page.get_by_text("Objective settings", exact=False).first.click()
    page.get_by_label("Objective", exact=True).click()
    listed = [o.inner_text().split()[-1] for o in page.get_by_role("option").filter(visible=True).all()]  # ✓ marks
    assert set(NAMES) <= set(listed), listed
    page.get_by_role("option", name="grpo", exact=True).filter(visible=True).first.click()
    page.get_by_label("Num generations", exact=True).wait_for()
    snap(page, shots, "train-objective-grpo")
    assert page.get_by_text("Reward file", exact=True).is_visible()
    assert not page.get_by_label("DPO beta", exact=True).is_visible()
    page.get_by_label("Objective", exact=True).click()
    page.get_by_role("option", name="kto", exact=True).filter(visible=True).first.click()
    page.get_by_label("KTO beta", exact=True).wait_for()
    assert page.get_by_label("Max prompt length", exact=True).is_visible()  # shared with DPO
    assert not page.get_by_label("Num generations", exact=True).is_visible()
    # The bundled sample follows the objective's kind of data (a saved dataset the user chose would stay).
    assert page.get_by_label("Dataset", exact=True).input_value().startswith("sample:unpaired")
    snap(page, shots, "train-objective-kto")


def test_a_page_opened_afresh_shows_the_newest_run(page, lab_app, shots):  # noqa: F811
    """Coming back to the Train tab showed an empty Run picker and blank curves although runs existed: the newest run
    is picked as the page loads, and its curves are drawn."""
    from lab.catalog import run_choices
    from lab.home import lab_home

    choices = run_choices(lab_home(lab_app.home))
    if not choices:
        pytest.skip("no run yet: the tests above start them")
    tab(page, "Train").click()
    expect(page.get_by_label("Run", exact=True)).to_have_value(choices[0][0])
    page.get_by_text(choices[0][0].split(" · ")[0] + " · ").first.wait_for()  # its progress line
    expect(page.get_by_text("Select a run to see its curves.")).to_have_count(0)
    snap(page, shots, "train-newest-run-on-load")

