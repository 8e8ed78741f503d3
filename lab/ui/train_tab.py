"""The Train tab: a run form built from ``TrainConfig``, recipes in and out, the pre-launch estimate,
starting runs, and the runs list with live curves, progress, log, cancel and resume.

Handlers only call ``lab.train`` functions; each has a stable ``api_name`` (``train_estimate``,
``train_start``, ``train_runs``, ``train_run_view``, ``train_cancel``, ``train_resume``,
``train_load_recipe``, ``train_save_recipe``, ``train_sanity``, ``train_export``, ``train_push``) so scripts
and tests can drive the tab.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lab.config import TrainConfig, load_yaml, to_yaml
from lab.errors import LabError
from lab.home import Home
from lab.names import check_name
from lab.train.samples import read_samples, read_summary
from lab.train.speed import SpeedPlan, read_plan
from lab.ui import plots
from lab.ui.common import OnShow, clip, error_text, guarded, status_ok
from lab.ui.forms import Form, build_form

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SAMPLES = ["sample:sft", "sample:preference"]
GROUPS = {
    "What to train": [("method", "dpo_adapter", "model"), ("dataset", "train_split", "eval_split", "name")],
    "Optimisation": [("learning_rate", "lr_scheduler", "warmup_ratio", "epochs", "max_steps"),
                     ("batch_size", "grad_accum", "max_length", "packing", "precision"),
                     ("max_grad_norm", "weight_decay", "neftune_noise_alpha", "seed"),
                     ("logging_steps", "eval_steps", "save_steps", "save_total_limit"),
                     ("load_best_model_at_end", "early_stopping_patience", "early_stopping_threshold")],
    "LoRA and QLoRA": [("lora_r", "lora_alpha", "lora_dropout", "lora_targets"), ("quant_type", "double_quant")],
    "DPO": [("dpo_beta", "dpo_loss_type", "max_prompt_length", "precompute_ref_log_probs")],
    "Speed": [("padding_free", "attention", "liger_kernels", "compile", "fused_lora")],
    "Memory": [("gradient_checkpointing", "offload_activations", "tiled_mlp", "gpu_memory_gib")],
    "Hardware": [("gpus", "distributed", "deepspeed_stage", "cpu_processes")],
    "Reporting": [("report_to", "wandb_project"), ("sample_prompts", "sample_max_new_tokens")],
}
RUN_HEADERS = ["id", "name", "status", "method", "model", "dataset", "final loss", "created"]
SAMPLE_HEADERS = ["prompt", "before (base)", "after (tuned)"]
EMPTY_REPLY = "(empty: the model ended its reply at once)"


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
    run_memory: gr.Plot
    samples: gr.Dataframe
    hub_repo: gr.Textbox
    gpus: gr.Markdown


def recipe_dirs(home: Home) -> list[Path]:
    """Shipped recipes, then the user's own (saved from the form into LAB_HOME/recipes)."""
    return [RECIPES, home.root / "recipes"]


def recipe_choices(home: Home) -> list[str]:
    return sorted({p.name for d in recipe_dirs(home) for p in d.glob("*.yaml")})


def recipe_path(home: Home, name: str) -> Path:
    """A listed recipe's file (the user's own first); any other name, a folder or '../x' among them, is refused."""
    if name in recipe_choices(home):
        for directory in reversed(recipe_dirs(home)):
            if (directory / name).is_file():
                return directory / name
    raise LabError(f"No recipe named {name}; choose one from the list.")


def dataset_choices(home: Home) -> list[str]:
    from lab.data.versions import list_versions

    return SAMPLES + [v.ref for v in list_versions(home)]


def checkpoint_choices(home: Home) -> list[str]:
    """What can answer prompts: the built-in tiny model and every finished run (its final model or adapter)."""
    from lab.train.runner import list_runs

    return ["tiny"] + [f"run:{r.id}" for r in list_runs(home, status="succeeded")]


def config_from(form: Form, values: dict[str, Any]) -> TrainConfig:
    """The form's values as a config (typed; ``validate`` runs later, where CUDA is known)."""
    from lab.config import from_dict

    chosen = {k: v for k, v in values.items() if k in form.components and v is not None}
    return from_dict(TrainConfig, chosen, where="the form")


