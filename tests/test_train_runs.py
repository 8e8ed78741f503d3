"""Real TRL training on the tiny model, on CPU, driven through the CLI as a user would: runs go
from queued to succeeded, learn, cancel and resume, survive a killed worker, queue, and keep secrets out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.home import lab_home
from lab.store import Store
from lab.train import runner

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "report_to=none", "--set", "eval_steps=0", "--set", "save_steps=0"]
SECRET = "hf_NOT_A_REAL_TOKEN_5f0c2b"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One lab home for the module (the tiny model and the sample versions are built once)."""
    root = tmp_path_factory.mktemp("train_home")
    from lab.models import tiny_model_path

    tiny_model_path(lab_home(root))
    return lab_home(root)


def lab(home, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=timeout)


def train(home, recipe, *sets, env=None) -> dict:
    result = lab(home, "train", f"recipes/{recipe}", *FAST, *sets, "--wait", "--json", env=env)
    document = json.loads(result.stdout)
    assert (result.returncode == 0) == (document["status"] == "succeeded"), result.stderr
    return document


def metrics(document) -> list[dict]:
    return [json.loads(line) for line in Path(document["run_dir"], "metrics.jsonl").read_text().splitlines()]


def overfit_set(home, tmp_path) -> str:
    rows = [{"messages": [{"role": "user", "content": f"Say the code word {i}."},
                          {"role": "assistant", "content": f"The code word is {w}."}]}
            for i, w in enumerate(["apple", "river", "stone", "cloud"])]
    path = tmp_path / "overfit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = lab(home, "data", "import", str(path), "--name", "overfit", "--val-fraction", "0", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["ref"]


def test_full_sft_overfits_a_few_rows_and_saves_the_model(home, tmp_path):
    """Also the padding-free path (on a CPU, one SDPA call per example), with closing samples on the saved model."""
    ref = overfit_set(home, tmp_path)
    done = train(home, "tiny-sft.yaml", "--set", f"dataset={ref}", "--set", "max_steps=30", "--set", "batch_size=4",
                 "--set", "eval_split=none", "--set", "learning_rate=3e-3", "--set", "logging_steps=2",
                 "--set", "padding_free=on", "--set", "sample_prompts=1")
    plan = json.loads(Path(done["run_dir"], "speed.json").read_text())
    assert plan["padding_free"] and plan["attention"] == "lab_varlen"
    assert len(json.loads(Path(done["run_dir"], "samples.json").read_text())["tuned"]) == 1  # after training
    assert done["status"] == "succeeded" and done["error"] is None
    losses = [row["loss"] for row in metrics(done) if row["split"] == "train" and "loss" in row]
    assert losses[-1] < 0.5 * losses[0], losses
    assert done["final_loss"] == pytest.approx(losses[-1])
    final = Path(done["run_dir"], "final")
    assert (final / "model.safetensors").exists() and (final / "tokenizer_config.json").exists()
    assert Path(done["run_dir"], "config.yaml").read_text().startswith("# python -m lab train")


