"""Runs as managed background processes: create (validated, queued), dispatch (start queued runs while
GPUs are free), cancel, resume, and reconcile (find workers that died). Runs in the app's and the CLI's
processes; the training itself happens in ``lab.train.worker``, one process per GPU.

A launched run is ``python -m lab.train.runner supervise RUN_DIR`` (the process group's leader, its pid in
the store), which runs ``accelerate launch --config_file RUN_DIR/accelerate.yaml -m lab.train.worker RUN_DIR``
(also written to ``RUN_DIR/launch.sh``), forwards a cancel's SIGTERM to the ranks, and once the launcher has
exited records a failure the ranks could not (a rank killed, the launcher dying) and starts the next queued
run; a supervisor killed starts nothing, so ``lab.housekeeping`` also dispatches, once per CLI command and every
few seconds in the app. ``RUN_DIR/launch.json`` says which GPUs the run holds. ``python -m lab.train.runner
prepare`` writes a run for several machines, started by a cluster's scheduler (docs/multi-gpu.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from lab.config import TrainConfig, from_dict, to_yaml
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.processes import live_processes, signal_all, started
from lab.store import Store, dumps
from lab.train import distributed, phases

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
CANCEL_GRACE_S = 30.0
LAUNCH_FILE = "launch.json"
LAUNCHER = "accelerate.commands.launch"  # the module of the launcher between a run's supervisor and its ranks
ROOT = Path(__file__).resolve().parents[2]
_children: dict[int, subprocess.Popen] = {}  # launched by this process: polled so they don't linger as zombies


@dataclass
class Run:
    id: str
    name: str
    method: str
    model: str
    dataset: str
    status: str
    run_dir: Path
    config: dict[str, Any]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None
    error: str | None = None
    resume_from: str | None = None
    final_loss: float | None = None
    wandb_url: str | None = None

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        del out["config"]
        return out

    @property
    def train_config(self) -> TrainConfig:
        return from_dict(TrainConfig, self.config, where=f"run {self.id}")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def max_concurrent(gpu_count: int) -> int:
    """Runs at once: LAB_MAX_CONCURRENT_RUNS, else one per GPU (each run holds at least one; several one-GPU
    runs share a multi-GPU machine), one on a machine without GPUs (runs would share its cores)."""
    configured = os.environ.get("LAB_MAX_CONCURRENT_RUNS")
    return max(1, int(configured) if configured else gpu_count)


def from_row(row: dict[str, Any]) -> Run:
    return Run(**{**row, "run_dir": Path(row["run_dir"]), "config": json.loads(row["config"])})


def get_run(run_id: str, home: Home | None = None) -> Run:
    if not (run_id or "").strip():  # '' is part of every id: it would pick the only run there is
        raise LabError("Give a run id (python -m lab runs list shows them).")
    rows = Store(home or lab_home()).query("SELECT * FROM runs WHERE id = ?", (run_id,))
    if not rows:  # a unique part of an id: instr, as LIKE would read '%' and '_' in it as wildcards
        matches = Store(home or lab_home()).query("SELECT * FROM runs WHERE instr(id, ?) > 0", (run_id,))
        if len(matches) == 1:
            return from_row(matches[0])
        raise LabError(f"No run '{run_id}'" + (f" (it matches {len(matches)} runs)" if matches else "") + ".")
    return from_row(rows[0])


def list_runs(home: Home | None = None, *, status: str | None = None) -> list[Run]:
    """Newest first."""
    store = Store(home or lab_home())
    if status:
        rows = store.query("SELECT * FROM runs WHERE status = ? ORDER BY created_at DESC, rowid DESC", (status,))
    else:
        rows = store.query("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC")
    return [from_row(r) for r in rows]


def update(run_id: str, home: Home | None = None, **fields: Any) -> None:
    assignments = ", ".join(f"{k} = ?" for k in fields)
    with Store(home or lab_home()).write() as conn:
        conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))


def create_run(cfg: TrainConfig, *, home: Home | None = None, start: bool = True,
               cluster: bool = False) -> tuple[Run, list[str]]:
    """Validate, write the run directory and queue it; returns the run and the config's warnings. ``cluster``:
    for the GPUs of a cluster's machines, not this one's."""
    home = home or lab_home()
    created = time.time()  # the whole wait counts from here (lab.train.phases)
    from lab.space import training_off

    off = training_off()  # LAB_NO_TRAINING: e.g. a Space on a CPU, which says why
    if off:
        raise LabError(off)
    from lab.train.loading import model_params

    cuda = True if cluster else None
    cfg.validate(cuda=cuda)  # impossible settings fail before the model is read
    if not cluster:
        from lab.train import warm

        warm.precompute(home, asdict(cfg))  # the checks' model shape and precheck, without importing torch here
    warnings = cfg.validate(cuda=cuda, params=model_params(cfg.model, home))  # advice for the model's size
    gpu_count = int(cfg.gpus) if cluster else len(distributed.visible_gpus())  # a cluster's: gpus per machine
    if not cluster:
        from lab.train.loading import model_type, resolve_model_path
        from lab.train.speed import plan

        resolve_model_path(cfg.model, home)  # a missing run or a path that holds no model fails now, not at launch
        distributed.check_fits(cfg, gpu_count)
        plan(cfg, cuda=gpu_count > 0, model_type=model_type(cfg.model, home))  # impossible speed settings fail now
    from lab.train.datasets import resolve_version
    from lab.train.methods import check_data
    from lab.train.viability import check_trains

    version = resolve_version(cfg.dataset, home)  # fails before launch if the dataset is missing
    check_data(cfg, version, home)
    # A run that would take no step at a learning rate above 0 is refused with settings that train.
    check_trains(dataclasses.replace(cfg, dataset=version.ref), version.rows[cfg.train_split],
                 distributed.processes(cfg, gpu_count))
    asked, cfg.dataset = cfg.dataset, version.ref  # pinned: a version saved under the name later is another dataset
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{cfg.method}-{secrets.token_hex(2)}"
    cfg.name = cfg.name or f"{cfg.method}-{Path(cfg.model).name}-{run_id[9:15]}"
    run_dir = home.runs / run_id
    run_dir.mkdir(parents=True)
    phases.begin(run_dir, at=created)
    (run_dir / "config.yaml").write_text(f"# python -m lab train {run_dir / 'config.yaml'}\n"
                                         f"# dataset {asked!r} resolved to {version.ref} when queued\n" + to_yaml(cfg))
    with Store(home).write() as conn:
        conn.execute("INSERT INTO runs (id, name, method, model, dataset, status, run_dir, config, created_at) "
                     "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                     (run_id, cfg.name, cfg.method, cfg.model, version.ref, str(run_dir), dumps(asdict(cfg)), now()))
    if start:
        dispatch(home)
    return get_run(run_id, home), warnings


class Busy(Exception):
    """Another process holds the dispatch lock (``dispatch(..., wait=False)``)."""


@contextmanager
def dispatch_lock(home: Home, *, wait: bool = True) -> Iterator[None]:
    with open(home.runs / ".dispatch.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy from None
        yield


def dispatch(home: Home | None = None, *, wait: bool = True) -> list[str]:
    """Start queued runs, oldest first, while the GPUs each needs are free (and fewer than ``max_concurrent`` run).
    First come, first served: a run waiting for GPUs holds back the runs queued after it, so a run over all the
    GPUs is not starved by one-GPU runs slipping past it. ``wait=False``: raise Busy rather than wait for another
    process's dispatch (the warm worker, which that dispatch may be asking for a run)."""
    home = home or lab_home()
    started = []
    with dispatch_lock(home, wait=wait):
        reconcile(home)
        # Oldest first; a run prepared for a cluster is left to its scheduler.
        queued = [r for r in reversed(list_runs(home, status="queued")) if not launch_info(r.run_dir).get("external")]
        if not queued:
            return started  # the usual case of a housekeeping tick: no nvidia-smi call
        gpus = [g.index for g in distributed.visible_gpus()]
        running = [r for r in list_runs(home, status="running") if not launch_info(r.run_dir).get("external")]
        held = [g for r in running for g in launch_info(r.run_dir).get("gpus", [])]
        for run in queued:
            if len(running) + len(started) >= max_concurrent(len(gpus)):
                break
            try:
                plan = distributed.plan_for(run.train_config, gpus, held)
            except LabError as err:  # the machine changed since the run was queued
                update(run.id, home, status="failed", finished_at=now(), error=str(err))
                continue
            if plan is None:
                break
            launch(run, home, plan)
            held += plan.gpus
            started.append(run.id)
    return started


