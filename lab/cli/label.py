"""``python -m lab label create|status|export|leaderboard|open|close|resume|wandb|user``: what the Label
tab's admin buttons do, from the command line (``user add|list|remove|set-role|set-password``: the accounts)."""

from __future__ import annotations

import argparse
import getpass
import os
import time

from lab.cli import add_json_flag, emit, label_judge, label_rounds, label_serving, label_trust, say
from lab.config import CampaignConfig, add_arguments, from_arguments


def register(commands: argparse._SubParsersAction) -> None:
    label = commands.add_parser("label", help="labeling campaigns: create, status, export, leaderboard, accounts",
                                description="Blind A/B preference labeling (or one answer at a time, 👍/👎: --mode "
                                "thumbs): campaigns, votes, agreement, leaderboard, and the export of votes as a DPO "
                                "(preference) or KTO (unpaired) dataset version.")
    sub = label.add_subparsers(dest="label_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="create a campaign (responses are generated in the background)",
                            description="Create a campaign: prompts, two or more sources (one is enough with --mode "
                            "thumbs), generation settings, votes per pair. Prints its id.")
    add_arguments(create, CampaignConfig)
    create.add_argument("--wait", action="store_true", help="wait until every response is generated")
    add_json_flag(create)
    create.set_defaults(handler=run_create)

    status = sub.add_parser("status", help="campaigns and their progress; with an id, agreement too",
                            description="All campaigns, or one campaign's progress and agreement statistics.")
    status.add_argument("id", nargs="?", help="campaign id (or a unique part of it, or its name)")
    add_json_flag(status)
    status.set_defaults(handler=run_status)

    export = sub.add_parser("export", help="votes → a preference or unpaired dataset version (majority rule)",
                            description="Aggregate the votes by majority into a dataset version: preference pairs "
                            "(prompt/chosen/rejected) that DPO trains on, or unpaired replies (prompt/completion/label) "
                            "that KTO trains on: a pair's winner desirable and loser undesirable, both-bad two "
                            "undesirable, a thumbs campaign's 👍/👎 as they are. Ties and unclear pairs are left out "
                            "and counted in the card. An admin's decision (lab label adjudicate) replaces a pair's "
                            "votes; where the campaign lets its LLM judge fill, the judge labels the pairs nobody "
                            "voted on; the card counts the rows by label source (people, adjudicator, judge).")
    export.add_argument("id", help="campaign id")
    export.add_argument("--kind", choices=("preference", "unpaired"), default="",
                        help="what to export (default: preference for a pairwise campaign, unpaired for thumbs)")
    export.add_argument("--name", default="", help="dataset name (default: labels-<campaign name>, or "
                        "unpaired-<campaign name> for unpaired)")
    export.add_argument("--min-votes", type=int, default=1, help="votes the winner needs at least (default: 1)")
    export.add_argument("--min-agreement", type=float, default=0.5,
                        help="share of a pair's votes the winner needs at least (default: 0.5)")
    export.add_argument("--val-fraction", type=float, default=0.0, help="hold out this share as validation")
    export.add_argument("--drop-unreliable", action="store_true",
                        help="leave out the votes of labelers flagged unreliable (lab label reliability lists them)")
    export.add_argument("--weighted", action="store_true",
                        help="weight each vote by its labeler's reliability score in the majority")
    export.add_argument("--min-margin", type=float, default=0.0,
                        help="graded campaigns: keep pairs whose winning votes' mean strength is at least this "
                        "(1 = better, 2 = much better; default 0: all)")
    export.add_argument("--earlier-rounds", action="store_true",
                        help="also the pairs of every earlier round of this campaign's chain (lab label next-round), "
                        "decided under the same rule: the next DPO learns from all the votes so far")
    export.add_argument("--push", metavar="OWNER/NAME", help="also push the version to the Hub (HF_TOKEN)")
    add_json_flag(export)
    export.set_defaults(handler=run_export)

    board = sub.add_parser("leaderboard", help="Bradley–Terry ratings with 95%% intervals and win rates",
                           description="Bradley–Terry ratings of the sources (Elo scale, mean 1000) with bootstrap "
                           "95% intervals, and the win-rate matrix; for a thumbs campaign, each source's share of 👍 "
                           "with a Wilson 95% interval.")
    board.add_argument("id", help="campaign id")
    add_json_flag(board)
    board.set_defaults(handler=run_leaderboard)

    for name, text in (("open", "serve a closed campaign's pairs again"), ("close", "stop serving pairs"),
                       ("resume", "finish generating a failed campaign's missing responses"),
                       ("wandb", "log progress, agreement, ratings and the pairs table to W&B")):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("id", help="campaign id")
        if name == "wandb":
            cmd.add_argument("--project", default="lab", help="W&B project (default: lab, as runs)")
        add_json_flag(cmd)
        cmd.set_defaults(handler=run_wandb if name == "wandb" else run_set_status, status=name)

    for extra in (label_serving, label_trust, label_rounds, label_judge):  # the flywheel's commands (issue 19)
        extra.register(sub)

    user = sub.add_parser("user", help="accounts: add, list, remove, change role or password",
                          description="Accounts for sign-in, applied at once, also to the running app. From the first "
                          "account (an admin) on, everyone signs in; labelers see only the labeling page.")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="add an account", description="Add an account. The password comes from "
                              "--password-env (the name of an environment variable) or is asked for.")
    add.add_argument("name")
    add.add_argument("--role", choices=("labeler", "admin"), default="labeler")
    add_password_flag(add)
    add_json_flag(add)
    add.set_defaults(handler=run_user_add)
    lst = user_sub.add_parser("list", help="list accounts", description="List accounts (never passwords).")
    add_json_flag(lst)
    lst.set_defaults(handler=run_user_list)
    remove = user_sub.add_parser("remove", help="remove an account (its votes stay)",
                                 description="Remove an account: it can no longer sign in, and its sessions in the "
                                 "running app end at once. Its votes stay, under its name (an account added later "
                                 "under that name counts as the same labeler). The only admin cannot be removed "
                                 "while other accounts exist; with no account left the lab is open to anyone who "
                                 "reaches its port.")
    remove.add_argument("name")
    add_json_flag(remove)
    remove.set_defaults(handler=run_user_remove)
    role = user_sub.add_parser("set-role", help="make an account an admin or a labeler",
                               description="Change an account's role, at once: an admin made a labeler loses the lab "
                               "on their next click and keeps the labeling page. The only admin cannot be made a "
                               "labeler.")
    role.add_argument("name")
    role.add_argument("role", choices=("labeler", "admin"))
    add_json_flag(role)
    role.set_defaults(handler=run_user_set_role)
    password = user_sub.add_parser("set-password", help="give an account a new password (its sessions end)",
                                   description="Give an account a new password. Its sessions, in every browser, end "
                                   "at once; it signs in again with the new one. The password comes from "
                                   "--password-env (the name of an environment variable) or is asked for.")
    password.add_argument("name")
    add_password_flag(password)
    add_json_flag(password)
    password.set_defaults(handler=run_user_set_password)