def build(home: Home) -> TrainUI:
    gr.Markdown("Configure a run (or load a recipe), look at the estimate, start it; runs execute in their own "
                "processes, queued until the GPUs they ask for are free, and are listed below with live curves.")
    with gr.Row():
        recipe = gr.Dropdown(recipe_choices(home), label="Recipe", value="tiny-sft.yaml", scale=3,
                             info="YAML files in recipes/: each holds a complete run configuration.")
        load = gr.Button("Load recipe", scale=1)
        recipe_name = gr.Textbox(label="Save the form as recipe", placeholder="my-run", scale=2,
                                 info="Writes LAB_HOME/recipes/<name>.yaml (an existing recipe is not overwritten).")
        save = gr.Button("Save recipe", scale=1)
    components: dict[str, Any] = {}
    for title, rows in GROUPS.items():
        with gr.Accordion(title, open=title == "What to train"):
            overrides = {"dataset": lambda f, kw: gr.Dropdown(choices=dataset_choices(home), allow_custom_value=True,
                                                              **kw)}
            components.update(build_form(TrainConfig, rows=rows, overrides=overrides).components)
    form = Form(TrainConfig, components)
    gpus = gr.Markdown(gpus_text(home))
    with gr.Row():
        estimate_btn = gr.Button("Estimate")
        sanity_btn = gr.Button("Sanity check")
        start = gr.Button("Start run", variant="primary")
    status = gr.Markdown()
    estimate_md = gr.Markdown()
    sanity_md = gr.Markdown()
    with gr.Row():
        lr_plot = gr.Plot(label="Schedule", visible=False)
        memory_plot = gr.Plot(label="Memory", visible=False)
    gr.Markdown("### Runs")
    runs = gr.Dataframe(headers=RUN_HEADERS, interactive=False, wrap=True)
    with gr.Row():
        selected = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, scale=3)
        cancel = gr.Button("Cancel run", scale=1, variant="stop")
        resume = gr.Button("Resume run", scale=1)
    progress = gr.Markdown()
    with gr.Row():
        loss_plot = gr.Plot(label="Loss")
        aux_plot = gr.Plot(label="Other metrics")
    log = gr.Textbox(label="Log (last 40 lines)", lines=12, max_lines=12, autoscroll=True)
    with gr.Accordion("Outcome: memory, before/after samples, export", open=True):
        with gr.Row():
            outcome = gr.Markdown()
            run_memory = gr.Plot(label="Memory: estimate and measured peak", visible=False)
        samples = gr.Dataframe(headers=SAMPLE_HEADERS, interactive=False, wrap=True, visible=False,
                               column_widths=["20%", "40%", "40%"],
                               label="The same prompts before and after training (greedy)")
        with gr.Row():
            export_btn = gr.Button("Merge and export", scale=1)
            hub_repo = gr.Textbox(label="Hub repo", placeholder="owner/name", scale=2,
                                  info="Pushes the merged export (or the run's final model); needs HF_TOKEN in the "
                                  "environment.")
            push_btn = gr.Button("Push to the Hub", scale=1)
    ui = TrainUI(form, recipe, recipe_name, status, estimate_md, lr_plot, memory_plot, runs, selected, progress,
                 loss_plot, aux_plot, log, sanity_md, outcome, run_memory, samples, hub_repo, gpus)

    load.click(guarded(load_recipe, status, ui, home), inputs=recipe, outputs=[status, *form], api_name="train_load_recipe")
    save.click(guarded(save_recipe, status, ui, home), inputs_kwargs={"recipe_name": recipe_name, **form.components},
               outputs=[status, recipe], api_name="train_save_recipe")
    estimate_btn.click(guarded(estimate, status, ui, home), inputs_kwargs=form.components,
                       outputs=[status, estimate_md, lr_plot, memory_plot], api_name="train_estimate")
    start.click(guarded(start_run, status, ui, home), inputs_kwargs=form.components,
                outputs=[status, runs, selected], api_name="train_start")
    sanity_btn.click(guarded(sanity, status, ui, home), inputs_kwargs=form.components, outputs=[status, sanity_md],
                     api_name="train_sanity")
    gr.Timer(5.0).tick(guarded(gpu_panel, status, ui, home), outputs=[status, gpus], api_name="train_gpus",
                       show_progress="hidden")
    export_btn.click(guarded(export, status, ui, home), inputs=selected, outputs=[status, outcome],
                     api_name="train_export")
    push_btn.click(guarded(push, status, ui, home), inputs=[selected, hub_repo], outputs=[status],
                   api_name="train_push")
    view_outputs = [status, progress, loss_plot, aux_plot, log, outcome, run_memory, samples]
    refresh_outputs = [runs, selected, *view_outputs]
    gr.Timer(2.0).tick(guarded(refresh, status, ui, home), inputs=selected, outputs=refresh_outputs,
                       api_visibility="private", show_progress="hidden")
    gr.Button("Refresh", size="sm").click(guarded(refresh, status, ui, home), inputs=selected,
                                          outputs=refresh_outputs, api_name="train_runs")
    selected.change(guarded(run_view, status, ui, home), inputs=selected, outputs=view_outputs,
                    api_name="train_run_view")
    cancel.click(guarded(cancel_run, status, ui, home), inputs=selected, outputs=[status], api_name="train_cancel")
    resume.click(guarded(resume_run, status, ui, home), inputs=selected, outputs=[status], api_name="train_resume")
    return ui


