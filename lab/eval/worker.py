"""An evaluation job's process: ``python -m lab.eval.worker JOB_ID`` (started by ``lab.eval.jobs``)."""

from __future__ import annotations

import sys
import traceback

from lab.home import lab_home


def main(job_id: str) -> int:
    from lab.eval import jobs
    from lab.eval.perplexity import evaluate
    from lab.train.runner import now

    home = lab_home()
    job = jobs.get_eval(job_id, home)
    try:
        results = evaluate(job.model, job.dataset, split=job.config["split"], max_rows=job.config["max_rows"],
                           max_length=job.config["max_length"], home=home,
                           progress=lambda done, total: jobs.update(job.id, home, done=done, total=total))
        jobs.update(job.id, home, status="succeeded", results=results, finished_at=now())
        return 0
    except BaseException as err:  # the job must not stay 'running' with no process behind it
        traceback.print_exc()
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        jobs.update(job.id, home, status="failed", error=text, finished_at=now())
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
