"""``python -m lab train RECIPE.yaml`` (or ``--estimate``, ``--sanity``; ``--propose-dpo``), and
``python -m lab runs list|show|logs|cancel|resume``."""

from __future__ import annotations

import argparse
from typing import Any

from lab.cli import add_json_flag, emit, say
from lab.errors import LabError
from lab.train.methods import described


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="queue a training run from a recipe",
                                description="Queue a training run from a recipe YAML (its objective and adapter "
                                "below; every other setting: the recipes in recipes/ and `--set KEY=VALUE`); it "
                                "starts as soon as a slot is free. Prints the run id.",
                                epilog=described(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("recipe", nargs="?", help="a YAML file of TrainConfig settings (see recipes/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting (repeatable), e.g. --set learning_rate=1e-4 --set max_steps=50")
    train.add_argument("--wait", action="store_true", help="follow the run to its end; exit non-zero unless it "
                       "succeeded")
    train.add_argument("--sanity", action="store_true", help="instead of the run: the quick sanity check (overfit "
                       "20 examples, a short curve on the real data, the loss mask, a sample) with verdicts in words")
    train.add_argument("--estimate", action="store_true", help="instead of the run: the estimate the Train tab "
                       "shows (steps, schedule, parameters, memory, expected tokens/s and time, speed plan) and whether it would "
                       "train; exit "
                       "non-zero when it would not")
    train.add_argument("--propose-dpo", metavar="DATASET", help="print a recipe for DPO on this preference "
                       "version (a Label export) that trains on the pairs it has; use with --model")
    train.add_argument("--model", default="tiny", help="with --propose-dpo: the model to align, e.g. run:<SFT run "
                       "id> (default: tiny)")
    add_json_flag(train)
    train.set_defaults(handler=run_train)

    warm = commands.add_parser("warm", help="keep a pre-imported training worker, so runs start without imports",
                               description="Start the warm worker in the background: a process that has imported "
                               "torch, transformers and TRL and forks each one-process run, which then skips the "
                               "imports (5-20 s). The web app keeps one by itself; this is for the command line. "
                               "LAB_WARM_WORKER=0 turns it off.")
    what = warm.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="say whether one runs, and its runs")
    what.add_argument("--stop", action="store_true", help="stop it (runs it started go on)")
    warm.add_argument("--idle", type=float, default=3600.0, metavar="SECONDS",
                      help="stop after this long without a run (default: 3600; 0: never)")
    add_json_flag(warm)
    warm.set_defaults(handler=run_warm)

    runs = commands.add_parser("runs", help="list, inspect, cancel and resume training runs",
                               description="List, inspect, cancel and resume training runs.")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="all runs, newest first", description="All runs, newest first.")
    lst.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    add_json_flag(lst)
    lst.set_defaults(handler=run_list)
    for name, text, handler in (("show", "a run's status, config and last metrics", run_show),
                                ("logs", "the end of a run's log", run_logs),
                                ("cancel", "stop a run (saves a checkpoint first)", run_cancel),
                                ("resume", "continue a failed or cancelled run from its last checkpoint", run_resume),
                                ("export", "merge a run's adapter into its base and save a standalone model",
                                 run_export)):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("id", help="run id (or a unique part of it)")
        if name == "logs":
            cmd.add_argument("-n", type=int, default=50, help="lines (default: 50)")
        if name == "export":
            cmd.add_argument("--out", help="folder to write (default: LAB_HOME/models/<run id>-merged)")
            cmd.add_argument("--push", metavar="OWNER/NAME", help="also upload it to the Hub (token from HF_TOKEN)")
        if name in ("cancel", "resume"):
            cmd.add_argument("--wait", action="store_true", help="wait for the run to finish")
        add_json_flag(cmd)
        cmd.set_defaults(handler=handler)


def progress_line(row: dict[str, Any]) -> None:
    values = "  ".join(f"{k}={v:.4g}" for k, v in row.items()
                       if k in ("loss", "eval_loss", "learning_rate", "rewards/accuracies", "tokens_per_second"))
    say(f"step {row['step']}/{row['max_steps']}  {values}")


def finished_document(run) -> dict[str, Any]:
    return {**run.summary(), "status": run.status, "final_loss": run.final_loss, "error": run.error}


def run_train(args: argparse.Namespace) -> int:
    from lab.config import load_yaml
    from lab.train import runner

    if args.propose_dpo:
        return run_propose(args)
    if not args.recipe:
        raise LabError("Give a recipe: python -m lab train recipes/tiny-sft.yaml (or --propose-dpo DATASET).")
    cfg = load_yaml(args.recipe, overrides=args.set)
    if args.sanity:
        return run_sanity(args, cfg)
    if args.estimate:
        return run_estimate(args, cfg)
    run, warnings = runner.create_run(cfg)
    for warning in warnings:
        say(f"warning: {warning}")
    if not args.wait:
        emit(args, {**run.summary(), "warnings": warnings}, lambda: print(run.id))
        say(f"queued {run.id} ({run.status}); follow it with: python -m lab runs show {run.id}")
        return 0
    say(f"run {run.id}: {run.status}; log: {run.run_dir / 'log.txt'}")
    run = runner.wait(run.id, on_progress=progress_line)
    emit(args, {**finished_document(run), "warnings": warnings},
         lambda: print(f"{run.id} {run.status}" + (f": {runner.headline(run)}" if runner.headline(run) else "")
                       + (f"\n{run.error}" if run.error else "")))
    return 0 if run.status == "succeeded" else 1


