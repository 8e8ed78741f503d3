"""The Train tab through gradio_client, on the real app: estimate, a refused bad config, and a tiny
run started from the form and followed to success with its curves."""

from __future__ import annotations

import json
import time

import pytest
from gradio_client import Client

from lab.config import TrainConfig, load_yaml
from tests.app_server import AppServer

FAST = dict(report_to="none", max_steps=6, eval_steps=0, save_steps=0, learning_rate=1e-3, max_length=256)


@pytest.fixture()
def client(lab_app: AppServer) -> Client:
    return Client(lab_app.url, verbose=False)


def form(**changes):
    return {**{f: getattr(TrainConfig(), f) for f in TrainConfig.__dataclass_fields__}, **changes}


def value(update):
    return update.get("value") if isinstance(update, dict) and "__type__" in update else update


def test_estimate_reports_steps_params_and_memory(client):
    status, text, lr_plot, memory_plot = client.predict(**form(adapter="lora", dataset="sample:sft"),
                                                        api_name="/train_estimate")
    assert "Estimate ready" in status
    assert "effective batch **4**" in text and "steps in all" in text and "sample-sft@" in text
    assert value(lr_plot) and value(memory_plot)


def test_bad_config_is_refused_with_the_reason_and_nothing_starts(client, lab_app):
    before = sorted(p.name for p in (lab_app.home / "runs").glob("2*")) if (lab_app.home / "runs").exists() else []
    status, *_ = client.predict(**form(batch_size=0), api_name="/train_start")
    assert "batch_size must be at least 1" in status
    after = sorted(p.name for p in (lab_app.home / "runs").glob("2*"))
    assert after == before


def test_a_run_started_from_the_form_succeeds_with_curves(client, lab_app):
    status, table, selected = client.predict(**form(**FAST), api_name="/train_start")
    assert "is running" in status or "is queued" in status
    run_id = value(selected)
    deadline = time.time() + 180
    while time.time() < deadline:
        table, selected, status, progress, loss, aux, log, outcome, memory, samples, completions = client.predict(
            run_id, api_name="/train_runs")
        if "succeeded" in progress or "failed" in progress:
            break
        time.sleep(2)
    assert "succeeded" in progress and "step 6/6" in progress, progress
    assert value(loss) and "run " in log
    rows = value(table)["data"]
    assert any(row[-1] == run_id and row[1] == "succeeded" for row in rows)
    # The outcome: the estimate beside the (absent on CPU) measured peak, and before/after samples.
    assert "Memory: estimated" in outcome and "no GPU" in outcome and "W&B: off" in outcome
    assert value(memory)
    sample_rows = value(samples)["data"]
    assert len(sample_rows) == 3 and all(before and after and after != "(after the run ends)"
                                         for _, before, after in sample_rows), sample_rows
    assert sample_rows[0][1] != sample_rows[0][2]  # training changed the answer

    status, outcome = client.predict(run_id, api_name="/train_export")
    assert "Exported" in status and f"{run_id}-merged" in outcome
    exported = lab_app.home / next(line for line in outcome.split("`") if line.endswith("-merged"))
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(exported).num_parameters() > 1_000_000
    status = client.predict(run_id, "me/tiny", api_name="/train_push")
    assert "HF_TOKEN" in status  # the test server has no token: a clear refusal, no crash


def test_sanity_check_from_the_form_gives_verdicts(client):
    status, report = client.predict(**form(learning_rate=1e-3, max_length=256, report_to="none"),
                                    api_name="/train_sanity")
    assert "Sanity check" in status
    assert "Masking correct" in report and "Overfit on 20 examples" in report and "Sample after" in report
    assert "Runs used: overfit" in report


def test_form_saved_as_recipe_loads_back_and_refuses_overwrite(client, lab_app):
    status, recipe = client.predict(recipe_name="my-run", **form(adapter="lora", lora_r=8, epochs=2.0),
                                    api_name="/train_save_recipe")
    assert "Saved" in status and value(recipe) == "my-run.yaml"
    loaded = load_yaml(str(lab_app.home / "recipes" / "my-run.yaml"))
    assert (loaded.method, loaded.lora_r, loaded.epochs) == ("lora", 8, 2.0)
    again, _ = client.predict(recipe_name="my-run", **form(), api_name="/train_save_recipe")
    assert "exists already" in again
    taken, _ = client.predict(recipe_name="tiny-sft", **form(), api_name="/train_save_recipe")
    assert "exists already" in taken


