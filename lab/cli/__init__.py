"""The command line: ``python -m lab {serve,data,train,runs,label,compare,eval} ...``.

Conventions for every command: ``--help`` everywhere; messages for people go to stderr; with
``--json``, stdout holds exactly one JSON document (``{"error": ...}`` when the command failed);
a ``LabError`` becomes one sentence on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from lab.errors import LabError


def say(message: str) -> None:
    """A message for a person: always stderr, so stdout stays clean for ``--json``."""
    print(message, file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, document: Any, human: Callable[[], None]) -> None:
    """Print ``document`` as JSON with ``--json``, else call ``human`` to print it for people."""
    if getattr(args, "json", False):
        print(json.dumps(document, ensure_ascii=False, indent=2, default=str))
    else:
        human()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout (for scripts)")


def build_parser() -> argparse.ArgumentParser:
    from lab import __version__
    from lab.cli import chat, compare, data, eval as evaluate, label, train

    parser = argparse.ArgumentParser(prog="python -m lab", description="The fine-tuning lab: data → SFT → "
                                     "human preferences → DPO → evaluation.")
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    parser.add_argument("--home", help="the lab's home folder (default: $LAB_HOME or ./lab_home)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="start the web app", description="Start the web app.")
    serve.add_argument("--host", default=None, help="interface to listen on (default: $LAB_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $LAB_PORT or 7860)")
    serve.set_defaults(handler=run_serve)

    data.register(commands)
    train.register(commands)
    label.register(commands)
    evaluate.register(commands)
    compare.register(commands)
    chat.register(commands)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    from lab.ui.app import main as serve

    argv = []
    if args.host:
        argv += ["--host", args.host]
    if args.port:
        argv += ["--port", str(args.port)]
    serve(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.home:
        import os

        os.environ["LAB_HOME"] = args.home
    try:
        return args.handler(args) or 0
    except LabError as err:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(err)}, ensure_ascii=False))
        say(f"error: {err}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
