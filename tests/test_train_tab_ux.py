"""The Train tab as a newcomer meets it, checked on its Blocks and handlers (no server, no browser): one widget per
setting, results that say when the form has changed under them, the sanity check's progress where one looks,
memory named in words, a resumed run that says where it resumed, and a runs table whose rows pick a run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from lab.config import TrainConfig, field_label, load_yaml
from lab.ui import train_tab


@pytest.fixture()
def built(home):
    """The Train tab built alone, as the app builds it: its Blocks and its TrainUI."""
    with gr.Blocks() as demo:
        ui = train_tab.build(home)
    return demo, ui


def event(demo: gr.Blocks, **match):
    """The one event of ``demo`` whose attributes equal ``match``."""
    found = [fn for fn in demo.fns.values() if all(getattr(fn, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, len(found))
    return found[0]


def test_every_setting_has_exactly_one_widget_and_every_handler_reads_it(built):
    """Neftune noise alpha was built twice (SFT's objective settings and Optimisation): the one a person saw under
    the objective was read by no handler, so its value never reached the run or the recipe."""
    demo, ui = built
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    labels = {field_label(name): name for name in names}
    shown = Counter(block.label for block in demo.blocks.values()
                    if isinstance(block, gr.components.FormComponent) and block.label in labels)
    assert {label for label, count in shown.items() if count > 1} == set()
    assert set(ui.form.components) == set(names)
    for name, component in ui.form.components.items():
        assert component.label == field_label(name)
    wired = {component._id for component in ui.form.components.values()}
    for api in ("train_save_recipe", "train_estimate", "train_start", "train_sanity"):
        assert wired <= {block._id for block in event(demo, api_name=api).inputs}, api


def test_the_visible_neftune_widget_reaches_the_saved_recipe(built, home):
    demo, ui = built
    (neftune,) = [block for block in demo.blocks.values()
                  if getattr(block, "label", None) == "Neftune noise alpha"]
    assert neftune is ui.form["neftune_noise_alpha"]
    values = {name: component.value for name, component in ui.form.components.items()}
    out = train_tab.save_recipe(ui, home, "neft-test", **{**values, "neftune_noise_alpha": 5.0})
    assert "Saved recipe neft-test.yaml" in out[ui.status]
    assert load_yaml(str(home.root / "recipes" / "neft-test.yaml")).neftune_noise_alpha == 5.0


def test_a_changed_form_marks_the_estimate_and_the_sanity_check_outdated_in_the_browser(built):
    """Every setting's change (typed, a recipe loaded, "Train DPO on this") runs one browser-side function: the
    estimate and the sanity result say they are of other settings and the estimate's charts are hidden, with no
    request to the server per keystroke."""
    demo, ui = built
    stale = event(demo, js=train_tab.MARK_STALE)
    assert stale.fn is None  # nothing runs on the server
    assert {(c._id, "change") for c in ui.form.components.values()} == {tuple(t) for t in stale.targets}
    assert [o._id for o in stale.outputs] == [ui.estimate_md._id, ui.sanity_md._id, ui.lr_plot._id,
                                              ui.memory_plot._id]
    assert json.dumps(train_tab.STALE_ESTIMATE) in stale.js and json.dumps(train_tab.STALE_SANITY) in stale.js


def test_the_sanity_check_says_it_runs_at_once_and_its_result_sits_under_the_buttons(built):
    demo, ui = built
    started = event(demo, js=train_tab.SANITY_STARTED)
    assert started.fn is None and [o._id for o in started.outputs] == [ui.status._id, ui.sanity_md._id]
    assert "Sanity check running" in started.js and "about a minute on a CPU" in started.js
    check = event(demo, api_name="train_sanity")
    assert check.trigger_after == started._id  # .then: the check itself, its progress bar on its result
    assert [block._id for block in check.show_progress_on] == [ui.sanity_md._id]
    # Under the buttons: status, then the sanity result, then the estimate.
    column = ui.status.parent.children
    at = column.index(ui.status)
    assert column[at - 1].children[0].value == "Estimate"
    assert column[at + 1] is ui.sanity_md and column[at + 2] is ui.estimate_md


def form_values(ui, **changes):
    return {**{name: component.value for name, component in ui.form.components.items()}, **changes}


def test_a_failed_estimate_clears_the_old_one_and_points_to_its_reason(built):
    demo, ui = built
    estimate = event(demo, api_name="train_estimate").fn
    out = estimate(**form_values(ui, dataset="no-such-dataset"))
    assert "no-such-dataset" in out[ui.status]
    assert out[ui.estimate_md] == "*No estimate for these settings: the reason is just above.*"
    assert out[ui.lr_plot]["visible"] is False and out[ui.memory_plot]["visible"] is False


def test_the_estimate_on_a_cpu_speaks_of_ram_in_words_and_folds_the_gpu_features_away(built, monkeypatch):
    from lab.train import distributed

    monkeypatch.setattr(distributed, "visible_gpus", list)
    demo, ui = built
    out = event(demo, api_name="train_estimate").fn(**form_values(ui, max_length=256))
    assert "Estimate ready" in out[ui.status]
    text = out[ui.estimate_md]
    assert "steps in all" in text and "effective batch" in text
    shown, _, folded = text.partition("<details>")
    assert "Speed settings (GPU features: off when training on a CPU)" in folded and "Padding free" in folded
    assert "Padding free" not in shown and "Head tile tokens" not in text and "Output layer's chunk" in folded
    figure = out[ui.memory_plot]["value"]
    assert figure.layout.title.text.startswith("Memory estimate (RAM) before launch:")
    bars = list(figure.data[0].y)
    assert "optimizer state" in bars and "framework overhead" in bars
    assert not [bar for bar in bars if "_" in bar]  # no snake_case; SFT holds no reference model, no KV cache
    assert "reference model (frozen copy)" not in bars and "KV cache for samples" not in bars


def test_the_estimate_text_keeps_warnings_in_sight_and_its_speed_list_folded():
    text = ("**data**: 10 rows\n\nExpected speed: none\n\n**Speed and memory on this machine** (why):\n"
            "- Padding free: **off** · needs CUDA\n- Head tile tokens: **4,096** · TRL's tile on a CPU\n\n"
            "- ⚠ learning_rate is high")
    shown = train_tab.estimate_markdown(text, on_gpu=True)
    before, _, folded = shown.partition("<details>")
    assert "- ⚠ learning_rate is high" in before and "Expected speed" in before
    assert "<summary>Speed and memory settings on this machine</summary>" in folded
    assert "- Output layer's chunk size, in tokens: **4,096**" in folded and folded.endswith("</details>")
    assert train_tab.estimate_markdown("no speed list", on_gpu=False) == "no speed list"


def test_the_run_memory_is_labelled_as_estimated_for_the_run_beside_the_measured_peak():
    cpu = {"estimate_gib": {"total": 0.81}, "peak_gpu_memory_gib": None, "precision": "fp32", "device": "cpu"}
    text = train_tab.memory_text(cpu)
    assert "Memory: estimated **0.81 GiB** for the run as it ran (precision fp32)" in text and "no GPU" in text
    gpu = {"estimate_gib": {"total": 20.0}, "peak_gpu_memory_gib": 18.5, "precision": "bf16", "device": "NVIDIA H200"}
    text = train_tab.memory_text(gpu)
    assert "measured peak **18.50 GiB** on NVIDIA H200" in text
    figure = train_tab.memory_figure({"weights": 1.0, "reference_model": 2.0, "sampling_kv_cache": 0.0,
                                      "total": 3.0}, on_gpu=True, when="for the run as it ran", measured=2.5)
    assert figure.layout.title.text == ("GPU memory estimate (VRAM) for the run as it ran: 3.00 GiB · measured "
                                        "peak 2.50 GiB")
    assert list(figure.data[0].y) == ["model weights", "reference model (frozen copy)"]


def run(status: str, resume_from: str | None = None, **fields) -> SimpleNamespace:
    return SimpleNamespace(**{"name": "alpaca-long", "status": status, "resume_from": resume_from, "error": None,
                              "final_loss": None, "train_config": TrainConfig(), "run_dir": None, **fields})


def test_a_resumed_run_says_which_checkpoint_it_resumed_from_and_what_it_trains_again():
    checkpoint = "/home/runs/x/checkpoints/checkpoint-20"
    for status in ("queued", "running"):
        line = train_tab.run_status(run(status, checkpoint))
        assert f"Run alpaca-long is {status}, resumed from its step-20 checkpoint." in line
    # The timer keeps the status line true by comparing it with run_status: the resume's line is the same one.
    assert train_tab.run_status(run("succeeded", checkpoint)) == train_tab.run_status(run("succeeded"))
    assert train_tab.run_status(run("running")) == "**✓ Run alpaca-long is running.**"
    before = [{"split": "train", "step": s, "max_steps": 80, "time": s} for s in (5, 10, 15, 20, 25)]
    waiting = train_tab.progress_text(run("running", checkpoint), before)
    assert "resumed from its step-20 checkpoint" in waiting and "trained again" not in waiting
    again = before + [{"split": "train", "step": 25, "max_steps": 80, "time": 40}]
    assert "(steps 21–25 are trained again)" in train_tab.progress_text(run("running", checkpoint), again)
    assert "resumed" not in train_tab.progress_text(run("succeeded", checkpoint), again)
    assert train_tab.checkpoint_step(None) is None and train_tab.checkpoint_step("/a/checkpoint-7/") == 7


def test_harmless_warnings_in_the_log_are_said_to_be_harmless():
    log = ("step 1\n"
           "/x/transformers/training_args.py:1541: FutureWarning: `gradient_checkpointing` is deprecated and will be "
           "removed in v6. Use `activation_checkpointing` instead.\n"
           "  warnings.warn(f\"`{old}` is deprecated and will be removed in v6.\", FutureWarning)\n"
           "[transformers] There were missing keys in the checkpoint model loaded: ['lm_head.weight'].\n"
           "[transformers] There were missing keys in the checkpoint model loaded: ['model.norm.weight'].\n"
           "step 2")
    lines = train_tab.annotated_log(log).splitlines()
    assert lines[3].startswith("[lab] harmless: transformers renamed a setting")  # after the warning's source line
    assert lines[5].startswith("[lab] harmless: this model's output layer shares its weights")
    assert lines[6].endswith("['model.norm.weight'].") and lines[7] == "step 2"  # a real missing weight: no note
    assert train_tab.annotated_log("plain\nlog") == "plain\nlog"


def test_a_click_on_a_row_of_the_runs_table_selects_that_run(built):
    demo, ui = built
    pick = event(demo, fn=train_tab.pick_run)
    assert [tuple(t) for t in pick.targets] == [(ui.runs._id, "select")]
    assert [o._id for o in pick.outputs] == [ui.selected._id]
    row = ["first-sft", "succeeded", "sft", "tiny", "starter@7ea4", "4.4888", "12-04 20:05", "20261204-200501-sft-ab12"]
    clicked = gr.SelectData(ui.runs, {"index": [0, 1], "value": "succeeded", "row_value": row})
    assert train_tab.pick_run(clicked) == "20261204-200501-sft-ab12"
    assert train_tab.RUN_HEADERS[-1] == "id"


def test_help_texts_say_in_plain_words_what_each_choice_does(home, monkeypatch):
    from lab.train import distributed
    from lab.train.methods import OBJECTIVES

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
    assert "sft: learns to answer like your conversations (needs SFT data)" in helps["objective"]
    assert all(f"{name}: " in helps["objective"] for name in OBJECTIVES)
    assert "python -m lab" not in helps["objective"] and "(SFT: sft)" not in helps["objective"]
    assert "sdpa is PyTorch's standard attention" in helps["attention"]
    monkeypatch.setattr(distributed, "visible_gpus", list)
    assert "cpu_processes" not in train_tab.gpus_text(home) and "runs use the CPU" in train_tab.gpus_text(home)


def test_the_estimate_before_launch_counts_the_precision_the_run_will_use(home):
    """On a CPU 'auto' trains in fp32: the estimate before launch counts fp32 too (it counted 16-bit, 0.72 GiB
    against the outcome's 0.81 for the tiny recipe)."""
    from lab.config import load_yaml
    from lab.train.estimate import estimate_run

    auto = estimate_run(load_yaml("recipes/tiny-sft.yaml", overrides=["precision=auto"]), home)
    fp32 = estimate_run(load_yaml("recipes/tiny-sft.yaml", overrides=["precision=fp32"]), home)
    assert auto.report["memory_gib"] == fp32.report["memory_gib"]


def stored_run(home, name: str, objective: str, created: str, *, final_loss: float | None = None,
               metrics: list[dict] = (), status: str = "succeeded") -> str:
    """A run row and its metrics, as a finished run leaves them (no training: the tab reads only these)."""
    from lab.store import Store, dumps

    run_id = f"20260101-{created.replace(':', '')}-{objective}-ab12"
    run_dir = home.runs / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    config = dataclasses.asdict(TrainConfig(objective=objective, name=name))
    with Store(home).write() as conn:
        conn.execute("INSERT INTO runs (id, name, method, model, dataset, status, run_dir, config, created_at, "
                     "final_loss) VALUES (?, ?, ?, 'tiny', 'd@1', ?, ?, ?, ?, ?)",
                     (run_id, name, objective, status, str(run_dir), dumps(config), f"2026-01-01T{created}",
                      final_loss))
    return run_id


def test_a_finished_run_is_headlined_by_the_number_its_objective_is_judged_by(home):
    """GRPO's loss sits near 0 while its reward climbs, and a reward model is judged by the pairs it ranks right: the
    runs table, the status line and the progress line give each objective's own number (its registry entry's
    ``headline``), the final loss where that is what matters."""
    from lab.train.methods import objective
    from lab.train.runner import get_run

    assert [h.metric for h in objective("grpo").headline] == ["reward"]
    assert [h.metric for h in objective("reward").headline] == ["eval_accuracy", "loss"]
    rewards = [{"split": "train", "step": s, "loss": 0.0, "reward": r} for s, r in ((5, 0.1), (10, 0.85))]
    grpo = stored_run(home, "grpo-math", "grpo", "10:00:00", final_loss=0.0, metrics=rewards)
    ranked = [{"split": "train", "step": 5, "loss": 0.6, "accuracy": 0.7},
              {"split": "eval", "step": 5, "eval_loss": 0.5, "eval_accuracy": 0.8333}]
    rm = stored_run(home, "rm1", "reward", "09:00:00", final_loss=0.3383, metrics=ranked)
    unevaluated = stored_run(home, "rm2", "reward", "08:00:00", final_loss=0.3, metrics=ranked[:1])
    sft = stored_run(home, "chat", "sft", "07:00:00", final_loss=1.23456)
    running = stored_run(home, "later", "grpo", "11:00:00", metrics=rewards, status="running")
    table = train_tab.runs_table(home).set_index("id")["result"]
    assert table[grpo] == "mean total reward at the end +0.850"
    assert table[rm] == "held-out accuracy 83%" and table[unevaluated] == "final loss 0.3000"
    assert table[sft] == "final loss 1.2346" and table[running] == ""  # nothing yet: it has not finished
    assert "result" in train_tab.RUN_HEADERS and "final loss" not in train_tab.RUN_HEADERS
    run = get_run(grpo, home)
    assert train_tab.run_status(run) == "**✓ Run grpo-math succeeded: mean total reward at the end +0.850.**"
    assert train_tab.progress_text(run, rewards).endswith("· mean total reward at the end +0.850")
    assert "final loss" not in train_tab.progress_text(run, rewards)
    listed = subprocess.run([sys.executable, "-m", "lab", "runs", "list"], capture_output=True, text=True, check=True,
                            env={**os.environ, "LAB_HOME": str(home.root)}, cwd=Path(__file__).resolve().parents[1])
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert rows[grpo].endswith("mean total reward at the end +0.850") and rows[sft].endswith("final loss 1.2346")


def test_the_run_picker_shows_the_newest_run_when_the_page_loads(home):
    """Coming back to the Train tab showed no run and blank curves: the picker's value is the newest run, computed
    as each page loads."""
    assert train_tab.newest_run(home) is None
    stored_run(home, "older", "sft", "07:00:00", final_loss=1.0)
    newest = stored_run(home, "newer", "sft", "08:00:00", final_loss=1.0)
    assert train_tab.newest_run(home) == newest
    with gr.Blocks():
        ui = train_tab.build(home)
    assert ui.selected.value == newest
    load, _, _ = ui.selected.load_event_to_attach  # Gradio calls it again on every page load
    assert load() == newest


def test_the_estimate_says_at_once_that_it_is_working(built):
    """A GRPO estimate took 23 s with nothing on screen but a greyed button: "Estimating…" is written in the browser
    as the button is pressed, the charts of the last estimate are hidden, and Gradio's timer runs on the result."""
    demo, ui = built
    started = event(demo, js=train_tab.ESTIMATE_STARTED)
    assert started.fn is None and [o._id for o in started.outputs] == [ui.status._id, ui.estimate_md._id,
                                                                       ui.lr_plot._id, ui.memory_plot._id]
    assert json.dumps(train_tab.ESTIMATING) in started.js and started.js.count(train_tab.HIDDEN) == 2
    estimate = event(demo, api_name="train_estimate")
    assert [o._id for o in estimate.show_progress_on] == [ui.estimate_md._id]


def test_merge_export_and_push_answer_under_their_buttons(built, home, monkeypatch):
    """"Merge and export" answered in the status line about 2,500 px above it: its result and Push's are written on
    the line under their own buttons."""
    from lab.train import merge, runner

    demo, ui = built
    for api in ("train_export", "train_push"):
        assert event(demo, api_name=api).outputs[0] is ui.export_status
    run_id = stored_run(home, "chat", "sft", "07:00:00", final_loss=1.0)
    monkeypatch.setattr(merge, "export_run", lambda run, home: home.models / f"{run.id}-merged")
    out = train_tab.export(ui, home, run_id, progress=lambda *a, **k: None)
    assert out[ui.export_status] == (f"**✓ Exported chat as a standalone model: `models/{run_id}-merged` in the "
                                     "lab's home folder.**")
    assert ui.status not in out and runner.get_run(run_id, home).name == "chat"


def test_memory_too_small_for_two_decimals_is_not_written_as_nothing():
    """A LoRA run's gradients and optimizer state are a few MiB: "0.00" read as none at all."""
    from lab.train.estimate import Memory
    from lab.ui import plots

    assert [plots.gib_text(v) for v in (0.0, 0.0031, 0.005, 1.234)] == ["0.00", "< 0.01", "0.01", "1.23"]
    lora = Memory(weights=2**30, gradients=2 * 2**20, optimizer=4 * 2**20, activations=0, reference_model=0,
                  sampling_kv_cache=0, overhead=0).gib()
    assert 0 < lora["gradients"] < 0.005  # kept by the estimate, not rounded away
    figure = train_tab.memory_figure(lora, on_gpu=False, when="before launch")
    shown = dict(zip(figure.data[0].y, figure.data[0].text))
    assert shown["gradients"] == shown["optimizer state"] == "< 0.01" and shown["model weights"] == "1.00"