def launch_info(run_dir: Path) -> dict[str, Any]:
    """``launch.json``: processes, the GPUs held, the host; {} for a run not launched yet."""
    path = Path(run_dir) / LAUNCH_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def worker_env(run: Run, home: Home, plan: distributed.Plan) -> dict[str, str]:
    """What the runner adds to its own environment for the run's processes (written to launch.sh: no secrets)."""
    env = {**home.kernel_cache_env(), "LAB_HOME": str(home.root), "PYTHONUNBUFFERED": "1",
           "WANDB_DIR": str(run.run_dir),
           "WANDB_PROJECT": run.config.get("wandb_project", "lab"), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "LAB_RUN_ID": run.id,  # marks every process of the run, whatever session it is in
           # Pinned to its GPUs (none on the CPU: a gpus-0 run on a GPU machine must not touch them).
           "CUDA_VISIBLE_DEVICES": ",".join(map(str, plan.gpus))}
    if not os.environ.get("WANDB_API_KEY"):
        env["WANDB_MODE"] = "offline"  # kept in the run dir; `wandb sync` uploads it later
    if not os.environ.get("PYTORCH_CUDA_ALLOC_CONF"):
        # Growable segments instead of fixed blocks: long and variable-length batches otherwise leave gigabytes
        # reserved but unusable between differently sized tensors, and a run under gpu_memory_gib hits the cap.
        env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    return env


