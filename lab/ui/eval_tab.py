"""The Eval tab: evaluation jobs (held-out loss and perplexity so far) for several checkpoints at once, their
progress, a chart per checkpoint, the best and worst fitted examples, and a CSV of everything.

Handlers call ``lab.eval``; api names: ``eval_start``, ``eval_jobs``, ``eval_show``, ``eval_csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from lab.errors import LabError
from lab.home import Home
from lab.ui import plots
from lab.ui.data_tab import guarded
from lab.ui.train_tab import checkpoint_choices, dataset_choices

JOB_HEADERS = ["id", "model", "dataset", "split", "status", "progress", "loss", "perplexity", "rows"]


@dataclass
class EvalUI:
    status: gr.Markdown
    jobs: gr.Dataframe
    selected: gr.Dropdown
    chart: gr.Plot
    examples: gr.Markdown
    csv: gr.File


def build(home: Home) -> EvalUI:
    gr.Markdown("Held-out loss and perplexity of checkpoints on a dataset version's replies (base vs tuned: pick "
                "both). Each evaluation runs in the background; ROUGE/BLEU, LLM-as-judge and lm-eval tasks follow "
                "(issue 6).")
    with gr.Row():
        models = gr.Dropdown(checkpoint_choices(home), value=["tiny"], multiselect=True, allow_custom_value=True,
                             label="Models", scale=3, info="tiny, run:<id>, a path or a hub id")
        dataset = gr.Dropdown(dataset_choices(home), value="sample:sft", allow_custom_value=True, label="Dataset",
                              scale=2)
        split = gr.Dropdown(["validation", "train"], value="validation", label="Split", scale=1)
        max_rows = gr.Number(value=200, precision=0, label="Max rows", scale=1)
    start = gr.Button("Evaluate", variant="primary")
    status = gr.Markdown()
    jobs = gr.Dataframe(headers=JOB_HEADERS, interactive=False, wrap=True)
    with gr.Row():
        chart = gr.Plot(label="Perplexity per checkpoint")
        with gr.Column():
            selected = gr.Dropdown(label="Evaluation", choices=[], allow_custom_value=True)
            examples = gr.Markdown()
    with gr.Row():
        csv_btn = gr.Button("Export CSV", scale=1)
        csv = gr.File(label="CSV", scale=2)
    ui = EvalUI(status, jobs, selected, chart, examples, csv)

    start.click(guarded(start_eval, status, ui, home), inputs=[models, dataset, split, max_rows],
                outputs=[status, jobs, selected, chart], api_name="eval_start")
    gr.Timer(2.0).tick(guarded(refresh, status, ui, home), inputs=None, outputs=[jobs, selected, chart],
                       api_visibility="private", show_progress="hidden")
    gr.Button("Refresh", size="sm").click(guarded(refresh, status, ui, home), inputs=None,
                                          outputs=[jobs, selected, chart], api_name="eval_jobs")
    selected.change(guarded(show, status, ui, home), inputs=selected, outputs=[examples], api_name="eval_show")
    csv_btn.click(guarded(export_csv, status, ui, home), inputs=None, outputs=[csv], api_name="eval_csv")
    return ui


def start_eval(ui: EvalUI, home: Home, models: list[str] | None, dataset: str, split: str, max_rows: float) -> dict:
    from lab.eval.jobs import create_eval

    if not models:
        raise LabError("Pick at least one model to evaluate.")
    created = [create_eval("perplexity", m, dataset, split=split, max_rows=int(max_rows or 0), home=home)
               for m in models]
    return {ui.status: f"**✓ Started {len(created)} evaluation(s).**", **refresh(ui, home)}


def refresh(ui: EvalUI, home: Home) -> dict:
    from lab.eval.jobs import list_evals

    found = list_evals(home)
    rows = []
    for job in found:
        r = job.results or {}
        progress = f"{job.done}/{job.total}" if job.total else ""
        rows.append([job.id, job.model, job.dataset, job.config.get("split"),
                     job.status + (f": {job.error}" if job.error else ""), progress, r.get("loss"),
                     r.get("perplexity"), r.get("rows")])
    return {ui.jobs: pd.DataFrame(rows, columns=JOB_HEADERS),
            ui.selected: gr.update(choices=[(f"{j.model} · {j.dataset} · {j.id}", j.id) for j in found]),
            ui.chart: perplexity_chart(found)}


def perplexity_chart(found: list) -> go.Figure:
    """The latest finished result per (model, dataset, split)."""
    latest: dict[tuple[str, str, str], object] = {}
    for job in reversed(found):  # oldest first, so newer results overwrite
        if job.status == "succeeded":
            latest[(job.model, job.dataset, job.config.get("split"))] = job
    if not latest:
        return plots.empty_figure("No finished evaluation yet.")
    fig = go.Figure()
    for (model, dataset, split), job in latest.items():
        fig.add_trace(go.Bar(x=[f"{dataset}:{split}"], y=[job.results["perplexity"]], name=model,
                             text=[f"{job.results['perplexity']:.1f}"], textposition="outside", cliponaxis=False))
    fig.update_layout(**plots.LAYOUT, barmode="group", title="Perplexity (lower is better)")
    return fig


def show(ui: EvalUI, home: Home, job_id: str | None) -> dict:
    from lab.eval.jobs import get_eval
    from lab.ui.label_tab import chat_markdown

    if not job_id:
        return {ui.examples: ""}
    job = get_eval(job_id, home)
    if not job.results:
        return {ui.examples: f"{job.status}" + (f": {job.error}" if job.error else "")}
    r = job.results
    parts = [f"**{job.model}** on {r['dataset']}:{r['split']}: loss **{r['loss']}**, perplexity **{r['perplexity']}** "
             f"over {r['rows']} replies ({r['tokens']} tokens)"]
    for title, key in (("Fitted best", "best"), ("Fitted worst", "worst")):
        parts.append(f"#### {title}")
        parts += [f"*loss {e['loss']}*\n\n{chat_markdown(e['messages'])}" for e in r[key]]
    return {ui.examples: "\n\n---\n\n".join(parts)}


def export_csv(ui: EvalUI, home: Home) -> dict:
    from lab.eval.jobs import list_evals, to_csv

    path = home.exports / "evaluations.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_csv(list_evals(home)))
    return {ui.csv: str(path)}
