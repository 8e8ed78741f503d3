"""Plotly figures for the app: pure functions from engine results to ``go.Figure``.

Each function takes plain numbers (or an engine result) and returns a figure; none of them
touches Gradio, so they can be tested and reused on their own.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

COLORS = {"prompt": "#6366f1", "response": "#10b981", "chosen": "#10b981", "rejected": "#ef4444",
          "system": "#9ca3af", "user": "#3b82f6", "assistant": "#10b981"}
BINS = 40
# One colour per run in every chart (Train curves, Compare overlays, Eval panels): D3's ten, which stay apart on
# white; the built-in ``tiny`` (the base of every test run) is grey.
RUN_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
               "#393b79")
BASE_COLOR = "#7f7f7f"
# The top of a figure under Gradio's label badge (the gr.Plot's label, drawn over the figure's top-left corner,
# about 36 px high): no title may sit there. A title starts below it, subplot titles sit on their panels, and a
# legend at the top sits between the title and the plot.
BADGE = 40
TITLED = BADGE + 26  # room at the top for a title, or for subplot titles, under the badge
TOP = TITLED + 22  # a title and a legend above the plot
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.title.update(y=1, yref="container", yanchor="top", pad={"t": BADGE})
LAYOUT = dict(template=TEMPLATE, height=350, margin=dict(l=50, r=20, t=TOP, b=45),
              legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))


def color_key(source: str) -> str:
    """What a run's colour hangs on: ``run:<id>`` and the bare id (as Compare's run lists hold it) are one run."""
    return source.removeprefix("run:")


def run_color(source: str) -> str:
    """The colour of ``source`` (``run:<id>``, a run id, ``tiny``, a path) in every chart: from a hash of it, so
    it is the same in every tab and after a restart. Two sources in one chart can draw the same slot:
    ``run_colors`` keeps them apart."""
    key = color_key(source)
    if key == "tiny":
        return BASE_COLOR
    if not key:  # a chart of one unnamed run
        return RUN_PALETTE[0]
    return RUN_PALETTE[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(RUN_PALETTE)]


def run_colors(sources: Sequence[str]) -> dict[str, str]:
    """A colour for each source one chart shows: its ``run_color``, unless an older run (ids start with their time)
    holds that slot in this chart; then the next free one. The same set of sources always gets the same colours."""
    colors: dict[str, str] = {}
    holder: dict[str, str] = {}  # colour -> the run that has it in this chart
    for source in sorted(dict.fromkeys(sources), key=color_key):
        key, color = color_key(source), run_color(source)
        if color in RUN_PALETTE:
            first = RUN_PALETTE.index(color)
            turns = (RUN_PALETTE[(first + step) % len(RUN_PALETTE)] for step in range(len(RUN_PALETTE)))
            color = next((c for c in turns if holder.get(c, key) == key), color)  # all taken: share
            holder.setdefault(color, key)
        colors[source] = color
    return colors


def wrap_label(text: str, width: int = 18) -> str:
    """An axis label on lines of about ``width`` characters (``<br>`` between, broken after a space, - or _), so
    long run names never run into each other; a path is shortened to its last folder first."""
    lines = [""]
    for part in re.split(r"(?<=[-_ ])", short_name(text)):
        if lines[-1].strip() and len(lines[-1]) + len(part.rstrip()) > width:
            lines.append("")
        lines[-1] += part
    return "<br>".join(line.strip() for line in lines)


EMPTY_HEIGHT = 140  # px: a blank figure is one line of text, not a plot's worth of empty page


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why it is blank (no data yet, nothing to count), a line high."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#6b7280"),
                       xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(**{**LAYOUT, "height": EMPTY_HEIGHT, "margin": dict(l=20, r=20, t=20, b=20)})
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
    series = {"prompt": stats.prompt_tokens, stats.reply: stats.response_tokens}
    if stats.rejected_tokens:
        series["rejected"] = stats.rejected_tokens
    return {
        "lengths": length_histogram(series, unit=stats.unit),
        "turns": turns_bar(stats.turns),
        "roles": role_bar(stats.role_counts),
    }


def gib_text(value: float) -> str:
    """GiB to two decimals; a part too small for them (a LoRA adapter's gradients and optimizer state) reads
    "< 0.01", not 0.00 as if it held nothing."""
    return "< 0.01" if 0 < value < 0.005 else f"{value:.2f}"


def lr_schedule(curve: Sequence[tuple[int, float]]) -> go.Figure:
    """The learning rate at each optimizer step, as the Trainer's scheduler will set it."""
    fig = go.Figure(go.Scatter(x=[s for s, _ in curve], y=[lr for _, lr in curve], mode="lines",
                               line=dict(color=COLORS["prompt"])))
    fig.update_layout(**{**LAYOUT, "height": 290, "margin": {"l": 50, "r": 20, "t": TITLED, "b": 45}},
                      title="Learning-rate schedule", xaxis_title="step",
                      yaxis_title="learning rate")
    fig.update_yaxes(rangemode="tozero")  # a constant rate would otherwise sit mid-axis, looking like 0
    return fig


def memory_bars(gib: Mapping[str, float], *, measured: float | None = None) -> go.Figure:
    """Estimated peak GPU memory by component (worst case: every sequence at max_length)."""
    parts = {k: v for k, v in gib.items() if k != "total"}
    fig = go.Figure(go.Bar(x=list(parts.values()), y=list(parts), orientation="h", marker_color=COLORS["prompt"],
                           text=[gib_text(v) for v in parts.values()], textposition="outside", cliponaxis=False))
    title = f"VRAM estimate: {gib.get('total', sum(parts.values())):.2f} GiB (worst case at max_length)"
    if measured is not None:
        title += f" · measured peak {measured:.2f} GiB"
        fig.add_vline(x=measured, line_dash="dash", line_color=COLORS["rejected"],
                      annotation_text="measured peak", annotation_position="top")
    fig.update_layout(**{**LAYOUT, "height": 290, "margin": {"l": 50, "r": 20, "t": TITLED, "b": 45}}, title=title,
                      xaxis_title="GiB")
    return fig


RUN_SERIES = (("loss", "train", "solid"), ("eval_loss", "eval", "dot"))  # train solid, eval dotted, in every chart
# The other logged series, a panel per scale: the learning rate (~1e-5) on the grad-norm axis (~1) looks flat at 0.
# Each objective adds its own panels (lab.train.methods.Objective.panels, whose type these share); a metric may be a
# glob (rewards/*/mean) named by what its "*" matched.
AUX_PANELS = (("Learning rate", (("learning_rate", "learning rate"),)), ("Grad norm", (("grad_norm", "grad norm"),)),
              ("Tokens/s", (("tokens_per_second", "tokens/s"),)),
              ("GPU memory (GiB)", (("gpu_memory_gib", "GPU memory (GiB)"),)))
DASHES = ("solid", "dot", "dash", "dashdot", "longdash")  # the series of one panel, in the order they are listed


def series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[Any], list[Any]]:
    """Steps and values of one logged series, a point per step (the closing summary row is no step): a run resumed
    from a checkpoint logs the steps after it again, and its later value is the run's (the one its weights went on
    from), so the line never doubles back."""
    points = {r["step"]: r[key] for r in rows if key in r and r.get("split") != "summary"}
    steps = sorted(points)
    return steps, [points[step] for step in steps]
