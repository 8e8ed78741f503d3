"""Plotly figures for the app: pure functions from engine results to ``go.Figure``.

Each function takes plain numbers (or an engine result) and returns a figure; none of them
touches Gradio, so they can be tested and reused on their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

COLORS = {"prompt": "#6366f1", "response": "#10b981", "chosen": "#10b981", "rejected": "#ef4444",
          "system": "#9ca3af", "user": "#3b82f6", "assistant": "#10b981"}
BINS = 40
LAYOUT = dict(template="plotly_white", height=320, margin=dict(l=50, r=20, t=50, b=45),
              legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why it is blank (no data yet, nothing to count)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#6b7280"),
                       xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(**LAYOUT)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def length_histogram(series: Mapping[str, Sequence[int]], *, unit: str = "tokens",
                     title: str | None = None) -> go.Figure:
    """Overlaid histograms of lengths, one per named series (prompt, response, rejected)."""
    shown = {name: list(values) for name, values in series.items() if values}
    if not shown:
        return empty_figure("No lengths to show")
    longest = max(max(values) for values in shown.values())
    size = max(1, math.ceil((longest + 1) / BINS))  # the same bins for every series, so bars line up
    fig = go.Figure()
    for name, values in shown.items():
        fig.add_trace(go.Histogram(x=values, name=f"{name} (n={len(values)})", opacity=0.55,
                                   marker_color=COLORS.get(name), xbins=dict(start=0, end=longest + size, size=size)))
    fig.update_layout(barmode="overlay", title=title or f"Length per row ({unit})", **LAYOUT)
    fig.update_xaxes(title_text=unit)
    fig.update_yaxes(title_text="rows")
    return fig


def turns_bar(turns: Sequence[int], *, title: str = "User turns per conversation") -> go.Figure:
    """How many conversations have 1, 2, 3, … user turns."""
    if not turns:
        return empty_figure("No conversations to count")
    counts: dict[int, int] = {}
    for n in turns:
        counts[int(n)] = counts.get(int(n), 0) + 1
    xs = sorted(counts)
    fig = go.Figure(go.Bar(x=[str(x) for x in xs], y=[counts[x] for x in xs], marker_color="#6366f1",
                           text=[counts[x] for x in xs], textposition="outside", cliponaxis=False))
    fig.update_layout(title=title, **LAYOUT)
    fig.update_yaxes(range=[0, max(counts.values()) * 1.15])
    fig.update_xaxes(title_text="turns", type="category")
    fig.update_yaxes(title_text="conversations")
    return fig


def role_bar(role_counts: Mapping[str, int], *, title: str = "Messages per role") -> go.Figure:
    """Message counts per role (system, user, assistant)."""
    if not role_counts:
        return empty_figure("No messages to count")
    roles = list(role_counts)
    fig = go.Figure(go.Bar(x=roles, y=[role_counts[r] for r in roles],
                           marker_color=[COLORS.get(r, "#6b7280") for r in roles],
                           text=[role_counts[r] for r in roles], textposition="outside", cliponaxis=False))
    fig.update_layout(title=title, **LAYOUT)
    fig.update_yaxes(range=[0, max(role_counts.values()) * 1.15])
    fig.update_yaxes(title_text="messages")
    return fig


def stats_figures(stats: Any) -> dict[str, go.Figure]:
    """The Data tab's three figures from a ``lab.data.stats.DatasetStats``."""
    series = {"prompt": stats.prompt_tokens, "response": stats.response_tokens}
    if stats.kind == "preference":
        series = {"prompt": stats.prompt_tokens, "chosen": stats.response_tokens,
                  "rejected": stats.rejected_tokens}
    return {
        "lengths": length_histogram(series, unit=stats.unit),
        "turns": turns_bar(stats.turns),
        "roles": role_bar(stats.role_counts),
    }


