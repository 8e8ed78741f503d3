"""The Eval tab: evaluation jobs of every kind (held-out perplexity, reference overlap, LLM-as-judge, lm-eval
tasks, a reward model's scores) for several checkpoints at once, their progress, a chart per metric with a bar
per checkpoint, the selected job's numbers with its best and worst examples as chats, lm-eval scores base vs
tuned, the human results of a labeling campaign beside the automatic numbers, and a CSV of everything.

Handlers call ``lab.eval``; api names: ``eval_start`` (perplexity), ``eval_overlap``, ``eval_judge``,
``eval_harness``, ``eval_reward``, ``eval_jobs``, ``eval_show``, ``eval_examples``, ``eval_harness_table``,
``eval_summary``, ``eval_csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gradio as gr
import pandas as pd

from lab import catalog
from lab.errors import LabError
from lab.eval.config import HarnessConfig, JudgeConfig, OverlapConfig, PerplexityConfig, RewardEvalConfig
from lab.eval.judge_prompts import DEFAULTS, LOCAL_PREFIX
from lab.home import Home
from lab.ui import plots
from lab.ui.common import OnShow, chat_markdown, clip, error_text, guarded, refresh_button, safe_html, status_ok
from lab.ui.forms import Form, build_form

JOB_HEADERS = ["id", "kind", "model", "data", "status", "progress", "settings", "result", "rows"]
METRICS = (("perplexity", "Perplexity (lower is better)"), ("rouge_l", "ROUGE-L (0–1, higher is better)"),
           ("bleu", "BLEU (0–100, higher is better)"), ("judge_win_rate", "Judge win rate (higher is better)"),
           ("judge_grade", "Judge grade (1–10, higher is better)"))
# How each number is written, in the chart and the table alike (the jobs' own lines write them so too).
FORMATS = {"perplexity": ".3f", "rouge_l": ".3f", "bleu": ".1f", "judge_win_rate": ".0%", "judge_grade": ".2f"}
SUMMARY_HEADERS = ["model", "perplexity", "ROUGE-L", "BLEU", "judge win rate", "judge vs", "judge grade",
                   "mean reward (reward model)", "lm-eval",
                   "human win rate", "Bradley–Terry [95%]", "votes"]
NO_CAMPAIGN = "newest with votes"
NO_HARNESS = pd.DataFrame({"": ["No finished lm-eval job yet: run one in the lm-eval tasks tab above."]})


@dataclass
class EvalUI:
    models: gr.Dropdown
    dataset: gr.Dropdown
    judge: gr.Dropdown  # the judge model
    reward_model: gr.Dropdown  # the reward model that scores answers
    status: gr.Markdown
    jobs: gr.Dataframe
    selected: gr.Dropdown
    chart: gr.Plot
    details: gr.Markdown
    best: gr.Chatbot
    worst: gr.Chatbot
    harness_base: gr.Dropdown
    harness_table: gr.Dataframe
    campaign: gr.Dropdown
    summary_table: gr.Dataframe
    human_chart: gr.Plot
    csv: gr.File
    seen: gr.State  # what the jobs looked like at the last timer tick: unchanged jobs redraw nothing
    started: gr.State  # the ids of the jobs started last: the status line follows them


def build(home: Home) -> EvalUI:
    from lab.eval.judges import endpoint_status

    gr.Markdown("Score checkpoints (base vs tuned: pick both): held-out loss and perplexity, reference overlap "
                "(ROUGE-L, BLEU), an LLM judge, lm-eval tasks; then read them beside the human results of a "
                "labeling campaign. Each evaluation runs in the background, one job per model.")
    with gr.Row():
        models = gr.Dropdown(catalog.model_choices(home), value=["tiny"], multiselect=True, allow_custom_value=True,
                             label="Models", scale=3, info="finished runs, newest first, and tiny; or type a path or "
                             "a hub id. Pairwise judging: model A, then model B.")
        dataset = gr.Dropdown(sft_datasets(home), value="sample:sft", allow_custom_value=True, label="Dataset",
                              scale=2, info="SFT version: prompts and reference replies (not used by lm-eval)")
        split = gr.Dropdown(["validation", "train"], value="validation", label="Split", scale=1)
        refresh_pickers = refresh_button()
    with gr.Tabs():
        with gr.Tab("Perplexity"):
            gr.Markdown("Held-out loss and perplexity of the final reply of each row, given the conversation before "
                        "it: the tokens SFT trains on.")
            perplexity = build_form(PerplexityConfig, rows=[("max_rows", "max_length")])
            perplexity_btn = gr.Button("Evaluate perplexity", variant="primary")
        with gr.Tab("Overlap (ROUGE/BLEU)"):
            gr.Markdown("Each model answers the conversation before each final reply; its answer is scored against "
                        "that reply: ROUGE-L (F1 of the longest common subsequence) and sacrebleu BLEU.")
            overlap = build_form(OverlapConfig, rows=[("max_rows", "max_new_tokens", "batch_size"),
                                                      ("temperature", "seed")])
            overlap_btn = gr.Button("Score overlap", variant="primary")
        with gr.Tab("LLM judge"):
            judge = judge_form(home, endpoint_status())
            judge_btn = gr.Button("Judge", variant="primary")
        with gr.Tab("lm-eval tasks"):
            harness = harness_form()
            harness_btn = gr.Button("Run tasks", variant="primary")
        with gr.Tab("Reward model"):
            reward = reward_form(home)
            reward_btn = gr.Button("Score with the reward model", variant="primary")
    status = gr.Markdown()
    gr.Markdown("### Evaluations")
    # Columns of one short word (a kind, a status) in pixels, never narrower than the word; the rest share the
    # width. A row click picks the job.
    jobs = gr.Dataframe(headers=JOB_HEADERS, interactive=False, wrap=True,
                        column_widths=["12%", "104px", "11%", "16%", "104px", "92px", "13%", "15%", "56px"])
    chart = gr.Plot(label="Latest result per checkpoint, one panel per metric")
    with gr.Row():
        selected = gr.Dropdown(label="Evaluation", choices=[], allow_custom_value=True, scale=4)
        refresh_btn = gr.Button("Refresh", size="sm", scale=0, min_width=90)
    details = gr.Markdown()
    with gr.Row():  # hidden until a job is picked (its examples, or none for lm-eval)
        chat = dict(height=460, group_consecutive_messages=False, autoscroll=False, buttons=["copy_all"],
                    placeholder="Select an evaluation above.", visible=False)
        best = gr.Chatbot(label="Best examples", **chat)
        worst = gr.Chatbot(label="Worst examples", **chat)
    gr.Markdown("### lm-eval tasks: base vs tuned")
    harness_base = gr.Dropdown(label="Base model", choices=[], allow_custom_value=True,
                               info="The others' scores are shown with their difference from this one.")
    harness_table = gr.Dataframe(NO_HARNESS, interactive=False, wrap=True)
    gr.Markdown("### People and metrics\nPer model: the automatic numbers beside the human win rate (ties count "
                "half) and Bradley–Terry rating of a labeling campaign (Label tab), matched by model name.")
    with gr.Row():
        campaign = gr.Dropdown(campaign_choices(home), value=NO_CAMPAIGN, label="Campaign", scale=3, allow_custom_value=True,
                               info="newest first")
        summary_btn = gr.Button("Show", scale=0, min_width=90)
    # A width per header (twelve), each header's longest word on one line ("perplexity", "Bradley–Terry" in pixels).
    summary_table = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, wrap=True,
                                 column_widths=["11%", "104px", "7%", "6%", "7%", "9%", "6%", "10%", "9%", "7%",
                                                "130px", "5%"])
    human_chart = gr.Plot(label="People vs judge")
    with gr.Row():
        csv_btn = gr.Button("Export CSV", scale=1)
        csv = gr.File(label="CSV", scale=2, visible=False)  # shown with its file
    seen, following = gr.State(""), gr.State([])
    ui = EvalUI(models, dataset, judge["judge"], reward["reward_model"], status, jobs, selected, chart, details, best,
                worst, harness_base, harness_table, campaign, summary_table, human_chart, csv, seen, following)
    refresh_pickers.click(pickers(ui, home), outputs=[models, dataset, ui.judge, ui.reward_model],
                          api_visibility="private")

    started = [status, jobs, selected, chart, following]
    shared = {"models": models, "dataset": dataset, "split": split}
    perplexity_btn.click(starting(start_perplexity, ui, home),
                         inputs=[models, dataset, split, perplexity["max_rows"], perplexity["max_length"]],
                         outputs=started, api_name="eval_start")
    overlap_btn.click(starting(start_overlap, ui, home), inputs_kwargs={**shared, **overlap.components},
                      outputs=started, api_name="eval_overlap")
    judge_btn.click(starting(start_judge, ui, home), inputs_kwargs={**shared, **judge.components},
                    outputs=started, api_name="eval_judge")
    harness_btn.click(starting(start_harness, ui, home), inputs_kwargs={"models": models, **harness.components},
                      outputs=started, api_name="eval_harness")
    reward_btn.click(starting(start_reward, ui, home), inputs_kwargs={**shared, **reward.components},
                     outputs=started, api_name="eval_reward")
    judge["mode"].change(swap_prompt, inputs=[judge["mode"], judge["prompt"]], outputs=judge["prompt"],
                         api_visibility="private")

    listing = [jobs, selected, chart]
    panels = [harness_base, harness_table, campaign, summary_table, human_chart]
    view = [details, best, worst]
    gr.Timer(2.0).tick(guarded(tick, status, ui, home), inputs=[seen, selected, harness_base, campaign, following],
                       outputs=[*listing, *panels, *view, seen, status], api_visibility="private",
                       show_progress="hidden")
    # These events' outputs (their API) have no status line: ``guarded`` without one raises the message as gr.Error.
    refresh_btn.click(guarded(refresh, None, ui, home), inputs=None, outputs=listing, api_name="eval_jobs").then(
        guarded(follow, status, ui, home), inputs=following, outputs=status, api_visibility="private")
    jobs.select(pick_job, None, selected, api_visibility="private")
    selected.change(guarded(show, None, ui, home), inputs=selected, outputs=[details], api_name="eval_show")
    selected.change(guarded(examples, None, ui, home), inputs=selected, outputs=[best, worst],
                    api_name="eval_examples")
    harness_base.change(guarded(harness_view, None, ui, home), inputs=harness_base,
                        outputs=[harness_base, harness_table], api_name="eval_harness_table")
    summary_inputs = dict(inputs=campaign, outputs=[campaign, summary_table, human_chart])
    summary_btn.click(guarded(summary_view, None, ui, home), **summary_inputs, api_name="eval_summary")
    campaign.change(guarded(summary_view, None, ui, home), **summary_inputs, api_visibility="private")
    # The API returns the file's path; the box, hidden until there is a file, is shown after.
    csv_btn.click(guarded(export_csv, None, ui, home), inputs=None, outputs=[csv], api_name="eval_csv").then(
        lambda: gr.update(visible=True), outputs=csv, api_visibility="private", queue=False)
    return ui


def sft_datasets(home: Home) -> list[tuple[str, str]]:
    return catalog.dataset_choices(home, kind="sft")


def pickers(ui: EvalUI, home: Home) -> Callable[[], dict]:
    """The pickers of models, datasets and judges, as they are now (what is picked stays picked)."""
    def fresh() -> dict:
        return {ui.models: gr.update(choices=catalog.model_choices(home)),
                ui.dataset: gr.update(choices=sft_datasets(home)), ui.judge: gr.update(choices=catalog.judge_choices(home)),
                ui.reward_model: gr.update(choices=catalog.reward_model_choices(home))}
    return fresh


def judge_form(home: Home, endpoint: str) -> Form:
    choices = catalog.judge_choices(home)
    overrides = {"judge": lambda f, kw: gr.Dropdown(choices=choices, allow_custom_value=True, **kw)}
    form = build_form(JudgeConfig, rows=[("mode", "judge", "endpoint_model"),
                                         ("max_rows", "max_new_tokens", "judge_max_tokens", "cache")],
                      overrides=overrides)
    gr.Markdown(f"**Endpoint judge:** {endpoint}. A local judge is not asked to write: its reply is scored from "
                f"`{LOCAL_PREFIX['pairwise']}` (pairwise) or `{LOCAL_PREFIX['single']}` on, by the probability of "
                "each verdict (A, B, C = tie; or 1-10). Pairs are judged in both orders; a verdict counts only when "
                "both agree. Verdicts are cached under LAB_HOME/cache/judge.")
    prompt = gr.Textbox(value=DEFAULTS["pairwise"], lines=12, max_lines=30, label="Judge prompt",
                        info="Placeholders: {question}, {answer_a}, {answer_b} (pairwise) or {answer} (single); "
                        "optional {reference}, the dataset's reply. Edit freely; switching the mode swaps in its "
                        "default unless you changed the text.")
    with gr.Row():
        reset = gr.Button("Reset the prompt to the default", size="sm", scale=0, min_width=260)
    reset.click(lambda mode: DEFAULTS[mode], inputs=form["mode"], outputs=prompt, api_visibility="private")
    return Form(JudgeConfig, {**form.components, "prompt": prompt})


def harness_form() -> Form:
    from lab.eval.harness import OFFLINE_TASKS, list_tasks

    gr.Markdown("lm-evaluation-harness scores (zero-shot, no chat template) show what tuning cost elsewhere: run "
                "them for base and tuned. Offline tasks ship with the lab; the standard ones need the Hugging Face "
                "Hub for their data.")
    tasks = [(f"{name}: {text}", name) for name, text in list_tasks().items()]
    overrides = {"tasks": lambda f, kw: gr.Dropdown(
        choices=tasks, multiselect=True, allow_custom_value=True,
        **{**kw, "value": OFFLINE_TASKS[:1], "info": "Pick or type any task lm-eval knows (e.g. mmlu_astronomy)."})}
    return build_form(HarnessConfig, rows=[("tasks", "limit")], overrides=overrides)


def reward_form(home: Home) -> Form:
    gr.Markdown("Each model answers the prompts; a reward model (a finished reward-model run, trained in the Train "
                "tab with objective *reward*) scores every answer: the mean reward per checkpoint, each prompt's score "
                "kept. The dataset's own replies are scored too where it has them (an SFT reply, a chosen answer). "
                "A reward model's scale is its own: compare checkpoints scored by the same reward model.")
    choices = catalog.reward_model_choices(home)
    overrides = {"reward_model": lambda f, kw: gr.Dropdown(
        choices=choices, allow_custom_value=True,
        **{**kw, "value": choices[0][1] if choices else None,
           "info": "finished reward-model runs, newest first; or type a folder or hub id of a sequence classifier"})}
    return build_form(RewardEvalConfig, rows=[("reward_model", "max_rows", "max_new_tokens"),
                                              ("batch_size", "temperature", "seed")], overrides=overrides)


def swap_prompt(mode: str, text: str) -> str:
    """The new mode's default prompt, unless the user has written their own."""
    return DEFAULTS[mode] if not text.strip() or text in DEFAULTS.values() else text


