"""The Train tab: a run form built from ``TrainConfig``, recipes in and out, the pre-launch estimate,
starting runs, and the runs list with live curves, progress, log, cancel and resume.

Handlers only call ``lab.train`` functions; each has a stable ``api_name`` (``train_estimate``,
``train_start``, ``train_runs``, ``train_run_view``, ``train_cancel``, ``train_resume``,
``train_load_recipe``, ``train_save_recipe``, ``train_sanity``, ``train_export``, ``train_push``) so scripts
and tests can drive the tab.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lab import catalog, recipes
from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import Home
from lab.space import training_off
from lab.train import rewards
from lab.train.methods import objective
from lab.train.samples import read_completions, read_samples, read_summary
from lab.train.speed import SpeedPlan, read_plan
from lab.ui import plots
from lab.ui.common import OnShow, clip, error_text, guarded, status_ok
from lab.ui.forms import Form, build_form

GROUPS = {
    "What to train": [("objective", "adapter", "model"), ("dataset", "train_split", "eval_split", "name")],
    "Optimisation": [("learning_rate", "lr_scheduler", "warmup_ratio", "epochs", "max_steps"),
                     ("batch_size", "grad_accum", "max_length", "packing", "precision"),
                     ("max_grad_norm", "weight_decay", "seed"),  # neftune_noise_alpha: SFT's objective settings
                     ("logging_steps", "eval_steps", "save_steps", "save_total_limit"),
                     ("load_best_model_at_end", "early_stopping_patience", "early_stopping_threshold")],
    "LoRA and QLoRA": [("lora_r", "lora_alpha", "lora_dropout", "lora_targets"), ("quant_type", "double_quant")],
    "Speed": [("padding_free", "attention", "liger_kernels", "compile"),
              ("fused_lora", "half_activations", "early_head", "merge_micro_batches")],
    "Memory": [("gradient_checkpointing", "offload_activations", "tiled_mlp", "gpu_memory_gib")],
    "Hardware": [("gpus", "distributed", "deepspeed_stage", "cpu_processes")],
    "Reporting": [("report_to", "wandb_project"), ("sample_prompts", "sample_max_new_tokens")],
}
RUN_HEADERS = ["name", "status", "method", "model", "dataset", "result", "created", "id"]
RED, GREEN = "#b91c1c", "#15803d"  # outcomes and verdicts in colour: emoji marks render as empty boxes in some fonts
SAMPLE_HEADERS = ["prompt", "before (base)", "after (tuned)"]
SETTINGS_PER_LINE = 4  # an objective's settings a line: their help texts stay readable
# The rewards field's help in the form: the presets are a table under the settings (the config's help lists them all)
REWARDS_INFO = ("Reward functions and their weights, 'name:weight, name:weight': the total reward is the weighted "
                "sum. What each scores: Reward functions, below.")
COMPLETIONS_SHOWN = 24  # the newest sampled completions of a GRPO/RLOO run (a few per logging step)
EMPTY_REPLY = "(empty: the model ended its reply at once)"
# A form changed after Estimate or Sanity check: their results are of other settings. Said in the browser alone (no
# request per keystroke); the charts of the old estimate are hidden.
STALE_ESTIMATE = "*Settings changed since this estimate — press Estimate again.*"
STALE_SANITY = "*Settings changed since this sanity check — press Sanity check again.*"
HIDDEN = "{__type__: 'update', visible: false}"
MARK_STALE = (f"(estimate, sanity) => [estimate ? {json.dumps(STALE_ESTIMATE)} : estimate, "
              f"sanity && !sanity.startsWith('*Sanity check running') ? {json.dumps(STALE_SANITY)} : sanity, "
              f"{HIDDEN}, {HIDDEN}]")
SANITY_RUNNING = ("**Sanity check running…** (two short training runs: about a minute on a CPU, less on a GPU; "
                  "the progress is shown below)")
SANITY_STARTED = f"() => [{json.dumps(SANITY_RUNNING)}, {json.dumps('*Sanity check running…*')}]"
ESTIMATING = ("**Estimating…** (memory, speed and optimizer steps for these settings: seconds, longer the first time "
              "a model or a dataset is measured)")
# Said at once, in the browser, with the charts of an earlier estimate hidden; Gradio's timer runs on the result.
ESTIMATE_STARTED = f"() => [{json.dumps(ESTIMATING)}, {json.dumps('*Estimating…*')}, {HIDDEN}, {HIDDEN}]"
# The estimate's parts by the words people use (lab.train.estimate.Memory's fields); a part that is 0 and only some
# objectives have is left out.
MEMORY_WORDS = {"weights": "model weights", "gradients": "gradients", "optimizer": "optimizer state",
                "activations": "activations", "reference_model": "reference model (frozen copy)",
                "sampling_kv_cache": "KV cache for samples", "overhead": "framework overhead"}
SOMETIMES = ("reference_model", "sampling_kv_cache")
SPEED_HEAD = "**Speed and memory on this machine**"  # where lab.train.estimate's speed list begins
SPEED_INTRO = "What this run would use here, and why (the Speed and Memory groups above switch each one):"
# Names in the speed list (lab.train.speed.SpeedPlan.markdown) said in plain words.
SPEED_WORDS = {"- Head tile tokens:": "- Output layer's chunk size, in tokens:",
               "PyTorch SDPA": "PyTorch's standard attention (SDPA)"}
# Warnings in a run's log that are no fault, each with what it means (they come from transformers in the worker).
HARMLESS = ((re.compile(r"missing keys in the checkpoint model loaded: \['lm_head\.weight'\]"),
             ("[lab] harmless: this model's output layer shares its weights with the input embeddings, so the "
              "checkpoint stores them once and they are restored from there.")),
            (re.compile(r"gradient_checkpointing.{0,40}deprecated"),
             "[lab] harmless: transformers renamed a setting (to activation_checkpointing); nothing to do."))
SCROLL_LOG_TO_END = ("() => { setTimeout(() => { const box = document.querySelector('#train-log textarea');"
                     " if (box) box.scrollTop = box.scrollHeight; }, 50); }")


@dataclass
class TrainUI:
    form: Form
    recipe: gr.Dropdown
    recipe_name: gr.Textbox
    status: gr.Markdown
    estimate_md: gr.Markdown
    lr_plot: gr.Plot
    memory_plot: gr.Plot
    runs: gr.Dataframe
    selected: gr.Dropdown
    progress: gr.Markdown
    loss_plot: gr.Plot
    aux_plot: gr.Plot
    log: gr.Textbox
    sanity_md: gr.Markdown
    outcome: gr.Markdown
    export_status: gr.Markdown  # under Merge and export / Push: their results, where the button was pressed
    run_memory: gr.Plot
    samples: gr.Dataframe
    completions: gr.Dataframe
    hub_repo: gr.Textbox
    gpus: gr.Markdown
    start: gr.Button
    sanity: gr.Button
    phases_plot: gr.Plot


def config_from(form: Form, values: dict[str, Any]) -> TrainConfig:
    """The form's values as a config (typed; ``validate`` runs later, where CUDA is known)."""
    from lab.config import from_dict

    chosen = {k: v for k, v in values.items() if k in form.components and v is not None}
    return from_dict(TrainConfig, chosen, where="the form")