def add_password_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")


def progress_line(campaign) -> str:
    return (f"{campaign.id}  {campaign.status:<10} {campaign.name}  responses {campaign.generated}/"
            f"{campaign.to_generate}" + (f"  error: {campaign.error}" if campaign.error else ""))


def run_create(args: argparse.Namespace) -> int:
    from lab.label.campaigns import create_campaign, get_campaign

    campaign = create_campaign(from_arguments(CampaignConfig, args))
    say(f"created {campaign.id} ({campaign.status})")
    shown = ""
    while args.wait and campaign.status == "generating":
        time.sleep(1)
        campaign = get_campaign(campaign.id)
        if progress_line(campaign) != shown:  # a line per change, not one a second
            shown = progress_line(campaign)
            say(shown)
    emit(args, campaign.summary(), lambda: print(campaign.id))
    return 0 if campaign.status != "failed" else 1


def run_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from lab.label.campaigns import Counts, campaign_counts, get_campaign, list_campaigns, reconcile
    from lab.label.results import agreement

    number = label_trust.number
    reconcile()
    if not args.id:
        campaigns = list_campaigns()
        emit(args, [c.summary() for c in campaigns],
             lambda: print("\n".join(progress_line(c) for c in campaigns) or "no campaigns yet: python -m lab label "
                           "create --sources tiny,run:<id>"))
        return 0
    campaign = get_campaign(args.id)
    counts = campaign_counts(campaign_id=campaign.id).get(campaign.id, Counts())
    document = {**campaign.summary(), **asdict(counts), "agreement": agreement(campaign.id)}

    def human() -> None:
        print(progress_line(campaign))
        print(f"pairs {counts.pairs} (ready {counts.ready}), votes {counts.votes}/{counts.wanted}")
        report = document["agreement"]
        for key in ("fleiss_kappa", "krippendorff_alpha", "cohen_kappa", "pairwise_agreement"):
            if report[key] is not None:
                print(f"{key}: {report[key]:.3f}")
        for row in report["per_labeler"]:
            sides = (f"👍 {number(row['up_rate'])}" if campaign.thumbs else f"gold {number(row['gold_accuracy'])}  "
                     f"left {number(row['left_rate'])}" + ("  POSITION BIAS" if row["position_bias_flagged"] else ""))
            print(f"  {row['labeler']:<16} votes {row['votes']:<5} agreement {number(row['agreement_with_others'])}  "
                  f"{sides}")

    emit(args, document, human)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from lab.label.results import export_votes

    version = export_votes(args.id, args.kind, name=args.name, min_votes=args.min_votes,
                           min_agreement=args.min_agreement, val_fraction=args.val_fraction,
                           drop_unreliable=args.drop_unreliable, weighted=args.weighted, min_margin=args.min_margin,
                           earlier_rounds=args.earlier_rounds)
    document = {"ref": version.ref, "rows": version.rows, "card": version.card}
    if args.push:
        from lab.data.versions import push_to_hub

        document["url"] = push_to_hub(version, args.push)
    emit(args, document, lambda: print(version.ref))
    say(version.card["rule"]["text"] + " Rows by label source: " + ", ".join(
        f"{source} {n}" for source, n in version.card["label_sources"].items()) + ".")
    recipe = "dpo-from-labels.yaml" if version.kind == "preference" else "qwen2.5-0.5b-kto.yaml"
    say(f"train {'DPO' if version.kind == 'preference' else 'KTO'} on it: python -m lab train recipes/{recipe} "
        f"--set dataset={version.ref} --set model=run:<SFT run id>")
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    from lab.label.campaigns import get_campaign
    from lab.label.results import approval, leaderboard

    campaign = get_campaign(args.id)  # an unknown id is an error, not an empty board
    if campaign.thumbs:
        return print_approval(args, approval(campaign.id))
    board = leaderboard(campaign.id)

    def human() -> None:
        from lab.catalog import display_names

        names = display_names(r["source"] for r in board["ratings"])
        for r in board["ratings"]:
            print(f"{names[r['source']]:<40} {r['rating']:7.1f}  [{r['low']}, {r['high']}]  {r['comparisons']} "
                  "comparisons")

    emit(args, board, human)
    return 0


