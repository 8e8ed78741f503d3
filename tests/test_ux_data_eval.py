"""What a newcomer's walk through Data, Eval and Compare asked for, checked without a browser or a model: pickers
count both splits and say where an auto-imported sample came from; chart titles sit clear of Gradio's label
badge, intervals fit their axis and a one-point series shows; Eval opens on the tuned model's job, writes its
numbers as its tables do, hides empty panels, picks a job on a row click and says when no answer overlaps; Data
clears a removed upload's results and writes its card in plain words; tiny's noise is explained once."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from lab import catalog
from lab.eval.jobs import EvalJob
from lab.ui import plots


def chats(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"question number {i}"},
                                                     {"role": "assistant", "content": f"answer number {i}"}]}) + "\n"
                            for i in range(n)))
    return path


# --------------------------------------------------------------------------- catalog


def test_pickers_count_both_splits_and_name_a_sample_imported_on_its_own(home, tmp_path):
    from lab.config import DataConfig
    from lab.data.pipeline import import_file
    from lab.train.datasets import resolve_version

    mine = import_file(chats(tmp_path / "mine.jsonl", 20), DataConfig(name="mine", val_fraction=0.2), home=home)
    auto = resolve_version("sample:sft", home)  # what a run, campaign or evaluation on sample:sft does
    assert catalog.bundled_sample(auto) == "sample:sft" and catalog.bundled_sample(mine) is None
    choices = catalog.dataset_choices(home)
    labels = {value: label for label, value in choices}
    assert f"{mine.rows['train']} train + {mine.rows['validation']} val" in labels[mine.ref]
    assert "auto-imported sample" in labels[auto.ref] and "auto-imported" not in labels[mine.ref]
    assert f"{auto.rows['train']} train + {auto.rows['validation']} val" in labels[auto.ref]
    values = [value for _, value in choices]
    # The person's own versions first, the auto-imported one after them, next to the bundled samples.
    assert values.index(mine.ref) < values.index(auto.ref) < values.index("sample:sft")

    from lab.ui.data_tab import card_markdown, settings_words

    card = card_markdown(auto)
    assert "imported on its own the first time" in card and "imported on its own" not in card_markdown(mine)
    held = mine.rows["validation"]
    split = next(line for line in card_markdown(mine).splitlines() if line.startswith("| split "))
    assert f"(→ {held} to validation)" in split
    assert "Settings:" not in card and "dedup_exact=" not in card and "<summary>Cleaning settings</summary>" in card
    words = settings_words(mine.card["config"])
    assert "Exact duplicates removed" in words and "20% held out for validation (seed 0)" in words
    assert "_" not in words  # no field names: plain words only


def test_the_tiny_note_is_said_where_tiny_answers():
    assert catalog.tiny_note(["run:abc", "tiny#2"]) == catalog.TINY_NOTE
    assert catalog.tiny_note(["run:abc", "/models/tiny-llama"]) == ""
    assert "randomly initialised" in catalog.TINY_NOTE and "noise" in catalog.TINY_NOTE


# --------------------------------------------------------------------------- charts


def test_titles_sit_below_the_label_badge():
    titled = plots.lr_schedule([(0, 0.0), (10, 1e-4)])
    title = titled.layout.template.layout.title
    assert title.yref == "container" and title.yanchor == "top" and title.pad.t >= plots.BADGE
    assert titled.layout.margin.t >= plots.TITLED
    panels = plots.aux_panels([{"step": s, "learning_rate": 1e-4, "grad_norm": 1.0} for s in (1, 2)], "#000")
    assert panels.layout.margin.t >= plots.TITLED  # subplot titles sit on their panels, under the badge
    assert plots.length_histogram({"prompt": [1, 2], "response": [3]}).layout.margin.t >= plots.TOP  # + legend


def test_every_bradley_terry_interval_fits_its_axis():
    ratings = [{"source": "a", "rating": 1082, "low": 918, "high": 1224, "comparisons": 4},
               {"source": "b", "rating": 918, "low": 776, "high": 1082, "comparisons": 4},
               {"source": "c", "rating": 1000, "low": None, "high": None, "comparisons": 0}]
    low, high = plots.ratings_plot(ratings).layout.xaxis.range
    assert low < 776 and high > 1224


def test_a_one_point_series_is_drawn_as_a_visible_marker():
    rows = [{"step": s, "loss": 3 - s / 10, "learning_rate": 1e-4, "split": "train"} for s in range(1, 6)]
    rows += [{"step": 5, "eval_loss": 2.5, "split": "eval"}, {"step": 5, "grad_norm": 1.0}]
    loss = plots.run_curves(rows, "run:x")["loss"]
    train, evaluation = loss.data
    assert train.marker.size == 4 and evaluation.marker.size >= 8
    aux = {t.name: t for t in plots.run_curves(rows, "run:x")["aux"].data}
    assert aux["grad norm"].mode == "markers" and aux["learning rate"].mode == "lines"


def test_bars_write_numbers_as_the_tables_do():
    from lab.ui.eval_tab import FORMATS, METRICS

    rows = [{"model": "run:x", "name": "x", "bleu": 0.46, "rouge_l": 0.2222, "perplexity": 153.6667}]
    fig = plots.metric_panels(rows, METRICS, formats=FORMATS)
    assert [t.text[0] for t in fig.data] == ["153.667", "0.222", "0.5"]
    titles = [a.text for a in fig.layout.annotations]
    assert "ROUGE-L (0–1, higher is better)" in titles and "BLEU (0–100, higher is better)" in titles


# --------------------------------------------------------------------------- eval tab


@pytest.fixture
def eval_ui(home):
    from lab.ui import eval_tab

    with gr.Blocks() as page:
        ui = eval_tab.build(home)
    return page, ui


def job(job_id: str, kind: str, model: str, results: dict | None = None, **config) -> EvalJob:
    return EvalJob(job_id, kind, model, "starter@abc:validation", {"split": "validation", **config}, "succeeded",
                   "2026-01-01T00:00:00", results=results)


def ppl_results() -> dict:
    item = {"line": 3, "loss": 1.23456, "messages": [{"role": "user", "content": "Hi"},
                                                     {"role": "assistant", "content": "Hello."}]}
    return {"dataset": "starter@abc", "split": "validation", "loss": 5.03481, "perplexity": 153.66712, "rows": 4,
            "tokens": 40, "best": [item], "worst": [item]}


def overlap_results(scores: list[float]) -> dict:
    per = [{"line": i, "rouge_l": s, "bleu": 0.0, "generation": "���"} for i, s in enumerate(scores)]
    shown = [{"prompt": [{"role": "user", "content": "Hi"}], "reference": "Hello.", **p} for p in per]
    return {"dataset": "starter@abc", "split": "validation", "rows": len(per), "rouge_l": sum(scores) / len(per),
            "bleu": 0.46, "bleu_signature": "nrefs:1", "per_example": per, "best": shown[::-1], "worst": shown}


def test_eval_hides_what_is_empty_and_sizes_its_tables(eval_ui):
    from lab.ui.eval_tab import JOB_HEADERS, SUMMARY_HEADERS

    page, ui = eval_ui
    assert not ui.best.visible and not ui.worst.visible and not ui.csv.visible
    assert len(ui.jobs.column_widths) == len(JOB_HEADERS)
    assert len(ui.summary_table.column_widths) == len(SUMMARY_HEADERS)  # one width a header: none left to wrap
    # A row click in the Evaluations table picks that evaluation.
    selects = [d for d in page.config["dependencies"]
               if any(t == [ui.jobs._id, "select"] or t == (ui.jobs._id, "select") for t in d["targets"])]
    assert selects and selects[0]["outputs"] == [ui.selected._id]


def test_a_row_click_picks_its_job():
    from lab.ui.eval_tab import pick_job

    picked = pick_job(gr.SelectData(None, {"index": [1, 4], "value": "succeeded",
                                           "row_value": ["20260101-000000-abcd", "perplexity"]}))
    assert picked == "20260101-000000-abcd"


def test_eval_opens_on_the_tuned_model_s_job(home, monkeypatch):
    from lab.train import runner
    from lab.ui.eval_tab import default_job

    bases = {"sft": "tiny", "dpo": "run:sft"}  # the DPO run was trained from the SFT run
    monkeypatch.setattr(runner, "get_run", lambda run_id, home=None: SimpleNamespace(config={"model": bases[run_id]}))
    found = [job("j4", "perplexity", "tiny"), job("j3", "perplexity", "run:sft"), job("j2", "perplexity", "run:dpo"),
             job("j1", "perplexity", "tiny")]  # newest first
    assert default_job(found, home) == "j2"  # not tiny's, nor the DPO run's base
    assert default_job(found[:2], home) == "j3"
    assert default_job([found[0]], home) == "j4" and default_job([], home) is None


def test_eval_words_its_examples_and_says_when_no_answer_overlaps(eval_ui, home, monkeypatch):
    from lab.eval import jobs
    from lab.ui import eval_tab

    _, ui = eval_ui
    stored = {"ppl": job("ppl", "perplexity", "tiny", ppl_results()),
              "zero": job("zero", "overlap", "tiny", overlap_results([0.0, 0.0, 0.0])),
              "some": job("some", "overlap", "run:x", overlap_results([0.0, 0.5, 0.25]))}
    monkeypatch.setattr(jobs, "get_eval", lambda job_id, home=None: stored[job_id])

    shown = eval_tab.examples(ui, home, "ppl")
    assert shown[ui.best]["label"] == "Lowest-loss replies" and shown[ui.worst]["label"] == "Highest-loss replies"
    details = eval_tab.show(ui, home, "ppl")[ui.details]
    assert "Lowest loss" in details and "Fitted" not in details and "**153.667**" in details
    assert details.count(catalog.TINY_NOTE) == 1  # tiny answered: said once, under the numbers

    zero = eval_tab.examples(ui, home, "zero")
    assert "unranked" in zero[ui.best]["label"] and zero[ui.worst]["visible"] is False
    assert "Every answer scored ROUGE-L 0" in eval_tab.show(ui, home, "zero")[ui.details]
    some = eval_tab.examples(ui, home, "some")
    assert some[ui.best]["label"] == "Best examples (by ROUGE-L)" and some[ui.worst]["visible"] is True
    text = eval_tab.show(ui, home, "some")[ui.details]
    assert "BLEU **0.5** (0–100)" in text and "(0–1)" in text and catalog.TINY_NOTE not in text
    # Nothing picked: no empty panels.
    nothing = eval_tab.examples(ui, home, None)
    assert nothing[ui.best]["visible"] is False and nothing[ui.worst]["visible"] is False


def test_the_summary_table_rounds_as_the_chart_does():
    from lab.eval.summary import FIELDS
    from lab.ui.eval_tab import summary_row

    row = {**dict.fromkeys(FIELDS), "name": "x", "model": "run:x", "perplexity": 153.66712, "rouge_l": 0.2222,
           "bleu": 0.46, "harness": {}, "human_low": None, "human_high": None, "human_comparisons": 0}
    assert summary_row(row, {})[1:4] == ["153.667", "0.222", "0.5"]


def judged(a: int, b: int, ties: int, inconsistent: int) -> dict:
    """A pairwise judge's results with these counts (its win rate as stored before the rule: 50% from nothing)."""
    return {"mode": "pairwise", "model_a": "run:x", "model_b": "tiny", "judge": "tiny", "dataset": "starter@abc",
            "split": "validation", "rows": a + b + ties + inconsistent, "a_wins": a, "b_wins": b, "ties": ties,
            "inconsistent": inconsistent, "unparsed": 0, "consistency": 0.0, "first_position_rate": 1.0,
            "win_rate": 0.5, "cached": 0, "judged": 8, "items": [],
            "orders": {o: {"a_wins": 0, "ties": 0, "b_wins": 0, "unparsed": 0} for o in ("a_first", "b_first")}}


