"""The expected tokens/s and wait before a launch (lab.train.throughput), and measured against expected after.

The FLOP basis is checked against the benchmarks it comes from (docs/benchmarks.md: the formula and the MFU table
must give back the measured rates); the run basis on a real tiny run trained once on the CPU, through the engine,
the CLI and the Train tab (gradio_client)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import TrainConfig, load_yaml
from lab.home import lab_home
from lab.train import throughput
from lab.train.estimate import model_shape
from tests.app_server import start_app, stop_app

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny-sft.yaml"
# Two steps, no closing samples: a real run whose summary measures the loop and the phases, in under a minute.
SETTINGS = {"max_steps": 2, "report_to": "none", "sample_prompts": 0}
QWEN, LLAMA = ROOT / "bench/configs/qwen2.5-0.5b.json", ROOT / "bench/configs/llama-3.1-8b.json"


def lab(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=False, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A lab home (under the session's folder, so an app started on it may read it) with one finished tiny run."""
    from lab.models import tiny_model_path
    from lab.train.runner import get_run

    home = lab_home(tmp_path_factory.mktemp("throughput") / "home")
    tiny_model_path(home)
    sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    done = lab(home, "train", str(RECIPE), *sets, "--wait", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    run = get_run(json.loads(done.stdout)["id"], home)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    missing = [k for k in ("tokens_per_second", "train_tokens", "phases", "wall_seconds") if k not in summary]
    assert not missing, f"summary.json lacks {missing} (the lead's contract): {summary}"
    return home, run, summary


def planned(**settings) -> TrainConfig:
    """A GPU run's config as the speed plan leaves it: padding-free, memory savers off unless given."""
    savers = {k: settings.pop(k, "off") for k in ("gradient_checkpointing", "offload_activations", "tiled_mlp")}
    return dataclasses.replace(TrainConfig(model="bench", **settings), **savers, padding_free="on")


def rate(cfg: TrainConfig, shape, mean_length: float, home, device="NVIDIA H200", gpus=1) -> throughput.Expected:
    return throughput.expected(cfg, shape, device_name=device, gpus=gpus, home=home,
                               work=throughput.Workload(1_000_000, mean_length))


# The rates measured in docs/benchmarks.md (H200, session 4), with each run's settings and mean sequence length.
MEASURED = [
    ("full SFT, padding-free", QWEN, dict(objective="sft", adapter="none", batch_size=16, max_length=2048), 455,
     39_614),
    ("full SFT, packed", QWEN, dict(objective="sft", adapter="none", batch_size=16, max_length=2048, packing=True),
     455, 101_999),
    ("full SFT, packed 32 rows", QWEN, dict(objective="sft", adapter="none", batch_size=32, max_length=2048,
                                             packing=True), 453, 124_862),  # the fifth session's 42-step epoch
    ("full DPO", QWEN, dict(objective="dpo", adapter="none", batch_size=16, max_length=2048), 448, 62_929),
    ("QLoRA 4 × 2,048", LLAMA, dict(objective="sft", adapter="qlora", batch_size=4, grad_accum=2, max_length=2048,
                                    lora_dropout=0.05), 2048, 12_737),
    ("LoRA 4 × 2,048", LLAMA, dict(objective="sft", adapter="lora", batch_size=4, grad_accum=2, max_length=2048,
                                   lora_dropout=0.05), 2048, 12_238),
    ("QLoRA, checkpointing + offloading", LLAMA,
     dict(objective="sft", adapter="qlora", batch_size=4, grad_accum=2, max_length=2048, lora_dropout=0.05,
          gradient_checkpointing="on", offload_activations="on"), 2048, 7_745),
    ("QLoRA, checkpointing at batch 2", LLAMA,
     dict(objective="sft", adapter="qlora", batch_size=2, grad_accum=4, max_length=2048, lora_dropout=0.05,
          gradient_checkpointing="on"), 2048, 5_940),
    ("QLoRA, tiled MLPs at batch 8", LLAMA,
     dict(objective="sft", adapter="qlora", batch_size=8, max_length=2048, lora_dropout=0.05, tiled_mlp="on"), 2048,
     9_694),
]


@pytest.mark.parametrize("name, arch, settings, mean_length, measured", MEASURED, ids=[m[0] for m in MEASURED])
def test_the_flop_basis_gives_back_the_benchmarks_rates(home, name, arch, settings, mean_length, measured):
    guess = rate(planned(**settings), model_shape(str(arch)), mean_length, home)
    assert guess.tokens_per_second == pytest.approx(measured, rel=0.06), guess.basis
    assert "989 TFLOP/s" in guess.basis and "docs/benchmarks.md" in guess.basis
    assert guess.loop_seconds == pytest.approx(1_000_000 / guess.tokens_per_second)
    assert guess.setup_seconds is None and guess.wall_seconds is None  # no run here measured a set-up


def test_savers_a_slower_gpu_and_more_gpus_change_the_rate_and_say_so(home):
    shape = model_shape(str(QWEN))
    plain = rate(planned(objective="sft", adapter="none", batch_size=16), shape, 455, home)
    recomputed = rate(planned(objective="sft", adapter="none", batch_size=16, gradient_checkpointing="on"), shape,
                      455, home)
    assert recomputed.tokens_per_second == pytest.approx(plain.tokens_per_second * 6 / 8, rel=0.02)
    assert "gradient checkpointing's recomputed forward" in recomputed.basis
    lora_dpo = rate(planned(objective="dpo", adapter="lora"), model_shape(str(LLAMA)), 1000, home)
    assert "the reference model's forward each step" in lora_dpo.basis  # not precomputed for adapters
    a100 = rate(planned(objective="sft", adapter="none", batch_size=16), shape, 455, home, device="NVIDIA A100-SXM4-80GB")
    assert a100.tokens_per_second == pytest.approx(plain.tokens_per_second * 312 / 989)
    two = rate(planned(objective="sft", adapter="none", batch_size=16), shape, 455, home, gpus=2)
    assert two.tokens_per_second == pytest.approx(2 * plain.tokens_per_second) and "2 GPUs" in two.basis


@pytest.mark.parametrize("device, settings, arch, said", [
    ("cpu", dict(objective="sft", adapter="none"), QWEN, "no estimate on a CPU until a run of this model"),
    ("Imaginary Accelerator 9000", dict(objective="sft", adapter="none"), QWEN, "unknown GPU 'Imaginary"),
    ("NVIDIA H200", dict(objective="sft", adapter="lora"), QWEN, "only on models of 8.0 B parameters, not of 494 M"),
    ("NVIDIA H200", dict(objective="kto", adapter="lora"), LLAMA, "KTO with LoRA never on a GPU"),
    ("NVIDIA H200", dict(objective="sft", adapter="none", precision="fp32"), QWEN, "16-bit training only"),
], ids=["cpu", "unknown-gpu", "unmeasured-size", "unmeasured-objective", "fp32"])
def test_no_number_without_a_basis(home, device, settings, arch, said):
    guess = rate(planned(**settings), model_shape(str(arch)), 455, home, device=device)
    assert guess.tokens_per_second is None and guess.loop_seconds is None and guess.wall_seconds is None
    assert said in guess.basis, guess.basis
    line = throughput.expected_line(guess)
    assert line.startswith("Expected speed: no estimate") and "1.0 M tokens" in line, line


def test_an_estimate_of_the_same_recipe_cites_the_finished_run(trained, monkeypatch):
    from lab.train.estimate import estimate_run

    home, run, summary = trained
    monkeypatch.setenv("LAB_HOME", str(home.root))
    found = estimate_run(load_yaml(str(RECIPE)), home)
    report = found.to_dict()
    assert report["tokens_per_second"] == pytest.approx(summary["tokens_per_second"])  # same settings: no scaling
    setup = sum(s for phase, s in summary["phases"].items() if phase not in ("training", "queue"))
    assert report["setup_seconds"] == pytest.approx(setup)
    assert report["wall_seconds"] == pytest.approx(report["train_tokens"] / report["tokens_per_second"] + setup)
    assert report["basis"].startswith(f"from run {run.name} on this machine") and report["from_run"] == run.id
    assert f"Expected speed: **~{throughput.rate_text(summary['tokens_per_second'])} tokens/s**" in found.text
    assert f"from run {run.name}" in found.text and "before and after the loop" in found.text

    # Recomputing activations costs a forward more per token: the run's rate, scaled down, and said.
    slower = estimate_run(load_yaml(str(RECIPE), overrides=["gradient_checkpointing=on"]), home).to_dict()
    assert slower["tokens_per_second"] < report["tokens_per_second"] and "scaled by FLOPs per token" in slower["basis"]
    # Another objective has no run of its own here: on a CPU that is no estimate.
    dpo = estimate_run(load_yaml(str(ROOT / "recipes" / "tiny-dpo.yaml")), home).to_dict()
    assert dpo["tokens_per_second"] is None and "no estimate on a CPU" in dpo["basis"]


def test_a_gpu_estimate_does_not_cite_a_cpu_run(trained, monkeypatch):
    """On a GPU (faked: nvidia-smi's answer) the CPU run is no basis; the tiny model is far smaller than any model
    the lab measured, so there is no number, and the line says why."""
    from lab.train import distributed
    from lab.train.estimate import estimate_run

    home, run, _ = trained
    monkeypatch.setenv("LAB_HOME", str(home.root))
    monkeypatch.setattr(distributed, "visible_gpus", lambda: [distributed.Gpu(0, "u0", "NVIDIA H200", 140.4, 0.0)])
    found = estimate_run(load_yaml(str(RECIPE)), home)
    assert found.to_dict()["tokens_per_second"] is None and run.name not in found.text
    assert (f"Expected speed: no estimate {throughput.UNTIL} (the lab measured SFT of the full model only on models "
            "of 494 M parameters, not of 3.3 M)") in found.text, found.text


def test_the_token_count_matches_what_the_trainer_counted(trained):
    """The run's measured speed beside the estimate as it stood when it was queued (no earlier run: none on a CPU),
    and the tokens the estimate counts for its two steps within a few percent of the trainer's own count."""
    home, run, summary = trained
    speed = throughput.run_speed(run, home)
    assert speed.tokens_per_second == summary["tokens_per_second"] and speed.phases == summary["phases"]
    assert speed.wall_seconds == pytest.approx(summary["wall_seconds"])
    assert speed.expected.tokens_per_second is None and "no estimate on a CPU" in speed.expected.basis
    assert speed.expected.train_tokens == pytest.approx(summary["train_tokens"], rel=0.1)
    assert throughput.run_speed(run, home) is speed  # cached: the Train tab redraws a run every 2 s
    assert not speed.warm  # a run of its own process, which paid its imports


def test_cli_estimate_json_has_the_speed_fields(trained):
    home, run, summary = trained
    done = lab(home, "train", str(RECIPE), "--estimate", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["tokens_per_second"] == pytest.approx(summary["tokens_per_second"])
    assert report["wall_seconds"] > report["loop_seconds"] > 0 and report["train_tokens"] > 0
    assert report["basis"].startswith(f"from run {run.name}")


@pytest.fixture(scope="module")
def app(trained):
    home = trained[0]
    server = start_app(home.root)
    try:
        yield server
    finally:
        stop_app(server.process)


def test_train_tab_shows_the_expected_speed_and_the_measured_one(trained, app):
    from gradio_client import Client

    _, run, summary = trained
    client = Client(app.url, verbose=False)
    cfg = load_yaml(str(RECIPE))
    status, text, *_ = client.predict(**{f: getattr(cfg, f) for f in TrainConfig.__dataclass_fields__},
                                      api_name="/train_estimate")
    assert "Estimate ready" in status and f"from run {run.name} on this machine" in text, text
    outcome = client.predict(run.id, api_name="/train_run_view")[5]
    assert f"Speed: measured **{throughput.rate_text(summary['tokens_per_second'])} tokens/s**" in outcome, outcome
    assert "no estimate on a CPU" in outcome and "phases: queue" in outcome and "training" in outcome
    status, plot = client.predict(run.id, api_name="/train_phases")
    figure = json.loads(plot["value"]["plot"] if "value" in plot else plot["plot"])
    assert list(figure["data"][0]["y"]) == list(summary["phases"])