def objective_settings(components: dict[str, Any], overrides: dict[str, Any]) -> list[tuple[gr.Row, set[str]]]:
    """The settings of the objectives (``lab.train.methods``), in one group: a row per set of objectives that read
    the same fields (DPO and KTO share max_prompt_length), shown while one of them is chosen."""
    from lab.train.methods import OBJECTIVES

    users: dict[str, set[str]] = {}
    for entry in OBJECTIVES.values():
        for name in entry.settings:
            users.setdefault(name, set()).add(entry.name)
    rows: dict[frozenset[str], list[str]] = {}
    for name, who in users.items():
        rows.setdefault(frozenset(who), []).append(name)
    shown = TrainConfig.objective
    out = []
    with gr.Accordion("Objective settings (those of the chosen objective)", open=False):
        for who, names in rows.items():
            title = " and ".join(OBJECTIVES[o].title for o in OBJECTIVES if o in who)
            with gr.Column(visible=shown in who) as row:
                gr.Markdown(f"**{title}**")
                lines = [tuple(names[i:i + SETTINGS_PER_LINE]) for i in range(0, len(names), SETTINGS_PER_LINE)]
                components.update(build_form(TrainConfig, rows=lines, overrides=overrides).components)
                if "rewards" in names:  # what each reward scores, as a table rather than the field's long help
                    with gr.Accordion("Reward functions", open=False):
                        gr.Markdown(rewards.table())
            out.append((row, set(who)))
    return out