def loss_overlay(runs: Sequence[tuple[str, str, Sequence[Mapping[str, Any]]]], *, title: str = "Loss") -> go.Figure:
    """Train and eval loss of several runs on one axis (``runs``: (source, name, metric rows) each): a colour per
    run (``run_colors``), train solid, eval dotted; the legend names the runs (no name: one run, "train loss")."""
    colors = run_colors([source for source, _, _ in runs])
    fig = go.Figure()
    for source, name, rows in runs:
        for key, label, dash in RUN_SERIES:
            steps, values = series(rows, key)
            if steps:
                fig.add_trace(go.Scatter(x=steps, y=values, name=f"{name} · {label}" if name else f"{label} loss",
                                         mode="lines+markers",
                                         line=dict(color=colors[source], dash=dash), marker=marker_of(steps, 4),
                                         legendgroup=source))
    if not fig.data:
        return empty_figure("No losses logged yet.")
    # The legend under the plot: one entry per run and split would run over the title at the top.
    fig.update_layout(**{**LAYOUT, "height": 380, "margin": {"l": 50, "r": 20, "t": TITLED, "b": 20},
                         "legend": dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0)},
                      title=f"{title} (solid: train, dotted: eval)", xaxis_title="step")
    fig.update_yaxes(exponentformat="e")  # GRPO's loss near 0 reads 5e-8, not plotly's SI "50n"
    return fig