def load_recipe(ui: TrainUI, home: Home, name: str) -> dict:
    cfg = load_yaml(str(recipe_path(home, name)))
    values = dataclasses.asdict(cfg)
    return {ui.status: status_ok(f"Loaded {name}."), **{c: values[k] for k, c in ui.form.components.items()}}


def save_recipe(ui: TrainUI, home: Home, recipe_name: str, **values: Any) -> dict:
    name = check_name((recipe_name or "").strip().removesuffix(".yaml"), "Recipe name")
    if f"{name}.yaml" in recipe_choices(home):
        raise LabError(f"A recipe named {name}.yaml exists already; choose another name.")
    path = home.root / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = config_from(ui.form, values)
    path.write_text(f"# python -m lab train {path} --wait\n" + to_yaml(cfg))
    load_yaml(str(path))  # what we write must load back
    return {ui.status: status_ok(f"Saved {path}."),
            ui.recipe: gr.update(choices=recipe_choices(home), value=path.name)}


def estimate(ui: TrainUI, home: Home, **values: Any) -> dict:
    from lab.train.datasets import resolve_version
    from lab.train.distributed import gpus_needed, processes, visible_gpus
    from lab.train.estimate import GIB, largest_batch, memory_budget, model_shape
    from lab.train.estimate import estimate as compute
    from lab.train.loading import model_type, resolve_model_path
    from lab.train.speed import plan

    cfg = config_from(ui.form, values)
    warnings = cfg.validate()
    model = resolve_model_path(cfg.model, home)  # run:<id> → its final model; a path that holds no model fails here
    version = resolve_version(cfg.dataset, home)
    gpus = visible_gpus()
    gpu_count = len(gpus)
    ranks = processes(cfg, gpu_count)  # the effective batch counts every process
    unit = "GPU" if gpus_needed(cfg, gpu_count) else "CPU process"
    units = unit if ranks == 1 else unit + ("es" if unit.endswith("s") else "s")
    shape = model_shape(model)
    speed = plan(cfg, cuda=gpu_count > 0, model_type=model_type(cfg.model, home),
                 gpu_bytes=gpus[0].memory_gib * GIB if gpus else None, shape=shape, processes=ranks)
    # The estimate is of the run as it would go on this machine: the 'auto' memory choices resolved.
    resolved = dataclasses.replace(cfg, **speed.memory_settings())
    report = compute(resolved, version.rows[cfg.train_split], gpus=ranks, shape=shape)
    text = (f"**{version.ref}**: {version.rows[cfg.train_split]} {cfg.train_split} rows · effective batch "
            f"**{report['effective_batch']}** ({cfg.batch_size} per {unit} × {cfg.grad_accum} accumulated × "
            f"{ranks} {units}) · {report['steps_per_epoch']} steps per epoch · **{report['total_steps']}"
            f"** steps in all ({report['warmup_steps']} warm-up) · trainable parameters **{report['trainable_params']:,}"
            f"** of {report['params']:,} ({report['trainable_percent']}%) · peak learning rate {cfg.lr:g}")
    if gpus:  # the first GPU stands for all: runs take whole GPUs of one machine
        budget = memory_budget(cfg, gpus[0].memory_gib * GIB)
        capped = " by gpu_memory_gib" if budget < gpus[0].memory_gib * GIB else ""
        where = f"GPU {gpus[0].index} ({budget / GIB:.0f} GiB{capped})"
        fits = largest_batch(resolved, shape, budget)
        text += (f"\n\nLargest batch_size that fits {where} at max_length "
                 f"{cfg.max_length}, worst case: **{fits}**" if fits else
                 f"\n\n⚠ Not even batch_size 1 fits {where} at max_length "
                 f"{cfg.max_length}: turn on gradient_checkpointing (then offload_activations and tiled_mlp), shorten "
                 "max_length, or use QLoRA.")
    text += ("\n\n**Speed and memory on this machine** (the Speed and Memory groups switch each part):\n"
             + speed.markdown())
    if warnings:
        text += "\n\n" + "\n".join(f"- ⚠ {w}" for w in warnings)
    return {ui.status: status_ok("Estimate ready."), ui.estimate_md: text,
            ui.lr_plot: gr.update(value=plots.lr_schedule(report["lr_curve"]), visible=True),
            ui.memory_plot: gr.update(value=plots.memory_bars(report["memory_gib"]), visible=True)}


