"""Compare and Eval name runs as people named them, give each run one colour in every chart, keep metrics of
different scales on their own axes, show the learning rate a run used, and keep their pickers and status lines
current: the figures on their own, then two finished tiny runs (an SFT run and a DPO run trained from it with the
learning rate left at 0) through the real app and a real browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client

from lab.ui import plots

ROOT = Path(__file__).resolve().parents[1]
SFT, DPO = "names-sft", "names-dpo-from-sft"
QUICK = ("--set", "report_to=none", "--set", "save_steps=0", "--set", "sample_prompts=0", "--set", "warmup_ratio=0")


# --------------------------------------------------------------------------- figures


def test_a_run_keeps_its_colour_and_runs_in_one_chart_get_different_ones():
    chosen = plots.run_colors(["run:a", "run:b", "tiny"])
    assert chosen == plots.run_colors(["tiny", "run:b", "run:a"])  # the same runs, the same colours
    assert chosen["tiny"] == plots.BASE_COLOR and len(set(chosen.values())) == 3
    assert plots.run_colors(["x"])["x"] == plots.run_color("run:x")  # a bare run id is the same run
    keys = [f"run:2026{i:04d}" for i in range(40)]
    older, newer = next((a, b) for i, a in enumerate(keys) for b in keys[i + 1:]
                        if plots.run_color(a) == plots.run_color(b))  # two runs that hash to one colour
    apart = plots.run_colors([newer, older])
    assert apart[older] == plots.run_color(older) and apart[newer] != apart[older]  # the older keeps its own


def test_the_learning_rate_and_the_grad_norm_are_on_their_own_axes_in_the_run_s_colour():
    rows = [{"step": s, "loss": 2 - s / 10, "learning_rate": 2e-5 * s / 10, "grad_norm": 1.5 + s / 10,
             "tokens_per_second": 900.0, "split": "train"} for s in range(1, 11)]
    rows.append({"step": 10, "eval_loss": 1.2, "split": "eval"})
    figures = plots.run_curves(rows, "run:abc")
    axes = {trace.name: trace.yaxis for trace in figures["aux"].data}
    assert len({axes["learning rate"], axes["grad norm"], axes["tokens/s"]}) == 3
    lr_axis = figures["aux"].layout["yaxis" + axes["learning rate"][1:]]
    assert lr_axis.exponentformat == "e"  # 2e-05, not a flat line at 0
    color = plots.run_color("run:abc")
    assert {t.line.color for t in (*figures["aux"].data, *figures["loss"].data)} == {color}
    assert [(t.name, t.line.dash) for t in figures["loss"].data] == [("train loss", "solid"), ("eval loss", "dot")]
    assert figures["loss"].layout.yaxis.exponentformat == "e"  # GRPO's loss near 0: 5e-8, not "50n"


def test_a_resumed_run_s_steps_are_drawn_once_with_their_later_values():
    """A run resumed from its step-10 checkpoint logs step 15 again: the line went back to 15 and up again (a spike
    in tokens/s); each step is drawn once, with the value the run went on from."""
    rows = [{"split": "train", "step": s, "loss": 5 - s / 10, "tokens_per_second": 900.0} for s in (5, 10, 15)]
    rows += [{"split": "train", "step": s, "loss": 4 - s / 10, "tokens_per_second": 1000.0} for s in (15, 20)]
    assert plots.series(rows, "tokens_per_second") == ([5, 10, 15, 20], [900.0, 900.0, 1000.0, 1000.0])
    tokens = next(t for t in plots.run_curves(rows, "run:x")["aux"].data if t.name == "tokens/s")
    assert list(tokens.x) == [5, 10, 15, 20]


def test_a_panel_of_several_series_names_them_in_words_each_in_its_own_colour():
    """GRPO's reward per function drew every function in the run's colour, named by raw keys
    (rewards/numeric_answer/mean): each is named by its function, in a colour of its own, listed in the legend under
    its panel's title."""
    from lab.train.methods import objective

    rows = [{"split": "train", "step": s, "rewards/format/mean": 0.5, "rewards/numeric_answer/mean": 0.1,
             "reward": 0.6, "reward_std": 0.2, "completions/mean_length": 6, "completions/max_length": 8}
            for s in (5, 10)]
    figure = plots.run_curves(rows, "run:x", objective("grpo").panels)["aux"]
    traces = {t.name: t for t in figure.data}
    assert {"format", "numeric answer", "mean", "spread (std)", "longest"} <= set(traces)
    assert not any("/" in name or "_" in name for name in traces if name not in ("tokens/s",))
    functions = [traces["format"], traces["numeric answer"]]
    assert functions[0].line.color == plots.run_color("run:x") != functions[1].line.color  # told apart by colour
    assert {t.legendgrouptitle.text for t in functions} == {"Reward per function (mean)"}
    assert all(t.showlegend for t in functions)


