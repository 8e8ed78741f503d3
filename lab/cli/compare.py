"""``python -m lab compare run|list|show``: the same prompts answered by several checkpoints, side by side, and
the comparisons saved under LAB_HOME/comparisons/.

    python -m lab compare run --source tiny --source run:<id> --prompt "What is 7 times 8?" --save --html out.html
    python -m lab compare run --source tiny --source run:<id> --prompt "Hi" --reward-model run:<reward id>
    python -m lab compare list
    python -m lab compare show 20250101-120000 --markdown out.md
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from lab.cli import add_json_flag, emit, say
from lab.compare import MAX_SOURCES, Sampling
from lab.errors import LabError


def add_sampling_args(parser: argparse.ArgumentParser, defaults: Sampling) -> None:
    """``--max-new-tokens``, ``--temperature``, ``--top-p`` and ``--seed``, from the ``Sampling`` fields."""
    for f in fields(Sampling):
        default = getattr(defaults, f.name)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default,
                            help=f"{f.metadata['help']} (default {default})")


def sampling_from(args: argparse.Namespace) -> Sampling:
    return Sampling(**{f.name: getattr(args, f.name) for f in fields(Sampling)})


def add_export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", metavar="PATH", help="also write the comparison as Markdown here")
    parser.add_argument("--html", metavar="PATH", help="also write the comparison as a self-contained HTML page here")


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="answer the same prompts with several checkpoints",
                                  description="Answer the same prompts with 1–4 checkpoints (same settings and seed); "
                                  "with run:<id> sources, also their final/best numbers and config differences. "
                                  "Saved comparisons are listed and shown again.")
    sub = compare.add_subparsers(dest="compare_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="answer prompts with 1–4 checkpoints", description="Answer the same prompts with "
                         "1–4 checkpoints, batched, with the same settings and seed.")
    run.add_argument("--source", action="append", required=True,
                     help=f"tiny, run:<id>, a path or a hub id (repeat, up to {MAX_SOURCES})")
    run.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for several)")
    run.add_argument("--reward-model", default="", metavar="MODEL",
                     help="score every answer with this reward model (run:<id> of a reward-model run, or a folder or "
                     "hub id of a sequence classifier with one output) and give each checkpoint its mean")
    add_sampling_args(run, Sampling())
    run.add_argument("--save", action="store_true", help="keep it under LAB_HOME/comparisons/ (see compare list)")
    add_export_args(run)
    add_json_flag(run)
    run.set_defaults(handler=run_compare)

    lst = sub.add_parser("list", help="saved comparisons, newest first", description="Saved comparisons, newest first.")
    add_json_flag(lst)
    lst.set_defaults(handler=run_list)

    show = sub.add_parser("show", help="one saved comparison", description="One saved comparison: settings, answers, "
                          "run numbers; optionally exported again.")
    show.add_argument("id", help="its id, from compare list")
    add_export_args(show)
    add_json_flag(show)
    show.set_defaults(handler=run_show)


def export(args: argparse.Namespace, document: dict[str, Any]) -> None:
    from lab.compare import to_html, to_markdown

    for path, render in ((args.markdown, to_markdown), (args.html, to_html)):
        if path:
            try:
                Path(path).write_text(render(document))
            except OSError as err:  # a folder, a missing folder, no permission: the person's path to fix
                raise LabError(f"Could not write {path}: {err.strerror}.") from None
            say(f"wrote {path}")


def print_answers(document: dict[str, Any]) -> None:
    from lab.compare import name_in, reward_note

    print("settings: " + ", ".join(f"{k} {v}" for k, v in document["settings"].items()))
    if document.get("reward_model"):
        print(f"scored by {name_in(document, document['reward_model'])}: " + " · ".join(
            f"{name_in(document, a['source'])} {reward_note(a)}" for a in document["answers"]))
    for i, prompt in enumerate(document["prompts"]):
        print(f"## {prompt[-1]['content']}")
        for a in document["answers"]:
            note = f" ({reward_note(a, i)})" if "rewards" in a else ""
            print(f"[{name_in(document, a['source'])}]{note} {a['answers'][i]}")
    for r in document.get("runs") or []:
        print(f"run {name_in(document, r['run'])} ({r['run']}): final train loss {r['final_train_loss']}, "
              f"best eval loss {r['best_eval_loss']}")
    for d in document.get("config_diff") or []:
        print(f"{d['field']}: " + " · ".join(f"{name_in(document, k)} {v}" for k, v in d.items() if k != "field"))


def run_compare(args: argparse.Namespace) -> int:
    from lab.compare import check_request, comparison_document, save_comparison, side_by_side

    prompts = [[{"role": "user", "content": p}] for p in args.prompt]
    settings = sampling_from(args)
    check_request(args.source, prompts, args.reward_model)  # a scorer that is no reward model fails before answering
    answers = []
    for result in side_by_side(args.source, prompts, settings):
        say(f"{result.source}: {result.tokens_per_second} tokens/s")
        answers.append(result)
    document = comparison_document(args.source, prompts, settings, answers, reward_model=args.reward_model)
    if args.save:
        path = save_comparison(document)
        document = {"id": path.stem, **document}
        say(f"saved {path.stem} ({path})")
    export(args, document)
    emit(args, document, lambda: print_answers(document))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from lab.compare import list_comparisons

    found = list_comparisons()

    def human() -> None:
        for c in found:
            print(f"{c['id']}  {c['error']}" if "error" in c else
                  f"{c['id']}  {', '.join(c['names'])}  {c['prompts']} prompt(s): {c['first_prompt'][:60]}")
        if not found:
            print("no saved comparisons yet (compare run ... --save, or Save in the Compare tab)")

    emit(args, found, human)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lab.compare import load_comparison

    document = load_comparison(args.id)
    export(args, document)
    emit(args, document, lambda: print_answers(document))
    return 0