@pytest.mark.parametrize("changes", [dict(adapter="lora"), dict(objective="dpo", adapter="lora", dataset="sample:preference",
                                                                 max_prompt_length=128)], ids=["lora", "dpo"])
def test_lora_and_dpo_runs_started_from_the_form_succeed(client, changes):
    status, table, selected = client.predict(**form(**{**FAST, **changes}), api_name="/train_start")
    run_id = value(selected)
    deadline = time.time() + 240
    while time.time() < deadline:
        progress = client.predict(run_id, api_name="/train_run_view")[1]
        if "succeeded" in progress or "failed" in progress:
            break
        time.sleep(2)
    assert "succeeded" in progress, progress
    loss, aux = client.predict(run_id, api_name="/train_run_view")[2:4]
    if changes.get("objective") == "dpo":  # DPO's reward curves are drawn beside the loss
        assert "rewards" in json.dumps(value(aux))
    else:  # the estimate resolves a finished run as the model as Start does (a LoRA run's final/ is an adapter)
        status, text, _, _ = client.predict(**form(model=f"run:{run_id}", adapter="lora"), api_name="/train_estimate")
        assert "Estimate ready" in status and "trainable parameters" in text, status


def test_start_refuses_a_run_that_would_not_train_and_says_what_would(client, lab_app, tmp_path):
    """The issue's reproduction: 3 pairs, batch 4 × 4 accumulated, warm-up: one step, at a learning rate of 0."""
    from lab.config import DataConfig
    from lab.data.pipeline import import_file
    from lab.home import lab_home

    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Colour {i}?", "chosen": "Blue.", "rejected": "no"}) + "\n"
                            for i in range(3)))
    ref = import_file(str(path), DataConfig(name="three-pairs", val_fraction=0), home=lab_home(lab_app.home)).ref
    before = sorted(p.name for p in (lab_app.home / "runs").glob("2*"))
    bad = form(objective="dpo", adapter="lora", dataset=ref, batch_size=4, grad_accum=4, report_to="none")
    status, *_ = client.predict(**bad, api_name="/train_start")
    assert "would not train" in status and "3 rows" in status and "1 optimizer step" in status, status
    assert "warmup_ratio 0" in status and "epochs 4" in status
    assert sorted(p.name for p in (lab_app.home / "runs").glob("2*")) == before
    status, text, *_ = client.predict(**bad, api_name="/train_estimate")
    assert "would not train" in status and "would not train" in text


def test_a_grpo_run_from_the_form_shows_its_rewards_and_sampled_completions(client):
    """The GRPO recipe loaded into the form, its settings row shown, started, and followed: the reward panel has a
    line per reward function and the completions table gives each sample's score."""
    loaded = client.predict("tiny-grpo.yaml", api_name="/train_load_recipe")
    assert "Loaded tiny-grpo.yaml" in loaded[0]
    cfg = load_yaml("recipes/tiny-grpo.yaml")
    values = {**form(**{f: getattr(cfg, f) for f in TrainConfig.__dataclass_fields__}), "max_steps": 10,
              "report_to": "none", "eval_split": "none", "save_steps": 0}
    status, table, selected = client.predict(**values, api_name="/train_start")
    run_id = value(selected)
    deadline = time.time() + 240
    while time.time() < deadline:
        view = client.predict(run_id, api_name="/train_run_view")
        if "succeeded" in view[1] or "failed" in view[1]:
            break
        time.sleep(2)
    assert "succeeded" in view[1], view[1]
    traces = {trace["name"] for trace in json.loads(value(view[3])["plot"])["data"]}
    assert {"format", "mean", "spread (std)"} <= traces, traces  # per-function reward (its name) and the total
    completions = value(view[-1])
    assert completions["headers"] == ["step", "prompt", "completion", "format", "total"]
    assert completions["data"] and all(row[3] in ("0", "1") for row in completions["data"]), completions["data"][:3]