def lr_schedule(curve: Sequence[tuple[int, float]]) -> go.Figure:
    """The learning rate at each optimizer step, as the Trainer's scheduler will set it."""
    fig = go.Figure(go.Scatter(x=[s for s, _ in curve], y=[lr for _, lr in curve], mode="lines",
                               line=dict(color=COLORS["prompt"])))
    fig.update_layout(**{**LAYOUT, "height": 260}, title="Learning-rate schedule", xaxis_title="step",
                      yaxis_title="learning rate")
    return fig


def memory_bars(gib: Mapping[str, float], *, measured: float | None = None) -> go.Figure:
    """Estimated peak GPU memory by component (worst case: every sequence at max_length)."""
    parts = {k: v for k, v in gib.items() if k != "total"}
    fig = go.Figure(go.Bar(x=list(parts.values()), y=list(parts), orientation="h", marker_color=COLORS["prompt"],
                           text=[f"{v:.2f}" for v in parts.values()], textposition="outside", cliponaxis=False))
    title = f"VRAM estimate: {gib.get('total', sum(parts.values())):.2f} GiB (worst case at max_length)"
    if measured is not None:
        title += f" · measured peak {measured:.2f} GiB"
        fig.add_vline(x=measured, line_dash="dash", line_color=COLORS["rejected"],
                      annotation_text="measured peak", annotation_position="top")
    fig.update_layout(**{**LAYOUT, "height": 260}, title=title, xaxis_title="GiB")
    return fig


RUN_SERIES = (("loss", "train loss"), ("eval_loss", "eval loss"))
AUX_SERIES = ("learning_rate", "grad_norm", "tokens_per_second", "gpu_memory_gib", "rewards/chosen",
              "rewards/rejected", "rewards/margins", "rewards/accuracies")


def run_curves(rows: Sequence[Mapping[str, Any]]) -> dict[str, go.Figure]:
    """Loss (train and eval) and the other logged series of one run, against the step."""
    if not rows:
        empty = empty_figure("No metrics yet: the run logs its first step shortly after it starts.")
        return {"loss": empty, "aux": empty}
    loss = go.Figure()
    for key, label in RUN_SERIES:
        points = [(r["step"], r[key]) for r in rows if key in r and r.get("split") != "summary"]
        if points:
            loss.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=label,
                                      mode="lines+markers"))
    loss.update_layout(**LAYOUT, title="Loss", xaxis_title="step")
    present = [k for k in AUX_SERIES if any(k in r for r in rows)]
    aux = go.Figure()
    for i, key in enumerate(present):
        points = [(r["step"], r[key]) for r in rows if key in r]
        aux.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=key, mode="lines",
                                 visible=True if i < 2 or key.startswith("rewards/") else "legendonly"))
    aux.update_layout(**LAYOUT, title="Learning rate, grad norm, throughput (click the legend to show more)",
                      xaxis_title="step")
    return {"loss": loss, "aux": aux}