# --------------------------------------------------------------------------- starting jobs


def starting(fn: Callable[..., dict], ui: EvalUI, home: Home) -> Callable[..., dict]:
    """``guarded(fn)`` for a start button: a refusal (three models for a pairwise judge) also stops the status line
    from following the jobs started before, whose progress the timer would otherwise write over it at once. The
    line sits right under the buttons of every kind."""
    inner = guarded(fn, ui.status, ui, home)

    def run(*args: Any, **kwargs: Any) -> dict:
        out = inner(*args, **kwargs)
        return out if ui.started in out else {**out, ui.started: []}

    run.__wrapped__ = inner.__wrapped__  # type: ignore[attr-defined]  # Gradio reads the bound signature
    run.__name__ = fn.__name__
    return run


def created(ui: EvalUI, home: Home, jobs: list[Any]) -> dict:
    listing = refresh(ui, home)
    # Follow a new job, its numbers appear when it finishes: the tuned model's, not its base's.
    listing[ui.selected]["value"] = default_job(jobs, home)
    ids = [job.id for job in jobs]
    text, _ = progress_of(ids, home)
    return {ui.status: f"**Started {len(jobs)} evaluation(s):** {text}", ui.started: ids, **listing}


def follow(ui: EvalUI, home: Home, ids: list[str] | None) -> dict:
    """The status line for the jobs started last, as they are now (never "started" once they finished)."""
    if not ids:  # nothing started from this page: the status line keeps what it says. An empty dict, not
        return {}  # gr.skip(): the timer merges this into its own dict; guarded makes it gr.skip() for Refresh
    text, outcome = progress_of(ids, home)
    return {ui.status: {"failed": error_text, "succeeded": status_ok}.get(outcome, str)(text)}


