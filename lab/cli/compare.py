"""``python -m lab compare``: the same prompts answered by several checkpoints, side by side."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from lab.cli import add_json_flag, emit, say


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="answer the same prompts with several checkpoints",
                                  description="Answer the same prompts with 1–4 checkpoints (same settings and seed); "
                                  "with run:<id> sources, also their final/best numbers and config differences.")
    compare.add_argument("--source", action="append", required=True,
                         help="tiny, run:<id>, a path or a hub id (repeat, up to four)")
    compare.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for several)")
    compare.add_argument("--max-new-tokens", type=int, default=96)
    compare.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    compare.add_argument("--top-p", type=float, default=1.0)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--markdown", metavar="PATH", help="also write the comparison as Markdown here")
    add_json_flag(compare)
    compare.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lab.compare import config_diff, run_ids, run_numbers, side_by_side, to_markdown

    prompts = [[{"role": "user", "content": p}] for p in args.prompt]
    settings = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "seed": args.seed}
    answers = []
    for result in side_by_side(args.source, prompts, **settings):
        say(f"{result.source}: {result.tokens_per_second} tokens/s")
        answers.append({**asdict(result), "tokens_per_second": result.tokens_per_second})
    ids = run_ids(args.source)
    document = {"settings": settings, "sources": args.source, "prompts": prompts, "answers": answers,
                "runs": run_numbers(ids) if ids else [], "config_diff": config_diff(ids) if len(ids) > 1 else []}
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(document))

    def human() -> None:
        for i, prompt in enumerate(args.prompt):
            print(f"## {prompt}")
            for a in answers:
                print(f"[{a['source']}] {a['answers'][i]}")

    emit(args, document, human)
    return 0
