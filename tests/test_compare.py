"""Compare through the real app: three checkpoints answer the same prompts side by side, runs get their
curves overlaid and config differences listed, and a comparison exports as Markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gradio_client import Client

from lab.compare import config_diff, run_numbers, to_markdown

ROOT = Path(__file__).resolve().parents[1]


def train(home: Path, *sets: str) -> str:
    args = [sys.executable, "-m", "lab", "train", "recipes/tiny-sft.yaml", "--set", "report_to=none", "--set",
            "eval_steps=5", "--set", "save_steps=0", "--set", "sample_prompts=0", *sets, "--wait", "--json"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LAB_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def test_three_sources_side_by_side_with_curves_diff_and_markdown(lab_app):
    first = train(lab_app.home, "--set", "max_steps=10")
    second = train(lab_app.home, "--set", "max_steps=10", "--set", "learning_rate=3e-3")
    client = Client(lab_app.url, verbose=False)
    sources = ["tiny", f"run:{first}", f"run:{second}"]
    status, answers, curves, numbers, diff = client.predict(sources, "What is 2 + 2?\nName a colour.", 16, 0, 1, 0,
                                                            api_name="/compare_run")
    assert "3 checkpoints answered 2 prompts" in status
    answers = answers.get("value", answers)  # sent as an update that also sets the column widths
    assert answers["headers"][0] == "prompt" and len(answers["headers"]) == 4
    assert all("tok/s" in h for h in answers["headers"][1:]) and len(answers["data"]) == 2
    assert [row[0] for row in diff["data"]] == ["learning_rate"]  # the only field set differently
    assert len(numbers["data"]) == 2
    status, path = client.predict(api_name="/compare_export")
    text = Path(path).read_text()
    assert "Saved" in status and "## Prompt 2" in text and f"run:{first}" in text and "learning_rate" in text


def test_config_diff_and_numbers_read_the_runs(lab_app):
    from lab.home import lab_home

    home = lab_home(lab_app.home)
    one = train(lab_app.home, "--set", "max_steps=5")
    two = train(lab_app.home, "--set", "max_steps=5", "--set", "batch_size=4")
    assert [d["field"] for d in config_diff([one, two], home)] == ["batch_size"]
    numbers = run_numbers([one, two], home)
    assert all(n["steps"] == 5 and n["final_train_loss"] is not None for n in numbers)
    markdown = to_markdown({"settings": {"seed": 0}, "prompts": [[{"role": "user", "content": "hi"}]],
                            "answers": [{"source": "tiny", "answers": [""], "tokens_per_second": 0}], "runs": numbers,
                            "config_diff": config_diff([one, two], home)})
    assert "*(empty)*" in markdown and "| batch_size |" in markdown


def test_cli_compares_and_writes_markdown(tmp_path):
    from lab.home import lab_home
    from lab.models import tiny_model_path

    home = tmp_path / "home"
    tiny_model_path(lab_home(home))
    out = tmp_path / "comparison.md"
    done = subprocess.run([sys.executable, "-m", "lab", "compare", "--source", "tiny", "--source",
                           str(tiny_model_path(lab_home(home))), "--prompt", "Hi", "--prompt", "Name a colour.",
                           "--max-new-tokens", "8", "--markdown", str(out), "--json"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LAB_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    tiny, path = document["answers"]
    assert tiny["answers"] == path["answers"]  # the same model, greedy: the same answers
    assert "## Prompt 2" in out.read_text()
