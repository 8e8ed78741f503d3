"""The expected speed on a real GPU (run through the device tool: ``pytest -m gpu tests/test_throughput_gpu.py -s``).

Full SFT of the Qwen2.5-0.5B architecture (random weights, bench/configs) on synthetic chat rows: before any run the
estimate comes from the GPU's peak × the MFU measured in docs/benchmarks.md, and must be near what the run then
measures; after it, the estimate of the same settings cites that run on this GPU (the name nvidia-smi gives the
estimate matches the one torch gave the run's summary), with its measured set-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROOT = Path(__file__).resolve().parents[1]
STEPS = 60  # 60 × 16 rows of ~450 tokens: long enough that the first step's kernel loading is a small part


def test_the_estimate_is_near_the_measured_rate_and_then_cites_the_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import chat_data
    import common

    from lab.config import TrainConfig
    from lab.home import lab_home
    from lab.models import load_tokenizer, tiny_model_path
    from lab.train.estimate import estimate_run

    home = lab_home(tmp_path / "home")
    monkeypatch.setenv("LAB_HOME", str(home.root))
    tiny_model_path(home)
    model = common.build_random_model("qwen2.5-0.5b", home.models / "qwen2.5-0.5b", home)
    ref = common.import_rows(home, chat_data.sft_rows(load_tokenizer("tiny", home=home), n=1200), "speed-check")
    sets = {"objective": "sft", "adapter": "none", "model": str(model), "dataset": ref, "max_length": 2048,
            "batch_size": 16, "grad_accum": 1, "max_steps": STEPS, "epochs": 1, "learning_rate": 2e-5,
            "eval_split": "none", "save_steps": 10**6, "logging_steps": 5, "report_to": "none", "sample_prompts": 0}
    cfg = TrainConfig(**{k: v for k, v in sets.items()})

    before = estimate_run(cfg, home).to_dict()
    print("before any run:", before["tokens_per_second"], before["loop_seconds"], before["basis"])
    assert before["tokens_per_second"] and "MFU the lab measured" in before["basis"], before["basis"]

    run = common.lab_train(home, sets)
    assert run.get("status") == "succeeded", run
    summary = json.loads((Path(run["run_dir"]) / "summary.json").read_text())
    measured = summary["tokens_per_second"]
    print("measured:", measured, "tokens/s over", summary["train_tokens"], "tokens; whole wait",
          summary["wall_seconds"], "s:", summary["phases"])
    assert 0.5 < measured / before["tokens_per_second"] < 1.6, (measured, before)
    assert before["train_tokens"] == pytest.approx(summary["train_tokens"], rel=0.1)

    after = estimate_run(cfg, home).to_dict()
    print("after it:", after["tokens_per_second"], after["wall_seconds"], after["basis"])
    assert after["basis"].startswith("from run ") and "on this GPU" in after["basis"], after["basis"]
    assert after["tokens_per_second"] == pytest.approx(measured)
    assert after["setup_seconds"] > 0 and after["wall_seconds"] > after["loop_seconds"]


def test_accumulated_micro_batches_merged_by_the_plan_train_as_configured(tmp_path, monkeypatch):
    """SFT at batch 2 × grad_accum 4 on the GPU: the speed plan runs it as 8 × 1 (``speed.json``), and each step's
    loss and gradient norm are those of the same run with the merge off (the same examples a step; TRL divides
    the loss by the accumulated batch's token count)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import chat_data
    import common

    from lab.home import lab_home
    from lab.models import load_tokenizer, tiny_model_path

    home = lab_home(tmp_path / "home")
    monkeypatch.setenv("LAB_HOME", str(home.root))
    tiny_model_path(home)
    ref = common.import_rows(home, chat_data.sft_rows(load_tokenizer("tiny", home=home), n=64), "merge-check")
    sets = {"dataset": ref, "batch_size": 2, "grad_accum": 4, "max_steps": 4, "logging_steps": 1, "max_length": 512,
            "eval_split": "none", "report_to": "none", "sample_prompts": 0, "warmup_ratio": 0}
    logs = {}
    for merge in ("auto", "off"):
        run = common.lab_train(home, {**sets, "merge_micro_batches": merge})
        assert run.get("status") == "succeeded", run
        run_dir = Path(run["run_dir"])
        logs[merge] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        logs[merge] = [(r["loss"], r["grad_norm"]) for r in logs[merge] if r.get("split") == "train" and "loss" in r]
        plan = json.loads((run_dir / "speed.json").read_text())
        assert plan["merged"] == (4 if merge == "auto" else 1), plan["reasons"]["merge_micro_batches"]
    print("merged:", logs["auto"], "\nas configured:", logs["off"])
    assert len(logs["auto"]) == len(logs["off"]) == 4
    for (loss, norm), (loss_off, norm_off) in zip(logs["auto"], logs["off"]):
        assert loss == pytest.approx(loss_off, rel=2e-3) and norm == pytest.approx(norm_off, rel=2e-2)
