"""The Compare tab, in two parts.

- Side by side: 1–4 checkpoints answer the same prompts with the same settings and seed; each column fills in
  token by token, with tokens/s when it is done; optionally a reward model scores every answer (and gives each
  checkpoint its mean). The chosen runs' loss curves overlaid, the config fields that
  differ and each run's final and best numbers. A comparison is saved (LAB_HOME/comparisons/) and exported
  as Markdown and HTML; saved ones are listed and reopened.
- Chat playground: talk to a checkpoint, multi-turn, with a system prompt and sampling settings; with "two at
  once" the same messages go to two checkpoints, each keeping its own conversation.

Handlers call ``lab.compare`` and ``lab.chat``; api names: ``compare_run``, ``compare_runs``, ``compare_export``,
``compare_saved``, ``compare_open``, ``chat_send``, ``chat_retry``, ``chat_undo``, ``chat_clear``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from lab.catalog import model_choices, reward_model_choices, tiny_note
from lab.chat import CHAT_SAMPLING
from lab.compare import MAX_SOURCES, Sampling
from lab.errors import LabError
from lab.home import Home
from lab.ui import plots
from lab.ui.common import OnShow, clip, guarded, refresh_button, safe_html, streamed

log = logging.getLogger(__name__)
REFRESH_S = 0.1  # streamed updates at most this often: each one sends the whole table or conversation
GENERATE = dict(concurrency_id="generate", concurrency_limit=1)  # one model generates at a time (one GPU)
RUNS_HINT = ("*Loss curves, final and best losses and the config fields that differ show here when the checkpoints "
             "include runs (`run:<id>`).*")
EMPTY_ANSWERS = "(press Compare: each checkpoint's answers fill a column here as they are generated)"
CHAT_PLACEHOLDER = "Type a message below and press Enter; the reply streams in here."
NO_SCORER = "none"  # the reward-model picker's value for answers left unscored


def sampling_of(max_new_tokens: float | None, temperature: float | None, top_p: float | None, seed: float | None,
                defaults: Sampling) -> Sampling:
    """The form's numbers as settings; an emptied box means its default."""
    def pick(value: float | None, name: str, kind: type) -> Any:
        return kind(value) if value is not None else getattr(defaults, name)

    return Sampling(pick(max_new_tokens, "max_new_tokens", int), pick(temperature, "temperature", float),
                    pick(top_p, "top_p", float), pick(seed, "seed", int))


def sampling_inputs(defaults: Sampling) -> list[gr.Number]:
    help_ = Sampling.help()
    return [gr.Number(value=defaults.max_new_tokens, precision=0, minimum=1, label="Max new tokens",
                      info=help_["max_new_tokens"]),
            gr.Number(value=defaults.temperature, minimum=0, step=0.1, label="Temperature", info=help_["temperature"]),
            gr.Number(value=defaults.top_p, minimum=0.01, maximum=1, step=0.05, label="Top p", info=help_["top_p"]),
            gr.Number(value=defaults.seed, precision=0, label="Seed", info=help_["seed"])]


@dataclass
class TabUI:
    side: CompareUI
    chat: ChatUI


def build(home: Home) -> TabUI:
    with gr.Tabs():
        with gr.Tab("Side by side", id="compare-side"):
            side = build_side_by_side(home)
        with gr.Tab("Chat playground", id="compare-chat"):
            chat = build_playground(home)
    return TabUI(side, chat)


# --------------------------------------------------------------------------- side by side


@dataclass
class CompareUI:
    sources: gr.Dropdown
    reward_model: gr.Dropdown  # scores every answer, or NO_SCORER
    prompts: gr.Textbox
    settings: list[gr.Number]  # max new tokens, temperature, top p, seed
    status: gr.Markdown
    answers: gr.Dataframe
    curves: gr.Plot
    numbers: gr.Dataframe
    diff: gr.Dataframe
    runs_box: gr.Column  # curves, numbers and diff: shown when run:<id> sources are picked
    runs_hint: gr.Markdown  # what to pick to see them, shown otherwise
    files: gr.File
    saved: gr.Dropdown
    save_status: gr.Markdown  # under Save: what was saved, where the button was pressed
    last: gr.State  # the comparison on screen, as saved: settings, prompts, answers, numbers


