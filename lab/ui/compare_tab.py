"""The Compare tab: 1–4 checkpoints answer the same prompts with the same settings and seed, shown side by
side as each finishes (with tokens/s); the chosen runs' loss curves overlaid, the config fields that differ
and each run's final and best numbers; a comparison is saved and exported as Markdown.

Handlers call ``lab.compare``; api names: ``compare_run``, ``compare_runs``, ``compare_export``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Iterator

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from lab.errors import LabError
from lab.home import Home
from lab.ui import plots
from lab.ui.data_tab import error_text
from lab.ui.train_tab import checkpoint_choices, clip

MAX_SOURCES = 4


def build(home: Home) -> None:
    gr.Markdown("Pick up to four checkpoints and some prompts: each answers with the same settings and seed. Runs "
                "among them get their loss curves overlaid and their config differences listed.")
    with gr.Row():
        sources = gr.Dropdown(checkpoint_choices(home), value=["tiny"], multiselect=True, allow_custom_value=True,
                              max_choices=MAX_SOURCES, label="Checkpoints", scale=3,
                              info="tiny, run:<id>, a path or a hub id (up to four)")
        refresh = gr.Button("↻", scale=0, min_width=40)
    prompts = gr.Textbox(label="Prompts, one per line", lines=4, value="What is 7 times 8?\nName the capital of Peru.")
    with gr.Row():
        max_new_tokens = gr.Number(value=96, precision=0, label="Max new tokens")
        temperature = gr.Number(value=0.0, label="Temperature", info="0 = greedy")
        top_p = gr.Number(value=1.0, label="Top p")
        seed = gr.Number(value=0, precision=0, label="Seed")
    go_btn = gr.Button("Compare", variant="primary")
    status = gr.Markdown()
    answers = gr.Dataframe(interactive=False, wrap=True, label="Answers")
    with gr.Row():
        curves = gr.Plot(label="Loss curves")
        numbers = gr.Dataframe(interactive=False, wrap=True, label="Runs: final and best")
    diff = gr.Dataframe(interactive=False, wrap=True, label="Config fields that differ")
    with gr.Row():
        export_btn = gr.Button("Save and export Markdown", scale=1)
        exported = gr.File(label="Comparison (Markdown)", scale=2)
    last = gr.State({})

    settings = [sources, prompts, max_new_tokens, temperature, top_p, seed]
    refresh.click(lambda: gr.update(choices=checkpoint_choices(home)), outputs=sources, api_visibility="private")
    go_btn.click(functools.partial(compare, home), inputs=settings,  # a partial keeps it a generator for Gradio
                 outputs=[status, answers, curves, numbers, diff, last], api_name="compare_run")
    sources.change(functools.partial(runs_view, home), inputs=sources, outputs=[curves, numbers, diff],
                   api_name="compare_runs")
    export_btn.click(functools.partial(export, home), inputs=last, outputs=[status, exported],
                     api_name="compare_export")


def parse_prompts(text: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": line.strip()}] for line in (text or "").splitlines() if line.strip()]


def compare(home: Home, sources: list[str] | None, prompts_text: str, max_new_tokens: float, temperature: float,
            top_p: float, seed: float) -> Iterator[tuple]:
    """A generator: the answers table grows by one column as each checkpoint finishes."""
    from lab.compare import side_by_side

    try:
        sources = list(sources or [])
        prompts = parse_prompts(prompts_text)
        settings = {"max_new_tokens": int(max_new_tokens or 96), "temperature": float(temperature or 0),
                    "top_p": float(top_p or 1), "seed": int(seed or 0)}
        curves, numbers, diff = runs_view(home, sources)
        table = pd.DataFrame({"prompt": [p[-1]["content"] for p in prompts]})
        done: list[Any] = []
        for result in side_by_side(sources, prompts, home=home, **settings):
            done.append(result)
            table[f"{result.source} ({result.tokens_per_second} tok/s)"] = [clip(a) or "(empty)" for a in result.answers]
            status = f"{len(done)} of {len(sources)} checkpoints answered…" if len(done) < len(sources) else \
                f"**✓ {len(sources)} checkpoints answered {len(prompts)} prompts.**"
            document = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": settings,
                        "sources": sources, "prompts": prompts,
                        "answers": [{**asdict(r), "tokens_per_second": r.tokens_per_second} for r in done],
                        "runs": numbers.to_dict("records") if len(numbers) else [],
                        "config_diff": diff.to_dict("records") if len(diff.columns) > 1 else []}
            share = f"{80 / (len(table.columns) - 1):.0f}%"  # fixed widths: long answers wrap, columns stay on screen
            yield (status, gr.update(value=table, column_widths=["20%"] + [share] * (len(table.columns) - 1)), curves,
                   numbers, diff, document)
    except LabError as err:
        gr.Warning(str(err))
        yield error_text(str(err)), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()


def runs_view(home: Home, sources: list[str] | None) -> tuple[go.Figure, pd.DataFrame, pd.DataFrame]:
    from lab.compare import config_diff, run_ids, run_numbers
    from lab.train.runner import read_metrics

    ids = run_ids(list(sources or []))
    if not ids:
        return plots.empty_figure("Pick runs (run:<id>) to overlay their curves."), pd.DataFrame(), pd.DataFrame()
    fig = go.Figure()
    for run_id in ids:
        rows = read_metrics(run_id, home)
        for key, dash in (("loss", "solid"), ("eval_loss", "dot")):
            points = [(r["step"], r[key]) for r in rows if key in r and r.get("split") != "summary"]
            if points:
                fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines",
                                         name=f"{run_id} {'train' if key == 'loss' else 'eval'}",
                                         line=dict(dash=dash)))
    fig.update_layout(**plots.LAYOUT, title="Loss (solid: train, dotted: eval)", xaxis_title="step")
    diff = pd.DataFrame(config_diff(ids, home) if len(ids) > 1 else [], columns=None)
    if diff.empty:
        diff = pd.DataFrame({"field": ["(pick two or more runs; only fields that differ are listed)" if len(ids) < 2
                                       else "(no setting differs)"]})
    numbers = pd.DataFrame(run_numbers(ids, home)).round(4)
    return fig, numbers, diff


def export(home: Home, document: dict[str, Any] | None) -> tuple[str, Any]:
    from lab.compare import save_comparison, to_markdown

    if not document or not document.get("answers"):
        gr.Warning("Compare first; then the comparison can be saved.")
        return error_text("Compare first; then the comparison can be saved."), None
    saved = save_comparison(document, home)
    markdown = saved.with_suffix(".md")
    markdown.write_text(to_markdown(document))
    return f"**✓ Saved {saved.name}; Markdown in {markdown}.**", str(markdown)
