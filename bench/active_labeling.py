"""Votes needed to reach a confident leaderboard: active serving against balanced (uniform) serving.

    python bench/active_labeling.py                       # 6 sources × 40 prompts, seeds 0-4
    python bench/active_labeling.py --seeds 3 --jobs 6 --out /tmp/active.json   # runs in parallel processes

Each seed builds a campaign of ready responses in a fresh LAB_HOME: ``--sources`` sources with known strengths
(evenly spaced by ``--gap``), each answer's quality = its source's strength + N(0, 1) noise per prompt, written into
the answer's text. ``--labelers`` simulated labelers (``lab.label.simulate``) vote for the higher quality, with a
random a/b click at rate ``--noise``; they go through the real ``serving.next_pair`` / ``vote`` and the real store.
The same campaign (same answers, same labelers) is labelled once with ``serving = balanced`` and once with
``serving = active``.

Target confidence: the Label tab's leaderboard (``results.leaderboard``: Bradley–Terry with 200-round bootstrap 95%
intervals) has every two neighbours separated: sorted by rating, each source's interval lies wholly above the next
one's. It is checked every ``--every`` votes; a run that reaches it is also checked for the true order. A run that
uses every vote the campaign offers without reaching it counts as not reached (reported, not averaged in).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def responses(path: Path, sources: list[str], strengths: list[float], prompts: int, seed: int) -> None:
    """A responses file: each answer's text carries its quality, which the simulated labelers read."""
    rng = random.Random(seed)
    rows = []
    for i in range(prompts):
        row: dict[str, Any] = {"prompt": f"Prompt {i}"}
        for source, strength in zip(sources, strengths):
            row[source] = f"Answer {i}; quality {strength + rng.gauss(0, 1):.4f}"
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def quality(text: str) -> float:
    return float(text.rsplit(" ", 1)[1])


def separated(board: dict[str, Any]) -> bool:
    """Every two neighbours on the leaderboard have disjoint 95% intervals."""
    ratings = board["ratings"]
    return len(ratings) > 1 and all(upper["low"] is not None and lower["high"] is not None
                                    and upper["low"] > lower["high"] for upper, lower in zip(ratings, ratings[1:]))


def run_one(serving: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Label one campaign until the target confidence or its last vote; returns the votes it took."""
    from lab.config import CampaignConfig
    from lab.home import lab_home
    from lab.label import campaigns, results, simulate

    home = lab_home(root / f"{serving}-{seed}")
    sources = [f"s{k}" for k in range(args.sources)]
    strengths = [k * args.gap for k in range(args.sources)]
    path = root / f"responses-{serving}-{seed}.jsonl"  # the same answers for both rules
    responses(path, sources, strengths, args.prompts, seed)
    cfg = CampaignConfig(name=f"{serving}-{seed}", responses_file=str(path), sources="",
                         votes_per_pair=args.votes_per_pair, serving=serving, extra_votes=args.extra_votes)
    campaign = campaigns.create_campaign(cfg, home=home)
    labelers = [simulate.Labeler(f"labeler{k}", quality, noise=args.noise, seed=seed) for k in range(args.labelers)]
    votes, reached, started = 0, False, time.perf_counter()
    board: dict[str, Any] = {}
    while not reached:
        cast = simulate.label(campaign.id, labelers, home=home, max_votes=args.every)
        votes += cast
        board = results.leaderboard(campaign.id, home=home)
        reached = separated(board)
        if cast < args.every:
            break  # every vote the campaign offers is in
    order = [r["source"] for r in board.get("ratings", [])]
    return {"serving": serving, "seed": seed, "votes": votes, "reached": reached,
            "true_order": order == sources[::-1], "seconds": round(time.perf_counter() - started, 1)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for serving in ("balanced", "active"):
        mine = [r for r in rows if r["serving"] == serving]
        done = [r["votes"] for r in mine if r["reached"]]
        out[serving] = {"reached": f"{len(done)}/{len(mine)}", "mean_votes": statistics.mean(done) if done else None,
                        "median_votes": statistics.median(done) if done else None,
                        "true_order": sum(r["true_order"] for r in mine if r["reached"])}
    paired = [(a["votes"], b["votes"]) for a in rows for b in rows if a["seed"] == b["seed"]
              and a["serving"] == "active" and b["serving"] == "balanced" and a["reached"] and b["reached"]]
    if paired:
        out["active_over_balanced"] = round(statistics.mean(a / b for a, b in paired), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.6, help="strength between neighbouring sources")
    parser.add_argument("--labelers", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--votes-per-pair", type=int, default=3)
    parser.add_argument("--extra-votes", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--every", type=int, default=20, help="check the target after this many votes")
    parser.add_argument("--jobs", type=int, default=1, help="campaigns labelled at once, in separate processes")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LAB_HOME"] = str(Path(tmp) / "lab_home")
        runs = [(serving, seed, args, Path(tmp)) for seed in range(args.seeds) for serving in ("balanced", "active")]
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = []
            for row in pool.map(run_one, *zip(*runs)):
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"args": vars(args), "runs": rows, "summary": summary(rows)}
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
