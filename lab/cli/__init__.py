"""The command line: ``python -m lab {serve,data,train,runs,label,compare,eval} ...``.

Conventions for every command: ``--help`` everywhere; messages for people go to stderr; with
``--json``, stdout holds exactly one JSON document (``{"error": ...}`` when the command failed);
a ``LabError`` becomes one sentence on stderr and exit status 1; so does any other error, whose
traceback is kept in ``LAB_HOME/logs/cli-errors.log``.
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
    from lab.cli import chat, compare, data, eval as evaluate, label, space, train

    parser = argparse.ArgumentParser(prog="python -m lab", description="The fine-tuning lab: data → SFT → "
                                     "human preferences → DPO → evaluation.")
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    parser.add_argument("--home", help="the lab's home folder (default: $LAB_HOME or ./lab_home)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="start the web app", description="Start the web app.")
    serve.add_argument("--host", default=None, help="interface to listen on (default: $LAB_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $LAB_PORT or 7860)")
    serve.add_argument("--allow-path", action="append", default=[], metavar="FOLDER",
                       help="a folder whose files the web app may import by path (repeatable; see docs/security.md)")
    serve.set_defaults(handler=run_serve)

    data.register(commands)
    train.register(commands)
    label.register(commands)
    evaluate.register(commands)
    compare.register(commands)
    chat.register(commands)
    space.register(commands)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    from lab.ui.app import main as serve

    argv = []
    if args.host:
        argv += ["--host", args.host]
    if args.port:
        argv += ["--port", str(args.port)]
    for folder in args.allow_path:
        argv += ["--allow-path", folder]
    serve(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.home:
        import os

        os.environ["LAB_HOME"] = args.home
    from lab.housekeeping import tick

    tick()  # whoever died, the queue moves on: dead runs, evaluations and campaigns settled, waiting runs started
    try:
        status = args.handler(args) or 0
        sys.stdout.flush()  # here, not at exit, so that a reader gone already is found below
        return status
    except LabError as err:
        return failed(args, str(err))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BrokenPipeError as err:
        closed = [stream for stream in (sys.stdout, sys.stderr) if reader_gone(stream)]
        if not closed:
            return failed(args, unexpected(args, err))  # some other pipe of the command's: a real failure
        return quiet_on_closed(closed)
    except Exception as err:  # noqa: BLE001 - a case the lab does not handle yet: a sentence, not a traceback
        return failed(args, unexpected(args, err))


SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what the shell reports for a command whose reader went away (yes | head -1)


def reader_gone(stream: Any) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (``python -m lab data show x | head -3``, once head has
    its lines): poll reports an error on such a pipe, and on nothing else a command writes to (a terminal, a file).
    Where poll is missing (Windows), assumed."""
    import select

    if not hasattr(select, "poll"):
        return True
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # stdout closed, or no file descriptor
        return True


def quiet_on_closed(streams: list[Any]) -> int:
    """Exit without a word once the reader of stdout (or stderr) has gone, as Unix tools do (Python's own recipe for
    SIGPIPE): those streams now point at /dev/null, since Python flushes them again at exit and would report that
    failure too."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in streams:
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):  # closed, or no file descriptor: nothing is flushed to it at exit
            pass
    os.close(devnull)
    return SIGPIPE_STATUS


def failed(args: argparse.Namespace, message: str) -> int:
    """``message`` on stderr (and as ``{"error": ...}`` with ``--json``); exit status 1."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message}, ensure_ascii=False))
    say(f"error: {message}")
    return 1


def unexpected(args: argparse.Namespace, err: Exception) -> str:
    """One sentence for an error that is no ``LabError``; its traceback goes to LAB_HOME/logs/cli-errors.log, for
    the bug report (printed instead when that file cannot be written)."""
    import traceback
    from datetime import datetime

    from lab.errors import explain
    from lab.home import lab_home

    command = " ".join(str(v) for k, v in vars(args).items() if k == "command" or k.endswith("_command"))
    sentence = f"{command} failed unexpectedly: {explain(err)}"
    try:
        log = lab_home().root / "logs" / "cli-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"--- {datetime.now().isoformat(timespec='seconds')} python -m lab {command}\n")
            out.write("".join(traceback.format_exception(err)))
    except OSError:
        traceback.print_exception(err)
        return f"{sentence} (traceback above)."
    return f"{sentence}; the traceback is in {log}."