def gpus_text(home: Home) -> str:
    """The GPUs runs can use, their memory, and which run holds each."""
    from lab.train.distributed import visible_gpus
    from lab.train.runner import held_gpus

    gpus = visible_gpus()
    if not gpus:
        return "**GPUs:** no GPU: runs use the CPU (gpus 0 with cpu_processes N tries N processes)."
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
    table, choices = runs_table(home)
    return {ui.status: status_ok(f"Run {run.id} is {run.status}.") + note, ui.runs: table,
            ui.selected: gr.update(choices=choices, value=run.id)}


def runs_table(home: Home) -> tuple[pd.DataFrame, list[str]]:
    from lab.train.runner import list_runs

    runs = list_runs(home)
    rows = [[r.id, r.name, r.status, r.method, r.model, r.dataset,
             f"{r.final_loss:.4f}" if r.final_loss is not None else "", r.created_at] for r in runs]
    return pd.DataFrame(rows, columns=RUN_HEADERS), [r.id for r in runs]


def refresh(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import reconcile

    reconcile(home)
    table, choices = runs_table(home)
    out = {ui.runs: table, ui.selected: gr.update(choices=choices)}
    if run_id:
        out.update(run_view(ui, home, run_id))
    return out


def progress_text(run: Any, rows: list[dict[str, Any]]) -> str:
    train = [r for r in rows if r.get("split") == "train"]
    head = f"**{run.id}** · {run.status}"
    if rows:
        step, total = rows[-1]["step"], max(rows[-1].get("max_steps") or 1, 1)
        bar = "█" * int(20 * step / total) + "░" * (20 - int(20 * step / total))
        head += f" · step {step}/{total} `{bar}` {100 * step / total:.0f}%"
        if run.status == "running" and len(train) > 1 and train[-1]["step"] > train[0]["step"]:
            rate = (train[-1]["time"] - train[0]["time"]) / (train[-1]["step"] - train[0]["step"])
            head += f" · about {max(0, (total - step) * rate):.0f} s left"
    if run.final_loss is not None:
        head += f" · final loss {run.final_loss:.4f}"
    return head


def run_view(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import get_run, read_metrics, tail_log

    if not run_id:
        return {ui.progress: "Select a run to see its curves."}
    run = get_run(run_id, home)
    rows = read_metrics(run.id, home)
    figures = plots.run_curves(rows)
    out = {ui.progress: progress_text(run, rows), ui.loss_plot: figures["loss"], ui.aux_plot: figures["aux"],
           ui.log: tail_log(run.id, 40, home), ui.outcome: outcome_text(run, home)}
    if run.status == "failed" and run.error:
        out[ui.progress] += "\n\n" + error_text(f"Failed: {run.error}")
    summary = read_summary(run.run_dir)
    if summary and "estimate_gib" in summary:
        out[ui.run_memory] = gr.update(value=plots.memory_bars(summary["estimate_gib"],
                                                               measured=summary["peak_gpu_memory_gib"]), visible=True)
    else:
        out[ui.run_memory] = gr.update(visible=False)
    out[ui.samples] = samples_update(read_samples(run.run_dir))
    return out


def samples_update(data: dict[str, Any] | None) -> dict:
    if not data:
        return gr.update(visible=False)
    tuned = data.get("tuned") or ["(after the run ends)"] * len(data["prompts"])
    shown = [[clip(text) or EMPTY_REPLY for text in pair] for pair in zip(data["base"], tuned)]
    rows = [[prompt[-1]["content"], before, after] for prompt, (before, after) in zip(data["prompts"], shown)]
    return gr.update(value=pd.DataFrame(rows, columns=SAMPLE_HEADERS), visible=True)


def wandb_text(run: Any) -> str:
    if run.config.get("report_to") != "wandb":
        return "W&B: off for this run."
    if run.wandb_url:
        return f"W&B: [{run.wandb_url}]({run.wandb_url})"
    offline = sorted(Path(run.run_dir, "wandb").glob("offline-run-*"))
    if offline:
        return f"W&B: logged offline (no WANDB_API_KEY); upload with `wandb sync {offline[-1]}`"
    return "W&B: no W&B run yet."


def outcome_text(run: Any, home: Home) -> str:
    lines = [wandb_text(run)]
    summary = read_summary(run.run_dir)
    if summary and "estimate_gib" in summary:
        peak = summary["peak_gpu_memory_gib"]
        measured = (f"measured peak **{peak:.2f} GiB** on {summary['device']}" if peak is not None
                    else "no GPU, so no measured peak")
        lines.append(f"Memory: estimated **{summary['estimate_gib']['total']:.2f} GiB**, {measured}.")
    plan = read_plan(run.run_dir)
    if plan:  # the fast path the worker chose (lab.train.speed): what is on, and why
        lines.append("**Speed** (speed.json):\n" + SpeedPlan(**plan).markdown())
    exported = home.models / f"{run.id}-merged"
    if exported.exists():
        lines.append(f"Exported: `{exported}`")
    elif run.status == "succeeded":
        lines.append(f"Final model: `{Path(run.run_dir) / 'final'}` (merge and export makes a standalone copy).")
    return "\n\n".join(lines)


def cancel_run(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import cancel

    if not run_id:
        raise LabError("Select a run to cancel.")
    run = cancel(run_id, home)
    return {ui.status: status_ok(f"Cancelling {run.id}: it saves a checkpoint and stops.")}


def resume_run(ui: TrainUI, home: Home, run_id: str | None) -> dict:
    from lab.train.runner import resume

    if not run_id:
        raise LabError("Select a run to resume.")
    run = resume(run_id, home)
    return {ui.status: status_ok(f"{run.id} is {run.status} again, from {Path(run.resume_from).name}.")}


def sanity(ui: TrainUI, home: Home, progress: gr.Progress = gr.Progress(), **values: Any) -> dict:
    """The sanity check for the form's config: short real runs in the queue, verdicts in words."""
    from lab.train.sanity import sanity_check

    cfg = config_from(ui.form, values)
    cfg.validate()
    report = sanity_check(cfg, home=home, progress=lambda fraction, message: progress(fraction, desc=message))
    lines = [f"- {'✅' if v.ok else '❌'} {v.message}" for v in report.verdicts]
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
    path = export_run(run, home=home)
    return {ui.status: status_ok(f"Exported {run.id} to {path}."), ui.outcome: outcome_text(run, home)}


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
    return {ui.status: status_ok(f"Pushed {folder.name} of {run.id} to {url}.")}


def on_show(ui: object, home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show)."""
    return []