def progress_of(ids: list[str], home: Home) -> tuple[str, str]:
    """Each job by name with its state: progress while it runs, then its headline numbers or its error; and the
    outcome of them all: failed (one did), succeeded (all did) or running."""
    from lab.eval.jobs import get_eval, model_names

    jobs = [get_eval(job_id, home) for job_id in ids]
    names = model_names(jobs, home)

    def state(job: Any) -> str:
        said = f"{job.kind} of {job.named_subject(names)}: "
        if job.status == "succeeded":
            return said + job.headline_text
        if job.status == "failed":
            return said + f"failed ({job.error})"
        return said + job.status + (f" {job.done}/{job.total}" if job.total else "")

    statuses = {job.status for job in jobs}
    outcome = "failed" if "failed" in statuses else "succeeded" if statuses == {"succeeded"} else "running"
    return " · ".join(state(job) for job in jobs), outcome


def need_models(models: list[str] | None) -> list[str]:
    if not models:
        raise LabError("Pick at least one model to evaluate.")
    return list(models)


def settings(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def start_perplexity(ui: EvalUI, home: Home, models: list[str] | None, dataset: str, split: str, max_rows: float,
                     max_length: float = 1024) -> dict:
    from lab.eval.jobs import create_eval

    return created(ui, home, [create_eval("perplexity", m, dataset, split=split, max_rows=max_rows or 0,
                                          max_length=max_length, home=home) for m in need_models(models)])


def start_overlap(ui: EvalUI, home: Home, models: list[str] | None, dataset: str, split: str, **values: Any) -> dict:
    from lab.eval.jobs import create_eval

    return created(ui, home, [create_eval("overlap", m, dataset, split=split, home=home, **settings(values))
                              for m in need_models(models)])


def start_judge(ui: EvalUI, home: Home, models: list[str] | None, dataset: str, split: str, **values: Any) -> dict:
    from lab.eval.jobs import create_eval

    models = need_models(models)
    values = {**values, "prompt": swap_prompt(values.get("mode") or "pairwise", values.get("prompt") or "")}
    if values.get("mode") == "pairwise":
        if len(models) != 2:
            raise LabError(f"Pairwise judging compares two models: pick model A, then model B (picked {len(models)}"
                           "). Or choose the single mode to grade each model 1-10.")
        models, values = models[:1], {**values, "model_b": models[1]}
    return created(ui, home, [create_eval("judge", m, dataset, split=split, home=home, **settings(values))
                              for m in models])


def start_harness(ui: EvalUI, home: Home, models: list[str] | None, tasks: list[str] | None, **values: Any) -> dict:
    from lab.eval.jobs import create_eval

    return created(ui, home, [create_eval("harness", m, home=home, tasks=",".join(tasks or []), **settings(values))
                              for m in need_models(models)])


def start_reward(ui: EvalUI, home: Home, models: list[str] | None, dataset: str, split: str, **values: Any) -> dict:
    from lab.eval.jobs import create_eval

    return created(ui, home, [create_eval("reward", m, dataset, split=split, home=home, **settings(values))
                              for m in need_models(models)])


# --------------------------------------------------------------------------- the job list and its chart


def refresh(ui: EvalUI, home: Home) -> dict:
    from lab.eval.jobs import list_evals

    return jobs_panels(ui, list_evals(home))


def jobs_panels(ui: EvalUI, found: list[Any]) -> dict:
    """The job list, the pick of one job and the chart, every model (reward models too) by its name."""
    from lab.eval.jobs import model_names
    from lab.eval.reward import latest_means
    from lab.eval.summary import automatic

    names = {**model_names(found), **catalog.display_names(reward_models(found))}
    rows = [{**row, "name": names[model]} for model, row in automatic(found).items()]
    return {ui.jobs: pd.DataFrame([job_row(j, names) for j in found], columns=JOB_HEADERS),
            ui.selected: gr.update(choices=[(f"{j.kind} · {j.named_subject(names)} · {j.id}", j.id) for j in found]),
            ui.chart: metrics_chart(rows, latest_means(found), names)}


def default_job(found: list[Any], home: Home) -> str | None:
    """The job to show when none is picked, of ``found`` (newest first): the first on a tuned model, a finished
    run that is not the base of another run among them; else the first on any run; else the first."""
    from lab.train.runner import get_run

    runs = list(dict.fromkeys(j.model for j in found if j.model.startswith("run:")))
    bases = set()
    for model in runs:
        try:
            bases.add(str(get_run(model.removeprefix("run:"), home).config.get("model", "")))
        except LabError:
            continue  # deleted since: its jobs stay, its base is unknown
    for wanted in ([m for m in runs if m not in bases], runs):
        job = next((j for j in found if j.model in wanted), None)
        if job is not None:
            return job.id
    return found[0].id if found else None


def pick_job(evt: gr.SelectData) -> str:
    """A click in the Evaluations table picks that row's job (its id is the first cell)."""
    row = evt.row_value or []
    return row[0] if row and row[0] else gr.skip()


def reward_models(found: list[Any]) -> list[str]:
    return [j.config["reward_model"] for j in found if j.config.get("reward_model")]


def tick(ui: EvalUI, home: Home, seen: str, selected: str | None, base: str | None, campaign: str | None,
         following: list[str] | None) -> dict:
    """The timer: redraw only when a job was added or moved on, so charts keep their zoom in between; the status
    line follows the jobs started last."""
    from lab.eval.jobs import list_evals, states

    now = json.dumps(states(home))
    if now == seen:
        return {c: gr.skip() for c in (ui.jobs, ui.selected, ui.chart, ui.harness_base, ui.harness_table, ui.campaign,
                                       ui.summary_table, ui.human_chart, ui.details, ui.best, ui.worst, ui.seen,
                                       ui.status)}
    found = list_evals(home)  # read once for the three panels that list every job
    listing = jobs_panels(ui, found)
    if not selected and found:  # nothing picked yet (a page just opened): the newest tuned model's job
        selected = default_job(found, home)
        listing[ui.selected]["value"] = selected
    return {**listing, **harness_panels(ui, found, base), **summary_panels(ui, home, campaign, found),
            **show(ui, home, selected), **examples(ui, home, selected), **follow(ui, home, following),
            ui.seen: now}


def job_row(job: Any, names: dict[str, str]) -> list[Any]:
    results = job.results or {}
    rows = results.get("rows", sum(t.get("samples", 0) for t in (results.get("tasks") or {}).values()) or None)
    split = f":{job.config['split']}" if job.config.get("split") else ""
    status = job.status + (f": {job.error}" if job.error else "")
    return [job.id, job.kind, job.named_subject(names), job.dataset + split, status,
            f"{job.done}/{job.total}" if job.total else "", settings_text(job, names),
            job.headline_text if job.results else "", rows]


def settings_text(job: Any, names: dict[str, str]) -> str:
    """The settings that differ from the kind's defaults (the judge and its mode always; the reward model by its
    name)."""
    from lab.eval.kinds import get_kind

    defaults = asdict(get_kind(job.kind).config())
    parts = []
    for key in defaults:  # in the config's field order
        value = job.config.get(key, defaults[key])
        if key in ("split", "model_b", "tasks"):
            continue
        if key == "prompt":
            parts += ["own prompt"] if value != DEFAULTS.get(job.config.get("mode"), value) else []
        elif key == "reward_model":
            parts.append(f"scored by {names.get(value, value)}")
        elif key in ("judge", "mode") or value != defaults.get(key):
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def metrics_chart(rows: list[dict[str, Any]], rewards: dict[str, dict[str, float]], names: dict[str, str]):
    """A panel per metric, per lm-eval task and per reward model (``rewards``: reward model → model → mean reward;
    each reward model has its own scale)."""
    tasks = sorted({t for r in rows for t in r["harness"]})
    flat = [{**r, **{f"lm-eval {t}": r["harness"].get(t) for t in tasks},
             **{f"reward {rm}": means.get(r["model"]) for rm, means in rewards.items()}} for r in rows]
    formats = {**FORMATS, **{f"lm-eval {t}": ".3f" for t in tasks}, **{f"reward {rm}": ".3f" for rm in rewards}}
    return plots.metric_panels(flat, [*METRICS, *((f"lm-eval {t}", f"lm-eval: {t}") for t in tasks),
                                      *((f"reward {rm}", f"Mean reward by {names.get(rm, rm)}") for rm in rewards)],
                               formats=formats)


# --------------------------------------------------------------------------- one job


def show(ui: EvalUI, home: Home, job_id: str | None) -> dict:
    from lab.eval.jobs import get_eval, log_path

    if not job_id:
        return {ui.details: ""}
    job = get_eval(job_id, home)
    names = job_names(job, home)
    note = catalog.tiny_note(job.models)  # once, under the numbers, not on every example
    note = f"\n\n*{note}*" if note else ""
    if not job.results:
        text = f"**{job.kind}** of {job.named_subject(names)}: {job.status}"
        if job.total:
            text += f" ({job.done}/{job.total})"
        if job.error:
            text += f": {job.error} (log: `{log_path(job.id, home)}`)"
        return {ui.details: text + note}
    return {ui.details: DETAILS[job.kind](job, names) + note}


def job_names(job: Any, home: Home) -> dict[str, str]:
    """The job's models, its judge (a run can judge) and its reward model, as people know them."""
    scorers = [job.config[k] for k in ("judge", "reward_model") if job.config.get(k)]
    return catalog.display_names([*job.models, *scorers], home)


def perplexity_details(job: Any, names: dict[str, str]) -> str:
    r = job.results
    parts = [f"**{names[job.model]}** on {r['dataset']}:{r['split']}: loss **{r['loss']:.4f}**, perplexity "
             f"**{format(r['perplexity'], FORMATS['perplexity'])}** (lower is better) over {r['rows']} replies "
             f"({r['tokens']} tokens)"]
    for title, key in (("Lowest loss", "best"), ("Highest loss", "worst")):
        parts.append(f"**{title}** (as chats below): " + " · ".join(f"line {e['line']}: loss {e['loss']}"
                                                                     for e in r[key]))
    return "\n\n".join(parts)


def all_zero(job: Any) -> bool:
    """An overlap job whose every answer scored ROUGE-L 0: nothing to rank them by."""
    scores = [e.get("rouge_l") for e in (job.results or {}).get("per_example") or []]
    return job.kind == "overlap" and bool(scores) and not any(scores)


def overlap_details(job: Any, names: dict[str, str]) -> str:
    r = job.results
    below = ("Every answer scored ROUGE-L 0: none shares a word sequence with its reference, so none ranks above "
             "another; a few are below, unranked." if all_zero(job)
             else "The best and worst answers by ROUGE-L are below.")
    rouge, bleu = format(r["rouge_l"], FORMATS["rouge_l"]), format(r["bleu"], FORMATS["bleu"])
    return (f"**{names[job.model]}** on {r['dataset']}:{r['split']}: ROUGE-L **{rouge}** (0–1), BLEU **{bleu}** "
            f"(0–100); higher is better for both. Over {r['rows']} answers (corpus BLEU, sacrebleu "
            f"`{r['bleu_signature']}`; ROUGE-L is the mean per-example F1). {below}")


def judge_details(job: Any, names: dict[str, str]) -> str:
    from lab.eval.judge import undecided_text, win_rate

    r = job.results
    cache = f"{r['cached']} verdict(s) from the cache, {r['judged']} judged now"
    if r["mode"] == "single":
        grades = " · ".join(f"{g}: {n}" for g, n in r["grades"].items()) or "none"
        return (f"**{names[job.model]}** graded by **{names.get(r['judge'], r['judge'])}** on {r['rows']} prompts "
                f"of {r['dataset']}:{r['split']}: mean grade **{r['mean_grade']}** / 10 · grades {grades} · "
                f"unparsed {r['unparsed']} · {cache}")

    def percent(value: float | None) -> str:
        return f"{value:.0%}" if value is not None else "-"

    rate = win_rate(r)
    said = (f"A's win rate **{percent(rate)}** (inconsistent pairs count as ties)" if rate is not None
            else f"**{undecided_text(r)}**: no win rate, and none in the charts")
    orders = r["orders"]
    return "\n".join([
        f"**A = {names[r['model_a']]}** vs **B = {names[r['model_b']]}**, judged by "
        f"**{names.get(r['judge'], r['judge'])}** on {r['rows']} prompts of {r['dataset']}:{r['split']}: {said}, "
        f"position consistency **{percent(r['consistency'])}**.", "",
        "| order | A wins | ties | B wins | unparsed |", "|---|---|---|---|---|",
        *(f"| {label} | {orders[o]['a_wins']} | {orders[o]['ties']} | {orders[o]['b_wins']} | {orders[o]['unparsed']} |"
          for o, label in (("a_first", "A's answer shown first"), ("b_first", "B's answer shown first"))),
        f"| **both orders agree** | **{r['a_wins']}** | **{r['ties']}** | **{r['b_wins']}** | {r['unparsed']} |", "",
        f"{r['inconsistent']} inconsistent · the judge picked the answer shown first in "
        f"{percent(r['first_position_rate'])} of its decided verdicts (50% = no position bias) · {cache}"])


def harness_details(job: Any, names: dict[str, str]) -> str:
    r = job.results
    lines = [f"**{names[job.model]}** on lm-eval tasks (limit {r.get('limit') or 'none'}, lm-eval "
             f"{r.get('lm_eval_version', '?')}):", "", "| task | metric | value | ± stderr | samples |",
             "|---|---|---|---|---|"]
    for task, t in r["tasks"].items():
        stderr = f"{t['stderr']:.4f}" if t.get("stderr") is not None else "-"
        lines.append(f"| {task} | {t['metric']} | {t['value']:.4f} | {stderr} | {t.get('samples', '')} |")
    return "\n".join(lines)


def reward_details(job: Any, names: dict[str, str]) -> str:
    r = job.results
    reference = (f" The dataset's own replies to {r['references']} of these prompts score "
                 f"**{r['reference_mean_reward']:+.3f}** on average." if r["reference_mean_reward"] is not None else "")
    scorer = names.get(r["reward_model"], r["reward_model_name"])
    return (f"**{names[job.model]}** scored by the reward model **{scorer}** on {r['rows']} prompts of "
            f"{r['dataset']}:{r['split']}: mean reward **{r['mean_reward']:+.3f}** (spread {r['std_reward']:.3f})."
            f"{reference} The answers it scored highest and lowest are below; every prompt's score is in the job's "
            "results (`python -m lab eval show ID --json`).")


DETAILS = {"perplexity": perplexity_details, "overlap": overlap_details, "judge": judge_details,
           "harness": harness_details, "reward": reward_details}


def examples(ui: EvalUI, home: Home, job_id: str | None) -> dict:
    """The selected job's best and worst examples, each as a chat: the prompt, the answer(s), the numbers."""
    from lab.eval.jobs import get_eval

    if not job_id:  # nothing picked: no empty panels
        return {ui.best: gr.update(value=[], visible=False), ui.worst: gr.update(value=[], visible=False)}
    job = get_eval(job_id, home)
    names = job_names(job, home)
    r = job.results or {}
    if job.kind == "judge" and r.get("mode") == "pairwise":
        won = [i for i in r["items"] if i["outcome"] == "a"]
        lost = [i for i in r["items"] if i["outcome"] == "b"]
        rest = [i for i in r["items"] if i["outcome"] not in ("a", "b")]
        left = ("Prompts A won", won) if won else ("No prompt won by A; ties, inconsistent and unparsed", rest)
        return {ui.best: chat_update(*left, job, names), ui.worst: chat_update("Prompts B won", lost, job, names)}
    if all_zero(job):  # no best or worst: one panel, unranked
        return {ui.best: chat_update("Answers, unranked (every one scored ROUGE-L 0)", r.get("best", []), job, names),
                ui.worst: gr.update(value=[], visible=False)}
    titles = EXAMPLE_TITLES.get(job.kind)
    if not titles:  # lm-eval scores have no examples to show
        return {ui.best: gr.update(value=[], visible=False), ui.worst: gr.update(value=[], visible=False)}
    return {ui.best: chat_update(titles[0], r.get("best", []), job, names),
            ui.worst: chat_update(titles[1], r.get("worst", []), job, names)}


EXAMPLE_TITLES = {"perplexity": ("Lowest-loss replies", "Highest-loss replies"),
                  "overlap": ("Best examples (by ROUGE-L)", "Worst examples (by ROUGE-L)"),
                  "judge": ("Best examples (by grade)", "Worst examples (by grade)"),
                  "reward": ("Best examples (by reward)", "Worst examples (by reward)")}


def chat_update(label: str, items: list[dict[str, Any]], job: Any, names: dict[str, str]) -> dict:
    shown = items[:3]
    more = f" · {len(shown)} of {len(items)}" if len(items) > len(shown) else ""
    return gr.update(value=chats(shown, job, names), label=label + more, visible=True,
                     placeholder="None." if job.results else "No results yet.")


def chats(items: list[dict[str, Any]], job: Any, names: dict[str, str]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for n, item in enumerate(items, 1):
        prompt = item.get("prompt") or item["messages"][:-1]
        head = f"**Example {n}** · line {item.get('line')}\n\n"
        messages.append({"role": "user", "content": safe_html(head + chat_markdown(prompt))})
        messages += replies(item, job, names)
    return messages


def replies(item: dict[str, Any], job: Any, names: dict[str, str]) -> list[dict[str, str]]:
    def said(title: str, text: str) -> dict[str, str]:
        return {"role": "assistant", "content": safe_html(f"**{title}**\n\n{clip(text, 600) or '*(empty answer)*'}")}

    if job.kind == "perplexity":
        return [said(f"Reference reply · loss {item['loss']}", item["messages"][-1]["content"])]
    if job.kind == "overlap":
        scores = f"ROUGE-L {item['rouge_l']:{FORMATS['rouge_l']}} · BLEU {item['bleu']:{FORMATS['bleu']}}"
        return [said(f"{names[job.model]} · {scores}", item["generation"]),
                said("Reference", item["reference"])]
    if job.kind == "reward":
        reference = ([said(f"The dataset's reply · reward {item['reference_reward']:+.3f}", item["reference"])]
                     if item.get("reference") is not None else [])
        return [said(f"{names[job.model]} · reward {item['reward']:+.3f}", item["answer"]), *reference]
    if job.config.get("mode") == "single":
        expected = f" (expected {item['expected']})" if "expected" in item else ""
        return [said(f"{names[job.model]} · grade {item['verdict']}{expected}", item["answer"])]
    said_by = {"a": "A wins", "b": "B wins", "tie": "tie", None: "unparsed"}

    def verdict(order: str, label: str) -> str:
        probs = item[order].get("probs")  # a local judge's probabilities, by position: A = the first shown
        odds = f" (P first {probs['A']:.2f} · second {probs['B']:.2f} · tie {probs['C']:.2f})" if probs else ""
        return f"{label}: {said_by[item[order]['outcome']]}{odds}"

    verdicts = "<br>".join(verdict(o, label) for o, label in (("a_first", "A shown first"),
                                                              ("b_first", "B shown first")))
    return [said(f"A: {names[job.model]}", item["answer_a"]),
            said(f"B: {names[job.config['model_b']]}", item["answer_b"]),
            {"role": "assistant", "content": f"**Judge:** outcome **{item['outcome']}**<br>{verdicts}"}]


# --------------------------------------------------------------------------- harness, people, CSV


def harness_view(ui: EvalUI, home: Home, base: str | None) -> dict:
    from lab.eval.jobs import list_evals

    return harness_panels(ui, list_evals(home), base)


def harness_panels(ui: EvalUI, found: list[Any], base: str | None) -> dict:
    """lm-eval scores per task, a column per model (by name) and its difference from the base model's."""
    from lab.eval.jobs import model_names
    from lab.eval.summary import harness_table

    models = list(dict.fromkeys(j.model for j in reversed(found) if j.kind == "harness" and j.status == "succeeded"))
    names = model_names(found)
    table = harness_table(found, base)
    chosen = base if base in models else (models[0] if models else None)
    columns = {**names, **{f"Δ {m}": f"Δ {name}" for m, name in names.items()}}
    frame = pd.DataFrame(table).rename(columns=columns) if table else NO_HARNESS
    return {ui.harness_base: gr.update(choices=[(names[m], m) for m in models], value=chosen),
            ui.harness_table: frame}


def campaign_choices(home: Home) -> list[tuple[str, str]]:
    return [(NO_CAMPAIGN, NO_CAMPAIGN)] + catalog.campaign_choices(home)


def summary_view(ui: EvalUI, home: Home, campaign: str | None) -> dict:
    return summary_panels(ui, home, campaign, None)


def summary_panels(ui: EvalUI, home: Home, campaign: str | None, found: list[Any] | None) -> dict:
    from lab.eval.summary import summary

    document = summary(home, None if campaign in (None, "", NO_CAMPAIGN) else campaign, jobs=found)
    names = {r["model"]: r["name"] for r in document["models"]}
    rows = [summary_row(r, names) for r in document["models"]]
    return {ui.campaign: gr.update(choices=campaign_choices(home)),
            ui.summary_table: pd.DataFrame(rows, columns=SUMMARY_HEADERS),
            ui.human_chart: plots.human_vs_judge(document["models"])}


def summary_row(r: dict[str, Any], names: dict[str, str]) -> list[Any]:
    """One model's numbers for the table, the model and its judge opponent by name."""
    def fmt(value: float | None, spec: str) -> str:
        return format(value, spec) if value is not None else ""

    interval = (f" [{r['human_low']:.0f}, {r['human_high']:.0f}]" if r["human_low"] is not None
                and r["human_high"] is not None else "")
    return [r["name"], fmt(r["perplexity"], FORMATS["perplexity"]), fmt(r["rouge_l"], FORMATS["rouge_l"]),
            fmt(r["bleu"], FORMATS["bleu"]), fmt(r["judge_win_rate"], FORMATS["judge_win_rate"]),
            names.get(r["judge_vs"], r["judge_vs"] or ""), fmt(r["judge_grade"], FORMATS["judge_grade"]),
            fmt(r["reward"], ".3f") + (f" ({r['reward_model']})" if r["reward"] is not None else ""),
            " · ".join(f"{t} {v:.3f}" for t, v in r["harness"].items()),
            fmt(r["human_win_rate"], ".0%"), fmt(r["human_rating"], ".0f") + interval, r["human_comparisons"] or ""]


def export_csv(ui: EvalUI, home: Home) -> dict:
    from lab.eval.jobs import list_evals, to_csv

    path = home.exports / "evaluations.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_csv(list_evals(home), home))
    return {ui.csv: str(path)}


def on_show(ui: EvalUI, home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show): the pickers of models, datasets, judges,
    reward models and campaigns (what is picked stays picked), and the jobs with their chart."""
    return [OnShow(pickers(ui, home), [ui.models, ui.dataset, ui.judge, ui.reward_model]),
            OnShow(lambda: {ui.campaign: gr.update(choices=campaign_choices(home))}, [ui.campaign]),
            OnShow(guarded(refresh, None, ui, home), [ui.jobs, ui.selected, ui.chart])]