def test_a_judge_that_decided_nothing_has_no_win_rate_in_its_words_or_charts(eval_ui, home, monkeypatch):
    """Four inconsistent verdicts read "win rate 50%" and drew 50% bars beside people's 17% and 83%: a judge with no
    decided prompt says so, and its rate is left out of the chart, the summary and the people-vs-judge chart."""
    from lab.eval import jobs
    from lab.eval.judge import pairwise_tally, win_rate
    from lab.eval.kinds import judge_headline, judge_text
    from lab.eval.summary import automatic
    from lab.ui import eval_tab

    _, ui = eval_ui
    undecided = judged(0, 0, 0, 4)
    assert win_rate(undecided) is None and win_rate(judged(2, 1, 0, 1)) == 0.625
    assert pairwise_tally([{"outcome": "inconsistent", **{o: {"outcome": o[0], "verdict": "A"} for o in
                                                          ("a_first", "b_first")}}])["win_rate"] is None
    assert judge_text(undecided) == "no decided verdicts (4 inconsistent)"
    assert judge_headline(undecided)["win_rate"] is None  # the CSV's column too
    assert "win rate 62%" in judge_text(judged(2, 1, 0, 1))
    found = [job("j", "judge", "run:x", undecided, model_b="tiny")]
    rows = automatic(found)
    assert rows["run:x"]["judge_win_rate"] is None and "tiny" not in rows  # B got no 50% either
    named = [{**row, "name": model} for model, row in rows.items()]
    chart = eval_tab.metrics_chart(named, {}, {})
    assert not any("Judge win rate" in (a.text or "") for a in chart.layout.annotations)
    assert not plots.human_vs_judge(named).data  # nothing to set beside people's rates
    monkeypatch.setattr(jobs, "get_eval", lambda job_id, home=None: found[0])
    details = eval_tab.show(ui, home, "j")[ui.details]
    assert "**no decided verdicts (4 inconsistent)**: no win rate" in details and "rate **50%" not in details