def ratings_plot(ratings: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Bradley–Terry ratings (mean 1000) with their bootstrap 95% intervals, best on top."""
    if not ratings:
        return empty_figure("No decided votes yet: the leaderboard appears with the first votes.")
    rows = list(reversed(ratings))
    fig = go.Figure(go.Scatter(
        x=[r["rating"] for r in rows], y=[r["source"] for r in rows], mode="markers",
        marker=dict(size=11, color=COLORS["prompt"]),
        error_x=dict(type="data", symmetric=False,
                     array=[(r["high"] - r["rating"]) if r["high"] is not None else 0 for r in rows],
                     arrayminus=[(r["rating"] - r["low"]) if r["low"] is not None else 0 for r in rows]),
        text=[f"{r['comparisons']} comparisons" for r in rows], hovertemplate="%{y}: %{x:.0f} (%{text})"))
    fig.add_vline(x=1000, line_dash="dot", line_color="gray")
    fig.update_layout(**{**LAYOUT, "height": 120 + 40 * len(rows)}, title="Bradley–Terry rating (95% interval)",
                      xaxis_title="rating (mean 1000)")
    return fig


def win_matrix_plot(models: Sequence[str], rates: Sequence[Sequence[float | None]],
                    counts: Sequence[Sequence[int]]) -> go.Figure:
    """How often the row source beat the column source (ties count half), with the number of votes."""
    if not models:
        return empty_figure("No decided votes yet.")
    text = [[f"{r:.0%}<br>{n} votes" if r is not None else "" for r, n in zip(rate_row, count_row)]
            for rate_row, count_row in zip(rates, counts)]
    fig = go.Figure(go.Heatmap(z=[[r if r is not None else None for r in row] for row in rates], x=list(models),
                               y=list(models), zmin=0, zmax=1, colorscale="RdBu", text=text, texttemplate="%{text}",
                               hovertemplate="%{y} beat %{x}: %{z:.0%}<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 160 + 50 * len(models)}, title="Win rate of row over column",
                      yaxis_autorange="reversed")
    return fig


def metric_panels(rows: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]], *,
                  columns: int = 3) -> go.Figure:
    """One small bar chart per metric, a bar per model (``rows``: ``{"model", <metric>: value}``); metrics no
    model has are left out. Scales differ (perplexity in the thousands, ROUGE-L in 0-1), hence a panel each."""
    from plotly.subplots import make_subplots

    shown = [(key, title) for key, title in metrics if any(r.get(key) is not None for r in rows)]
    if not shown:
        return empty_figure("No finished evaluation yet.")
    lines = math.ceil(len(shown) / columns)
    width = min(columns, len(shown))
    fig = make_subplots(rows=lines, cols=width, subplot_titles=[title for _, title in shown],
                        vertical_spacing=0.5 / lines, horizontal_spacing=0.08)
    palette = ["#6366f1", "#10b981", "#f59e0b", "#ef4444", "#3b82f6", "#8b5cf6", "#14b8a6", "#64748b"]
    for i, (key, _) in enumerate(shown):
        present = [r for r in rows if r.get(key) is not None]
        fig.add_trace(go.Bar(x=[short_name(r["model"]) for r in present], y=[r[key] for r in present],
                             showlegend=False, marker_color=[palette[rows.index(r) % len(palette)] for r in present],
                             text=[f"{r[key]:.0f}" if abs(r[key]) >= 100 else f"{r[key]:.3g}" for r in present],
                             textposition="outside", cliponaxis=False, customdata=[r["model"] for r in present],
                             hovertemplate="%{customdata}: %{y:.4g}<extra></extra>"),
                      row=i // width + 1, col=i % width + 1)
        top = max(r[key] for r in present)
        fig.update_yaxes(range=[0, top * 1.2 if top > 0 else 1], row=i // width + 1, col=i % width + 1)
    fig.update_xaxes(type="category", tickangle=-20 if len(rows) > 2 else 0)
    fig.update_layout(**{**LAYOUT, "height": 60 + 270 * lines, "margin": dict(l=40, r=20, t=50, b=40)},
                      bargap=0.35)
    return fig


def short_name(model: str) -> str:
    """A model's name short enough for an axis: a path's last folder (the full name shows on hover)."""
    return "…/" + model.rstrip("/").rsplit("/", 1)[-1] if model.startswith(("/", "./", "~")) else model


def human_vs_judge(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Per model, the human win rate beside the judge's (both 0-1, ties half): do people and the judge agree?"""
    series = (("human_win_rate", "people (labeling campaign)", COLORS["prompt"]),
              ("judge_win_rate", "LLM judge", COLORS["response"]))
    present = [r for r in rows if any(r.get(key) is not None for key, _, _ in series)]
    if not present:
        return empty_figure("No human votes or judge verdicts yet.")
    fig = go.Figure()
    for key, name, color in series:
        fig.add_trace(go.Bar(x=[short_name(r["model"]) for r in present], y=[r.get(key) for r in present], name=name,
                             marker_color=color, cliponaxis=False, textposition="outside",
                             text=[f"{r[key]:.0%}" if r.get(key) is not None else "" for r in present]))
    fig.add_hline(y=0.5, line_dash="dot", line_color="gray")
    fig.update_layout(**LAYOUT, barmode="group", title="Win rate: people vs judge (ties count half)",
                      yaxis=dict(range=[0, 1.1], tickformat=".0%"))
    fig.update_xaxes(type="category")
    return fig