def test_lora_run_saves_an_adapter(home):
    """Through the real worker with every memory saver on (the CPU's auto would leave them off)."""
    done = train(home, "tiny-lora.yaml", "--set", "max_steps=6", "--set", "gradient_checkpointing=on",
                 "--set", "offload_activations=on", "--set", "tiled_mlp=on", "--set", "save_steps=4")
    assert done["status"] == "succeeded"
    # The periodic checkpoint is kept; none after the last step, whose model is final/ (no second copy, no
    # optimizer state written inside the timed loop)
    saved = sorted(p.name for p in Path(done["run_dir"], "checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-4"], saved
    log = Path(done["run_dir"], "log.txt").read_text()
    assert "activation offloading: 4 checkpointed layers" in log and "tiled MLP (4096 tokens a tile) in 4 layers" in log
    assert "fused LoRA layers: 28" in log  # 7 linear layers in each of the tiny model's 4
    chosen = json.loads(Path(done["run_dir"], "speed.json").read_text())
    assert chosen["offload_activations"] and chosen["tiled_mlp"] and chosen["fused_lora"]
    assert (Path(done["run_dir"], "final") / "adapter_config.json").exists()
    assert not (Path(done["run_dir"], "final") / "model.safetensors").exists()
    exported = json.loads(lab(home, "runs", "export", done["id"], "--json").stdout)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(exported["path"])  # loads with no PEFT involved
    assert merged.config.model_type == "llama" and not any("lora" in n for n, _ in merged.named_parameters())
    from lab.models import load_model

    base = load_model(home=home)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not merged.state_dict()[name].equal(base.state_dict()[name])  # the adapter's update is folded in


def test_a_lora_run_on_a_lora_runs_model_keeps_the_parents_training_wherever_it_is_loaded(home):
    """A LoRA run started from another LoRA run trains on the parent merged into its base; its adapter alone on the
    root base lost the parent's training (the walk's KTO-after-LoRA-SFT answered as the untuned model did)."""
    import torch
    from peft import PeftModel

    from lab import adapters
    from lab.models import load_for_generation, load_model

    parent = train(home, "tiny-lora.yaml", "--set", "max_steps=4", "--set", "learning_rate=0.01")
    child = train(home, "tiny-lora.yaml", "--set", "max_steps=4", "--set", "learning_rate=0.01",
                  "--set", f"model=run:{parent['id']}")
    parent_final, child_final = (str(Path(run["run_dir"]) / "final") for run in (parent, child))
    assert adapters.stack(child_final) == [parent_final, child_final]
    name = "model.layers.0.self_attn.q_proj.weight"

    def weight(model) -> torch.Tensor:
        return model.state_dict()[name].float()

    both = PeftModel.from_pretrained(PeftModel.from_pretrained(load_model(home=home), parent_final).merge_and_unload(),
                                     child_final).merge_and_unload()
    alone = PeftModel.from_pretrained(load_model(home=home), child_final).merge_and_unload()
    assert not torch.allclose(weight(both), weight(alone))  # the parent's update is what is at stake
    generating, _ = load_for_generation(child_final, home)
    exported = json.loads(lab(home, "runs", "export", child["id"], "--json").stdout)
    from transformers import AutoModelForCausalLM

    for model in (generating, AutoModelForCausalLM.from_pretrained(exported["path"])):
        assert torch.allclose(weight(model), weight(both), atol=1e-6)


def test_a_llama_3_1_template_and_per_message_weights_train_on_the_lab_s_masks(home, tmp_path):
    """TRL alone refuses assistant-only loss for Llama 3.1's template (no {% generation %} markers, no training
    version in TRL) and knows no per-message weights; the worker tokenises with the lab's masks instead."""
    import shutil

    from trl.chat_template_utils import llama3_1_chat_template

    from lab.models import load_tokenizer, tiny_model_path

    model_dir = tmp_path / "tiny-llama3.1-template"
    shutil.copytree(tiny_model_path(home), model_dir)
    tokenizer = load_tokenizer(str(model_dir))
    tokenizer.chat_template = llama3_1_chat_template
    tokenizer.save_pretrained(model_dir)
    rows = [{"messages": [{"role": "user", "content": f"Count to {i}."},
                          {"role": "assistant", "content": "I will not.", "weight": 0},
                          {"role": "user", "content": "Please."},
                          {"role": "assistant", "content": " ".join(str(n) for n in range(1, i + 2))}]}
            for i in range(8)]
    path = tmp_path / "weighted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = lab(home, "data", "import", str(path), "--name", "weighted", "--val-fraction", "0", "--json")
    assert imported.returncode == 0, imported.stderr
    from lab.data.versions import read_rows

    stored = read_rows(json.loads(imported.stdout)["ref"], home=home)[0]["messages"]
    assert [m.get("weight") for m in stored] == [None, 0, None, None]  # kept where it is 0, nowhere else
    done = train(home, "tiny-sft.yaml", "--set", f"model={model_dir}", "--set",
                 f"dataset={json.loads(imported.stdout)['ref']}", "--set", "max_steps=3", "--set", "eval_split=none",
                 "--set", "sample_prompts=0")
    assert done["status"] == "succeeded", done["error"]
    assert "tokenising with the lab's assistant masks (per-message weights, or a chat template TRL cannot mark): " \
           "8 of 8 rows" in Path(done["run_dir"], "log.txt").read_text()


def test_dpo_reward_accuracy_rises_on_an_easy_preference_set(home):
    """Through the unpadded DPO forward (lab.train.speed.unpad_inside; one SDPA call per sequence on a CPU)."""
    done = train(home, "tiny-dpo.yaml", "--set", "max_steps=24", "--set", "logging_steps=4",
                 "--set", "padding_free=on")
    assert json.loads(Path(done["run_dir"], "speed.json").read_text())["padding_free"]
    rows = [r for r in metrics(done) if "rewards/accuracies" in r and r["split"] == "train"]
    assert rows[0]["rewards/accuracies"] <= 0.5 and rows[-1]["rewards/accuracies"] >= 0.75, rows
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]


