"""The whole wait, from ``python -m lab train`` to ``final/`` saved (issue 20): the run's timeline by phase, and what
the second launch of the same run no longer pays (the checks' imports, TRL's tokenising, DPO's reference pass).

One real full-model DPO run of the tiny model is trained twice through the CLI (module-scoped); the rest are unit
checks of the caches on the CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.config import load_yaml
from lab.home import lab_home
from lab.train import phases

ROOT = Path(__file__).resolve().parents[1]
DPO = ["train", str(ROOT / "recipes" / "tiny-dpo.yaml"), "--set", "adapter=none", "--set", "max_steps=2",
       "--set", "warmup_ratio=0", "--set", "report_to=none", "--set", "sample_prompts=0", "--set", "eval_split=none"]


def lab(home, *args: str, python: tuple[str, ...] = (), path: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT)}
    if path:  # a folder searched first for programs (a stand-in nvidia-smi)
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    return subprocess.run([sys.executable, *python, "-m", "lab", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=False, timeout=600)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same DPO run launched twice on one home: (home, [(run_dir, summary), ...])."""
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("wait") / "home")
    tiny_model_path(home)
    out = []
    for _ in range(2):
        done = lab(home, *DPO, "--wait", "--json")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        run_dir = Path(json.loads(done.stdout)["run_dir"])
        out.append((run_dir, json.loads((run_dir / "summary.json").read_text())))
    return home, out


def test_the_run_reports_its_whole_wait_by_phase(two_runs):
    _, [(run_dir, summary), _] = two_runs
    timeline = summary["phases"]
    assert list(timeline)[:3] == ["queue", "launch", "imports"]
    for phase in ("model", "data", "tokenising", "reference", "training", "saving"):
        assert timeline[phase] >= 0, phase
    assert summary["wall_seconds"] == pytest.approx(sum(timeline.values()), abs=0.05)
    assert summary["train_tokens"] > 0 and summary["tokens_per_second"] > 0
    assert "[lab] whole wait" in (run_dir / "log.txt").read_text()


def test_one_process_runs_without_accelerates_launcher(two_runs):
    _, [(run_dir, _), _] = two_runs
    command = json.loads((run_dir / "launch.json").read_text())["command"]
    assert command[1:3] == ["-m", "lab.train.worker"], command
    assert "lab.train.worker" in (run_dir / "launch.sh").read_text()