def build(home: Home) -> TrainUI:
    gr.Markdown("Configure a run (or load a recipe), look at the estimate, start it; runs execute in their own "
                "processes, queued until the GPUs they ask for are free, and are listed below with live curves.")
    off = training_off()  # e.g. a Space on a CPU: the app's banner says why; create_run refuses runs
    with gr.Row():
        recipe = gr.Dropdown(recipes.recipe_choices(home), label="Recipe", value="tiny-sft.yaml", scale=3,
                             allow_custom_value=True,
                             info="YAML files in recipes/: each holds a complete run configuration.")
        load = gr.Button("Load recipe", scale=1)
        recipe_name = gr.Textbox(label="Save the form as recipe", placeholder="my-run", scale=2,
                                 info="Adds it to the Recipe list (an existing recipe is not overwritten).")
        save = gr.Button("Save recipe", scale=1)
    components: dict[str, Any] = {}
    # Pickers of what exists now (lab.catalog), by name, newest first; a hub id or a path can still be typed.
    overrides = {"dataset": lambda f, kw: gr.Dropdown(choices=catalog.dataset_choices(home), allow_custom_value=True,
                                                      **kw),
                 "model": lambda f, kw: gr.Dropdown(choices=catalog.model_choices(home), allow_custom_value=True,
                                                    **kw),
                 "rewards": lambda f, kw: gr.Textbox(**{**kw, "info": REWARDS_INFO})}
    for title, rows in GROUPS.items():
        with gr.Accordion(title, open=title == "What to train"):
            # One widget per field: a second one would be read by no handler (a setting silently ignored).
            components.update(build_form(TrainConfig, rows=rows, overrides=overrides,
                                         exclude=set(components)).components)
        if title == "What to train":
            objective_rows = objective_settings(components, overrides)
    form = Form(TrainConfig, components)
    show_settings = [row for row, _ in objective_rows]

    def sample_for(chosen: str, dataset: str) -> str:
        """A bundled sample of another kind swapped for the objective's; a dataset the user saved stays."""
        return f"sample:{objective(chosen).data_kind}" if str(dataset).startswith("sample:") else dataset

    chosen = form.components["objective"]
    # Settings follow every change (a recipe, "Train DPO on this"); the sample follows only the user's own pick,
    # since a change made together with the dataset's (a proposal) must not be undone by a stale dataset value.
    chosen.change(lambda value: [gr.update(visible=value in users) for _, users in objective_rows], inputs=chosen,
                  outputs=show_settings, api_visibility="private", show_progress="hidden")
    chosen.input(sample_for, inputs=[chosen, form.components["dataset"]], outputs=form.components["dataset"],
                 api_visibility="private", show_progress="hidden")
    gpus = gr.Markdown(gpus_text(home))
    with gr.Row():
        estimate_btn = gr.Button("Estimate")
        sanity_btn = gr.Button("Sanity check", interactive=not off)
        start = gr.Button("Start run", variant="primary", interactive=not off)
    status = gr.Markdown(error_text(off) if off else "")  # beside the buttons it disables
    sanity_md = gr.Markdown()  # short, and followed while it runs: right under the buttons, above the estimate
    estimate_md = gr.Markdown()
    with gr.Row():
        lr_plot = gr.Plot(label="Schedule", visible=False)
        memory_plot = gr.Plot(label="Memory", visible=False)
    gr.Markdown("### Runs")
    runs = gr.Dataframe(headers=RUN_HEADERS, interactive=False, wrap=True, elem_id="train-runs",
                        label="Click a row to show that run below")
    with gr.Row():
        # The newest run when the page loads: its curves are shown rather than blank charts.
        selected = gr.Dropdown(label="Run", choices=catalog.run_choices(home),
                               value=functools.partial(newest_run, home), allow_custom_value=True, scale=3)
        cancel = gr.Button("Cancel run", scale=1, variant="stop")
        resume = gr.Button("Resume run", scale=1)
    progress = gr.Markdown()
    with gr.Row():
        loss_plot = gr.Plot(label="Loss")
        aux_plot = gr.Plot(label="Other metrics")
    log = gr.Textbox(label="Log (last 40 lines)", lines=12, max_lines=12, autoscroll=True, elem_id="train-log")
    with gr.Accordion("Outcome: memory, speed, before/after samples, export", open=True):
        with gr.Row():
            outcome = gr.Markdown()
            run_memory = gr.Plot(label="Memory of the run", visible=False)
        phases_plot = gr.Plot(label="The whole wait, by phase", visible=False)
        samples = gr.Dataframe(headers=SAMPLE_HEADERS, interactive=False, wrap=True, visible=False,
                               column_widths=["20%", "40%", "40%"],
                               label="The same prompts before and after training (greedy)")
        completions = gr.Dataframe(interactive=False, wrap=True, visible=False,
                                   label="Completions sampled while training, with their rewards (newest first)")
        with gr.Row():
            export_btn = gr.Button("Merge and export", scale=1)
            hub_repo = gr.Textbox(label="Hub repo", placeholder="owner/name", scale=2,
                                  info="Pushes the merged export (or the run's final model); needs HF_TOKEN in the "
                                  "environment.")
            push_btn = gr.Button("Push to the Hub", scale=1)
        export_status = gr.Markdown(elem_classes="lab-status")
    ui = TrainUI(form, recipe, recipe_name, status, estimate_md, lr_plot, memory_plot, runs, selected, progress,
                 loss_plot, aux_plot, log, sanity_md, outcome, export_status, run_memory, samples, completions,
                 hub_repo, gpus, start, sanity_btn, phases_plot)

    load.click(guarded(load_recipe, status, ui, home), inputs=recipe, outputs=[status, *form], api_name="train_load_recipe")
    save.click(guarded(save_recipe, status, ui, home), inputs_kwargs={"recipe_name": recipe_name, **form.components},
               outputs=[status, recipe], api_name="train_save_recipe")
    estimate_btn.click(None, js=ESTIMATE_STARTED, outputs=[status, estimate_md, lr_plot, memory_plot],
                       api_visibility="private", queue=False) \
        .then(shown_in_place(estimate, ui, home, estimate_md, lr_plot, memory_plot, what="estimate"),
              inputs_kwargs=form.components, outputs=[status, estimate_md, lr_plot, memory_plot],
              api_name="train_estimate", show_progress_on=[estimate_md])
    start.click(guarded(start_run, status, ui, home), inputs_kwargs=form.components,
                outputs=[status, runs, selected], api_name="train_start")
    # Said at once, in the browser, where the person looks; the check's progress bar is drawn on its result.
    sanity_btn.click(None, js=SANITY_STARTED, outputs=[status, sanity_md], api_visibility="private", queue=False) \
        .then(shown_in_place(sanity, ui, home, sanity_md, what="sanity check"), inputs_kwargs=form.components,
              outputs=[status, sanity_md], api_name="train_sanity", show_progress_on=[sanity_md])
    # Any change of the form (typed, a recipe loaded, "Train DPO on this") outdates the estimate and the sanity
    # check shown: said in the browser, no request per keystroke.
    gr.on([c.change for c in form.components.values()], None, inputs=[estimate_md, sanity_md],
          outputs=[estimate_md, sanity_md, lr_plot, memory_plot], js=MARK_STALE, api_visibility="private",
          queue=False, show_progress="hidden")
    gr.Timer(5.0).tick(guarded(gpu_panel, status, ui, home), outputs=[status, gpus], api_name="train_gpus",
                       show_progress="hidden")
    export_btn.click(guarded(export, export_status, ui, home), inputs=selected, outputs=[export_status, outcome],
                     api_name="train_export")
    push_btn.click(guarded(push, export_status, ui, home), inputs=[selected, hub_repo], outputs=[export_status],
                   api_name="train_push")
    view_outputs = [status, progress, loss_plot, aux_plot, log, outcome, run_memory, samples, completions]
    refresh_outputs = [runs, selected, *view_outputs]
    gr.Timer(2.0).tick(guarded(follow, status, ui, home), inputs=[selected, status],
                       outputs=[*refresh_outputs, form.components["model"]], api_visibility="private",
                       show_progress="hidden")
    gr.Button("Refresh", size="sm").click(guarded(refresh, status, ui, home), inputs=selected,
                                          outputs=refresh_outputs, api_name="train_runs")
    selected.change(guarded(run_view, status, ui, home), inputs=selected, outputs=view_outputs,
                    api_name="train_run_view")
    runs.select(pick_run, None, selected, api_visibility="private", queue=False)  # a row click picks that run
    # The phases' chart follows the outcome (a finished run's summary), so the views' outputs stay as they were.
    outcome.change(guarded(phases_view, status, ui, home), inputs=selected, outputs=[status, phases_plot],
                   api_name="train_phases", show_progress="hidden")
    # Gradio's autoscroll follows only a box already scrolled to its end, and a new log arrives at its top.
    log.change(None, js=SCROLL_LOG_TO_END, api_visibility="private")
    cancel.click(guarded(cancel_run, status, ui, home), inputs=selected, outputs=[status], api_name="train_cancel")
    resume.click(guarded(resume_run, status, ui, home), inputs=selected, outputs=[status], api_name="train_resume")
    return ui


