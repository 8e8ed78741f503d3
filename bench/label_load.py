"""Load test of the labeling page: many labelers voting at once through the real app over HTTP.

    python bench/label_load.py                                 # 50 labelers for 60 s
    python bench/label_load.py --labelers 10 --seconds 10 --out /tmp/load.json

A fresh LAB_HOME gets one account per labeler (so sign-in is on, as for a real team) and a campaign of
ready response pairs; the app (``app.py``) is started on a free port. Each labeler is a
HTTP session signed in at /label/ (``httpx``, posting to the same ``/gradio_api/run/<api_name>`` route the
browser uses for the labeling buttons), spread over worker processes (threads within each) so the clients'
own Python does not serialise on one GIL. (``gradio_client`` polls for results every 50 ms, which would
measure the client, not the app.) A labeler loops: vote on the pair shown (the vote's reply carries the
next pair), and the time from sending a vote to holding the next pair is recorded.

At the end the store is checked against what the clients saw: every vote a client got a new pair for is
stored once (zero lost), no labeler has two votes on one pair and no pair has more votes than wanted
(zero duplicated). Prints a table and, with --out, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSWORD = "load-test-password"


def prepare(home: Path, labelers: int, pairs: int, votes_per_pair: int) -> str:
    """Accounts and a campaign of ready pairs; returns the campaign id."""
    os.environ["LAB_HOME"] = str(home)
    from lab.config import CampaignConfig
    from lab.home import lab_home
    from lab.label.accounts import add_account
    from lab.label.campaigns import create_campaign

    lab = lab_home(home)
    add_account("admin", "admin", PASSWORD, home=lab)  # the first account is an admin
    for i in range(labelers):
        add_account(f"labeler{i:02d}", "labeler", PASSWORD, home=lab)
    rows = [{"prompt": f"Prompt {i}: explain item {i} briefly.", "base": f"Item {i} is a thing.",
             "tuned": f"Item {i} is a well-defined thing, explained briefly. Thank you!"} for i in range(pairs)]
    path = home / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    campaign = create_campaign(CampaignConfig(name="load", responses_file=str(path), votes_per_pair=votes_per_pair),
                               home=lab)
    return campaign.id


SIGN_IN_S = 30.0  # seconds given to every labeler's sign-in before the clock starts


def call(client: Any, url: str, api_name: str, *data: Any) -> list[Any]:
    response = client.post(f"{url}gradio_api/run/{api_name}", json={"data": list(data)})
    response.raise_for_status()
    return response.json()["data"]


def sign_in(client: Any, url: str, name: str, rng: Any) -> None:
    """Sign in as a person would: the sign-in throttle counts a sign-in as failed until its hash is checked, so a
    burst of more than its per-address limit from one machine (this benchmark's 50 at once) is refused in part;
    a refused labeler waits a moment and tries again."""
    for _ in range(30):
        response = client.post(f"{url}login", data={"username": name, "password": PASSWORD})
        if response.status_code != 400:
            response.raise_for_status()
            return
        time.sleep(rng.uniform(1.0, 3.0))
    response.raise_for_status()


def labeler_loop(url: str, name: str, campaign_id: str, start_at: float, until: float, think: float,
                 out: list[dict[str, Any]]) -> None:
    import random

    import httpx

    rng = random.Random(name)

    record: dict[str, Any] = {"labeler": name, "latencies": [], "acknowledged": 0, "errors": []}
    with httpx.Client(timeout=60) as client:
        sign_in(client, url, name, rng)
        pair = call(client, url, "label_next", campaign_id, False)
        record["late"] = time.time() > start_at  # still signing in when the clock started
        time.sleep(max(0.0, start_at - time.time()))  # everyone votes from the same moment, sign-ins done
        while pair[1] and time.time() < until:
            if think:
                time.sleep(rng.uniform(0.5 * think, 1.5 * think))  # reading the two answers
            api = "label_vote_a" if "Thank you" in pair[4] else "label_vote_b"
            sent = time.perf_counter()
            try:
                reply = call(client, url, api, campaign_id, pair[1], "", False)  # raw: False
            except Exception as err:  # noqa: BLE001 - counted and reported, the load goes on
                record["errors"].append(str(err)[:200])
                pair = call(client, url, "label_next", campaign_id, False)
                continue
            record["latencies"].append(time.perf_counter() - sent)
            if "already counted" not in reply[0]:
                record["acknowledged"] += 1
            pair = reply
    out.append(record)


def worker(url: str, names: list[str], campaign_id: str, start_at: float, until: float, think: float,
           queue: mp.Queue) -> None:
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=labeler_loop, args=(url, n, campaign_id, start_at, until, think, results))
               for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def check_store(home: Path, campaign_id: str) -> dict[str, int]:
    from lab.home import lab_home
    from lab.store import Store

    store = Store(lab_home(home))
    # live_votes: the votes that count (no labeler undoes here, so it is every vote; the rule "one counted vote per
    # pair and labeler" is the engine's since undo, no longer a UNIQUE constraint, so it is checked here).
    return store.query(
        """SELECT (SELECT COUNT(*) FROM live_votes WHERE campaign_id = :c) AS stored,
                  (SELECT COUNT(*) FROM (SELECT pair_id, labeler FROM live_votes WHERE campaign_id = :c
                                         GROUP BY pair_id, labeler HAVING COUNT(*) > 1)) AS doubled,
                  (SELECT COUNT(*) FROM pairs p WHERE campaign_id = :c AND
                     (SELECT COUNT(*) FROM live_votes v WHERE v.pair_id = p.id) > p.votes_wanted) AS over_wanted""",
        {"c": campaign_id})[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_load(labelers: int, seconds: float, *, pairs: int, votes_per_pair: int, processes: int, think: float = 0.0,
             home: Path | None = None) -> dict[str, Any]:
    from tests.app_server import start_app, stop_app

    home = home or Path(tempfile.mkdtemp(prefix="label-load-")) / "home"
    home.mkdir(parents=True, exist_ok=True)
    campaign_id = prepare(home, labelers, pairs, votes_per_pair)
    server = start_app(home)
    try:
        url = server.url + "label/"
        names = [f"labeler{i:02d}" for i in range(labelers)]
        # The clock starts once every labeler has signed in: a sign-in's hash takes ~0.1 s of a core, and 50 of
        # them (some retried after the throttle) would otherwise compete with the first seconds of voting.
        start_at = time.time() + SIGN_IN_S
        until = start_at + seconds
        queue: mp.Queue = mp.get_context("spawn").Queue()
        groups = [names[i::processes] for i in range(processes)]
        context = mp.get_context("spawn")
        workers = [context.Process(target=worker, args=(url, group, campaign_id, start_at, until, think, queue))
                   for group in groups if group]
        for process in workers:
            process.start()
        records = [r for _ in workers for r in queue.get(timeout=seconds + 600)]
        for process in workers:
            process.join()
        elapsed = time.time() - start_at
    finally:
        stop_app(server.process)
    latencies = [x for r in records for x in r["latencies"]]
    acknowledged = sum(r["acknowledged"] for r in records)
    store = check_store(home, campaign_id)
    return {
        "labelers": labelers, "think_seconds": think, "seconds": round(elapsed, 1), "votes_acknowledged": acknowledged,
        "votes_stored": store["stored"], "lost": acknowledged - store["stored"], "doubled": store["doubled"],
        "pairs_over_wanted": store["over_wanted"], "errors": sum(len(r["errors"]) for r in records),
        "late_sign_ins": sum(r.get("late", False) for r in records),
        "votes_per_second": round(store["stored"] / elapsed, 1),
        "latency_ms": {"p50": round(1000 * statistics.median(latencies), 1),
                       "p95": round(1000 * percentile(latencies, 0.95), 1),
                       "p99": round(1000 * percentile(latencies, 0.99), 1),
                       "max": round(1000 * max(latencies), 1)} if latencies else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--pairs", type=int, default=5000, help="pairs in the campaign (enough not to run out)")
    parser.add_argument("--votes-per-pair", type=int, default=3)
    parser.add_argument("--processes", type=int, default=5, help="client processes the labelers are spread over")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a labeler reads before voting (uniform ±50%%; 0 = vote at once, a stress "
                        "test)")
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()
    result = run_load(args.labelers, args.seconds, pairs=args.pairs, votes_per_pair=args.votes_per_pair,
                      processes=args.processes, think=args.think)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if result["lost"] or result["doubled"] or result["pairs_over_wanted"]:
        raise SystemExit("votes were lost or doubled")


if __name__ == "__main__":
    main()