def test_the_second_launch_reuses_the_tokenised_data_and_the_reference(two_runs):
    home, [(first_dir, first), (second_dir, second)] = two_runs
    computing = "Computing reference log probs for train dataset"
    assert computing in (first_dir / "log.txt").read_text()
    assert computing not in (second_dir / "log.txt").read_text()  # TRL found its cache
    assert second["phases"]["reference"] < first["phases"]["reference"]
    cached = list((home.root / "cache" / "datasets").iterdir())
    assert len(cached) == 1 and list(cached[0].glob("cache-*.arrow"))  # one dataset, with TRL's maps beside it
    losses = [json.loads(line)["loss"] for d in (first_dir, second_dir)
              for line in (d / "metrics.jsonl").read_text().splitlines() if '"loss"' in line][:1]
    assert losses  # the cached run trained and logged


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_a_repeat_launch_imports_neither_torch_nor_transformers(two_runs, tmp_path, gpu):
    """The checks before launch read the model's shape and the loss-mask check's verdict from LAB_HOME/cache once
    they have been made, so ``python -m lab train`` starts the run without torch or transformers; also where
    nvidia-smi lists a GPU, and the checks plan the GPU's kernels (whether torch has its variable-length attention
    is read from torch's source: importing it cost 2-3 s of the H200's launches)."""
    home, _ = two_runs
    path = ""
    if gpu:
        (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho '0, GPU-0000, NVIDIA H200, 143771, 0'\n")
        (tmp_path / "nvidia-smi").chmod(0o755)
        path = str(tmp_path)
    sft = ["train", str(ROOT / "recipes" / "tiny-sft.yaml"), "--set", "max_steps=2", "--json"]
    first = lab(home, *sft, path=path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = lab(home, *sft, python=("-X", "importtime"), path=path)
    assert again.returncode == 0, again.stderr[-2000:]
    imported = {m.group(1) for m in re.finditer(r"\|\s*(\S+)\s*$", again.stderr, re.M)}
    assert "torch" not in imported and "transformers" not in imported, sorted(imported)[:50]
    from lab.train.runner import cancel

    for text in (first.stdout, again.stdout):
        cancel(json.loads(text)["id"], home)


def test_the_reference_cache_key_tells_slices_of_one_file_apart():
    """DPO's cached reference log-probabilities are keyed by the tokenised rows' hash. Two contiguous selections of
    one dataset are slices of the same Arrow buffers: hashing the buffers as held gave them one key (another split's
    log-probabilities reused); the rows' own bytes tell them apart, and the same rows keep their key."""
    import datasets

    from lab.train.objectives.dpo import content_fingerprint

    rows = datasets.Dataset.from_dict({"input_ids": [[i, i + 1, i + 2] for i in range(1000)]})
    first, second = rows.select(range(0, 100)), rows.select(range(100, 200))
    assert content_fingerprint(first) != content_fingerprint(second)
    assert content_fingerprint(first) == content_fingerprint(rows.select(range(0, 100)))


def test_phases_add_up_a_phase_seen_twice(tmp_path):
    phases.begin(tmp_path, at=time.time() - 3)
    phases.mark(tmp_path, "tokenising")
    phases.mark(tmp_path, "reference")
    phases.mark(tmp_path, "tokenising")
    timeline = phases.durations(tmp_path)
    assert list(timeline) == ["tokenising", "reference"] and timeline["tokenising"] >= 2.9
    assert phases.describe(timeline).startswith("whole wait 3.")
    phases.mark(tmp_path / "elsewhere", "training")  # no timeline there (a worker started by hand): nothing written
    assert not (tmp_path / "elsewhere").exists()


def test_cached_datasets_are_named_by_content_and_pruned_least_recently_used(tmp_path):
    from lab.train import data_cache

    home = lab_home(tmp_path / "home")
    rows = [{"prompt": f"p{i}", "completion": "x" * 2000} for i in range(200)]
    first = data_cache.cached_dataset(rows, home)
    again = data_cache.cached_dataset(list(rows), home)
    assert first.cache_files == again.cache_files and again[5] == rows[5]
    other = data_cache.cached_dataset(rows[:100], home)
    assert other.cache_files != first.cache_files
    old = data_cache.cache_root(home) / data_cache.content_key(rows)
    os.utime(old, (1, 1))  # used long ago
    removed = data_cache.prune(home, keep_gib=data_cache.folder_bytes(old) / 1024**3)
    assert removed == [old.name] and not old.exists()


def test_the_model_shape_is_measured_once_per_config_file(tmp_path, monkeypatch):
    from lab.train import estimate

    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    config = tmp_path / "config.json"
    config.write_text((ROOT / "bench/configs/test-tiny-qwen2.json").read_text())
    estimate.shape_at.cache_clear()
    measured = estimate.shape_at(str(config))
    saved = estimate.shape_file(str(config))
    assert saved.exists()
    estimate.shape_at.cache_clear()
    assert estimate.shape_at(str(config)) == measured  # read back from the file
    os.utime(config, ns=(1, 1))  # an edited config is another file
    assert estimate.shape_file(str(config)) != saved
    estimate.shape_at.cache_clear()


def test_a_legacy_method_given_with_set_wins_over_the_recipes_objective_and_adapter():
    cfg = load_yaml(str(ROOT / "recipes" / "tiny-sft.yaml"), overrides=["method=lora"])
    assert (cfg.objective, cfg.adapter) == ("sft", "lora")
    cfg = load_yaml(str(ROOT / "recipes" / "tiny-sft.yaml"), overrides=["method=dpo", "dpo_adapter=none"])
    assert (cfg.objective, cfg.adapter) == ("dpo", "none")


def test_dpo_prompts_longer_than_max_prompt_length_are_cut_from_the_front(tmp_path):
    from lab.models import load_tokenizer
    from lab.train.datasets import prompt_tokens, truncate_prompts

    tokenizer = load_tokenizer("tiny", home=lab_home(tmp_path / "home"))
    long = [{"role": "user", "content": "tell me about the weather " * 60}]
    assert prompt_tokens(long, tokenizer) > 100
    [row] = truncate_prompts([{"prompt": long, "chosen": [], "rejected": []}], tokenizer, 32)
    assert prompt_tokens(row["prompt"], tokenizer) <= 32