def run_warm(args: argparse.Namespace) -> int:
    from lab.home import lab_home
    from lab.train import warm

    home = lab_home()
    if args.stop:
        stopped = warm.stop(home)
        emit(args, {"stopped": stopped}, lambda: say("stopped the warm worker" if stopped else "no warm worker ran"))
        return 0
    if args.status:
        state = warm.read_state(home)
        runs = warm.ask(home, {"op": "status"}).get("runs", {}) if state else {}
        emit(args, {"running": bool(state), **(state or {}), "runs": runs},
             lambda: say(f"warm worker pid {state['pid']}, ready in {state['preload_seconds']} s, "
                         f"{len(runs)} run(s) now" if state else "no warm worker runs for this home"))
        return 0
    if warm.read_state(home) is None:
        say("starting the warm worker: it imports torch, transformers and TRL once (5-20 s) ...")
    state = warm.start(home, idle_s=args.idle or None, wait_s=300)
    if state is None:
        raise LabError("The warm worker did not become ready within 5 minutes; see LAB_HOME/logs/warm.log.")
    emit(args, {"running": True, **state}, lambda: say(
        f"warm worker ready (pid {state['pid']}, imports took {state['preload_seconds']} s): one-process runs "
        "now start without imports"))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from lab.train import runner

    runner.reconcile()
    runs = runner.list_runs(status=args.status)

    def human() -> None:
        if not runs:
            print("no runs yet: python -m lab train recipes/tiny-sft.yaml")
        from lab.catalog import display_names

        models = display_names(run.model for run in runs)  # a run trained from an earlier run shows its name
        for run in runs:  # the result as the run's objective judges it (a GRPO run's loss says nothing)
            print(f"{run.id:<34} {run.name[:24]:<24} {run.status:<10} {run.method:<6} {models[run.model][:24]:<24} "
                  f"{run.dataset[:28]:<28} {runner.headline(run) or '-'}")

    emit(args, [r.summary() for r in runs], human)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lab.train import runner

    runner.reconcile()
    run = runner.get_run(args.id)
    metrics = runner.read_metrics(run.id)
    document = {**run.summary(), "config": run.config, "last_metrics": metrics[-1] if metrics else None,
                "metrics_rows": len(metrics)}

    def human() -> None:
        for key, value in run.summary().items():
            if value is not None:
                print(f"{key:>12}: {value}")
        if metrics:
            progress_line(metrics[-1])

    emit(args, document, human)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    from lab.train import runner

    text = runner.tail_log(args.id, args.n)
    emit(args, {"id": args.id, "log": text}, lambda: print(text))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from lab.train import runner

    run = runner.cancel(args.id, wait=args.wait)
    emit(args, finished_document(run), lambda: say(f"{run.id}: {run.status}"))
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from lab.train import runner

    run = runner.resume(args.id)
    if args.wait:
        run = runner.wait(run.id, on_progress=progress_line)
    emit(args, finished_document(run), lambda: say(f"{run.id}: {run.status}"))
    return 0 if not args.wait or run.status == "succeeded" else 1


def run_export(args: argparse.Namespace) -> int:
    from lab.home import lab_home
    from lab.train import runner
    from lab.train.merge import export_run, push_model

    run = runner.get_run(args.id)
    path = export_run(run, out=args.out, home=lab_home())
    document = {"id": run.id, "path": str(path)}
    if args.push:
        document["url"] = push_model(path, args.push)
    emit(args, document, lambda: print(path))
    return 0


def run_sanity(args: argparse.Namespace, cfg) -> int:
    from lab.train.sanity import sanity_check

    report = sanity_check(cfg, progress=lambda fraction, message: say(f"[{fraction:4.0%}] {message}"))

    def human() -> None:
        for verdict in report.verdicts:
            print(f"{'ok ' if verdict.ok else 'BAD'} {verdict.message}")

    emit(args, report.to_dict(), human)
    return 0 if report.ok else 1


def run_estimate(args: argparse.Namespace, cfg) -> int:
    from lab.home import lab_home
    from lab.train.estimate import estimate_run

    found = estimate_run(cfg, lab_home())
    emit(args, found.to_dict(), lambda: print(found.text))
    return 1 if found.refusal else 0


def run_propose(args: argparse.Namespace) -> int:
    import yaml

    from lab.home import lab_home
    from lab.train.viability import propose_dpo

    proposal = propose_dpo(args.propose_dpo, args.model, lab_home())

    def human() -> None:
        print(f"# python -m lab train THIS.yaml --wait\n# {proposal.text}")
        print(yaml.safe_dump(proposal.values, sort_keys=False, allow_unicode=True), end="")

    emit(args, {"values": proposal.values, "text": proposal.text}, human)
    return 0