def accelerate_command(run_dir: Path, extra: list[str] | tuple[str, ...] = (), *, alone: bool = False) -> list[str]:
    """The command that runs the run's processes: ``accelerate launch`` with the run's config file (``extra``: flags
    over it, as a cluster job adds), or, ``alone`` (one process on this machine), the worker itself: accelerate's
    launcher adds nothing to one process that the worker's TrainingArguments do not set, and costs a Python start
    and a torch import (about 2 s) of the whole wait."""
    if alone and not extra:
        return [sys.executable, "-m", "lab.train.worker", str(run_dir)]
    return [sys.executable, "-m", LAUNCHER, "--config_file", str(run_dir / "accelerate.yaml"),
            *extra, "-m", "lab.train.worker", str(run_dir)]


def alone(info: dict[str, Any]) -> bool:
    """Whether a launch (``launch.json``) is one process on one machine, started without accelerate's launcher."""
    return info.get("processes") == 1 and info.get("machines", 1) == 1 and not info.get("external")


def write_launch_files(run: Run, plan: distributed.Plan, env: dict[str, str], *, machines: int = 1,
                       external: bool = False) -> list[str]:
    """accelerate.yaml, launch.sh (the exact command, to run again by hand) and launch.json; returns the command."""
    cfg = run.train_config
    layer_cls = None
    if cfg.distributed == "fsdp" and not plan.on_cpu:
        layer_cls = distributed.decoder_layer_class(cfg.model, lab_home(env["LAB_HOME"]))
    config = distributed.accelerate_config(cfg, plan.processes * machines, on_cpu=plan.on_cpu, layer_cls=layer_cls,
                                           machines=machines)
    where = f"{plan.describe()} on each of {machines} machines" if machines > 1 else plan.describe()
    header = (f"accelerate config of run {run.id}: {where}, {cfg.distributed} (gpus {cfg.gpus}). Written by the "
              "lab from\nconfig.yaml, which also sets the precision (TrainingArguments); the command is in launch.sh.")
    (run.run_dir / "accelerate.yaml").write_text(distributed.to_yaml(config, header))
    info = {"processes": plan.processes * machines, "gpus": list(plan.gpus), "machines": machines,
            "external": external, "host": None if external else socket.gethostname()}
    command = accelerate_command(run.run_dir, alone=alone(info))
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    (run.run_dir / "launch.sh").write_text(
        "#!/bin/sh\n# The command that trains this run (the lab runs it under python -m lab.train.runner supervise, "
        "which records the outcome).\n"
        f"cd {shlex.quote(str(ROOT))}\nexport {exports}\nexec {shlex.join(command)}\n")
    (run.run_dir / LAUNCH_FILE).write_text(json.dumps({**info, "command": command, "env": env}, indent=1))
    return command


