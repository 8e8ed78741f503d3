"""Evaluations as stored background jobs: one row per (model, metric), run by ``lab.eval.worker`` in its
own process with progress in the store, results kept as JSON beside the config that produced them."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.store import Store, dumps

KINDS = ("perplexity",)


@dataclass
class EvalJob:
    id: str
    kind: str
    model: str
    dataset: str
    config: dict[str, Any]
    status: str
    created_at: str
    finished_at: str | None = None
    pid: int | None = None
    done: int = 0
    total: int = 0
    results: dict[str, Any] | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def from_row(row: dict[str, Any]) -> EvalJob:
    return EvalJob(**{**row, "config": json.loads(row["config"]),
                      "results": json.loads(row["results"]) if row["results"] else None})


def create_eval(kind: str, model: str, dataset: str, *, split: str = "validation", max_rows: int = 200,
                max_length: int = 1024, home: Home | None = None, start: bool = True) -> EvalJob:
    from lab.train.datasets import resolve_version
    from lab.train.loading import resolve_model_path
    from lab.train.runner import now

    home = home or lab_home()
    if kind not in KINDS:
        raise LabError(f"Unknown evaluation '{kind}'; available: {', '.join(KINDS)}.")
    resolve_model_path(model, home)  # a bad model or dataset fails now, not in the background
    version = resolve_version(dataset, home)
    job_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    config = {"split": split, "max_rows": max_rows, "max_length": max_length}
    with Store(home).write() as conn:
        conn.execute("INSERT INTO evals (id, kind, model, dataset, config, status, created_at) VALUES "
                     "(?, ?, ?, ?, ?, 'queued', ?)", (job_id, kind, model, version.ref, dumps(config), now()))
    if start:
        log = home.root / "evals" / f"{job_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "lab.eval.worker", job_id], stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "LAB_HOME": str(home.root)},
                                       cwd=Path(__file__).resolve().parents[2])
        update(job_id, home, status="running", pid=process.pid)
    return get_eval(job_id, home)


def update(job_id: str, home: Home, **fields: Any) -> None:
    if "results" in fields and fields["results"] is not None:
        fields["results"] = dumps(fields["results"])
    assignments = ", ".join(f"{k} = ?" for k in fields)
    with Store(home).write() as conn:
        conn.execute(f"UPDATE evals SET {assignments} WHERE id = ?", (*fields.values(), job_id))


def get_eval(job_id: str, home: Home | None = None) -> EvalJob:
    rows = Store(home or lab_home()).query("SELECT * FROM evals WHERE id = ? OR id LIKE ?", (job_id, f"%{job_id}%"))
    if len(rows) != 1:
        raise LabError(f"No evaluation '{job_id}'" + (" (several match)." if rows else "."))
    return from_row(rows[0])


def list_evals(home: Home | None = None) -> list[EvalJob]:
    from lab.label.campaigns import alive

    home = home or lab_home()
    jobs = [from_row(r) for r in Store(home).query("SELECT * FROM evals ORDER BY created_at DESC, id DESC")]
    for job in jobs:  # a job whose process is gone did not finish
        if job.status == "running" and job.pid and not alive(job.pid):
            update(job.id, home, status="failed", error="The evaluation process died (see its log).")
            job.status, job.error = "failed", "The evaluation process died (see its log)."
    return jobs


def wait(job_id: str, home: Home | None = None, timeout: float = 3600) -> EvalJob:
    import time

    deadline = time.time() + timeout
    while (job := get_eval(job_id, home)).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
        list_evals(home)
    return job


def to_csv(jobs: list[EvalJob]) -> str:
    """One line per job: what was evaluated and its headline numbers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "kind", "model", "dataset", "split", "status", "loss", "perplexity", "rows", "tokens",
                     "created_at"])
    for job in jobs:
        r = job.results or {}
        writer.writerow([job.id, job.kind, job.model, job.dataset, job.config.get("split"), job.status, r.get("loss"),
                         r.get("perplexity"), r.get("rows"), r.get("tokens"), job.created_at])
    return out.getvalue()