def test_a_refused_start_keeps_its_reason_under_the_buttons(eval_ui, home):
    """Judging three models was refused in a toast while the status line under the buttons went on following the jobs
    started before: a refusal stops that following, so its reason stays where the button was pressed."""
    from lab.ui import eval_tab

    page, ui = eval_ui
    judge = next(fn for fn in page.fns.values() if fn.api_name == "eval_judge")
    out = judge.fn(models=["tiny", "run:a", "run:b"], dataset="sample:sft", split="validation", mode="pairwise")
    assert "Pairwise judging compares two models" in out[ui.status] and out[ui.started] == []
    # The timer leaves the line as it is: nothing for its dict (guarded turns an empty one into gr.skip()).
    assert eval_tab.follow(ui, home, out[ui.started]) == {}
    tick = eval_tab.tick(ui, home, "", None, None, None, out[ui.started])
    assert ui.status not in tick and all(isinstance(key, gr.components.Component) for key in tick)


def test_the_csv_names_each_model_as_the_screens_do(home, monkeypatch):
    import csv
    import io

    from lab import catalog as catalog_module
    from lab.eval.jobs import to_csv

    monkeypatch.setattr(catalog_module, "display_names",
                        lambda sources, home=None: {s: {"run:x": "team-sft"}.get(s, s) for s in sources})
    found = [job("j", "judge", "run:x", judged(2, 1, 0, 1), model_b="tiny"),
             job("p", "perplexity", "tiny", ppl_results())]
    rows = list(csv.DictReader(io.StringIO(to_csv(found, home))))
    named = [(r["model"], r["name"], r["model_b"], r["name_b"]) for r in rows]
    assert named == [("run:x", "team-sft", "tiny", "tiny"), ("tiny", "tiny", "", "")]


