"""``python -m lab eval perplexity|list|show|export``: evaluations as stored background jobs."""

from __future__ import annotations

import argparse

from lab.cli import add_json_flag, emit, say


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate checkpoints: held-out loss and perplexity",
                                   description="Evaluate checkpoints as background jobs kept in the store. Built so far: "
                                   "held-out loss and perplexity (ROUGE/BLEU, LLM-as-judge and lm-eval tasks: issue 6).")
    sub = evaluate.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    ppl = sub.add_parser("perplexity", help="loss and perplexity of models on a dataset version's replies",
                         description="Held-out loss and perplexity of each model on the final replies of a dataset "
                         "version's split, with the best and worst fitted examples. One job per model.")
    ppl.add_argument("--model", action="append", required=True,
                     help="tiny, run:<id>, a path or a hub id (repeat to compare, e.g. base and tuned)")
    ppl.add_argument("--dataset", default="sample:sft", help="an SFT dataset version (default: sample:sft)")
    ppl.add_argument("--split", default="validation", choices=("train", "validation"))
    ppl.add_argument("--max-rows", type=int, default=200, help="rows to score (0 = all; default 200)")
    ppl.add_argument("--max-length", type=int, default=1024, help="tokens per row at most (default 1024)")
    ppl.add_argument("--wait", action="store_true", help="wait for the results")
    add_json_flag(ppl)
    ppl.set_defaults(handler=run_perplexity)
    lst = sub.add_parser("list", help="all evaluations, newest first", description="All evaluations, newest first.")
    add_json_flag(lst)
    lst.set_defaults(handler=run_list)
    show = sub.add_parser("show", help="one evaluation with its results", description="One evaluation, in full.")
    show.add_argument("id")
    add_json_flag(show)
    show.set_defaults(handler=run_show)
    export = sub.add_parser("export", help="all evaluations as CSV", description="All evaluations as CSV on stdout.")
    export.set_defaults(handler=run_export)


def line(job) -> str:
    r = job.results or {}
    numbers = f"loss {r['loss']:.4f}  ppl {r['perplexity']:.3f}  ({r['rows']} rows)" if r else (job.error or "")
    return f"{job.id}  {job.status:<9} {job.kind}  {job.model}  on {job.dataset}:{job.config['split']}  {numbers}"


def run_perplexity(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    created = [jobs.create_eval("perplexity", m, args.dataset, split=args.split, max_rows=args.max_rows,
                                max_length=args.max_length) for m in args.model]
    for job in created:
        say(f"queued {job.id}: perplexity of {job.model} on {job.dataset}")
    if args.wait:
        created = [jobs.wait(job.id) for job in created]
    emit(args, [j.summary() for j in created], lambda: print("\n".join(line(j) for j in created)))
    return 0 if not args.wait or all(j.status == "succeeded" for j in created) else 1


def run_list(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    found = jobs.list_evals()
    emit(args, [j.summary() for j in found], lambda: print("\n".join(line(j) for j in found) or "no evaluations yet"))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    job = jobs.get_eval(args.id)
    emit(args, job.summary(), lambda: print(line(job)))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    print(jobs.to_csv(jobs.list_evals()), end="")
    return 0