def load_recipe(ui: TrainUI, home: Home, name: str) -> dict:
    values = dataclasses.asdict(recipes.load_recipe(home, name))
    return {ui.status: status_ok(f"Loaded {name}."), **{c: values[k] for k, c in ui.form.components.items()}}


def save_recipe(ui: TrainUI, home: Home, recipe_name: str, **values: Any) -> dict:
    path = recipes.save_recipe(home, recipe_name, config_from(ui.form, values))
    return {ui.status: status_ok(f"Saved recipe {path.name}: it is in the Recipe list."),
            ui.recipe: gr.update(choices=recipes.recipe_choices(home), value=path.name)}


def shown_in_place(fn: Any, ui: TrainUI, home: Home, panel: gr.Markdown, *charts: gr.Plot, what: str) -> Any:
    """``guarded(fn)`` that, when it fails, also clears ``panel`` (and hides ``charts``): the result of other
    settings left there would be read as this one's. The reason is in the status line just above."""
    inner = guarded(fn, ui.status, ui, home)

    def run(*args: Any, **kwargs: Any) -> dict:
        out = inner(*args, **kwargs)
        if panel not in out:  # failed: only the status line was set
            out.update({panel: f"*No {what} for these settings: the reason is just above.*",
                        **{chart: gr.update(visible=False) for chart in charts}})
        return out

    run.__wrapped__ = inner.__wrapped__  # type: ignore[attr-defined]  # Gradio reads the bound signature
    run.__name__ = fn.__name__
    return run