# --------------------------------------------------------------------------- data tab


def test_removing_the_upload_clears_its_results(home):
    from lab.ui import data_tab
    from lab.ui.common import guarded

    with gr.Blocks() as page:
        ui = data_tab.build(home)
    cleared = data_tab.clear_upload(ui, "upload:0123456789ab/mine.json", "upload:0123456789ab/mine.json")
    assert cleared[ui.imp.path] == "" and cleared[ui.imp.checked] is None
    assert cleared[ui.imp.status] == data_tab.CHOOSE_HINT and cleared[ui.save.card] == ""
    assert cleared[ui.save.status] == "" and cleared[ui.clean.status] == data_tab.CLEAN_HINT
    assert cleared[ui.clean.steps].visible is False and cleared[ui.save.form["name"]] == ""
    # A file checked since (a sample loaded after the upload) keeps its results.
    # Every output as it is, as the event gives it (the handler says so with {}; guarded turns that into gr.skip()).
    assert guarded(data_tab.clear_upload, None, ui)("sample:sft", "sample:sft") == gr.skip()
    clears = [d for d in page.config["dependencies"]
              if any(list(t) == [ui.imp.upload._id, "clear"] for t in d["targets"])]
    assert clears and ui.save.card._id in clears[0]["outputs"] and ui.imp.status._id in clears[0]["outputs"]


def test_the_hint_to_choose_kind_prompts_is_said_only_where_the_kind_was_detected(tmp_path):
    """After choosing kind prompts for a file of questions and answers, the Format line still said "…unless you
    choose kind prompts": the hint goes with a detected question/answer file only."""
    from lab.data.formats import describe_format
    from lab.data.pipeline import check_file
    from lab.ui.data_tab import check_summary

    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(6)))
    detected = check_summary(check_file(str(path)), mapped=False, detected=True)
    assert "question-answer — question/answer pairs (choose kind prompts to read them as prompts" in detected
    chosen = check_summary(check_file(str(path), kind="prompts"), mapped=False, detected=False)
    assert "**Format** prompts — prompts for online RL" in chosen and "choose kind prompts" not in chosen
    assert describe_format("question-answer", detected=False) == "question-answer — question/answer pairs"

