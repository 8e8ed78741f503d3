"""Evaluation jobs on the tiny model: perplexity falls after SFT on the rows it trained on (CLI, real
background jobs), the per-example loss masks exactly the final reply, and the Eval tab drives the same jobs."""

from __future__ import annotations

import csv
import io
import json
import math
import time

from gradio_client import Client

from lab.eval.perplexity import reply_labels
from tests.test_label import lab_cli


def test_perplexity_falls_after_sft_on_its_training_set(home):
    sft = lab_cli(home, "train", "recipes/tiny-sft.yaml", "--set", "report_to=none", "--set", "max_steps=40",
                  "--set", "eval_split=none", "--set", "save_steps=0", "--set", "sample_prompts=0", "--wait", "--json")
    run = json.loads(sft.stdout)
    assert run["status"] == "succeeded", sft.stderr
    result = lab_cli(home, "eval", "perplexity", "--model", "tiny", "--model", f"run:{run['id']}", "--split", "train",
                     "--max-rows", "60", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    base, tuned = (job["results"] for job in json.loads(result.stdout))
    assert base["rows"] == tuned["rows"] == 60 and base["tokens"] == tuned["tokens"] > 0
    assert tuned["perplexity"] < 0.5 * base["perplexity"], (base["perplexity"], tuned["perplexity"])
    assert math.isclose(tuned["perplexity"], math.exp(tuned["loss"]), rel_tol=1e-3)
    assert tuned["best"][0]["loss"] <= tuned["worst"][0]["loss"]
    rows = list(csv.DictReader(io.StringIO(lab_cli(home, "eval", "export").stdout)))
    assert {r["model"] for r in rows} == {"tiny", f"run:{run['id']}"} and all(r["status"] == "succeeded" for r in rows)


def test_the_loss_is_on_the_final_reply_only(tiny_home):
    from lab.models import load_tokenizer, tiny_model_path

    tokenizer = load_tokenizer(str(tiny_model_path(tiny_home)))
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."},
                {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    ids, labels = reply_labels(messages, tokenizer, max_length=512)
    trained = tokenizer.decode([i for i, label in zip(ids, labels) if label != -100])
    assert trained.startswith("Blue.") and "Hello" not in trained and "colour" not in trained
    # A final reply of weight 0 is context: the last reply trained on is scored, and nothing after it is read
    weighted = messages[:3] + [{**messages[3], "weight": 0}]
    ids, labels = reply_labels(weighted, tokenizer, max_length=512)
    trained = tokenizer.decode([i for i, label in zip(ids, labels) if label != -100])
    assert trained.startswith("Hello there.") and "Blue" not in tokenizer.decode(ids)


def test_a_bad_model_fails_before_any_job(home):
    result = lab_cli(home, "eval", "perplexity", "--model", "run:nope", "--json")
    assert result.returncode == 1 and "No run" in json.loads(result.stdout)["error"]


def test_eval_tab_runs_jobs_and_shows_examples(lab_app):
    client = Client(lab_app.url, verbose=False)
    status, jobs, selected, chart = client.predict(["tiny"], "sample:sft", "validation", 20, api_name="/eval_start")
    assert "Started 1 evaluation" in status
    job_id = selected["value"]  # the tab follows the job it started; the shared app may hold others
    deadline = time.time() + 120
    while time.time() < deadline:
        jobs, selected, chart = client.predict(api_name="/eval_jobs")
        row = next(row for row in jobs["data"] if row[0] == job_id)
        if "succeeded" in row[4] or "failed" in row[4]:
            break
        time.sleep(1)
    assert row[4] == "succeeded" and row[8] == 20, row
    shown = client.predict(row[0], api_name="/eval_show")
    assert "Lowest loss" in shown and "Highest loss" in shown and "perplexity" in shown
    path = client.predict(api_name="/eval_csv")
    assert "perplexity" in open(path).read()


def test_a_dead_worker_fails_its_job_with_the_log_s_last_line_but_a_finished_job_stays_finished(home, monkeypatch):
    import subprocess
    import sys

    from lab.eval import jobs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    made = {}
    for name in ("crashed", "finished"):
        job = jobs.create_eval("perplexity", "tiny", "sample:sft", max_rows=2, home=home, start=False)
        made[name] = job.id
        jobs.update(job.id, home, status="running", pid=gone.pid)
    log = jobs.log_path(made["crashed"], home)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("loading\nSegmentation fault (core dumped)\n\n")

    def finishes_meanwhile(pid: int) -> bool:  # the worker writes its outcome and exits after the list was read
        jobs.update(made["finished"], home, status="succeeded")
        return False

    monkeypatch.setattr(jobs, "alive", finishes_meanwhile)
    jobs.reconcile(home)
    crashed, finished = jobs.get_eval(made["crashed"], home), jobs.get_eval(made["finished"], home)
    assert crashed.status == "failed" and crashed.error.endswith("Its last line: Segmentation fault (core dumped)")
    assert finished.status == "succeeded"
