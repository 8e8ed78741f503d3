"""The queue moves on whoever died: a run queued behind one whose supervisor is kill -9'd (alone, or with its
process group) starts on the next CLI command or app tick, a cancel still reaches the orphaned worker, and the
dataset version a queued run needs is not deleted from under it. One home and three CPU runs for the module;
the tests run in order (each notes what it leaves for the next)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from lab.config import load_yaml
from lab.data.versions import get_version
from lab.home import lab_home
from lab.processes import signal_all
from lab.train import runner
from tests.test_train_runs import FAST, ROOT, lab, overfit_set, wait_for

LONG = ["--set", "max_steps=100000", "--set", "logging_steps=1", "--set", "sample_prompts=0"]


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_home):
    """One lab home for the module, with a copy of the session's tiny model; at the end, whatever of its runs
    still trains is killed (a failing test must not leave a 100,000-step run on the machine)."""
    from lab.models import TINY_DIR, tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("queue_home"))
    shutil.copytree(tiny_model_path(tiny_home), home.models / TINY_DIR)
    yield home
    for run in runner.list_runs(home, status="running"):
        # Until none is left: a supervisor started a moment ago may be starting its worker as it is killed, and an
        # orphaned worker would train for the rest of the suite.
        deadline = time.monotonic() + 10
        while (pids := runner.run_processes(run)) and time.monotonic() < deadline:
            signal_all(pids, signal.SIGKILL)
            time.sleep(0.2)
        assert not runner.run_processes(run), f"run {run.id} left processes behind"


def start(home, *sets: str) -> dict:
    result = lab(home, "train", "recipes/tiny-sft.yaml", *FAST, *LONG, *sets, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def runs(home, tmp_path_factory) -> dict:
    """A long run training, and a long run queued behind it on a dataset version of its own."""
    ref = overfit_set(home, tmp_path_factory.mktemp("data"))
    first = start(home)
    second = start(home, "--set", f"dataset={ref}", "--set", "eval_split=none")
    assert (first["status"], second["status"]) == ("running", "queued")
    return {"first": first["id"], "second": second["id"], "ref": ref}


def test_deleting_the_dataset_of_a_queued_run_is_refused_with_the_run_named_unless_forced(home, runs):
    queued = runner.get_run(runs["second"], home)
    refused = lab(home, "data", "delete", runs["ref"], "--yes", "--json")
    error = json.loads(refused.stdout)["error"]
    assert refused.returncode == 1 and queued.name in error and queued.id in error and "--force" in error
    assert get_version(runs["ref"], home).path.exists()
    imported = lab(home, "data", "import", str(ROOT / "tests/fixtures/data/dolly.jsonl"), "--name", "doomed", "--json")
    doomed = json.loads(imported.stdout)["ref"]
    cfg = load_yaml(str(ROOT / "recipes/tiny-sft.yaml"), overrides=[f"dataset={doomed}", "report_to=none"])
    run, _ = runner.create_run(cfg, home=home, start=False)
    forced = lab(home, "data", "delete", doomed, "--yes", "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout) == {"deleted": doomed}, forced.stderr
    assert runner.cancel(run.id, home).status == "cancelled"  # leaves: the first run training, the second queued


def test_a_run_queued_on_a_dataset_name_trains_on_the_version_it_was_queued_with(home, runs):
    """A version saved under the same name after the run was queued is another dataset: the run, its config and the
    store (which delete's refusal reads) all name the version resolved when it was queued."""
    first = lab(home, "data", "import", str(ROOT / "tests/fixtures/data/dolly.jsonl"), "--name", "moving", "--json")
    ref = json.loads(first.stdout)["ref"]
    cfg = load_yaml(str(ROOT / "recipes/tiny-sft.yaml"), overrides=["dataset=moving", "report_to=none"])
    run, _ = runner.create_run(cfg, home=home, start=False)
    newer = lab(home, "data", "import", str(ROOT / "tests/fixtures/data/openai.jsonl"), "--name", "moving", "--json")
    assert json.loads(newer.stdout)["ref"] != ref
    assert run.dataset == ref and run.train_config.dataset == ref
    assert load_yaml(str(run.run_dir / "config.yaml")).dataset == ref
    assert runner.cancel(run.id, home).status == "cancelled"  # leaves: the first run training, the second queued


def test_a_cancel_reaches_a_run_whose_supervisor_was_killed_and_the_next_command_starts_the_queue(home, runs):
    first = runs["first"]
    wait_for(lambda: runner.read_metrics(first, home))
    os.kill(runner.get_run(first, home).pid, signal.SIGKILL)  # the supervisor alone: its worker trains on
    cancelled = lab(home, "runs", "cancel", first, "--json")  # returns at once: nothing of it stays to watch the run
    assert cancelled.returncode == 0, cancelled.stderr
    run = wait_for(lambda: (lambda r: r if r.status != "running" else None)(runner.get_run(first, home)), timeout=60)
    assert run.status == "cancelled" and "checkpoint was saved" in run.error, run.error
    assert runner.latest_checkpoint(run.run_dir) is not None
    assert lab(home, "data", "list", "--json").returncode == 0  # no supervisor was left to start it: any command does
    assert runner.get_run(runs["second"], home).status == "running"  # leaves: the second run training


def test_the_app_s_housekeeping_starts_a_queued_run_within_seconds_of_a_process_group_kill(home, runs):
    from lab.housekeeping import keep_ticking

    second = runs["second"]
    if runner.get_run(runs["first"], home).status == "running":  # run on its own: the first run is in the way
        runner.cancel(runs["first"], home, wait=True)
    wait_for(lambda: runner.get_run(second, home).status == "running")
    third = start(home)
    assert third["status"] == "queued"
    os.killpg(runner.get_run(second, home).pid, signal.SIGKILL)
    stop = keep_ticking(home, every_s=0.5)  # what the web app's main() starts
    try:
        wait_for(lambda: runner.get_run(third["id"], home).status == "running", timeout=15)
    finally:
        stop.set()
    assert "died without reporting" in runner.get_run(second, home).error
