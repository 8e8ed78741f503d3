"""Runs as managed background processes: create (validated, queued), dispatch (start queued runs while
slots are free), cancel, resume, and reconcile (find workers that died). Runs in the app's and the
CLI's processes; the training itself happens in ``lab.train.worker``, launched with
``accelerate launch`` so the same path serves several GPUs later.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
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
from lab.store import Store, dumps

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
CANCEL_GRACE_S = 30.0
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


def max_concurrent() -> int:
    return max(1, int(os.environ.get("LAB_MAX_CONCURRENT_RUNS", "1")))


def from_row(row: dict[str, Any]) -> Run:
    return Run(**{**row, "run_dir": Path(row["run_dir"]), "config": json.loads(row["config"])})


def get_run(run_id: str, home: Home | None = None) -> Run:
    rows = Store(home or lab_home()).query("SELECT * FROM runs WHERE id = ?", (run_id,))
    if not rows:
        matches = Store(home or lab_home()).query("SELECT * FROM runs WHERE id LIKE ?", (f"%{run_id}%",))
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


def create_run(cfg: TrainConfig, *, home: Home | None = None, start: bool = True) -> tuple[Run, list[str]]:
    """Validate, write the run directory and queue it; returns the run and the config's warnings."""
    home = home or lab_home()
    warnings = cfg.validate()
    from lab.train.datasets import resolve_version

    version = resolve_version(cfg.dataset, home)  # fails before launch if the dataset is missing
    need = "preference" if cfg.is_dpo else "sft"
    if version.kind != need:
        raise LabError(f"Dataset {version.ref} holds {version.kind} data; a {cfg.method} run needs {need} data.")
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{cfg.method}-{secrets.token_hex(2)}"
    cfg.name = cfg.name or f"{cfg.method}-{Path(cfg.model).name}-{run_id[9:15]}"
    run_dir = home.runs / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"# python -m lab train {run_dir / 'config.yaml'}\n"
                                         f"# dataset resolved to {version.ref}\n" + to_yaml(cfg))
    with Store(home).write() as conn:
        conn.execute("INSERT INTO runs (id, name, method, model, dataset, status, run_dir, config, created_at) "
                     "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                     (run_id, cfg.name, cfg.method, cfg.model, version.ref, str(run_dir), dumps(asdict(cfg)), now()))
    if start:
        dispatch(home)
    return get_run(run_id, home), warnings


@contextmanager
def dispatch_lock(home: Home) -> Iterator[None]:
    with open(home.runs / ".dispatch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def dispatch(home: Home | None = None) -> list[str]:
    """Start queued runs, oldest first, while fewer than ``max_concurrent()`` are running."""
    home = home or lab_home()
    started = []
    with dispatch_lock(home):
        reconcile(home)
        running = len(list_runs(home, status="running"))
        for run in reversed(list_runs(home, status="queued")):
            if running >= max_concurrent():
                break
            launch(run, home)
            started.append(run.id)
            running += 1
    return started


def launch(run: Run, home: Home) -> None:
    """``accelerate launch -m lab.train.worker RUN_DIR`` in its own session, output to log.txt."""
    env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONUNBUFFERED": "1", "WANDB_DIR": str(run.run_dir),
           "WANDB_PROJECT": run.config.get("wandb_project", "lab"), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if not env.get("WANDB_API_KEY"):
        env["WANDB_MODE"] = "offline"  # kept in the run dir; `wandb sync` uploads it later
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lab.train.worker", str(run.run_dir)]
    with open(run.run_dir / "log.txt", "a") as log:
        log.write(f"[lab] {now()} starting: {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=str(Path(__file__).resolve().parents[2]), start_new_session=True)
    _children[process.pid] = process
    update(run.id, home, status="running", pid=process.pid, started_at=run.started_at or now(), error=None,
           finished_at=None)


def group_alive(pgid: int) -> bool:
    """Whether any process of the run's process group is alive (not a zombie)."""
    for child in list(_children.values()):
        child.poll()  # reap our own finished children
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def reconcile(home: Home | None = None) -> list[str]:
    """Mark ``running`` runs whose processes are gone as failed, with the reason and the log's last line."""
    home = home or lab_home()
    failed = []
    for run in list_runs(home, status="running"):
        if run.pid and group_alive(run.pid):
            continue
        fresh = get_run(run.id, home)  # the worker may have finished between the two reads
        if fresh.status != "running":
            continue
        last = last_log_line(run.run_dir)
        update(run.id, home, status="failed", finished_at=now(),
               error=f"The worker process (pid {run.pid}) died without reporting"
                     f"{' (killed?)' if not last else ''}; last log line: {last or '(none)'}")
        failed.append(run.id)
    return failed


def last_log_line(run_dir: Path) -> str:
    lines = tail_log_lines(run_dir, 5)
    return lines[-1].strip() if lines else ""


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
    path = get_run(run_id, home).run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows


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
    try:
        os.killpg(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    watcher = threading.Thread(target=_finish_cancel, args=(run, home, grace_s), daemon=True)
    watcher.start()
    if wait:
        watcher.join()
    return get_run(run.id, home)


def _finish_cancel(run: Run, home: Home, grace_s: float) -> None:
    deadline = time.time() + grace_s
    while time.time() < deadline and group_alive(run.pid):
        time.sleep(0.2)
    if group_alive(run.pid):
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
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
    dispatch(home)
    return get_run(run.id, home)


def wait(run_id: str, home: Home | None = None, *, timeout_s: float | None = None, poll_s: float = 1.0,
         on_progress=None) -> Run:
    """Block until the run finishes (reconciling, so a dead worker ends the wait too)."""
    home = home or lab_home()
    deadline = time.time() + timeout_s if timeout_s else None
    seen = 0
    while True:
        run = get_run(run_id, home)
        if run.status in FINISHED:
            return run
        if run.status == "running":
            reconcile(home)
        if on_progress:
            metrics = read_metrics(run_id, home)
            for row in metrics[seen:]:
                on_progress(row)
            seen = len(metrics)
        if deadline and time.time() > deadline:
            raise LabError(f"Run {run_id} still {run.status} after {timeout_s:.0f} s.")
        time.sleep(poll_s)
