"""``python -m lab label next-round|chain|report``: the flywheel's rounds (issue 19): the next round of a campaign,
the chain of rounds with their numbers, and the chain as one report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lab.cli import add_json_flag, emit, say


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's actions to ``lab label``."""
    nxt = commands.add_parser(
        "next-round", help="the next round: the model trained on this round's export against its winner",
        description="Create the next round of a campaign: the newest DPO/KTO run trained on its export (the "
        "challenger) against its best-rated model (the incumbent), on prompts no earlier round of the chain asked, "
        "with its settings. Prints the new campaign's id.")
    nxt.add_argument("id", help="campaign id (or a unique part of it, or its name): the round to follow")
    nxt.add_argument("--challenger", default="", help="the new model (default: the newest succeeded run trained on "
                     "an export of this campaign), e.g. run:<id>")
    nxt.add_argument("--incumbent", default="", help="the model to beat (default: this round's best-rated model; "
                     "needed when it compared ready responses only)")
    nxt.add_argument("--prompts", default="", help="prompts (default: this round's setting); prompts earlier rounds "
                     "asked are held out either way")
    nxt.add_argument("--max-prompts", type=int, default=None, help="at most this many fresh prompts (default: this "
                     "round's; 0 = all)")
    nxt.add_argument("--wait", action="store_true", help="wait until every response is generated")
    add_json_flag(nxt)
    nxt.set_defaults(handler=run_next_round)

    chain = commands.add_parser("chain", help="every round of a campaign's chain with its numbers",
                                description="The rounds of the chain a campaign belongs to, first to last: votes, "
                                "agreement (Fleiss κ), leader, the challenger's win rate against the incumbent with "
                                "a Wilson 95% interval (ties half), exports and the runs trained on them.")
    chain.add_argument("id", help="any campaign of the chain")
    add_json_flag(chain)
    chain.set_defaults(handler=run_chain)

    report = commands.add_parser("report", help="the chain of rounds as one Markdown or HTML page",
                                 description="The chain of rounds as one page: a table of the rounds and each "
                                 "round's detail (Markdown, or HTML with nothing to fetch).")
    report.add_argument("id", help="any campaign of the chain")
    report.add_argument("--format", choices=("md", "html"), default="md", help="md (default) or html")
    report.add_argument("--out", metavar="FILE", help="write it to FILE (default: print it)")
    report.set_defaults(handler=run_report)


def run_next_round(args: argparse.Namespace) -> int:
    from lab.cli.label import progress_line
    from lab.label.campaigns import get_campaign
    from lab.label.rounds import next_round

    campaign = next_round(args.id, challenger=args.challenger, incumbent=args.incumbent, prompts=args.prompts,
                          max_prompts=args.max_prompts)
    say(f"created round {campaign.round}: {campaign.id} {campaign.name} ({campaign.status}), sources "
        f"{', '.join(campaign.model_sources)}")
    while args.wait and campaign.status == "generating":
        time.sleep(1)
        campaign = get_campaign(campaign.id)
        say(progress_line(campaign))
    emit(args, campaign.summary(), lambda: print(campaign.id))
    return 0 if campaign.status != "failed" else 1


def run_chain(args: argparse.Namespace) -> int:
    from lab.label.rounds import HEADERS, table_rows
    from lab.label.rounds import chain as read_chain

    entries = read_chain(args.id)

    def human() -> None:
        for row in table_rows(entries):
            print("\n".join(f"{'  ' if i else ''}{h}: {cell}" for i, (h, cell) in enumerate(zip(HEADERS, row))))

    emit(args, entries, human)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from lab.label.rounds import report

    text = report(args.id, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        say(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