def print_approval(args: argparse.Namespace, board: dict) -> int:
    def human() -> None:
        from lab.catalog import display_names

        names = display_names(r["source"] for r in board["sources"])
        for r in board["sources"]:
            print(f"{names[r['source']]:<40} 👍 {r['rate']:6.1%}  [{r['low']:.1%}, {r['high']:.1%}]  {r['up']} up, "
                  f"{r['down']} down")

    emit(args, board, human)
    return 0


def run_set_status(args: argparse.Namespace) -> int:
    from lab.label.campaigns import set_status

    target = {"open": "open", "close": "closed", "resume": "generating"}[args.status]
    campaign = set_status(args.id, target)
    emit(args, campaign.summary(), lambda: print(progress_line(campaign)))
    return 0


def run_wandb(args: argparse.Namespace) -> int:
    from lab.label.report import log_to_wandb

    result = log_to_wandb(args.id, project=args.project)
    emit(args, result, lambda: print(result["url"] or f"offline: wandb sync {result['offline_dir']}"))
    return 0


def read_password(args: argparse.Namespace) -> str:
    """The password from ``--password-env`` (an unset variable is an empty password, refused as too short), or
    asked for without echo."""
    return os.environ.get(args.password_env, "") if args.password_env else getpass.getpass("password: ")


def run_user_add(args: argparse.Namespace) -> int:
    from lab.label.accounts import add_account

    who = add_account(args.name, args.role, read_password(args))
    emit(args, {"name": who.name, "role": who.role}, lambda: print(f"{who.name} ({who.role})"))
    say("sign-in applies at once: from the first account on, everyone signs in to the running app")
    return 0


def run_user_remove(args: argparse.Namespace) -> int:
    from lab.label.accounts import list_accounts, remove_account

    who = remove_account(args.name)
    emit(args, {"name": who.name, "role": who.role, "removed": True},
         lambda: print(f"removed {who.name} ({who.role})"))
    if list_accounts():
        say(f"{who.name} can no longer sign in, and their sessions have ended; their votes stay under that name")
    else:
        say("no accounts are left: sign-in is off, and the lab is open to anyone who reaches its port")
    return 0


def run_user_set_role(args: argparse.Namespace) -> int:
    from lab.label.accounts import set_role

    who = set_role(args.name, args.role)
    emit(args, {"name": who.name, "role": who.role}, lambda: print(f"{who.name} ({who.role})"))
    say("the role applies at once, in the running app too")
    return 0


def run_user_set_password(args: argparse.Namespace) -> int:
    from lab.label.accounts import set_password

    who = set_password(args.name, read_password(args))
    emit(args, {"name": who.name, "role": who.role}, lambda: print(f"{who.name} ({who.role}): new password"))
    say(f"{who.name}'s sessions have ended: they sign in again with the new password")
    return 0


def run_user_list(args: argparse.Namespace) -> int:
    from lab.label.accounts import list_accounts

    accounts = list_accounts()
    emit(args, accounts, lambda: print("\n".join(f"{a['name']:<20} {a['role']}" for a in accounts) or "no accounts"))
    return 0