def launch(run: Run, home: Home, plan: distributed.Plan) -> None:
    """The run's processes in a session of their own, output to log.txt: a one-process run forked from the warm
    worker (``lab.train.warm``: its imports already done) when one is up, else a supervisor over the worker or
    accelerate's launcher."""
    env = worker_env(run, home, plan)
    command = write_launch_files(run, plan, env)
    phases.mark(run.run_dir, "queue")
    shutil.rmtree(run.run_dir / distributed.ERRORS_DIR, ignore_errors=True)  # a resumed run's old failures
    with open(run.run_dir / "log.txt", "a") as log:
        log.write(f"[lab] {now()} starting on {plan.describe()}: {shlex.join(command)}\n")
    pid, why_cold, info = None, "", launch_info(run.run_dir)
    if alone(info):
        from lab.train import warm

        pid, why_cold = warm.request_run(home, run.run_dir, {**os.environ, **env})
    if pid is not None:
        info["warm"] = {"pid": pid, "started": started(pid)}  # marks the run's process (its environ is the server's)
        (run.run_dir / LAUNCH_FILE).write_text(json.dumps(info, indent=1))
    else:
        with open(run.run_dir / "log.txt", "a") as log:
            if why_cold:
                log.write(f"[lab] not started by the warm worker: {why_cold}\n")
            log.flush()
            process = subprocess.Popen([sys.executable, "-m", "lab.train.runner", "supervise", str(run.run_dir)],
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **env}, cwd=str(ROOT), start_new_session=True)
        _children[process.pid] = process
        pid = process.pid
    update(run.id, home, status="running", pid=pid, started_at=run.started_at or now(), error=None,
           finished_at=None)


def held_gpus(home: Home | None = None) -> dict[int, str]:
    """GPU index → id of the running run that holds it."""
    return {gpu: run.id for run in list_runs(home or lab_home(), status="running")
            for gpu in launch_info(run.run_dir).get("gpus", [])}


def processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every live process, our own finished children reaped first."""
    for child in list(_children.values()):
        child.poll()
    return live_processes()


def run_processes(run: Run) -> list[int]:
    """The run's live processes: its supervisor's (or warm-forked worker's) process group, and every process
    started with the run's LAB_RUN_ID in its environment (torchrun gives each rank a session of its own)."""
    return [pid for pid, _, group in processes() if group == run.pid or marked(pid, run.id)]


def warm_worker(run: Run) -> int | None:
    """The pid of the run's worker forked from the warm worker, while that very process lives (a fork's
    environment is its server's, so LAB_RUN_ID cannot mark it: its pid and start time do)."""
    forked = launch_info(run.run_dir).get("warm")
    if forked and forked.get("started") is not None and started(forked["pid"]) == forked["started"]:
        return int(forked["pid"])
    return None


def marked(pid: int, run_id: str) -> bool:
    """Whether the process was started with the run's LAB_RUN_ID (a pid of the store may since name another)."""
    try:
        environ = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"LAB_RUN_ID={run_id}".encode() in environ.split(b"\0")


def is_launcher(pid: int) -> bool:
    """Whether the process is accelerate's launcher (its module on the command line)."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return LAUNCHER.encode() in argv


def stop_targets(run: Run) -> list[int]:
    """Where a cancel's SIGTERM goes: to the supervisor, which passes it to every rank; with the supervisor gone
    (killed on its own, its ranks training on as orphans) to the ranks themselves, so that they still save a
    checkpoint and record the cancel. Not to accelerate's launcher while it has ranks: on SIGTERM it kills them
    5 s later, too soon for a checkpoint."""
    found = set(run_processes(run))
    if run.pid in found and (marked(run.pid, run.id) or run.pid == warm_worker(run)):
        return [run.pid]
    launchers = {pid for pid in found if is_launcher(pid)}
    parents = {pid: parent for pid, parent, _ in processes()}
    # A rank's parent is the launcher, or gone (the launcher killed too); a rank's own children (data loaders,
    # compile workers) are left to it.
    ranks = [pid for pid in found - launchers if parents.get(pid) in launchers or parents.get(pid) not in found]
    return sorted(ranks) or sorted(launchers)


def children(pid: int) -> list[int]:
    return [child for child, parent, _ in processes() if parent == pid]


def reconcile(home: Home | None = None) -> list[str]:
    """Mark ``running`` runs whose processes are gone as failed, with the first failing rank's message, or the
    log's last line."""
    home = home or lab_home()
    failed = []
    for run in list_runs(home, status="running"):
        info = launch_info(run.run_dir)
        if info.get("host") not in (None, socket.gethostname()):
            continue  # supervised on another machine (a cluster job)
        if run_processes(run):
            continue
        fresh = get_run(run.id, home)  # the worker may have finished between the two reads
        if fresh.status != "running":
            continue
        message = distributed.failure_message(distributed.rank_errors(run.run_dir), info.get("processes", 1))
        killed = "" if last_log_line(run.run_dir) else " (killed?)"
        update(run.id, home, status="failed", finished_at=now(),
               error=message or f"The worker process (pid {run.pid}) died without reporting{killed}; "
                                f"{where_it_stopped(run.run_dir)}")
        failed.append(run.id)
    return failed


def last_log_line(run_dir: Path) -> str:
    lines = tail_log_lines(run_dir, 5)
    return lines[-1].strip() if lines else ""


def where_it_stopped(run_dir: Path) -> str:
    """What a run that died without a word left, for its message: the last step it logged, the log's last line
    unless that is the trainer's dict of numbers (the step says it in words), and what Resume continues from."""
    rows = metrics_in(run_dir)
    parts = [f"it had logged step {rows[-1]['step']} of {rows[-1].get('max_steps') or '?'}"] if rows else []
    last = last_log_line(run_dir)
    if last and not (last.startswith("{") and last.endswith("}")):
        parts.append(f"last log line: {last}")
    checkpoint = latest_checkpoint(run_dir)
    parts.append(f"its step-{checkpoint.name.split('-')[1]} checkpoint is kept: Resume run continues from there"
                 if checkpoint else "it saved no checkpoint: start it again")
    return "; ".join(parts) + "."


def tail_log_lines(run_dir: Path, n: int) -> list[str]:
    path = run_dir / "log.txt"
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-n:]


def tail_log(run_id: str, n: int = 100, home: Home | None = None) -> str:
    return "\n".join(tail_log_lines(get_run(run_id, home).run_dir, n))


def read_metrics(run_id: str, home: Home | None = None) -> list[dict[str, Any]]:
    """Every row the run logged, in order: a resumed run's steps after its checkpoint appear twice (charts keep the
    later, ``lab.ui.plots.series``)."""
    return metrics_in(get_run(run_id, home).run_dir)