def build_side_by_side(home: Home) -> CompareUI:
    gr.Markdown("Pick up to four checkpoints and some prompts: each answers with the same settings and seed, "
                "its column filling in as it generates. Runs among them get their loss curves overlaid and their "
                "config differences listed.")
    with gr.Row():
        sources = gr.Dropdown(model_choices(home), value=["tiny"], multiselect=True, allow_custom_value=True,
                              max_choices=MAX_SOURCES, label="Checkpoints", scale=3,
                              info="finished runs, newest first, and tiny; or type a path or a hub id (up to four)")
        reward_model = gr.Dropdown(scorer_choices(home), value=NO_SCORER, allow_custom_value=True, scale=2,
                                   label="Score with a reward model",
                                   info="a finished reward-model run scores every answer (none: no scores)")
        refresh = refresh_button()
    prompts = gr.Textbox(label="Prompts, one per line", lines=4, value="What is 7 times 8?\nName the capital of Peru.")
    with gr.Row():
        settings = sampling_inputs(Sampling())
    go_btn = gr.Button("Compare", variant="primary")
    status = gr.Markdown(elem_classes="lab-status")
    answers = gr.Dataframe(pd.DataFrame({"prompt": [EMPTY_ANSWERS]}), interactive=False, wrap=True, label="Answers",
                           max_height=1200)  # answers are clipped to a few lines each: show every prompt's row
    runs_hint = gr.Markdown(RUNS_HINT)
    with gr.Column(visible=False) as runs_box:  # one under the other: each needs the width (a column per run)
        curves = gr.Plot(label="Loss curves")
        diff = gr.Dataframe(interactive=False, wrap=True, label="Config fields that differ (as each run used them)")
        numbers = gr.Dataframe(interactive=False, wrap=True, label="Runs: final and best")
    with gr.Row():
        with gr.Column():
            export_btn = gr.Button("Save, and export Markdown + HTML")
            save_status = gr.Markdown(elem_classes="lab-status")
            files = gr.File(label="Comparison (Markdown, HTML)", file_count="multiple", visible=False)
        with gr.Column():
            saved = gr.Dropdown(saved_choices(home), value=None, label="Saved comparisons", allow_custom_value=True,
                                info="Reopen one: its answers, settings and run numbers as they were saved.")
            with gr.Row():
                open_btn = gr.Button("Open", scale=3)
                saved_refresh = refresh_button()
    last = gr.State({})
    ui = CompareUI(sources, reward_model, prompts, settings, status, answers, curves, numbers, diff, runs_box,
                   runs_hint, files, saved, save_status, last)
    runs_outputs = [curves, numbers, diff, runs_box, runs_hint]

    refresh.click(lambda: {sources: gr.update(choices=model_choices(home)),
                           reward_model: gr.update(choices=scorer_choices(home))},
                  outputs=[sources, reward_model], api_visibility="private")
    # The reward model comes last: callers of the API that name no scorer keep working.
    go_btn.click(streamed(compare, status, ui, home), inputs=[sources, prompts, *settings, reward_model],
                 outputs=[status, answers, *runs_outputs, last], api_name="compare_run", show_progress="minimal",
                 **GENERATE)
    # .input, not .change: reopening a saved comparison sets the sources and keeps the numbers it saved.
    sources.input(guarded(runs_view, status, ui, home), inputs=sources, outputs=[status, *runs_outputs],
                  api_name="compare_runs")
    export_btn.click(guarded(export, save_status, ui, home), inputs=last, outputs=[save_status, files, saved, last],
                     api_name="compare_export")
    saved_refresh.click(lambda: gr.update(choices=saved_choices(home)), outputs=saved, api_name="compare_saved")
    open_btn.click(guarded(open_saved, status, ui, home), inputs=saved,
                   outputs=[status, answers, *runs_outputs, last, sources, prompts, *settings],
                   api_name="compare_open")
    return ui


def scorer_choices(home: Home) -> list[tuple[str, str]]:
    return [("none (no scores)", NO_SCORER), *reward_model_choices(home)]


