"""Housekeeping: make the store say what is true and let the queue move on, whoever died.

A training run's supervisor starts the next queued run when its own ends, but a killed supervisor starts
nothing, and a worker that died marks nothing. ``tick`` settles runs, evaluations and labeling campaigns whose
processes are gone and starts queued runs whose GPUs are free: every CLI command runs it once before its own
work, and the web app every ``LAB_HOUSEKEEPING_S`` seconds in a thread (``keep_ticking``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

from lab.errors import LabError
from lab.home import Home, default_home
from lab.store import Store

INTERVAL_ENV = "LAB_HOUSEKEEPING_S"
INTERVAL_S = 5.0
# Whether anything is in flight, in one query: an idle home costs no more than this (no imports, no nvidia-smi).
IN_FLIGHT = ("SELECT 1 FROM runs WHERE status IN ('queued', 'running') "
             "UNION ALL SELECT 1 FROM evals WHERE status = 'running' "
             "UNION ALL SELECT 1 FROM campaigns WHERE status = 'generating' LIMIT 1")
TRANSIENT = (sqlite3.OperationalError, OSError, LabError)  # a busy store, a full disk: the next tick tries again

log = logging.getLogger(__name__)


def tick(home: Home | None = None) -> None:
    """Reconcile and dispatch once. Never raises: the caller's own work (a command, the web app) goes on, and a
    problem is logged."""
    try:
        home = home or default_home()
        if not (home.store_path.exists() and in_flight(home)):
            return
    except Exception as err:  # noqa: BLE001 - see report
        report("reading the store", err)
        return
    from lab.eval import jobs
    from lab.label import campaigns
    from lab.train import runner

    for step in (runner.dispatch, jobs.reconcile, campaigns.reconcile):
        try:
            step(home)
        except Exception as err:  # noqa: BLE001 - see report
            report(f"{step.__module__}.{step.__name__}", err)


def report(what: str, err: Exception) -> None:
    """Log a failed step: a transient problem in one line, anything else (a bug) with its traceback. Neither is
    raised: a command's own work, or the app's timer, must go on."""
    if isinstance(err, TRANSIENT):
        log.warning("housekeeping: %s failed: %s", what, err)
    else:
        log.error("housekeeping: %s failed", what, exc_info=err)


def in_flight(home: Home) -> bool:
    return bool(Store(home).query(IN_FLIGHT))


def interval_s() -> float:
    """LAB_HOUSEKEEPING_S, else INTERVAL_S."""
    configured = os.environ.get(INTERVAL_ENV)
    try:
        return float(configured) if configured else INTERVAL_S
    except ValueError:
        raise LabError(f"{INTERVAL_ENV} must be a number of seconds, not {configured!r}.") from None


def keep_ticking(home: Home, every_s: float | None = None) -> threading.Event:
    """``tick`` now and then every ``every_s`` seconds (default ``interval_s()``) in a daemon thread, until the
    returned event is set."""
    every = every_s if every_s is not None else interval_s()
    stop = threading.Event()

    def loop() -> None:
        while True:
            tick(home)
            if stop.wait(every):
                return

    threading.Thread(target=loop, name="lab-housekeeping", daemon=True).start()
    return stop
