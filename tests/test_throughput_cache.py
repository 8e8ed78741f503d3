"""What makes a repeat estimate cheap: a split's token counts (lab.train.throughput.row_tokens) and the learning-rate
curve (lab.train.estimate.lr_curve) are kept under LAB_HOME/cache, so an estimate already made loads no tokenizer
and, in a new process (the CLI, a restarted app), imports neither torch nor transformers; a new dataset version,
another max_length or another schedule is measured afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import load_yaml
from lab.home import lab_home
from lab.train import throughput

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny-sft.yaml"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("throughput_cache"))
    tiny_model_path(home)
    return home


def test_a_splits_tokens_are_measured_once_per_version_tokenizer_and_max_length(home, monkeypatch):
    from lab import models
    from lab.data.versions import save_version, version_rows
    from lab.train.datasets import resolve_version

    loads = []
    real = models.load_tokenizer
    monkeypatch.setattr(models, "load_tokenizer", lambda *a, **k: loads.append(a) or real(*a, **k))

    def measured(ref: str, max_length: int = 256) -> tuple[float | None, float]:
        throughput.row_tokens.cache_clear()  # the disk alone, as a new process finds it
        return throughput.row_tokens(ref, "sft", "train", "tiny", max_length, str(home.root))

    version = resolve_version("sample:sft", home)
    first = measured(version.ref)
    assert len(loads) == 1 and first[0] > 0
    assert len(list((home.root / "cache" / "row_tokens").glob("*.json"))) == 1
    assert measured(version.ref) == first and len(loads) == 1  # kept: no tokenizer loaded again
    shorter = save_version(version.name, "sft", version.format, version_rows(version, home, split="train")[:5], [], {},
                           home=home)  # a new version of the same dataset
    assert shorter.ref != version.ref
    assert measured(shorter.ref) != first and len(loads) == 2
    capped = measured(version.ref, max_length=16)
    assert len(loads) == 3 and capped[1] <= 16 < first[1]


def test_a_repeat_estimate_in_a_new_process_says_the_same_without_torch_or_transformers(home, monkeypatch):
    from lab.train.estimate import estimate_run

    monkeypatch.setenv("LAB_HOME", str(home.root))
    cfg = load_yaml(str(RECIPE))
    first = estimate_run(cfg, home)  # measures the data, draws the schedule and builds the shape, keeping each
    script = ("import json, sys\nfrom lab.config import load_yaml\nfrom lab.home import lab_home\n"
              "from lab.train.estimate import estimate_run\n"
              "found = estimate_run(load_yaml(sys.argv[1]), lab_home())\n"
              "print(json.dumps({'text': found.text, 'lr_curve': found.report['lr_curve'],\n"
              "                  'imported': [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]}))")
    done = subprocess.run([sys.executable, "-c", script, str(RECIPE)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    again = json.loads(done.stdout.splitlines()[-1])
    assert again["imported"] == []
    assert again["text"] == first.text and "Expected speed:" in again["text"]
    assert again["lr_curve"] == [list(point) for point in first.report["lr_curve"]]


def test_the_curve_is_kept_in_the_home_estimated_for_not_the_environments(tmp_path, monkeypatch):
    """The app started with --home has no LAB_HOME: its estimates must not make a ./lab_home of their own."""
    from lab.models import tiny_model_path
    from lab.train.estimate import estimate, model_shape

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("LAB_HOME", str(elsewhere))
    home = lab_home(tmp_path / "home")
    tiny_model_path(home)
    cfg = load_yaml(str(RECIPE), overrides=["learning_rate=7.7e-4"])
    estimate(cfg, 100, shape=model_shape(cfg.model, home), home=home)
    assert list((home.root / "cache" / "schedules").glob("*.json"))
    assert not (elsewhere / "cache" / "schedules").exists()
