"""Evaluations as stored background jobs: one row per (model, kind), run by ``lab.eval.worker`` in its own
process with progress (done/total) in the store, results kept as JSON beside the config that produced them.
What each kind is, checks and runs lives in ``lab.eval.kinds``."""

from __future__ import annotations

import csv
import io
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.config import from_dict
from lab.errors import LabError
from lab.eval.kinds import KINDS, get_kind
from lab.home import Home, lab_home
from lab.processes import alive, launch_worker
from lab.store import Store, dumps


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

    @property
    def headline(self) -> dict[str, Any]:
        """The kind's headline numbers (empty until the job has results)."""
        return get_kind(self.kind).headline(self.results) if self.results else {}

    @property
    def headline_text(self) -> str:
        """The headline for people, or why there is none yet."""
        if self.results:
            return get_kind(self.kind).text(self.results)
        return self.error or ""

    @property
    def models(self) -> list[str]:
        """The model evaluated, and model B of a pairwise judge."""
        return [self.model] + ([self.config["model_b"]] if self.config.get("model_b") else [])

    @property
    def subject(self) -> str:
        """What was evaluated, in a few words: the model, or 'A vs B' for a pairwise judge."""
        return self.named_subject({})

    def named_subject(self, names: dict[str, str]) -> str:
        """``subject`` with each model as ``names`` calls it (``model_names``); a model not in it as it is."""
        return " vs ".join(names.get(m, m) for m in self.models)


def model_names(jobs: list[EvalJob], home: Home | None = None) -> dict[str, str]:
    """Every model the jobs evaluated, as people know it: a run's name for ``run:<id>`` (``lab.catalog``)."""
    from lab.catalog import display_names

    return display_names([m for job in jobs for m in job.models], home)


def from_row(row: dict[str, Any]) -> EvalJob:
    return EvalJob(**{**row, "config": json.loads(row["config"]),
                      "results": json.loads(row["results"]) if row["results"] else None})


def create_eval(kind: str, model: str, dataset: str = "", *, home: Home | None = None, start: bool = True,
                **settings: Any) -> EvalJob:
    """Check and store one job of ``kind`` (settings: the fields of its config dataclass, defaults for the
    rest), then start its worker process."""
    from lab.train.datasets import resolve_version
    from lab.train.loading import resolve_model_path
    from lab.train.runner import now

    home = home or lab_home()
    spec = get_kind(kind)
    cfg = from_dict(spec.config, settings, where=f"{kind} evaluation")
    cfg.validate()
    resolve_model_path(model, home)  # a bad model or dataset fails now, not in the background
    if not spec.data:
        dataset = resolve_version(dataset, home).ref
    cfg = spec.prepare(cfg, model, home)
    if spec.data:
        dataset = spec.data(cfg)
    job_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    with Store(home).write() as conn:
        conn.execute("INSERT INTO evals (id, kind, model, dataset, config, status, created_at) VALUES "
                     "(?, ?, ?, ?, ?, 'queued', ?)", (job_id, kind, model, dataset, dumps(asdict(cfg)), now()))
    if start:
        pid = launch_worker("lab.eval.worker", job_id, log_path(job_id, home), home)
        with Store(home).write() as conn:  # only a job still queued: a quick worker may have finished already
            conn.execute("UPDATE evals SET status = 'running', pid = ? WHERE id = ? AND status = 'queued'",
                         (pid, job_id))
    return get_eval(job_id, home)


def log_path(job_id: str, home: Home) -> Path:
    return home.root / "evals" / f"{job_id}.log"


def update(job_id: str, home: Home, **fields: Any) -> None:
    if "results" in fields and fields["results"] is not None:
        fields["results"] = dumps(fields["results"])
    assignments = ", ".join(f"{k} = ?" for k in fields)
    with Store(home).write() as conn:
        conn.execute(f"UPDATE evals SET {assignments} WHERE id = ?", (*fields.values(), job_id))


def get_eval(job_id: str, home: Home | None = None) -> EvalJob:
    if not (job_id or "").strip():  # '' is part of every id: it would pick the only evaluation there is
        raise LabError("Give an evaluation id (python -m lab eval list shows them).")
    # A unique part of an id: instr, as LIKE would read '%' and '_' in it as wildcards.
    rows = Store(home or lab_home()).query("SELECT * FROM evals WHERE id = ? OR instr(id, ?) > 0", (job_id, job_id))
    if len(rows) != 1:
        raise LabError(f"No evaluation '{job_id}'" + (" (several match)." if rows else "."))
    return from_row(rows[0])


DIED = "The evaluation process died (see its log)."


def reconcile(home: Home) -> None:
    """A job still 'running' whose process is gone did not finish: mark it failed. The status is checked again
    in the same transaction as the update, since the worker writes its outcome just before it exits, after the
    list of running jobs may have been read."""
    store = Store(home)
    for row in store.query("SELECT id, pid FROM evals WHERE status = 'running'"):
        if row["pid"] and not alive(row["pid"]):
            with store.write() as conn:
                conn.execute("UPDATE evals SET status = 'failed', error = ? WHERE id = ? AND status = 'running'",
                             (died_message(row["id"], home), row["id"]))


def died_message(job_id: str, home: Home) -> str:
    """DIED with the last line its log holds, which often names the cause (a signal, an import error)."""
    try:
        lines = [line for line in log_path(job_id, home).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return DIED + (f" Its last line: {lines[-1].strip()[:300]}" if lines else "")


def list_evals(home: Home | None = None) -> list[EvalJob]:
    home = home or lab_home()
    reconcile(home)
    return [from_row(r) for r in Store(home).query("SELECT * FROM evals ORDER BY created_at DESC, id DESC")]


def states(home: Home | None = None) -> list[tuple[str, str, int]]:
    """(id, status, done) of every job: cheap to poll, unlike the jobs with their results."""
    home = home or lab_home()
    reconcile(home)
    return [(r["id"], r["status"], r["done"]) for r in
            Store(home).query("SELECT id, status, done FROM evals ORDER BY created_at DESC, id DESC")]


def wait(job_id: str, home: Home | None = None, timeout: float = 3600) -> EvalJob:
    import time

    home = home or lab_home()
    deadline = time.time() + timeout
    while (job := get_eval(job_id, home)).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
        reconcile(home)
    return job


BASE_COLUMNS = ["id", "kind", "model", "name", "model_b", "name_b", "dataset", "split", "status", "rows"]


def to_csv(jobs: list[EvalJob], home: Home | None = None) -> str:
    """One line per job: what was evaluated, each model by its id and its name (``model_names``: a run's name, as
    every screen shows it), and the headline numbers of its kind (a column per number, in the order the kinds are
    registered; harness tasks add a column per task and metric)."""
    names = model_names(jobs, home)
    columns: dict[str, None] = {}
    for kind in KINDS:
        for job in jobs:
            if job.kind == kind:
                columns.update(dict.fromkeys(job.headline))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*BASE_COLUMNS, *columns, "created_at"])
    for job in jobs:
        numbers = job.headline
        model_b = job.config.get("model_b", "")
        writer.writerow([job.id, job.kind, job.model, names[job.model], model_b, names.get(model_b, ""), job.dataset,
                         job.config.get("split", ""), job.status, (job.results or {}).get("rows"),
                         *(numbers.get(c) for c in columns), job.created_at])
    return out.getvalue()
