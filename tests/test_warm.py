"""The warm worker (issue 20): a resident process with torch, transformers and TRL imported forks each one-process
run, which then skips the imports. Real runs of the tiny model through the CLI against one server (module-scoped):
forked, cancelled, killed, refused for an import-time setting, and the queue moved on by the server itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.home import lab_home
from lab.processes import alive
from lab.train import phases, runner, warm
from tests.app_server import lab_app  # noqa: F401 - the session's app

ROOT = Path(__file__).resolve().parents[1]
SFT = ["train", str(ROOT / "recipes" / "tiny-sft.yaml"), "--set", "dataset=warm-sft", "--set", "report_to=none",
       "--set", "sample_prompts=0", "--set", "eval_split=none", "--set", "warmup_ratio=0"]


def lab(home, *args: str, python: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT), **env}, timeout=600)


def queue(home, *sets: str, **env: str) -> runner.Run:
    done = lab(home, *SFT, *sets, "--json", **env)
    assert done.returncode == 0, done.stderr[-2000:]
    return runner.get_run(json.loads(done.stdout)["id"], home)


def until(check, timeout_s: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A home with the sample SFT data and a warm worker started through the CLI, stopped at the end."""
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("warm") / "home")
    tiny_model_path(home)
    imported = lab(home, "data", "import", "sample:sft", "--name", "warm-sft", "--max-rows", "64")
    assert imported.returncode == 0, imported.stderr
    started = lab(home, "warm", "--idle", "900", "--json")
    assert started.returncode == 0, started.stderr + (home.root / "logs" / "warm.log").read_text()
    state = json.loads(started.stdout)
    yield home, state
    assert lab(home, "warm", "--stop").returncode == 0
    until(lambda: not alive(state["pid"]), 30, "the warm worker to stop")
    assert not warm.state_file(home).exists() and not Path(state["socket"]).exists()


