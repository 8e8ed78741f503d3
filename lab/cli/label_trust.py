"""``python -m lab label reliability``: the flywheel's trust commands (issue 19): which labelers to trust, κ over
time and per pair of sources."""

from __future__ import annotations

import argparse

from lab.cli import add_json_flag, emit


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's actions to ``lab label``."""
    cmd = commands.add_parser(
        "reliability", help="each labeler's reliability (gold, agreement, position bias), κ over time and per pair",
        description="Per labeler: votes, gold accuracy, agreement with the majority of the other labelers on shared "
        "pairs, left-answer rate with its binomial p, a reliability score (0-1) and whether they are flagged, with "
        "why; then Fleiss' κ in windows of pairs in time order, and κ per pair of sources. Flagged labelers' votes "
        "can be left out of an export (lab label export --drop-unreliable) or all votes weighted by the score "
        "(--weighted).")
    cmd.add_argument("id", help="campaign id (or a unique part of it, or its name)")
    cmd.add_argument("--window", type=int, default=0, help="pairs per κ window (default: about 10 windows)")
    add_json_flag(cmd)
    cmd.set_defaults(handler=run_reliability)


def run_reliability(args: argparse.Namespace) -> int:
    from lab.label import reliability
    from lab.label.campaigns import get_campaign

    campaign = get_campaign(args.id)
    document = {"campaign": campaign.id, "labelers": reliability.labelers(campaign.id),
                "kappa_over_time": reliability.kappa_over_time(campaign.id, window=args.window),
                "per_source_pair": reliability.per_source_pair(campaign.id)}
    emit(args, document, lambda: print_reliability(document))
    return 0


def print_reliability(document: dict) -> None:
    from lab.catalog import display_names

    rows = document["labelers"]
    print(f"{'labeler':<20} {'votes':>5} {'gold':>7} {'agree':>6} {'left':>5} {'score':>5} {'flag':<4}  why")
    for r in rows:
        gold = f"{r['gold_correct']}/{r['gold_votes']}" if r["gold_votes"] else "-"
        agree = f"{r['majority_agreement']:.0%}" if r["majority_agreement"] is not None else "-"
        left = f"{r['left_rate']:.0%}" if r["left_rate"] is not None else "-"
        flag = "yes" if r["flagged"] else "no"
        print(f"{r['labeler']:<20} {r['votes']:>5} {gold:>7} {agree:>6} {left:>5} {r['score']:>5.2f} {flag:<4}  "
              f"{r['why']}")
    if not rows:
        print("no votes yet")
    if document["kappa_over_time"]:
        print("\nFleiss κ over time (window · cumulative):")
        for w in document["kappa_over_time"]:
            print(f"  {w['window']:>3}  {w['pairs']:>4} pairs  {number(w['kappa'])} · {number(w['cumulative_kappa'])}"
                  f"  {w['start']} → {w['end']}")
    if document["per_source_pair"]:
        names = display_names(s for r in document["per_source_pair"] for s in r["sources"])
        print("\nper pair of sources:")
        for r in document["per_source_pair"]:
            first, second = (names[s] for s in r["sources"])
            outcomes = ", ".join(f"{names.get(k, k)} {v}" for k, v in r["outcomes"].items())
            print(f"  {first} vs {second}: {r['pairs']} pairs, {r['votes']} votes, κ {number(r['kappa'])}  ({outcomes})")


def number(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"
