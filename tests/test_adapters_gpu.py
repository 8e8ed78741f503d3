"""A QLoRA run on a LoRA run's model, on a GPU (``pytest -m gpu``): the parent's adapter is merged into the 4-bit
base before the child's adapter trains, and every later loader applies the whole stack (``lab.adapters``).

The CPU suite checks the same for LoRA on LoRA (tests/test_train_runs.py); NF4 needs bitsandbytes and a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "report_to=none", "--set", "eval_steps=0", "--set", "save_steps=0", "--set", "max_steps=6",
        "--set", "learning_rate=0.01", "--set", "sample_prompts=0"]


def train(home, *sets: str) -> dict:
    env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "lab", "train", "recipes/tiny-lora.yaml", *FAST, *sets, "--wait",
                             "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    # from the document's start: a machine's site hooks may print a line first (the GPU machine's W&B notice)
    document = json.loads(result.stdout[result.stdout.find("{"):])
    assert document["status"] == "succeeded", result.stderr[-3000:]
    return document


def losses(document: dict) -> list[float]:
    rows = (json.loads(line) for line in Path(document["run_dir"], "metrics.jsonl").read_text().splitlines())
    return [row["loss"] for row in rows if "loss" in row]


def test_a_qlora_run_on_a_lora_run_trains_on_the_parent_and_loads_as_the_whole_stack(tiny_home):
    from peft import PeftModel

    from lab import adapters
    from lab.models import load_for_generation, load_model

    parent = train(tiny_home, "--set", "logging_steps=1")
    child = train(tiny_home, "--set", "logging_steps=1", "--set", "adapter=qlora", "--set",
                  f"model=run:{parent['id']}")
    alone = train(tiny_home, "--set", "logging_steps=1", "--set", "adapter=qlora")
    parent_final, child_final = (str(Path(run["run_dir"]) / "final") for run in (parent, child))
    assert adapters.stack(child_final) == [parent_final, child_final]
    # the same seed and data: the child's first batch is the parent's and the lone run's, so a child that started
    # from the parent's training begins nearer the parent's last loss than the untuned base's first
    first_parent, last_parent = losses(parent)[0], losses(parent)[-1]
    assert last_parent < first_parent - 0.1, losses(parent)
    assert abs(losses(alone)[0] - first_parent) < 0.05  # 4-bit rounding of the base, nothing more
    assert losses(child)[0] < (first_parent + last_parent) / 2, (losses(parent), losses(child))
    name = "model.layers.0.self_attn.q_proj.weight"
    generating, _ = load_for_generation(child_final, tiny_home)
    child_alone = PeftModel.from_pretrained(load_model(home=tiny_home), child_final).merge_and_unload()
    assert not torch.allclose(generating.state_dict()[name].float().cpu(), child_alone.state_dict()[name].float(),
                              atol=1e-3)  # the parent's update is in the answering model