def test_a_first_launch_imports_nothing_heavy_and_its_fork_skips_the_imports(server):
    home, state = server
    # The first launch on this home: the checks' model shape and loss-mask check are measured by the warm worker.
    done = lab(home, *SFT, "--set", "max_steps=3", "--wait", "--json", python=("-X", "importtime"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "lab.cli" in imported and not imported & {"torch", "transformers"}
    run = runner.get_run(json.loads(done.stdout)["id"], home)
    log = (run.run_dir / "log.txt").read_text()
    assert f"started by the warm worker (pid {state['pid']})" in log
    forked = runner.launch_info(run.run_dir)["warm"]
    assert run.pid == forked["pid"] != state["pid"]
    timeline = phases.durations(run.run_dir)
    assert timeline["imports"] < 1.0, timeline  # a fresh process spends seconds here
    assert (run.run_dir / "final" / "model.safetensors").exists()
    from lab.train.throughput import run_speed
    from lab.ui.train_tab import speed_text

    speed = run_speed(runner.get_run(run.id, home), home)  # the Train tab's outcome says why imports took 0 s
    assert speed.warm and "started by the warm worker" in speed_text(speed)
    status = lab(home, "warm", "--status", "--json")
    assert json.loads(status.stdout)["runs"] == {}  # reaped


def test_cancel_reaches_a_forked_run_which_saves_a_checkpoint(server):
    home, _ = server
    run = queue(home, "--set", "max_steps=400", "--set", "save_steps=1000")
    until(lambda: runner.read_metrics(run.id, home), what="the first step")
    assert runner.stop_targets(runner.get_run(run.id, home)) == [run.pid]
    cancelled = lab(home, "runs", "cancel", run.id, "--wait", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    run = runner.get_run(run.id, home)
    assert run.status == "cancelled", run.error
    assert runner.latest_checkpoint(run.run_dir) is not None
    until(lambda: not runner.run_processes(run), 30, "the run's processes to end")


def test_a_killed_forked_run_is_recorded_failed_by_the_server(server):
    home, _ = server
    run = queue(home, "--set", "max_steps=400")
    until(lambda: runner.read_metrics(run.id, home), what="the first step")
    os.kill(run.pid, signal.SIGKILL)
    until(lambda: runner.get_run(run.id, home).status != "running", 30, "the server to record the kill")
    run = runner.get_run(run.id, home)
    assert run.status == "failed" and "killed by SIGKILL" in run.error, run.error


def test_the_server_starts_the_next_queued_run_when_one_ends(server):
    home, state = server
    first = queue(home, "--set", "max_steps=2")
    second = queue(home, "--set", "max_steps=2")  # one run at a time on a CPU: queued behind the first
    assert second.status == "queued"
    # No CLI command or app tick runs meanwhile: only the server, reaping the first, can start the second.
    until(lambda: runner.get_run(second.id, home).status in runner.FINISHED, 180, "the second run")
    assert runner.get_run(first.id, home).status == runner.get_run(second.id, home).status == "succeeded"
    assert f"started by the warm worker (pid {state['pid']})" in (second.run_dir / "log.txt").read_text()


def test_a_run_asking_with_another_import_time_setting_starts_fresh_and_says_why(server):
    home, _ = server
    done = lab(home, *SFT, "--set", "max_steps=1", "--wait", "--json", HF_HOME="/tmp/another-hf-home")
    assert done.returncode == 0, done.stderr[-2000:]
    log = (Path(json.loads(done.stdout)["run_dir"]) / "log.txt").read_text()
    assert "not started by the warm worker: the warm worker was started with other values of HF_HOME" in log
    assert "started by the warm worker (pid" not in log


def test_import_time_settings_and_the_code_fingerprint(tmp_path):
    base = {"HF_HOME": "/a", "PATH": "/bin", "HF_TOKEN": "x", "LAB_HOME": "/h"}
    assert warm.env_difference(base, {**base, "PATH": "/usr/bin", "HF_TOKEN": "y", "LAB_RUN_ID": "r"}) == []
    assert warm.env_difference(base, {**base, "HF_HOME": "/b"}) == ["HF_HOME"]
    assert warm.env_difference(base, {k: v for k, v in base.items() if k != "LAB_HOME"}) == ["LAB_HOME"]
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "a.py").write_text("x = 1\n")
    before = warm.fingerprint(tmp_path)
    (tmp_path / "lab" / "a.py").write_text("x = 22\n")
    assert warm.fingerprint(tmp_path) != before


def test_a_long_home_path_gets_a_private_socket_elsewhere(tmp_path):
    home = lab_home(tmp_path / ("x" * 120))
    path = warm.socket_path(home)
    assert len(str(path)) < 100 and str(home.root) not in str(path)
    warm.private_dir(path.parent)
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_the_web_app_keeps_a_warm_worker_bound_to_itself(lab_app):  # noqa: F811
    home = lab_home(lab_app.home)
    until(lambda: warm.read_state(home) is not None, 120, "the app's warm worker")
    assert warm.read_state(home)["owner"] == lab_app.process.pid


def test_a_deferred_package_runs_its_code_at_first_use_not_at_import(tmp_path, monkeypatch):
    """As bitsandbytes is deferred in the server: imported by peft there, executed only in a run."""
    package = tmp_path / "lazyprobe"
    package.mkdir()
    (package / "__init__.py").write_text("from pathlib import Path\nPath(__file__).with_name('ran').touch()\nx = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = warm.Deferred(("lazyprobe",))
    sys.meta_path.insert(0, finder)
    try:
        import lazyprobe
    finally:
        sys.meta_path.remove(finder)
    assert not (package / "ran").exists()
    assert lazyprobe.x == 1 and (package / "ran").exists()
    del sys.modules["lazyprobe"]


def test_a_machine_whose_forks_cannot_use_the_gpu_is_not_tried_again_until_the_code_changes(tmp_path):
    home = lab_home(tmp_path / "home")
    warm.private_dir(warm.state_dir(home))
    warm.refused_file(home).write_text(json.dumps({"fingerprint": warm.fingerprint(), "why": "probe failed"}))
    with pytest.raises(LabError, match="cannot serve on this machine: probe failed"):
        warm.start(home)
    warm.refused_file(home).write_text(json.dumps({"fingerprint": "older", "why": "probe failed"}))
    assert warm.start(home, wait_s=0) is None  # tried again: starting in the background
    until(lambda: warm.read_state(home) is not None, 120, "the new server")
    assert warm.stop(home)


def test_the_server_answers_while_another_process_holds_the_dispatch_lock(server):
    """A run ending makes the server dispatch; a CLI dispatching at that moment holds the lock while it asks the server
    for a fork, so the server must not wait for the lock (it did, and that launch timed out into a fresh process)."""
    home, state = server
    run = queue(home, "--set", "max_steps=2")
    with runner.dispatch_lock(home):
        until(lambda: runner.get_run(run.id, home).status in runner.FINISHED, 120, "the run")
        until(lambda: not json.loads(lab(home, "warm", "--status", "--json").stdout)["runs"], 30, "the reaping")
        assert warm.ask(home, {"op": "status"}, timeout_s=3.0)["pid"] == state["pid"]


def test_the_estimated_setup_leaves_out_the_imports_while_the_warm_worker_is_ready(server):
    home, _ = server
    fresh = lab(home, *SFT, "--set", "max_steps=2", "--wait", "--json", LAB_WARM_WORKER="0")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    imports = json.loads((Path(json.loads(fresh.stdout)["run_dir"]) / "summary.json").read_text())["phases"]["imports"]
    assert imports > 1

    def estimate(**env: str) -> dict:
        done = lab(home, *SFT, "--set", "max_steps=2", "--estimate", "--json", **env)
        return json.loads(done.stdout)

    cold, ready = estimate(LAB_WARM_WORKER="0"), estimate()
    assert cold["from_run"] == ready["from_run"] == json.loads(fresh.stdout)["id"]
    assert ready["setup_seconds"] == pytest.approx(cold["setup_seconds"] - imports, abs=0.05)
    assert "the warm worker is ready" in ready["basis"] and "warm worker" not in cold["basis"]


def test_the_server_imports_each_objectives_trainer_and_the_padding_free_kernel():
    """TRL imports its trainers lazily: left to the forked run, they cost 1-3 s of each run's set-up on the H200.
    The server imports the class each objective's ``build`` makes (``Objective.trainer``). Not torch's
    variable-length attention module, which loads torch._dynamo: the lab calls the flash kernel's operator."""
    import inspect

    import trl

    from lab.train.methods import OBJECTIVES
    code = ("import json, sys; from lab.train import warm; warm.preload(); print(json.dumps(sorted(m for m in "
            "sys.modules if m.startswith(('trl.trainer.', 'torch.nn.attention')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    for entry in OBJECTIVES.values():
        assert getattr(trl, entry.trainer).__module__ in loaded, entry.name
        assert entry.trainer in inspect.getsource(entry.module()), f"{entry.name}'s build makes another trainer"
    assert "torch.nn.attention.varlen" not in loaded