def estimate(ui: TrainUI, home: Home, **values: Any) -> dict:
    from lab.train.distributed import gpus_needed, visible_gpus
    from lab.train.estimate import estimate_run

    cfg = config_from(ui.form, values)
    found = estimate_run(cfg, home)
    on_gpu = bool(gpus_needed(cfg, len(visible_gpus())))
    return {ui.status: error_text(found.refusal) if found.refusal else status_ok("Estimate ready."),
            ui.estimate_md: estimate_markdown(found.text, on_gpu),
            ui.lr_plot: gr.update(value=plots.lr_schedule(found.report["lr_curve"]), visible=True),
            ui.memory_plot: gr.update(value=memory_figure(found.report["memory_gib"], on_gpu=on_gpu,
                                                          when="before launch"), visible=True)}


def estimate_markdown(text: str, on_gpu: bool) -> str:
    """The estimate's text with its speed list (every GPU feature and why it is on or off) folded away: on a CPU
    they are all off, and on a GPU they are detail; warnings stay in sight."""
    at = text.find(SPEED_HEAD)
    if at < 0:
        return text
    speed, _, rest = text[at:].partition("\n\n")
    speed = SPEED_INTRO + "\n" + speed.partition("\n")[2]  # its heading is the fold's title
    shown = (text[:at].rstrip() + ("\n\n" + rest if rest else "")).rstrip()
    title = "Speed and memory settings on this machine" if on_gpu else \
        "Speed settings (GPU features: off when training on a CPU)"
    return f"{shown}\n\n{folded(title, readable_speed(speed))}"


def folded(title: str, markdown: str) -> str:
    """A collapsed section of a Markdown panel (HTML ``details``, which Gradio's Markdown keeps)."""
    return f"<details><summary>{title}</summary>\n\n{markdown}\n\n</details>"


def readable_speed(markdown: str) -> str:
    for name, words in SPEED_WORDS.items():
        markdown = markdown.replace(name, words)
    return markdown


def memory_figure(gib: dict[str, float], *, on_gpu: bool, when: str, measured: float | None = None) -> Any:
    """The memory estimate's bars, named in words; titled RAM on a CPU, where the run's memory is the machine's."""
    parts = {MEMORY_WORDS.get(k, k.replace("_", " ")): v for k, v in gib.items()
             if not (k in SOMETIMES and not v)}
    total = gib.get("total", sum(v for k, v in gib.items() if k != "total"))
    fig = plots.memory_bars(parts, measured=measured)
    what = "GPU memory estimate (VRAM)" if on_gpu else "Memory estimate (RAM)"
    title = f"{what} {when}: {total:.2f} GiB"
    if measured is not None:
        title += f" · measured peak {measured:.2f} GiB"
    fig.update_layout(title_text=title, xaxis_title="GiB (worst case: every sequence at max_length)")
    return fig


def gpus_text(home: Home) -> str:
    """The GPUs runs can use, their memory, and which run holds each."""
    from lab.train.distributed import visible_gpus
    from lab.train.runner import held_gpus

    gpus = visible_gpus()
    if not gpus:
        return "**GPUs:** no GPU: runs use the CPU (fine for the tiny model; slow for bigger ones)."
    held = held_gpus(home)
    rows = ["| GPU | name | memory in use | state |", "|---|---|---|---|"]
    for gpu in gpus:
        # Memory used by a process the lab did not start (another user, a notebook) is shown too.
        state = (f"held by run `{held[gpu.index]}`" if gpu.index in held
                 else "in use by another process" if gpu.used_gib >= 1 else "free")
        rows.append(f"| {gpu.index} | {gpu.name} | {gpu.used_gib:.1f} of {gpu.memory_gib:.0f} GiB | {state} |")
    return "\n".join(rows)


def gpu_panel(ui: TrainUI, home: Home) -> dict:
    return {ui.gpus: gpus_text(home)}


def start_run(ui: TrainUI, home: Home, **values: Any) -> dict:
    from lab.train.runner import create_run

    run, warnings = create_run(config_from(ui.form, values), home=home)
    note = "".join(f"\n- ⚠ {w}" for w in warnings)
    table = runs_table(home)
    return {ui.status: run_status(run) + note, ui.runs: table,
            ui.selected: gr.update(choices=catalog.run_choices(home), value=run.id)}


def run_status(run: Any) -> str:
    """The status line about a run, as its state is now: it starts with ``Run <name> ``, which is how ``follow``
    knows the line is about that run and keeps it true."""
    head = f"Run {run.name} "
    if run.status == "failed":
        reason = run.error or "no reason recorded"
        return f"**{colour(f'⚠ {head}failed: {reason}', RED)}**"
    if run.status == "succeeded":
        from lab.train.runner import headline

        result = headline(run)
        return status_ok(f"{head}succeeded" + (f": {result}." if result else "."))
    return status_ok(f"{head}is {run.status}{resumed_text(run)}.")


def resumed_text(run: Any) -> str:
    """", resumed from its step-20 checkpoint" for a resumed run still queued or running ('' otherwise)."""
    step = checkpoint_step(run.resume_from)
    if run.status not in ("queued", "running") or step is None:
        return ""
    return f", resumed from its step-{step} checkpoint"