def parse_prompts(text: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": line.strip()}] for line in (text or "").splitlines() if line.strip()]


def answers_update(prompts: list[list[dict[str, str]]], columns: list[tuple[str, list[str]]]) -> dict:
    """The answers table: a prompt column, then one column per source; fixed widths, so long answers wrap and
    every column stays on screen."""
    headers = ["prompt", *(header for header, _ in columns)]
    rows = [[p[-1]["content"], *(clip(texts[i]) if texts else "…" for _, texts in columns)]
            for i, p in enumerate(prompts)]
    share = f"{80 / max(len(columns), 1):.0f}%"
    return gr.update(value=pd.DataFrame(rows, columns=headers), column_widths=["20%"] + [share] * len(columns))


def compare(ui: CompareUI, home: Home, sources: list[str] | None, prompts_text: str, max_new_tokens: float | None,
            temperature: float | None, top_p: float | None, seed: float | None,
            reward_model: str | None = NO_SCORER) -> Iterator[dict]:
    """A generator: each checkpoint's column fills in token by token, one checkpoint after another, then (with a
    reward model) every answer gets its score and each column its mean; columns, legends and tables name each run
    as people know it."""
    from lab.compare import check_request, comparison_document, source_names, stream_side_by_side

    sources, prompts = list(sources or []), parse_prompts(prompts_text)
    scorer = "" if reward_model in (None, "", NO_SCORER) else reward_model
    settings = sampling_of(max_new_tokens, temperature, top_p, seed, defaults=Sampling())
    check_request(sources, prompts, scorer, home)
    names = source_names([*sources, *([scorer] if scorer else [])], home)
    runs = runs_view(ui, home, sources)
    columns: list[tuple[str, list[str]]] = [(f"{names[s]} (waiting)", []) for s in sources]
    done: list[Any] = []
    yield {ui.status: f"Loading {names[sources[0]]}…", ui.answers: answers_update(prompts, columns), **runs}
    shown_at = 0.0
    for result in stream_side_by_side(sources, prompts, settings, home):
        i, name = len(done), names[result.source]
        if result.finished:
            done.append(result)
            columns[i] = (f"{name} ({result.tokens_per_second} tok/s)", [a or "(empty)" for a in result.answers])
        else:
            columns[i] = (f"{name} (generating…)", result.answers)
            if time.monotonic() - shown_at < REFRESH_S:
                continue
        shown_at = time.monotonic()
        update = {ui.status: f"{name} is answering ({i + 1} of {len(sources)} checkpoints)…",
                  ui.answers: answers_update(prompts, columns), **runs}
        if len(done) < len(sources):
            yield update
    if scorer:
        yield {**update, ui.status: f"Scoring the answers with the reward model {names[scorer]}…"}
    document = comparison_document(sources, prompts, settings, done, home, reward_model=scorer)
    # The last update carries everything, so a client that keeps only the final one gets the whole comparison.
    n, m = len(sources), len(prompts)
    said = f"{n} checkpoint{'s' * (n > 1)} answered {m} prompt{'s' * (m > 1)}"
    if scorer:
        said += f", scored by {names[scorer]}"
    note = tiny_note(sources)  # once, under the table, rather than in each of tiny's answers
    yield {**update, ui.status: f"**✓ {said}.**" + (f" *{note}*" if note else ""),
           ui.answers: answers_update(prompts, document_columns(document)), ui.last: document}


def document_columns(document: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """A comparison's answers as table columns: the checkpoint by name with its tokens/s (and mean reward), each
    answer led by its reward where the comparison was scored."""
    from lab.compare import name_in, reward_note

    columns = []
    for a in document["answers"]:
        mean = f" · {reward_note(a)}" if "rewards" in a else ""
        texts = [(f"[{reward_note(a, i)}] " if "rewards" in a else "") + (text or "(empty)")
                 for i, text in enumerate(a["answers"])]
        columns.append((f"{name_in(document, a['source'])} ({a['tokens_per_second']} tok/s{mean})", texts))
    return columns


def curves_figure(home: Home, ids: list[str], names: dict[str, str]) -> go.Figure:
    """The runs' losses overlaid, each run in its colour (``plots.run_colors``) and by its name."""
    from lab.train.runner import read_metrics

    return plots.loss_overlay([(f"run:{run_id}", names.get(run_id, run_id), read_metrics(run_id, home))
                               for run_id in ids])


def runs_update(ui: CompareUI, curves: go.Figure | None, numbers: list[dict[str, Any]], diff: list[dict[str, Any]],
                runs: int, names: dict[str, str]) -> dict:
    """The runs section: shown with its curves, numbers and differences when there are runs, else the hint;
    runs are named (``names``: run id → name) in every table."""
    from lab.compare import numbers_table

    if not runs:
        return {ui.runs_box: gr.update(visible=False), ui.runs_hint: gr.update(visible=True)}
    headers, rows = numbers_table({"runs": numbers, "names": names}) if numbers else ([], [])
    return {ui.runs_box: gr.update(visible=True), ui.runs_hint: gr.update(visible=False),
            ui.curves: curves if curves is not None else plots.empty_figure("The runs of this comparison are gone."),
            ui.numbers: pd.DataFrame(rows, columns=[h.replace("_", " ") for h in headers]).round(4),  # wraps
            ui.diff: pd.DataFrame(diff).rename(columns=names) if diff else pd.DataFrame(
                {"field": ["(pick a second run: only fields that differ are listed)" if runs < 2
                           else "(no setting differs)"]})}


def runs_view(ui: CompareUI, home: Home, sources: list[str] | None) -> dict:
    from lab.compare import config_diff, run_ids, run_numbers, source_names

    sources = list(sources or [])
    ids = run_ids(sources)
    if not ids:
        return runs_update(ui, None, [], [], 0, {})
    names = source_names(sources, home)
    return runs_update(ui, curves_figure(home, ids, names), run_numbers(ids, home),
                       config_diff(ids, home) if len(ids) > 1 else [], len(ids), names)


def saved_choices(home: Home) -> list[tuple[str, str]]:
    from lab.compare import list_comparisons

    return [(f"{c['id']} · {c['error']}" if "error" in c else
             f"{c['id']} · {', '.join(c['names'])} · {c['prompts']} prompt(s)", c["id"])
            for c in list_comparisons(home)]


def export(ui: CompareUI, home: Home, document: dict[str, Any] | None) -> dict:
    """Save the comparison on screen (unless it was reopened from a save) and write its Markdown and HTML."""
    from lab.compare import comparisons_dir, export_comparison, save_comparison

    if not document or not document.get("answers"):
        raise LabError("Compare first (or open a saved comparison); then it can be saved and exported.")
    saved = comparisons_dir(home) / f"{document['id']}.json" if document.get("id") else save_comparison(document, home)
    document = {"id": saved.stem, **document}
    paths = export_comparison(document, saved.with_suffix(""))
    return {ui.save_status: f"**✓ Saved as {saved.stem}** (in Saved comparisons); its Markdown and HTML are below.",
            ui.files: gr.update(value=[str(p) for p in paths], visible=True),
            ui.saved: gr.update(choices=saved_choices(home), value=saved.stem),
            ui.last: document}  # with its id: saving it again exports again, without a second copy


def open_saved(ui: CompareUI, home: Home, comparison_id: str | None) -> dict:
    """A saved comparison back on screen: its answers and numbers as saved, its settings in the form (so Compare
    runs it again), the curves of its runs that still exist; runs named as when it was saved."""
    from lab.compare import load_comparison, run_ids, source_names
    from lab.train.runner import get_run

    if not comparison_id:
        raise LabError("Pick a saved comparison first (Save one, or press ↻ to list them).")
    document = load_comparison(comparison_id, home)
    settings, prompts = document["settings"], document["prompts"]
    names = document.get("names") or source_names(document["sources"], home)  # saved before names were kept
    columns = document_columns({**document, "names": names})
    ids = []
    for run_id in run_ids(document["sources"]):
        try:
            ids.append(get_run(run_id, home).id)
        except LabError:
            continue  # deleted since: its numbers were saved, its curve is gone
    said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in settings.items())
    return {ui.status: f"**Saved comparison {document['id']}** ({document.get('created_at', '')}): {said}.",
            ui.answers: answers_update(prompts, columns),
            **runs_update(ui, curves_figure(home, ids, names) if ids else None, document.get("runs") or [],
                          document.get("config_diff") or [], len(run_ids(document["sources"])), names),
            ui.last: document, ui.sources: document["sources"],
            ui.prompts: "\n".join(p[-1]["content"] for p in prompts),
            **dict(zip(ui.settings, (settings[k] for k in ("max_new_tokens", "temperature", "top_p", "seed"))))}


# --------------------------------------------------------------------------- chat playground

History = list[list[dict[str, str]]]  # [A's conversation, B's]


@dataclass
class ChatUI:
    sources: list[gr.Dropdown]  # A, B
    bots: list[gr.Chatbot]  # A, B: what each conversation shows
    two: gr.Checkbox
    system: gr.Textbox
    settings: list[gr.Number]  # max new tokens, temperature, top p, seed
    message: gr.Textbox
    status: gr.Markdown
    histories: gr.State  # [A's conversation, B's]: user and assistant messages, the system prompt kept apart


def build_playground(home: Home) -> ChatUI:
    gr.Markdown("Talk to a checkpoint, turn after turn. Tick **Two at once** to send the same messages to two "
                "checkpoints, each keeping its own conversation. The system prompt and sampling apply to every turn.")
    with gr.Row(equal_height=True):
        system = gr.Textbox(label="System prompt", lines=1, scale=4, placeholder="e.g. You are a concise assistant.")
        two = gr.Checkbox(label="Two at once", value=False, scale=1, info="the same messages to A and B")
    with gr.Row():
        settings = sampling_inputs(CHAT_SAMPLING)
    sources, bots, columns = [], [], []
    choices = model_choices(home)
    defaults = {"A": "tiny", "B": choices[0][1]}  # B: the newest run (tiny when there is none), to set against A
    with gr.Row(equal_height=True):
        for side in "AB":
            with gr.Column(visible=side == "A") as column:
                with gr.Row(equal_height=True):
                    sources.append(gr.Dropdown(choices, value=defaults[side], allow_custom_value=True,
                                               label=f"Checkpoint {side}", scale=4,
                                               info="a finished run, tiny, or type a path or a hub id"))
                    refresh = refresh_button()
                    refresh.click(lambda: gr.update(choices=model_choices(home)), outputs=sources[-1],
                                  api_visibility="private")
                bots.append(gr.Chatbot(label=f"Conversation {side}", height=420, placeholder=CHAT_PLACEHOLDER,
                                       feedback_options=None, buttons=["copy", "copy_all"],
                                       elem_id=f"lab-chat-{side.lower()}", elem_classes="lab-chat"))
            columns.append(column)
    with gr.Row(equal_height=True):
        message = gr.Textbox(show_label=False, placeholder="Your message (Enter sends)", scale=5, lines=1)
        send = gr.Button("Send", variant="primary", scale=1)
    with gr.Row():
        retry = gr.Button("↻ Retry (next seed)", size="sm")
        undo = gr.Button("↶ Undo last exchange", size="sm")
        clear = gr.Button("✕ Clear", size="sm")
    status = gr.Markdown(elem_classes="lab-status")
    histories = gr.State([[], []])
    ui = ChatUI(sources, bots, two, system, settings, message, status, histories)

    shared = [*sources, two, system, *settings, histories]
    outputs = [*bots, histories, status, message, settings[3]]
    two.change(lambda on: gr.update(visible=on), inputs=two, outputs=columns[1], api_visibility="private")
    gr.on([message.submit, send.click], streamed(send_message, status, ui, home), inputs=[message, *shared],
          outputs=outputs, api_name="chat_send", show_progress="minimal", **GENERATE)
    retry.click(streamed(retry_last, status, ui, home), inputs=shared, outputs=outputs, api_name="chat_retry",
                show_progress="minimal", **GENERATE)
    # In the same queue as the replies: pressed while one streams, they wait for it instead of racing it.
    undo.click(guarded(undo_last, status, ui), inputs=[two, histories], outputs=outputs, api_name="chat_undo",
               **GENERATE)
    clear.click(guarded(clear_all, status, ui), outputs=outputs, api_name="chat_clear", **GENERATE)
    return ui



def active_sides(source_a: str | None, source_b: str | None, two: bool) -> list[tuple[int, str]]:
    sides = [(0, source_a)] + ([(1, source_b)] if two else [])
    for i, source in sides:
        if not source:
            raise LabError(f"Pick checkpoint {'AB'[i]} first (tiny, run:<id>, a path or a hub id).")
    return sides  # type: ignore[return-value]


def send_message(ui: ChatUI, home: Home, message: str, source_a: str | None, source_b: str | None, two: bool,
                 system: str, max_new_tokens: float | None, temperature: float | None, top_p: float | None,
                 seed: float | None, histories: History) -> Iterator[dict]:
    text = (message or "").strip()
    if not text:
        raise LabError("Type a message first.")
    steps = turn(ui, home, text, source_a, source_b, two, system, max_new_tokens, temperature, top_p, seed, histories)
    first = next(steps)  # a checkpoint that does not load fails here, while the message is still in the box
    yield {**first, ui.message: ""}
    yield from steps


def retry_last(ui: ChatUI, home: Home, source_a: str | None, source_b: str | None, two: bool, system: str,
               max_new_tokens: float | None, temperature: float | None, top_p: float | None, seed: float | None,
               histories: History) -> Iterator[dict]:
    """Answer the last message again with the next seed (the same seed would give the same reply)."""
    histories, last = undo_sides(histories, [i for i, _ in active_sides(source_a, source_b, two)])
    if last is None:
        raise LabError("Nothing to retry yet: send a message first.")
    seed = int(seed or 0) + 1
    for update in turn(ui, home, last, source_a, source_b, two, system, max_new_tokens, temperature, top_p, seed,
                       histories):
        yield {**update, ui.settings[3]: seed}


def turn(ui: ChatUI, home: Home, text: str, source_a: str | None, source_b: str | None, two: bool, system: str,
         max_new_tokens: float | None, temperature: float | None, top_p: float | None, seed: float | None,
         histories: History) -> Iterator[dict]:
    """One user message to A (and B): the replies stream in one after the other (so a seed repeats its reply),
    each side's conversation growing by one exchange."""
    from lab.catalog import display_names
    from lab.chat import add_exchange, messages_for, stream_reply
    from lab.compare import cached_model

    settings = sampling_of(max_new_tokens, temperature, top_p, seed, defaults=CHAT_SAMPLING)
    histories = [list(h) for h in histories or [[], []]]
    sides = active_sides(source_a, source_b, two)
    names = display_names([source for _, source in sides], home)
    for _, source in sides:
        cached_model(source, home)  # a checkpoint that does not load fails before anything changes on screen
    shown = [list(h) for h in histories]
    for i, _ in sides:  # B answers once A is done: say so, rather than look stuck
        pending = "…" if i == 0 else "(after A)"
        shown[i] += [{"role": "user", "content": text}, {"role": "assistant", "content": pending}]

    def view(status: str) -> dict:
        return {ui.bots[0]: as_shown(shown[0]), ui.bots[1]: as_shown(shown[1]), ui.status: status}

    # Said once, with tiny's first reply of a conversation, not with each one.
    note = tiny_note(source for i, source in sides if not histories[i])
    note = f" — {note}" if note else ""
    yield view("Answering…")
    speeds = []
    for i, source in sides:
        shown_at = 0.0
        for reply in stream_reply(source, messages_for(system, histories[i], text), settings, home):
            content = reply.text or ("(empty reply)" if reply.finished else "…")
            shown[i][-1] = {"role": "assistant", "content": content}
            if not reply.finished and time.monotonic() - shown_at >= REFRESH_S:
                shown_at = time.monotonic()
                yield view(f"{'AB'[i]} ({names[source]}) is answering…")
        histories[i] = add_exchange(histories[i], text, reply.text)
        speeds.append(f"{'AB'[i]} ({names[source]}): {reply.new_tokens} tokens, {reply.tokens_per_second} tok/s")
        yield {**view(" — ".join(speeds) + (note if len(speeds) == len(sides) else "")), ui.histories: histories}
    if settings.temperature == 0:
        yield view(" — ".join(speeds) + " (greedy: Retry gives the same reply; raise the temperature to vary)" + note)


def as_shown(history: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation as the chat view shows it: a model's or user's HTML as text, not as page elements."""
    return [{**message, "content": safe_html(message["content"])} for message in history]


def undo_last(ui: ChatUI, two: bool, histories: History) -> dict:
    """Drop the last exchange of each conversation shown; its message goes back in the box to edit."""
    histories, last = undo_sides(histories, [0, 1] if two else [0])
    if last is None:
        raise LabError("Nothing to undo: the conversation is empty.")
    return {ui.bots[0]: as_shown(histories[0]), ui.bots[1]: as_shown(histories[1]), ui.histories: histories,
            ui.message: last, ui.status: "Undone: the last message is back in the box."}


def undo_sides(histories: History, sides: list[int]) -> tuple[list[list[dict[str, str]]], str | None]:
    """The conversations with the last exchange of each side in ``sides`` dropped, and the first side's user
    message of that exchange (None when there was nothing to drop)."""
    from lab.chat import undo

    histories = [list(h) for h in histories or [[], []]]
    last = None
    for i in sides:
        histories[i], said = undo(histories[i])
        last = last or said
    return histories, last


def clear_all(ui: ChatUI) -> dict:
    return {ui.bots[0]: [], ui.bots[1]: [], ui.histories: [[], []], ui.status: "Cleared: a new conversation."}


def on_show(ui: TabUI, home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show): the checkpoints every picker offers (runs
    finished since), the reward models that can score, and the saved comparisons; what is picked stays picked."""
    pickers = [ui.side.sources, *ui.chat.sources]

    def models() -> dict:
        choices = model_choices(home)
        return {picker: gr.update(choices=choices) for picker in pickers}

    return [OnShow(models, pickers),
            OnShow(lambda: {ui.side.reward_model: gr.update(choices=scorer_choices(home))}, [ui.side.reward_model]),
            OnShow(lambda: {ui.side.saved: gr.update(choices=saved_choices(home))}, [ui.side.saved])]