def metrics_in(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows


def headline(run: Run) -> str:
    """A succeeded run's result as its objective judges it (``Objective.headline``: the first of its numbers the run
    logged), in words: "final loss 0.4210", "held-out accuracy 83%", "mean total reward at the end +2.410"; '' for
    a run that has not succeeded or logged none."""
    from lab.train.methods import objective

    if run.status != "succeeded":
        return ""
    for wanted in objective(run.train_config.objective).headline:
        value = run.final_loss if wanted.metric == "loss" else last_logged(run.run_dir, wanted.metric)
        if value is not None:
            return f"{wanted.words} {value:{wanted.spec}}"
    return ""


def last_logged(run_dir: Path, metric: str) -> float | None:
    """The last value of ``metric`` in a run's metrics, read once per version of the file (the runs table asks every
    few seconds, and a finished run's file no longer changes)."""
    path = run_dir / "metrics.jsonl"
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _last_logged(run_dir, metric, stamp)


@functools.lru_cache(maxsize=512)
def _last_logged(run_dir: Path, metric: str, stamp: int) -> float | None:  # stamp: the file's version, a key only
    return next((row[metric] for row in reversed(metrics_in(run_dir)) if metric in row), None)


def cancel(run_id: str, home: Home | None = None, *, grace_s: float = CANCEL_GRACE_S, wait: bool = False) -> Run:
    """Queued: cancelled at once. Running: SIGTERM (the worker saves a checkpoint and stops), SIGKILL after
    ``grace_s`` if it is still there."""
    home = home or lab_home()
    run = get_run(run_id, home)
    if run.status == "queued":
        update(run.id, home, status="cancelled", finished_at=now(), error="Cancelled before it started.")
        return get_run(run.id, home)
    if run.status != "running":
        raise LabError(f"Run {run.id} is {run.status}; only queued or running runs can be cancelled.")
    host = launch_info(run.run_dir).get("host")
    if host not in (None, socket.gethostname()):
        raise LabError(f"Run {run.id} runs on {host}, under a cluster job: cancel the job there (scancel for "
                       "SLURM); its ranks then save a checkpoint and stop.")
    signal_all(stop_targets(run), signal.SIGTERM)
    watcher = threading.Thread(target=_finish_cancel, args=(run, home, grace_s), daemon=True)
    watcher.start()
    if wait:
        watcher.join()
    return get_run(run.id, home)


def _finish_cancel(run: Run, home: Home, grace_s: float) -> None:
    deadline = time.time() + grace_s
    while time.time() < deadline and run_processes(run):
        time.sleep(0.2)
    signal_all(run_processes(run), signal.SIGKILL)
    if get_run(run.id, home).status == "running":
        update(run.id, home, status="cancelled", finished_at=now(),
               error=f"Cancelled; the worker did not stop within {grace_s:.0f} s and was killed.")
    dispatch(home)


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def resume(run_id: str, home: Home | None = None) -> Run:
    """Queue a failed or cancelled run again, continuing from its last checkpoint."""
    home = home or lab_home()
    run = get_run(run_id, home)
    if run.status not in ("failed", "cancelled"):
        raise LabError(f"Run {run.id} is {run.status}; only failed or cancelled runs can be resumed.")
    checkpoint = latest_checkpoint(run.run_dir)
    if checkpoint is None:
        raise LabError(f"Run {run.id} saved no checkpoint yet, so there is nothing to resume from: start it again.")
    update(run.id, home, status="queued", resume_from=str(checkpoint), error=None, finished_at=None)
    phases.begin(run.run_dir)
    dispatch(home)
    return get_run(run.id, home)


def wait(run_id: str, home: Home | None = None, *, timeout_s: float | None = None, poll_s: float = 0.25,
         on_progress=None) -> Run:
    """Block until the run finishes (dispatching, which reconciles: a dead worker ends the wait too, and a queued
    run starts when the run before it died with no one left to start the next)."""
    home = home or lab_home()
    deadline = time.time() + timeout_s if timeout_s else None
    seen = 0
    while True:
        run = get_run(run_id, home)
        if run.status in FINISHED:
            return run
        dispatch(home)
        if on_progress:
            metrics = read_metrics(run_id, home)
            for row in metrics[seen:]:
                on_progress(row)
            seen = len(metrics)
        if deadline and time.time() > deadline:
            raise LabError(f"Run {run_id} still {run.status} after {timeout_s:.0f} s.")
        time.sleep(poll_s)


def record_outcome(run_dir: Path, home: Home, returncode: int, *, cancelling: bool) -> None:
    """After the launcher exits: the outcome the ranks could not record (one was killed, the launcher died), or
    the failure message again now that every rank has written its own (the first failing rank wins)."""
    run = get_run(run_dir.name, home)
    records = distributed.rank_errors(run_dir)
    message = distributed.failure_message(records, launch_info(run_dir).get("processes", 1))
    # A SIGTERM is a cancel (or scancel), unless a rank failed first and the job's launcher stopped the rest.
    if run.status == "running" and cancelling and not any(not r["secondary"] for r in records):
        update(run.id, home, status="cancelled", finished_at=now(),
               error="Cancelled before training had started; nothing to resume from, start it again.")
    elif run.status == "running":
        who = "The run's worker" if launch_info(run_dir).get("warm") else "The launcher"
        how = (f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 and -returncode in
               signal.valid_signals() else f"exited with code {returncode}")
        update(run.id, home, status="failed", finished_at=now(),
               error=message or f"{who} {how} and no process reported an error; {where_it_stopped(run_dir)}")
    elif run.status == "failed" and message and message != run.error:
        update(run.id, home, error=message)


def supervise(run_dir: Path, extra: list[str]) -> int:
    """Run a launched run's processes to their end: accelerate's launcher (``extra``: its flags for a cluster job), or
    the worker of a one-process run.
    Only the supervisor of machine 0 writes the store."""
    run_dir = run_dir.resolve()
    home = lab_home()
    lead = machine_rank(extra) == 0
    info = launch_info(run_dir)
    if info.get("external") and lead:
        info["host"] = socket.gethostname()
        (run_dir / LAUNCH_FILE).write_text(json.dumps(info, indent=1))
        update(run_dir.name, home, status="running", pid=os.getpid(), started_at=now())
    launcher: subprocess.Popen | None = None
    cancelling = False

    def forward(signum, frame) -> None:
        nonlocal cancelling
        cancelling = True
        # To the ranks, which save a checkpoint and stop together; to the launcher while it has none yet.
        if launcher:
            signal_all([launcher.pid] if solo else children(launcher.pid) or [launcher.pid], signal.SIGTERM)

    solo = alone(info) and not extra  # the worker itself, no launcher between
    signal.signal(signal.SIGTERM, forward)
    launcher = subprocess.Popen(accelerate_command(run_dir, extra, alone=solo), stdin=subprocess.DEVNULL,
                                env={**os.environ, **info.get("env", {})})
    returncode = launcher.wait()
    if lead:
        record_outcome(run_dir, home, returncode, cancelling=cancelling)
        if not info.get("external"):
            dispatch(home)  # now that this run's GPUs are free
    return returncode


def machine_rank(extra: list[str]) -> int:
    for i, flag in enumerate(extra):
        if flag.startswith("--machine_rank"):
            return int(flag.split("=", 1)[1] if "=" in flag else extra[i + 1])
    return 0


def prepare(cfg: TrainConfig, machines: int, home: Home | None = None) -> Run:
    """A run for ``machines`` machines of ``cfg.gpus`` GPUs each, queued for a cluster's scheduler (the local
    queue leaves it alone); its job runs ``supervise`` on every machine (docs/multi-gpu.md)."""
    home = home or lab_home()
    if not cfg.gpus.isdigit() or int(cfg.gpus) < 1:
        raise LabError(f"gpus must be the number of GPUs on each machine for a cluster run (got {cfg.gpus!r}).")
    if machines < 1:
        raise LabError(f"machines must be at least 1 (got {machines}).")
    with dispatch_lock(home):  # marked external before any dispatch can see it queued
        run, _ = create_run(cfg, home=home, start=False, cluster=True)
        plan = distributed.Plan(int(cfg.gpus), tuple(range(int(cfg.gpus))))
        env = {k: v for k, v in worker_env(run, home, plan).items() if k != "CUDA_VISIBLE_DEVICES"}  # the job's
        write_launch_files(run, plan, env, machines=machines, external=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.train.runner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    watch = sub.add_parser("supervise", help="run a launched run's accelerate launcher and record its outcome")
    watch.add_argument("run_dir", type=Path)
    make = sub.add_parser("prepare", help="write a run for several machines and print its directory")
    make.add_argument("recipe")
    make.add_argument("--machines", type=int, required=True, help="how many machines the job spans")
    make.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    args, extra = parser.parse_known_args(argv)
    if args.command == "supervise":
        return supervise(args.run_dir, extra)
    if extra:
        parser.error(f"unknown arguments: {' '.join(extra)}")
    from lab.config import load_yaml

    try:
        run = prepare(load_yaml(args.recipe, overrides=args.set), args.machines)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(run.run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
