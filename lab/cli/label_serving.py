"""``python -m lab label adjudicate``: the flywheel's serving commands (issue 19): pairs labelers disagree on, and
an admin's decision on them."""

from __future__ import annotations

import argparse
import getpass

from lab.cli import add_json_flag, emit, say


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's actions to ``lab label``."""
    cmd = commands.add_parser(
        "adjudicate", help="pairs labelers disagree on: list them, or decide one",
        description="Without --pair: the pairs whose votes (an extra vote included, under active serving) are all in "
        "and still have no majority, with their prompt, answers and votes. With --pair and --outcome: record an "
        "admin's decision (a source of that pair, tie or both_bad), replacing an earlier one. A decision is not a "
        "vote: agreement and the leaderboard read people's votes; exports use the decision for that pair.")
    cmd.add_argument("id", help="campaign id (or a unique part of it, or its name)")
    cmd.add_argument("--pair", type=int, help="the pair to decide (its id, as listed)")
    cmd.add_argument("--outcome", help="the decision: one of the pair's sources, tie or both_bad")
    cmd.add_argument("--note", default="", help="why (kept with the decision)")
    cmd.add_argument("--admin", default=getpass.getuser(), help="who decides (default: the OS user)")
    add_json_flag(cmd)
    cmd.set_defaults(handler=run_adjudicate)


def run_adjudicate(args: argparse.Namespace) -> int:
    from lab.errors import LabError
    from lab.label import adjudication
    from lab.label.campaigns import get_campaign

    campaign = get_campaign(args.id)
    if args.pair is None and args.outcome is None:
        document = {"campaign": campaign.id, "pending": adjudication.pending(campaign.id),
                    "decisions": {str(k): v for k, v in adjudication.decisions(campaign.id).items()}}
        emit(args, document, lambda: print_pending(document))
        return 0
    if args.pair is None or not args.outcome:
        raise LabError("To decide, give both --pair ID and --outcome (a source of the pair, tie or both_bad).")
    if adjudication.campaign_of(args.pair) != campaign.id:
        raise LabError(f"Pair {args.pair} is not in campaign {campaign.id}; list its pairs waiting for a decision "
                       f"with: python -m lab label adjudicate {campaign.id}")
    adjudication.decide(args.pair, args.outcome, args.admin, note=args.note)
    document = {"campaign": campaign.id, "pair_id": args.pair, "outcome": args.outcome, "admin": args.admin}
    emit(args, document, lambda: say(f"Pair {args.pair}: decided {args.outcome} (by {args.admin})."))
    return 0


def print_pending(document: dict) -> None:
    from lab.catalog import display_names

    pending = document["pending"]
    if not pending:
        print(f"No pair waits for a decision ({len(document['decisions'])} decided).")
        return
    for pair in pending:
        names = display_names(pair["answers"])
        prompt = pair["prompt"][-1]["content"] if pair["prompt"] else ""
        print(f"pair {pair['pair_id']}: {prompt[:100]}")
        for source, text in pair["answers"].items():
            print(f"  {names.get(source, source)} ({source}): {text[:160]}")
        votes = ", ".join(f"{v['labeler']} → {names.get(v['outcome'], v['outcome'])}"
                          + (f" ({'≫' if v['strength'] == 2 else '>'})" if v["strength"] else "")
                          for v in pair["votes"])
        print(f"  votes: {votes}\n")
    print(f"{len(pending)} waiting, {len(document['decisions'])} decided. Decide one with: python -m lab label "
          f"adjudicate {document['campaign']} --pair ID --outcome SOURCE|tie|both_bad")