def run_curves(rows: Sequence[Mapping[str, Any]], source: str = "",
               panels: Sequence[tuple[str, tuple[str, ...]]] = ()) -> dict[str, go.Figure]:
    """Loss (train and eval) and the other logged series of one run, against the step; ``source`` (``run:<id>``)
    gives the run its colour, the one it has in Compare and Eval; ``panels``: the run's objective's own."""
    if not rows:
        empty = empty_figure("No metrics yet: the run logs its first step shortly after it starts.")
        return {"loss": empty, "aux": empty}
    return {"loss": loss_overlay([(source, "", rows)]),
            "aux": aux_panels(rows, run_color(source), (*AUX_PANELS, *panels))}


def marker_of(steps: Sequence[Any], size: int) -> dict[str, Any]:
    """The markers of a series: ``size``, or large enough to see when the series is one point (a run evaluated
    once has one eval loss: there is no line to draw, only its point)."""
    return {"size": size if len(steps) > 1 else 10}


def logged_series(rows: Sequence[Mapping[str, Any]], panel: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The logged series a panel shows, ``(key, name in the legend)`` in the panel's order: a glob's series each
    named by the part its "*" matched, words apart ("rewards/numeric_answer/mean" → "numeric answer")."""
    from fnmatch import fnmatchcase

    logged = list(dict.fromkeys(k for r in rows for k in r))
    shown: dict[str, str] = {}
    for pattern, name in panel:
        for key in logged:
            if key not in shown and fnmatchcase(key, pattern):
                shown[key] = glob_part(pattern, key).replace("_", " ") if name == "*" else name
    return list(shown.items())


def glob_part(pattern: str, key: str) -> str:
    """What the one "*" of ``pattern`` matched in ``key``."""
    head, _, tail = pattern.partition("*")
    return key[len(head):len(key) - len(tail)]


def series_colors(color: str, n: int) -> list[str]:
    """A colour for each of a panel's ``n`` series: the run's own first, then the palette's others, so lines of one
    panel are told apart by colour and not by dash alone."""
    return [color, *(c for c in RUN_PALETTE if c != color)][:n] if n > 1 else [color]


def aux_panels(rows: Sequence[Mapping[str, Any]], color: str,
               panels: Sequence[tuple[str, tuple[tuple[str, str], ...]]] = AUX_PANELS) -> go.Figure:
    """The series other than the loss, a small panel each (own y axis), two panels a line, sharing the steps; a
    panel of several series draws each in its own colour, listed in the legend under the panel's title."""
    from plotly.subplots import make_subplots

    shown = [(title, found) for title, panel in panels if (found := logged_series(rows, panel))]
    if not shown:
        return empty_figure("Only the loss is logged for this run.")
    lines = math.ceil(len(shown) / 2)
    fig = make_subplots(rows=lines, cols=min(2, len(shown)), subplot_titles=[t for t, _ in shown],
                        vertical_spacing=min(0.25, 0.4 / lines), horizontal_spacing=0.1)
    for i, (title, found) in enumerate(shown):
        for j, ((key, name), line_color) in enumerate(zip(found, series_colors(color, len(found)))):
            steps, values = series(rows, key)
            fig.add_trace(go.Scatter(x=steps, y=values, name=name, mode="lines" if len(steps) > 1 else "markers",
                                     showlegend=len(found) > 1, marker=marker_of(steps, 6), legendgroup=title,
                                     legendgrouptitle_text=title if len(found) > 1 else None,
                                     line=dict(color=line_color, dash=DASHES[j % len(DASHES)])),
                          row=i // 2 + 1, col=i % 2 + 1)
    fig.update_yaxes(exponentformat="e", rangemode="tozero")  # a learning rate reads 2e-5, not 0.00002
    # The legend (e.g. DPO's three rewards) under the panels: at the top it would cover a panel's title.
    fig.update_layout(**{**LAYOUT, "height": 126 + 220 * lines, "margin": {"l": 60, "r": 20, "t": TITLED, "b": 40},
                         "legend": dict(orientation="h", yanchor="top", y=-0.4 / lines, xanchor="left", x=0)})
    return fig


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
    # Every interval whole on the plot: the axis spans the lowest and highest ends (and 1000), with a margin.
    ends = [v for r in rows for v in (r["low"], r["rating"], r["high"]) if v is not None] + [1000]
    pad = max(10.0, (max(ends) - min(ends)) * 0.08)
    fig.update_xaxes(range=[min(ends) - pad, max(ends) + pad])
    fig.update_layout(**{**LAYOUT, "height": 150 + 40 * len(rows),
                         "margin": {"l": 50, "r": 30, "t": TITLED, "b": 45}},
                      title="Bradley–Terry rating (95% interval)",
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
    fig.update_layout(**{**LAYOUT, "height": 180 + 50 * len(models),
                         "margin": {"l": 50, "r": 20, "t": TITLED, "b": 45}},
                      title="Win rate of row over column",
                      yaxis_autorange="reversed")
    return fig


def bar_label(row: Mapping[str, Any]) -> str:
    """A model's label on a chart axis: its name (``name``, else ``model``), wrapped."""
    return wrap_label(row.get("name") or row["model"])


def number_text(value: float, spec: str | None = None) -> str:
    """A bar's number as tables write it: with ``spec`` (a format spec, ".3f", ".0%"), else whole above 100 and
    three significant digits below."""
    if spec:
        return format(value, spec)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def metric_panels(rows: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]], *,
                  columns: int = 3, formats: Mapping[str, str] | None = None) -> go.Figure:
    """One small bar chart per metric, a horizontal bar per model in the model's colour (``rows``: ``{"model",
    "name", <metric>: value}``; names on the y axis, wrapped, never overlapping); metrics no model has are left
    out. Scales differ (perplexity in the thousands, ROUGE-L in 0-1), hence a panel each. Every panel lists the
    models in the same order, so a model sits at the same height in each. ``formats``: a metric's format spec, so a
    bar reads as the tables write that number (BLEU 0.5 in both, not 0.46 on the bar)."""
    from plotly.subplots import make_subplots

    shown = [(key, title) for key, title in metrics if any(r.get(key) is not None for r in rows)]
    if not shown:
        return empty_figure("No finished evaluation yet.")
    lines, width = math.ceil(len(shown) / columns), min(columns, len(shown))
    colors = run_colors([r["model"] for r in rows])
    order = list(reversed([bar_label(r) for r in rows]))  # the first model on top
    panel = max(150, 40 + 34 * len(rows))
    fig = make_subplots(rows=lines, cols=width, subplot_titles=[title for _, title in shown],
                        vertical_spacing=min(0.3, 70 / (panel * lines)), horizontal_spacing=0.16)
    for i, (key, _) in enumerate(shown):
        present = [r for r in rows if r.get(key) is not None]
        fig.add_trace(go.Bar(y=[bar_label(r) for r in present], x=[r[key] for r in present], orientation="h",
                             showlegend=False, marker_color=[colors[r["model"]] for r in present],
                             text=[number_text(r[key], (formats or {}).get(key)) for r in present],
                             textposition="outside", cliponaxis=False,
                             customdata=[r.get("name") or r["model"] for r in present],
                             hovertemplate="%{customdata}: %{x:.4g}<extra></extra>"),
                      row=i // width + 1, col=i % width + 1)
        top = max(r[key] for r in present)
        fig.update_xaxes(range=[0, top * 1.3 if top > 0 else 1], row=i // width + 1, col=i % width + 1)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=order, automargin=True)
    fig.update_layout(**{**LAYOUT, "height": 66 + (panel + 70) * lines,
                         "margin": {"l": 20, "r": 30, "t": TITLED, "b": 30}},
                      bargap=0.3)
    return fig


def short_name(model: str) -> str:
    """A model's name short enough for an axis: a path's last folder (the full name shows on hover)."""
    return "…/" + model.rstrip("/").rsplit("/", 1)[-1] if model.startswith(("/", "./", "~")) else model


def human_vs_judge(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Per model, the human win rate beside the judge's (both 0-1, ties half): do people and the judge agree?
    Horizontal bars, the models' names (``name``, else ``model``) on the y axis."""
    series_ = (("human_win_rate", "people (labeling campaign)", COLORS["prompt"]),
               ("judge_win_rate", "LLM judge", COLORS["response"]))
    present = [r for r in rows if any(r.get(key) is not None for key, _, _ in series_)]
    if not present:
        return empty_figure("No human votes or judge verdicts yet.")
    fig = go.Figure()
    for key, name, color in reversed(series_):  # people's bar above the judge's in each group
        fig.add_trace(go.Bar(y=[bar_label(r) for r in present], x=[r.get(key) for r in present], name=name,
                             orientation="h", marker_color=color, cliponaxis=False, textposition="outside",
                             text=[f"{r[key]:.0%}" if r.get(key) is not None else "" for r in present]))
    fig.add_vline(x=0.5, line_dash="dot", line_color="gray")
    fig.update_layout(**{**LAYOUT, "height": 170 + 56 * len(present)}, barmode="group",
                      title="Win rate: people vs judge (ties count half)",
                      xaxis=dict(range=[0, 1.12], tickformat=".0%"), legend_traceorder="reversed")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=[bar_label(r) for r in reversed(present)],
                     automargin=True)
    return fig


def win_rate_plot(rounds: list[dict[str, Any]]) -> go.Figure:
    """The challenger's win rate against the incumbent per round, with its 95% interval; 50% = no better."""
    measured = [r for r in rounds if (r["head_to_head"] or {}).get("n")]
    if not measured:
        return empty_figure("No head-to-head votes yet: a later round's win rate appears with its votes.")
    rates = [r["head_to_head"] for r in measured]
    fig = go.Figure(go.Scatter(
        x=[f"round {r['round']}" for r in measured], y=[h["rate"] for h in rates], mode="markers+lines",
        marker={"size": 11, "color": COLORS["prompt"]},
        error_y={"type": "data", "symmetric": False, "array": [h["high"] - h["rate"] for h in rates],
                     "arrayminus": [h["rate"] - h["low"] for h in rates]},
        text=[f"{' vs '.join(r['contender_names'])}: {h['wins']} wins, {h['losses']} losses, {h['ties']} ties"
              for r, h in zip(measured, rates)],
        hovertemplate="%{x}: %{y:.0%} (%{text})<extra></extra>"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="gray")
    fig.update_layout(**LAYOUT, title="Challenger's win rate against the incumbent (95% interval)")
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return fig


def kappa_plot(windows: list[dict[str, Any]], when: Any = str) -> go.Figure:
    """Fleiss' κ per window of pairs in time order (drift shows here) and over all pairs so far; ``when`` formats
    a window's start and end times for the hover text."""
    if not windows:
        return empty_figure("No pair has two votes yet: agreement appears once pairs are voted twice.")
    numbers = [w["window"] for w in windows]
    text = [f"window {w['window']}: {w['pairs']} pairs, {w['votes']} votes, "
            f"{when(w['start'])} to {when(w['end'])}" for w in windows]
    fig = go.Figure([go.Scatter(x=numbers, y=[w["kappa"] for w in windows], name="κ in the window",
                                mode="lines+markers", text=text, hovertemplate="κ %{y:.2f} (%{text})<extra></extra>",
                                marker={"color": COLORS["prompt"]}),
                     go.Scatter(x=numbers, y=[w["cumulative_kappa"] for w in windows], name="κ so far",
                                mode="lines+markers", line={"dash": "dot", "color": COLORS["response"]})])
    fig.update_layout(**LAYOUT, title="Fleiss' κ over time", yaxis_title="κ",
                      xaxis_title="window of pairs, in the order their votes came")
    fig.update_xaxes(tickmode="array", tickvals=numbers)
    return fig


def phase_bars(phases: Mapping[str, float], meanings: Mapping[str, str] | None = None, *,
               expected_loop: float | None = None) -> go.Figure:
    """Where a run's whole wait went: a bar per phase in the order they happened (the first on top), the training
    loop in its own colour, each phase's meaning on hover; ``expected_loop``: the estimate's seconds for the loop,
    marked on its bar."""
    names = list(phases)
    seconds = [phases[name] for name in names]
    colors = [COLORS["response"] if name == "training" else COLORS["system"] for name in names]
    hover = [f"{name}: {s:.1f} s<br>{(meanings or {}).get(name, '')}" for name, s in zip(names, seconds)]
    fig = go.Figure(go.Bar(x=seconds, y=names, orientation="h", marker_color=colors, hovertext=hover,
                           hoverinfo="text", text=[f"{s:.1f} s" for s in seconds], textposition="outside",
                           cliponaxis=False, showlegend=False))
    if expected_loop is not None and "training" in phases:
        fig.add_trace(go.Scatter(x=[expected_loop], y=["training"], mode="markers", name="estimated loop",
                                 marker=dict(symbol="line-ns", size=22, line=dict(width=3, color=COLORS["rejected"])),
                                 hovertext=[f"estimated: {expected_loop:.1f} s"], hoverinfo="text"))
    fig.update_layout(**{**LAYOUT, "height": 110 + 26 * len(names),
                         "margin": {"l": 110, "r": 40, "t": TITLED, "b": 40}},
                      title=f"Whole wait {sum(seconds):.1f} s, by phase", xaxis_title="seconds",
                      yaxis=dict(autorange="reversed"))
    return fig