def checkpoint_step(path: str | None) -> int | None:
    """The step of a checkpoint folder (``…/checkpoint-20`` → 20), None for none."""
    found = re.search(r"checkpoint-(\d+)$", str(path or "").rstrip("/"))
    return int(found.group(1)) if found else None


def colour(text: str, hex_colour: str) -> str:
    return f'<span style="color:{hex_colour}">{text}</span>'


def runs_table(home: Home) -> pd.DataFrame:
    """Every run but the sanity check's working ones, newest first, by name (the model column too), each finished
    one with the number its objective is judged by (``runner.headline``)."""
    from lab.train.runner import headline, list_runs

    runs = [r for r in list_runs(home) if not catalog.is_sanity_run(r)]
    names = catalog.display_names([r.model for r in runs], home)
    rows = [[r.name, r.status, r.method, names[r.model], r.dataset, headline(r), catalog.when(r.created_at), r.id]
            for r in runs]
    return pd.DataFrame(rows, columns=RUN_HEADERS)


def newest_run(home: Home) -> str | None:
    """The run the Run picker shows when the page loads: the newest (sanity-check runs left out), None for none."""
    choices = catalog.run_choices(home)
    return choices[0][1] if choices else None


def refresh(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import reconcile

    reconcile(home)
    out = {ui.runs: runs_table(home), ui.selected: gr.update(choices=catalog.run_choices(home))}
    if run_id:
        out.update(run_view(ui, home, run_id))
    return out


def follow(ui: TrainUI, home: Home, run_id: str | None, status: str | None) -> dict:
    """The timer's refresh: the lists and the selected run's view, and the status line kept true while it is
    about that run ("Run X is running." becomes "Run X succeeded" when it has); a run that has just finished
    is a new model to pick."""
    from lab.train.runner import get_run

    out = refresh(ui, home, run_id)
    if run_id:
        run = get_run(run_id, home)
        now = run_status(run)
        if f"Run {run.name} " in (status or "") and now != status:
            out[ui.status] = now
            out[ui.form.components["model"]] = gr.update(choices=catalog.model_choices(home))
    return out


def progress_text(run: Any, rows: list[dict[str, Any]]) -> str:
    from lab.train.runner import headline

    train = [r for r in rows if r.get("split") == "train"]
    head = f"**{run.name}** · {run.status}"
    if rows:
        step, total = rows[-1]["step"], max(rows[-1].get("max_steps") or 1, 1)
        bar = "█" * int(20 * step / total) + "░" * (20 - int(20 * step / total))
        head += f" · step {step}/{total} `{bar}` {100 * step / total:.0f}%"
        if run.status == "running" and len(train) > 1 and train[-1]["step"] > train[0]["step"]:
            rate = (train[-1]["time"] - train[0]["time"]) / (train[-1]["step"] - train[0]["step"])
            head += f" · about {max(0, (total - step) * rate):.0f} s left"
    if resumed := resumed_text(run):
        head += " · " + resumed.removeprefix(", ")
        redone = redone_steps(rows, checkpoint_step(run.resume_from))
        if redone:
            head += f" (steps {redone[0]}–{redone[1]} are trained again)"
    if result := headline(run):
        head += f" · {result}"
    return head


def redone_steps(rows: list[dict[str, Any]], checkpoint: int | None) -> tuple[int, int] | None:
    """The steps a resumed run trains a second time: those it had logged beyond the checkpoint it resumed from,
    seen once it logs a step again (a cancelled run saves a checkpoint where it stops, so usually none)."""
    steps = [r["step"] for r in rows if r.get("split") == "train" and isinstance(r.get("step"), int)]
    before = next((steps[i - 1] for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
    return (checkpoint + 1, before) if checkpoint is not None and before is not None and before > checkpoint else None


def pick_run(evt: gr.SelectData) -> str:
    """A click in the runs table selects that row's run (its id, the last column)."""
    row = evt.row_value or []
    return row[-1] if row and row[-1] else gr.skip()


def annotated_log(text: str) -> str:
    """The log with a note under each warning that is no fault (``HARMLESS``): they alarm, and mean nothing."""
    lines: list[str] = []
    notes: list[str] = []
    for line in text.splitlines():
        if notes and not line.startswith((" ", "\t")):  # after the warning's indented source line, if any
            lines += notes
            notes = []
        lines.append(line)
        notes += [note for pattern, note in HARMLESS if pattern.search(line)]
    return "\n".join(lines + notes)


def run_view(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import get_run, read_metrics, tail_log

    if not run_id:
        return {ui.progress: "Select a run to see its curves."}
    run = get_run(run_id, home)
    rows = read_metrics(run.id, home)
    figures = plots.run_curves(rows, f"run:{run.id}", objective(run.train_config.objective).panels)
    out = {ui.progress: progress_text(run, rows), ui.loss_plot: figures["loss"], ui.aux_plot: figures["aux"],
           ui.log: annotated_log(tail_log(run.id, 40, home)), ui.outcome: outcome_text(run, home)}
    if run.status == "failed" and run.error:  # in red: a run that did not train is no result
        out[ui.progress] += f"\n\n**{colour(f'⚠ Failed: {run.error}', RED)}**"
    summary = read_summary(run.run_dir)
    if summary and "estimate_gib" in summary:
        out[ui.run_memory] = gr.update(value=memory_figure(summary["estimate_gib"],
                                                           on_gpu=summary.get("device", "cpu") != "cpu",
                                                           when="for the run as it ran",
                                                           measured=summary["peak_gpu_memory_gib"]), visible=True)
    else:
        out[ui.run_memory] = gr.update(visible=False)
    out[ui.samples] = samples_update(read_samples(run.run_dir))
    out[ui.completions] = completions_update(read_completions(run.run_dir, last=COMPLETIONS_SHOWN))
    return out


def samples_update(data: dict[str, Any] | None) -> dict:
    if not data:
        return gr.update(visible=False)
    tuned = data.get("tuned") or ["(after the run ends)"] * len(data["prompts"])
    shown = [[clip(text) or EMPTY_REPLY for text in pair] for pair in zip(data["base"], tuned)]
    rows = [[prompt[-1]["content"], before, after] for prompt, (before, after) in zip(data["prompts"], shown)]
    return gr.update(value=pd.DataFrame(rows, columns=SAMPLE_HEADERS), visible=True)


def completions_update(rows: list[dict[str, Any]]) -> dict:
    """Step, prompt, completion, each reward function's score and the weighted total, newest first."""
    if not rows:
        return gr.update(visible=False)
    names = list(dict.fromkeys(name for row in rows for name in row.get("rewards", {})))
    table = [[row["step"], clip(row["prompt"]), clip(row["completion"]) or EMPTY_REPLY,
              *[score(row.get("rewards", {}).get(name)) for name in names], score(row.get("reward"))]
             for row in reversed(rows)]
    return gr.update(value=pd.DataFrame(table, columns=["step", "prompt", "completion", *names, "total"]),
                     visible=True)


def score(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"  # None: the function does not score this row (no answer)


def wandb_text(run: Any) -> str:
    if run.config.get("report_to") != "wandb":
        return "W&B: off for this run."
    if run.wandb_url:
        return f"W&B: [{run.wandb_url}]({run.wandb_url})"
    offline = sorted(Path(run.run_dir, "wandb").glob("offline-run-*"))
    if offline:
        why = "WANDB_MODE=offline" if os.environ.get("WANDB_API_KEY") else "no WANDB_API_KEY"
        return f"W&B: logged offline ({why}); upload with `wandb sync {offline[-1]}`"
    return "W&B: no W&B run yet."


def outcome_text(run: Any, home: Home) -> str:
    from lab.train.throughput import run_speed

    lines = [wandb_text(run)]
    summary = read_summary(run.run_dir)
    if summary and "estimate_gib" in summary:
        lines.append(memory_text(summary))
    speed = run_speed(run, home)
    if speed:
        lines.append(speed_text(speed))
    plan = read_plan(run.run_dir)
    if plan:  # the fast path the worker chose (lab.train.speed): what is on, and why
        lines.append(folded("Speed settings this run used (speed.json)", readable_speed(SpeedPlan(**plan).markdown())))
    exported = home.models / f"{run.id}-merged"
    if exported.exists():
        lines.append(f"Exported: `{exported.relative_to(home.root)}` in the lab's home folder.")
    elif run.status == "succeeded":
        lines.append(f"Final model: `run:{run.id}` in the model pickers (merge and export makes a standalone copy).")
    return "\n\n".join(lines)


def memory_text(summary: dict[str, Any]) -> str:
    """The run's memory: the estimate for the run as it ran beside the measured peak (a GPU's)."""
    peak = summary["peak_gpu_memory_gib"]
    used = summary.get("precision")
    text = (f"Memory: estimated **{summary['estimate_gib']['total']:.2f} GiB** for the run as it ran"
            + (f" (precision {used})" if used else ""))
    return text + (f", measured peak **{peak:.2f} GiB** on {summary['device']}." if peak is not None
                   else "; no GPU, so no measured peak.")


def speed_text(speed: Any) -> str:
    """"Speed: measured X tokens/s against ~Y estimated (its basis); N tokens trained (~M estimated); whole wait Z
    against ~W estimated (phases: …)"."""
    from lab.train.throughput import amount, duration, rate_text

    guess = speed.expected
    parts = []
    if speed.tokens_per_second:
        head = f"Speed: measured **{rate_text(speed.tokens_per_second)} tokens/s**"
        if guess and guess.tokens_per_second:
            head += f" against **~{rate_text(guess.tokens_per_second)}** estimated {guess.basis}"
        else:
            head += f"; nothing to compare with: {guess.basis if guess else speed.why_no_estimate}"
        parts.append(head)
    else:
        parts.append("Speed: the loop's rate was not measured")
    if speed.train_tokens:
        estimated = f" (~{amount(guess.train_tokens)} estimated)" if guess and guess.train_tokens else ""
        parts.append(f"{amount(speed.train_tokens)} tokens trained{estimated}")
    if speed.wall_seconds:
        wait = f"whole wait **{duration(speed.wall_seconds)}**"
        if guess and guess.wall_seconds:
            wait += f" against ~{duration(guess.wall_seconds)} estimated"
        if speed.phases:
            wait += " (phases: " + " · ".join(f"{name} {duration(s)}" for name, s in speed.phases.items()) + ")"
        if speed.warm:
            wait += ", started by the warm worker with torch, transformers and TRL already imported"
        parts.append(wait)
    return "; ".join(parts) + "."


def phases_view(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    """The selected run's whole wait by phase, with the estimate's loop marked; hidden until it has finished."""
    from lab.train.phases import MEANING
    from lab.train.runner import get_run
    from lab.train.throughput import run_speed

    speed = run_speed(get_run(run_id, home), home) if run_id else None
    if not speed or not speed.phases:
        return {ui.phases_plot: gr.update(visible=False)}
    loop = speed.expected.loop_seconds if speed.expected else None
    return {ui.phases_plot: gr.update(value=plots.phase_bars(speed.phases, MEANING, expected_loop=loop),
                                      visible=True)}


def cancel_run(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import cancel

    if not run_id:
        raise LabError("Select a run to cancel.")
    run = cancel(run_id, home)
    return {ui.status: status_ok(f"Run {run.name} is being cancelled: it saves a checkpoint and stops.")}


def resume_run(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import resume

    if not run_id:
        raise LabError("Select a run to resume.")
    run = resume(run_id, home)
    return {ui.status: run_status(run)}  # "Run X is queued, resumed from its step-20 checkpoint."


def sanity(ui: TrainUI, home: Home, progress: gr.Progress = gr.Progress(), **values: Any) -> dict:
    """The sanity check for the form's config: short real runs in the queue, verdicts in words."""
    from lab.train.sanity import sanity_check

    cfg = config_from(ui.form, values)
    cfg.validate()
    report = sanity_check(cfg, home=home, progress=lambda fraction, message: progress(fraction, desc=message))
    # A verdict can quote the model's sample: its HTML shows as text.
    lines = [f"- **{colour('passed', GREEN) if v.ok else colour('failed', RED)}** {html.escape(v.message)}"
             for v in report.verdicts]
    head = "**Sanity check passed.**" if report.ok else "**Sanity check found problems:**"
    runs = ", ".join(f"{part}: `{run_id}`" for part, run_id in report.runs.items())
    return {ui.status: status_ok("Sanity check finished.") if report.ok else error_text("Sanity check found problems."),
            ui.sanity_md: "\n".join([head, *lines, f"\nRuns used: {runs}"])}


def export(ui: TrainUI, home: Home, run_id: str | None, progress: gr.Progress = gr.Progress()) -> dict:
    from lab.train.merge import export_run
    from lab.train.runner import get_run

    if not run_id:
        raise LabError("Select a finished run to export.")
    run = get_run(run_id, home)
    progress(0.1, desc="Merging the adapter into its base" if (Path(run.run_dir) / "final" / "adapter_config.json")
             .exists() else "Copying the model")
    exported = export_run(run, home=home).relative_to(home.root)
    return {ui.export_status: status_ok(f"Exported {run.name} as a standalone model: `{exported}` in the lab's home "
                                        "folder."),
            ui.outcome: outcome_text(run, home)}


def push(ui: TrainUI, home: Home, run_id: str | None, hub_repo: str) -> dict:
    from lab.train.merge import push_model
    from lab.train.runner import get_run

    if not run_id:
        raise LabError("Select a finished run to push.")
    run = get_run(run_id, home)
    exported = home.models / f"{run.id}-merged"
    folder = exported if exported.exists() else Path(run.run_dir) / "final"
    if not folder.exists():
        raise LabError(f"Run {run.id} is {run.status} and has no final model to push.")
    url = push_model(folder, (hub_repo or "").strip())
    return {ui.export_status: status_ok(f"Pushed {folder.name} of {run.name} to {url}.")}


def on_show(ui: object, home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show): the dataset and model pickers, the recipe
    list and the runs."""
    components = ui.form.components

    def pickers() -> dict:
        return {components["dataset"]: gr.update(choices=catalog.dataset_choices(home)),
                components["model"]: gr.update(choices=catalog.model_choices(home)),
                ui.recipe: gr.update(choices=recipes.recipe_choices(home)),
                ui.runs: runs_table(home), ui.selected: gr.update(choices=catalog.run_choices(home))}

    return [OnShow(pickers, [components["dataset"], components["model"], ui.recipe, ui.runs, ui.selected])]
