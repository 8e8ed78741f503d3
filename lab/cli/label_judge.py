"""``python -m lab label prelabel|judge-agreement|style``: the flywheel's judge commands (issue 19)."""

from __future__ import annotations

import argparse
import time

from lab.cli import add_json_flag, emit, say


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's actions to ``lab label``."""
    pre = commands.add_parser("prelabel", help="an LLM judge pre-labels every pair (in the background)",
                              description="An LLM judge (as Eval's: tiny, run:<id>, a path, a hub id, or endpoint[:MODEL] "
                              "for an OpenAI-compatible API) labels every ready pair in both orders, in a background "
                              "process; a pair whose two orders disagree is a tie. Labels are not votes; see "
                              "judge-agreement.")
    pre.add_argument("id", help="campaign id (or a unique part of it, or its name)")
    pre.add_argument("--judge", default="", help="the judge (default: the campaign's judge setting)")
    pre.add_argument("--wait", action="store_true", help="wait until every pair is pre-labeled")
    add_json_flag(pre)
    pre.set_defaults(handler=run_prelabel)

    agree = commands.add_parser("judge-agreement", help="the judge against people: κ, accuracy, position consistency",
                                description="Cohen's κ and accuracy of the judge's labels against people's majority on "
                                "the pairs both labelled, the judge's position consistency, and whether it may fill "
                                "the pairs people have not reached (the campaign's judge_fills_at).")
    agree.add_argument("id", help="campaign id")
    agree.add_argument("--fills-at", type=float, metavar="KAPPA",
                       help="set the κ at which the judge labels the pairs people have not reached (0 = never)")
    add_json_flag(agree)
    agree.set_defaults(handler=run_agreement)

    style = commands.add_parser("style", help="length-controlled Bradley–Terry ratings (style control)",
                                description="Bradley–Terry ratings with the answers' length difference as a covariate "
                                "(LMArena's style control): a source that wins only by writing longer answers does "
                                "not climb. Elo scale, mean 1000, bootstrap 95% intervals, beside the plain fit.")
    style.add_argument("id", help="campaign id")
    add_json_flag(style)
    style.set_defaults(handler=run_style)


def run_prelabel(args: argparse.Namespace) -> int:
    from lab.label import prelabel
    from lab.label.campaigns import get_campaign

    campaign = get_campaign(args.id)
    prelabel.start(campaign.id, judge=args.judge)
    found = prelabel.state(campaign.id)
    say(f"pre-labeling {campaign.id} with {found['judge']} (log: {found['log']})")
    while args.wait and found["status"] == prelabel.RUNNING:
        time.sleep(1)
        found = prelabel.state(campaign.id)
        say(f"{found['done']}/{found['total']} pairs")
    emit(args, found, lambda: print(state_line(found)))
    return 1 if found["status"] == prelabel.FAILED else 0


def state_line(found: dict) -> str:
    line = f"{found['status']}: judge {found['judge']}, {found['done']}/{found['total']} pairs"
    return line + (f" · {found['error']}" if found.get("error") else "")


def run_agreement(args: argparse.Namespace) -> int:
    from lab.label import prelabel
    from lab.label.campaigns import get_campaign

    campaign = get_campaign(args.id)
    report = (prelabel.agreement(campaign.id) if args.fills_at is None
              else prelabel.set_fills_at(campaign.id, args.fills_at))

    def human() -> None:
        def number(value: float | None) -> str:
            return "—" if value is None else f"{value:.3f}"

        print(f"judge {report['judge'] or '(none)'}: {report['labelled']} pairs labelled, {report['shared']} also "
              f"by people")
        print(f"κ {number(report['kappa'])} · accuracy {number(report['accuracy'])} · position consistency "
              f"{number(report['position_consistency'])}")
        rule = (f"fills the pairs people have not reached at κ ≥ {report['fills_at']} (on {report['min_shared']}+ "
                "shared pairs)" if report["fills_at"] else "never fills (judge_fills_at 0)")
        print(f"{'fills now' if report['fills'] else 'does not fill now'}: {rule}")
        print(state_line(report["state"]))

    emit(args, report, human)
    return 0


def run_style(args: argparse.Namespace) -> int:
    from lab.label import style
    from lab.label.campaigns import get_campaign

    board = style.leaderboard(get_campaign(args.id).id)

    def human() -> None:
        from lab.catalog import display_names

        names = display_names(r["source"] for r in board["ratings"])
        for r in board["ratings"]:
            print(f"{names[r['source']]:<40} {r['rating']:7.1f}  [{r['low']}, {r['high']}]  {r['comparisons']} "
                  "comparisons")
        if board["length_coefficient"] is not None:
            print(f"length coefficient {board['length_coefficient']:+.3f} (log-odds per typical length "
                  "difference; > 0: longer answers win more)")

    emit(args, board, human)
    return 0