def contradicting_set(home, tmp_path) -> str:
    """One prompt, 24 different answers split between train and validation: memorising the train answers
    first helps the eval loss (the shared words) and then hurts it (the answer word), so it turns upward."""
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "ocean", "piano", "lemon", "eagle", "candle",
             "forest", "silver", "rocket", "garden", "winter", "copper", "meadow", "falcon", "harbor", "velvet",
             "canyon", "pepper", "marble"]
    rows = [{"messages": [{"role": "user", "content": "Tell me the secret word."},
                          {"role": "assistant", "content": f"The secret word is {w}."}]} for w in words]
    path = tmp_path / "contradicting.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = lab(home, "data", "import", str(path), "--name", "contradicting", "--no-dedup-near",
                 "--val-fraction", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["ref"]


def test_early_stopping_ends_the_run_on_the_best_checkpoint(home, tmp_path):
    ref = contradicting_set(home, tmp_path)
    done = train(home, "tiny-sft.yaml", "--set", f"dataset={ref}", "--set", "max_steps=200", "--set", "batch_size=4",
                 "--set", "learning_rate=3e-3", "--set", "warmup_ratio=0", "--set", "eval_steps=4",
                 "--set", "save_steps=4", "--set", "early_stopping_patience=2", "--set", "sample_prompts=0")
    assert done["status"] == "succeeded", done["error"]
    evals = [(row["step"], row["eval_loss"]) for row in metrics(done) if row["split"] == "eval"]
    best_step, best_loss = min(evals, key=lambda pair: pair[1])
    last_step = evals[-1][0]
    assert last_step < 200 and last_step == best_step + 2 * 4, evals  # stopped 2 evaluations after the best
    checkpoints = Path(done["run_dir"], "checkpoints")
    state = json.loads((checkpoints / f"checkpoint-{last_step}" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    from safetensors.torch import load_file

    final = load_file(Path(done["run_dir"], "final", "model.safetensors"))
    best = load_file(checkpoints / f"checkpoint-{best_step}" / "model.safetensors")
    last = load_file(checkpoints / f"checkpoint-{last_step}" / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert final[name].equal(best[name]) and not final[name].equal(last[name])  # load_best_model_at_end


def test_full_model_dpo_and_neftune_sft_run(home):
    dpo = train(home, "tiny-dpo.yaml", "--set", "adapter=none", "--set", "max_steps=4",
                "--set", "learning_rate=1e-4")
    assert dpo["status"] == "succeeded", dpo["error"]
    assert (Path(dpo["run_dir"], "final") / "model.safetensors").exists()  # the whole model, no adapter
    assert any("rewards/accuracies" in row for row in metrics(dpo))
    noisy = train(home, "tiny-sft.yaml", "--set", "neftune_noise_alpha=5", "--set", "max_steps=4")
    assert noisy["status"] == "succeeded", noisy["error"]
    from lab.config import TrainConfig
    from lab.train.convert import trainer_config

    assert trainer_config(TrainConfig(neftune_noise_alpha=5), Path(noisy["run_dir"])).neftune_noise_alpha == 5


def test_bad_config_fails_before_launch(home):
    for sets, message in ((["--set", "batch_size=0"], "batch_size must be at least 1"),
                          (["--set", "adapter=qlora"], "needs a CUDA GPU"),
                          (["--set", "dataset=sample:preference"], "SFT trains on SFT data"),
                          (["--set", "warmup=0.1"], "unknown setting(s) warmup")):
        before = len(list(home.runs.iterdir()))
        result = lab(home, "train", "recipes/tiny-sft.yaml", *sets, "--json")
        assert result.returncode != 0 and message in json.loads(result.stdout)["error"]
        assert len(list(home.runs.iterdir())) == before


def wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_cancel_saves_a_checkpoint_and_resume_finishes(home):
    started = lab(home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "max_steps=60", "--set", "logging_steps=1",
                  "--json")
    run_id = json.loads(started.stdout)["id"]
    wait_for(lambda: runner.read_metrics(run_id, home))
    cancelled = lab(home, "runs", "cancel", run_id, "--wait", "--json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    run = runner.get_run(run_id, home)
    checkpoint = runner.latest_checkpoint(run.run_dir)
    assert checkpoint is not None and "checkpoint was saved" in run.error
    resumed = json.loads(lab(home, "runs", "resume", run_id, "--wait", "--json").stdout)
    assert resumed["status"] == "succeeded" and resumed["resume_from"] == str(checkpoint)
    steps = [r["step"] for r in runner.read_metrics(run_id, home) if r["split"] == "train"]
    assert steps[-1] == 60 and "resuming from" in runner.tail_log(run_id, 400, home)


def test_killed_worker_is_marked_failed_with_the_reason(home):
    run_id = json.loads(lab(home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "max_steps=400",
                            "--json").stdout)["id"]
    wait_for(lambda: runner.read_metrics(run_id, home))
    os.killpg(runner.get_run(run_id, home).pid, signal.SIGKILL)
    shown = wait_for(lambda: (lambda d: d if d["status"] == "failed" else None)(
        json.loads(lab(home, "runs", "show", run_id, "--json").stdout)))
    assert "died without reporting" in shown["error"] and "it saved no checkpoint: start it again" in shown["error"]


def test_a_run_that_died_says_where_it_stopped_and_what_resume_continues_from(tmp_path):
    """A machine crash left "last log line: {'loss': '4.829', …}", the trainer's dict, and no word of the step-10
    checkpoint that Resume continues from."""
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"split": "train", "step": s, "max_steps": 40,
                                                                "loss": 5.0}) + "\n" for s in (5, 10, 15)))
    (tmp_path / "log.txt").write_text("[lab] starting\n{'loss': '4.829', 'grad_norm': '3.1', 'epoch': '0.4'}\n")
    for step in (5, 10):
        (tmp_path / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    said = runner.where_it_stopped(tmp_path)
    assert said == "it had logged step 15 of 40; its step-10 checkpoint is kept: Resume run continues from there."
    (tmp_path / "log.txt").write_text("RuntimeError: CUDA error: an illegal memory access\n")
    assert "; last log line: RuntimeError: CUDA error" in runner.where_it_stopped(tmp_path)


def test_queued_run_starts_by_itself_when_the_first_finishes(home):
    first = json.loads(lab(home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "max_steps=8", "--json").stdout)
    second = json.loads(lab(home, "train", "recipes/tiny-lora.yaml", *FAST, "--set", "max_steps=4",
                            "--json").stdout)
    assert first["status"] == "running" and second["status"] == "queued"
    assert runner.wait(second["id"], home, timeout_s=240).status == "succeeded"
    assert runner.get_run(first["id"], home).finished_at <= runner.get_run(second["id"], home).started_at


def test_secrets_from_the_environment_are_written_nowhere(home):
    done = train(home, "tiny-sft.yaml", "--set", "max_steps=2", "--set", "report_to=wandb",
                 env={"HF_TOKEN": SECRET, "WANDB_API_KEY": SECRET, "WANDB_MODE": "offline"})
    assert done["status"] == "succeeded"
    assert Path(done["run_dir"], "wandb").exists()  # the offline W&B run is kept with the run
    for path in [*Path(done["run_dir"]).rglob("*"), home.store_path]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in json.dumps(Store(home).query("SELECT * FROM runs"))


def test_sanity_check_passes_a_good_recipe_and_flags_a_bad_learning_rate(home):
    good = lab(home, "train", "recipes/tiny-sft.yaml", "--sanity", "--json")
    report = json.loads(good.stdout)
    assert good.returncode == 0 and report["ok"], report
    assert {v["check"] for v in report["verdicts"]} >= {"masking", "stability", "sample"}
    assert report["sample"] and set(report["runs"]) == {"overfit", "curve"}
    bad = lab(home, "train", "recipes/tiny-sft.yaml", "--sanity", "--set", "learning_rate=3", "--json")
    verdicts = json.loads(bad.stdout)["verdicts"]
    assert bad.returncode != 0 and not all(v["ok"] for v in verdicts)
    assert any(not v["ok"] and ("did not fall" in v["message"] or "oscillates" in v["message"]) for v in verdicts)