def test_metric_panels_name_models_on_horizontal_bars_in_their_colours():
    rows = [{"model": "run:20260101-000000-sft-aaaa", "name": "a-rather-long-name-for-an-sft-run", "perplexity": 12.0,
             "rouge_l": 0.3},
            {"model": "tiny", "name": "tiny", "perplexity": 3000.0, "rouge_l": None}]
    fig = plots.metric_panels(rows, [("perplexity", "Perplexity"), ("rouge_l", "ROUGE-L"), ("bleu", "BLEU")])
    assert [a.text for a in fig.layout.annotations] == ["Perplexity", "ROUGE-L"]  # no model has BLEU
    perplexity = fig.data[0]
    assert perplexity.orientation == "h" and "<br>" in perplexity.y[0] and "run:" not in "".join(perplexity.y)
    assert list(perplexity.marker.color) == [plots.run_color(rows[0]["model"]), plots.BASE_COLOR]
    assert fig.layout.yaxis.categoryarray == fig.layout.yaxis2.categoryarray  # a model at one height in each


# --------------------------------------------------------------------------- two finished runs


def lab(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "LAB_HOME": str(home)})


def train(home: Path, *sets: str) -> str:
    done = lab(home, "train", "recipes/tiny-sft.yaml", *QUICK, *sets, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded", run
    return run["id"]


@pytest.fixture(scope="module")
def named_runs(lab_app) -> tuple[str, str]:
    """In the app's home: an SFT run at the recipe's learning rate, and a DPO run from it with learning_rate 0
    (the method's usual), as "Train DPO on this" queues it."""
    sft = train(lab_app.home, "--set", f"name={SFT}", "--set", "max_steps=8", "--set", "eval_steps=4")
    dpo = train(lab_app.home, "--set", f"name={DPO}", "--set", "objective=dpo", "--set", "adapter=lora", "--set", f"model=run:{sft}",
                "--set", "dataset=sample:preference", "--set", "learning_rate=0", "--set", "max_steps=4",
                "--set", "eval_steps=2", "--set", "max_prompt_length=128")
    return sft, dpo


def test_the_config_diff_shows_the_learning_rate_each_run_used(lab_app, named_runs):
    from lab.compare import config_diff, to_markdown
    from lab.home import lab_home
    from lab.train.runner import get_run

    sft, dpo = named_runs
    home = lab_home(lab_app.home)
    diff = {d["field"]: d for d in config_diff([sft, dpo], home)}
    usual = get_run(dpo, home).train_config.lr
    assert diff["learning_rate"][dpo] == f"{usual:g} (0 = the method's usual)"
    assert diff["learning_rate"][sft] == get_run(sft, home).config["learning_rate"]
    assert diff["precompute_ref_log_probs"][dpo] == "off (auto)"  # adapters need no precomputed reference
    assert "precision" not in diff  # both auto, and both trained in fp32 on this CPU
    assert diff["model"][dpo] == SFT  # the DPO run's base is the SFT run, by name
    document = {"settings": {}, "prompts": [], "answers": [], "names": {sft: SFT, dpo: DPO},
                "config_diff": list(diff.values())}
    assert f"| field | {SFT} | {DPO} |" in to_markdown(document)


def plotted(plot: dict) -> dict:
    """The figure a gr.Plot output carries."""
    return json.loads(plot["plot"])


def test_compare_names_the_runs_in_columns_legends_and_tables(lab_app, named_runs):
    sft, dpo = named_runs
    client = Client(lab_app.url, verbose=False)
    status, answers, curves, numbers, diff, _ = client.predict([f"run:{sft}", f"run:{dpo}"], "Hi", 6, 0, 1, 0,
                                                               api_name="/compare_run")
    headers = answers["value"]["headers"]
    assert headers[1].startswith(f"{SFT} (") and headers[2].startswith(f"{DPO} (") and "tok/s" in headers[2]
    assert diff["headers"] == ["field", SFT, DPO] and numbers["data"][0][0] == SFT and numbers["data"][1][0] == DPO
    traces = plotted(curves)["data"]
    assert {t["name"] for t in traces} >= {f"{SFT} · train", f"{SFT} · eval", f"{DPO} · train"}
    colors = plots.run_colors([f"run:{sft}", f"run:{dpo}"])
    assert {t["line"]["color"] for t in traces if t["name"].startswith(SFT)} == {colors[f"run:{sft}"]}
    assert "run:" not in status and "run:" not in json.dumps(headers)

    _, files, saved = client.predict(api_name="/compare_export")
    markdown = Path(files["value"][0]).read_text()
    assert f"**{DPO}**" in markdown and f"| {SFT} |" in markdown
    assert SFT in client.predict(api_name="/compare_saved")["choices"][0][0]


def test_eval_lists_charts_and_sums_up_models_by_name(lab_app, named_runs):
    sft, _ = named_runs
    client = Client(lab_app.url, verbose=False)
    status, jobs, selected, chart = client.predict([f"run:{sft}", "tiny"], "sample:sft", "validation", 4,
                                                   api_name="/eval_start")
    assert f"perplexity of {SFT}: " in status and "perplexity of tiny: " in status  # by name, with their state
    started = {row[0] for row in jobs["data"][:2]}
    deadline = time.time() + 180
    while time.time() < deadline:
        jobs, selected, chart = client.predict(api_name="/eval_jobs")
        rows = [row for row in jobs["data"] if row[0] in started]
        if all(row[4] in ("succeeded", "failed") or row[4].startswith("failed") for row in rows):
            break
        time.sleep(1)
    assert {row[2] for row in rows} == {SFT, "tiny"} and all(row[4] == "succeeded" for row in rows), rows
    assert all(SFT in label or "tiny" in label for label, _ in selected["choices"][:2])
    bars = [t for t in plotted(chart)["data"] if t["type"] == "bar"]
    assert bars and all(t["orientation"] == "h" for t in bars)
    assert not any("run:" in label for t in bars for label in t["y"])
    _, table, human = client.predict("newest with votes", api_name="/eval_summary")
    assert {SFT, "tiny"} <= {row[0] for row in table["data"]}
    assert not any(str(row[0]).startswith("run:") for row in table["data"])


# --------------------------------------------------------------------------- in a browser

browser_test = pytest.mark.browser


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@browser_test
def test_compare_and_eval_in_a_browser_by_name_with_pickers_that_follow_the_store(lab_app, named_runs, shots):
    web = pytest.importorskip("tests.test_browser")  # skips where Playwright or chromium is missing
    if not web.CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    with web.sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(web.CHROMIUM), args=web.CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(web.TIMEOUT_MS)
            page.goto(lab_app.url)
            page.get_by_role("heading", name="Fine-tuning lab").wait_for()
            walk_compare(web, page, shots)
            walk_eval(web, page, lab_app, shots)
        finally:
            browser.close()


def pick(page, label: str, option: re.Pattern) -> None:
    """Pick the option whose text matches ``option`` in the (visible) dropdown labelled ``label``."""
    page.get_by_label(label, exact=True).filter(visible=True).first.click()
    page.get_by_role("option", name=option).filter(visible=True).first.click()
    page.keyboard.press("Escape")


def walk_compare(web, page, shots: Path) -> None:
    web.tab(page, "Compare").click()
    box = page.get_by_label("Checkpoints", exact=True)
    box.click()
    page.get_by_role("option", name=re.compile(f"^{SFT} ·")).first.click()  # runs by name, from the catalog
    box.click()
    page.get_by_role("option", name=re.compile(f"^{DPO} ·")).first.click()
    page.keyboard.press("Escape")
    page.get_by_label("Max new tokens").filter(visible=True).first.fill("8")
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("3 checkpoints answered").wait_for(timeout=120_000)
    web.expect(page.get_by_text("0 = the method's usual").first).to_be_visible()
    web.expect(page.locator(".js-plotly-plot .legendtext", has_text=f"{DPO} · train")).to_be_visible()
    web.snap(page, shots, "compare-side-by-side-by-name")


def walk_eval(web, page, lab_app, shots: Path) -> None:
    # A dataset saved after the page loaded is offered once the tab is shown: no reload, no typed id.
    saved = lab(lab_app.home, "data", "import", "sample:sft", "--name", "names-fresh", "--json")
    assert saved.returncode == 0, saved.stderr
    web.tab(page, "Eval").click()
    pick(page, "Dataset", re.compile(r"^names-fresh@"))
    pick(page, "Models", re.compile(f"^{SFT} ·"))
    page.get_by_role("button", name="Evaluate perplexity").click()
    status = page.get_by_text(re.compile(f"perplexity of {SFT}: loss")).first
    status.wait_for(timeout=120_000)  # the status line follows the jobs to their numbers, on the timer
    web.expect(page.get_by_text(re.compile(f"perplexity of {SFT}: (queued|running)"))).to_have_count(0)
    page.locator(".js-plotly-plot").filter(visible=True).first.wait_for()
    web.snap(page, shots, "eval-jobs-and-charts-by-name")
