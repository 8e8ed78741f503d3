"""An evaluation job's process: ``python -m lab.eval.worker JOB_ID`` (started by ``lab.eval.jobs``); it runs
the job's kind (``lab.eval.kinds``) and stores the results, or the first line of the error."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

from lab.home import Home, lab_home

EVERY_S = 0.5  # progress writes at most this often (a harness may report thousands of requests)


def reporter(job_id: str, home: Home) -> Callable[[int, int], None]:
    from lab.eval import jobs

    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        if done >= total or time.monotonic() - last >= EVERY_S:
            last = time.monotonic()
            jobs.update(job_id, home, done=done, total=total)

    return report


def main(job_id: str) -> int:
    from lab.eval import jobs
    from lab.eval.kinds import get_kind
    from lab.train.runner import now

    home = lab_home()
    job = jobs.get_eval(job_id, home)
    try:
        results = get_kind(job.kind).run(job, home, reporter(job.id, home))
        jobs.update(job.id, home, status="succeeded", results=results, finished_at=now())
        return 0
    except BaseException as err:  # the job must not stay 'running' with no process behind it
        traceback.print_exc()
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        jobs.update(job.id, home, status="failed", error=text, finished_at=now())
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
