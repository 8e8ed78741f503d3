"""The judge's pre-labeling process: ``python -m lab.label.prelabel_worker CAMPAIGN_ID``.

Started by ``lab.label.prelabel.start``, which names the judge in the state file this process then keeps up to
date (``running`` with done/total, then ``done`` or ``failed`` with the error). Each ready, non-gold pair not yet
labelled by this judge is judged in both orders, a batch at a time, and each batch's labels are stored at once:
restartable, and verdicts the judge gave before come from Eval's verdict cache. Output goes to
LAB_HOME/campaigns/<id>-judge.log.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from lab.home import Home, lab_home
from lab.label import prelabel
from lab.store import Store

BATCH = 16  # pairs per batch: 32 verdicts, then the labels are stored and the progress written


def main(campaign_id: str) -> int:
    home = lab_home()
    judge_name = prelabel.state(campaign_id, home=home)["judge"]
    progress: dict[str, Any] = {"status": prelabel.RUNNING, "judge": judge_name, "pid": os.getpid(), "done": 0,
                                "total": 0, "unparsed": 0, "error": None}
    prelabel.write_state(campaign_id, home, **progress)
    try:
        judge = prelabel.open_judge(judge_name, home)
        todo = pending(campaign_id, judge.name, home)
        progress["total"] = len(todo)
        prelabel.write_state(campaign_id, home, **progress)
        print(f"[lab] judge {judge.name}: {len(todo)} pairs to pre-label", flush=True)
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            progress["unparsed"] += judge_batch(campaign_id, judge, batch, home)
            progress["done"] += len(batch)
            prelabel.write_state(campaign_id, home, **progress)
            print(f"[lab] judge {judge.name}: {progress['done']}/{len(todo)}", flush=True)
        prelabel.write_state(campaign_id, home, **{**progress, "status": prelabel.DONE})
        print("[lab] pre-labeling done", flush=True)
        return 0
    except BaseException as err:  # the state must not stay 'running' with no process behind it
        traceback.print_exc()
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        prelabel.write_state(campaign_id, home, **{**progress, "status": prelabel.FAILED,
                                                   "error": f"Pre-labeling failed: {message} (labels so far are kept; "
                                                   "start it again to finish)."})
        return 1


def pending(campaign_id: str, judge: str, home: Home) -> list[dict[str, Any]]:
    """Ready pairs of two answers, gold left out, that this judge has not labelled."""
    return Store(home).query(
        "SELECT p.id, p.prompt_idx, p.source_1, p.source_2 FROM pairs p WHERE p.campaign_id = ? AND p.ready = 1 "
        "AND p.gold IS NULL AND p.source_1 != p.source_2 AND NOT EXISTS (SELECT 1 FROM judge_labels j WHERE "
        "j.pair_id = p.id AND j.judge = ?) ORDER BY p.id", (campaign_id, judge))


def judge_batch(campaign_id: str, judge: Any, batch: list[dict[str, Any]], home: Home) -> int:
    """Judge each pair with source_1 shown first, then source_2 first, and store the labels; returns how many
    pairs got no verdict in an order (an endpoint's reply without [[A]]/[[B]]/[[C]]), which stay unlabelled."""
    from lab.eval.judge import ask, outcome
    from lab.eval.judge_prompts import DEFAULTS, fill, question_text
    from lab.eval.judges import VerdictCache
    from lab.label.results import prompt_and_texts
    from lab.train.runner import now

    store = Store(home)
    first, swapped = [], []
    for pair in batch:
        prompt, texts = prompt_and_texts(store, campaign_id, pair["prompt_idx"])
        question, one, two = question_text(prompt), texts[pair["source_1"]], texts[pair["source_2"]]
        first.append(fill(DEFAULTS["pairwise"], question=question, answer_a=one, answer_b=two))
        swapped.append(fill(DEFAULTS["pairwise"], question=question, answer_a=two, answer_b=one))
    verdicts, _ = ask(judge, "pairwise", first + swapped, VerdictCache(home))
    rows, unparsed = [], 0
    for i, pair in enumerate(batch):
        # Both outcomes say 'a' for source_1 (outcome() undoes the swap).
        shown_first = outcome(verdicts[i]["verdict"], a_first=True)
        shown_second = outcome(verdicts[len(batch) + i]["verdict"], a_first=False)
        if None in (shown_first, shown_second):
            unparsed += 1
            continue
        consistent = shown_first == shown_second
        side = shown_first if consistent else "tie"
        label = {"a": pair["source_1"], "b": pair["source_2"], "tie": "tie"}[side]
        rows.append((pair["id"], campaign_id, judge.name, label, int(consistent), now()))
    with store.write() as conn:
        conn.executemany("INSERT OR REPLACE INTO judge_labels (pair_id, campaign_id, judge, outcome, consistent, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
    return unparsed


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
