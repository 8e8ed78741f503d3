"""``python -m lab chat``: talk to one checkpoint, or to two at once (each keeps its own conversation).

    python -m lab chat --source tiny --system "Answer briefly."         # REPL: a line is a message
    python -m lab chat --source tiny --source run:<id> --message Hi --message "Say more." --json

In the REPL, ``/undo`` drops the last exchange, ``/retry`` answers the last message again with the next seed,
``/clear`` starts over and ``/quit`` (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from typing import Any

from lab.chat import CHAT_SAMPLING
from lab.cli import add_json_flag, emit, say
from lab.cli.compare import add_sampling_args, sampling_from
from lab.compare import Sampling
from lab.errors import LabError


def register(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser("chat", help="talk to a checkpoint (or two at once), multi-turn, streamed",
                               description="Talk to a checkpoint: a REPL on stdin, or a scripted conversation with "
                               "--message. With two --source, each message goes to both, each with its own history.")
    chat.add_argument("--source", action="append", required=True,
                      help="tiny, run:<id>, a path or a hub id (twice for two at once)")
    chat.add_argument("--system", default="", help="the system prompt (default: none)")
    chat.add_argument("--message", action="append",
                      help="a user message (repeat for several turns); without it, read messages from stdin")
    add_sampling_args(chat, CHAT_SAMPLING)
    add_json_flag(chat)
    chat.set_defaults(handler=run_chat)


class Session:
    """The conversations of a REPL or a scripted chat: one history per source (the same source may be given
    twice, e.g. to see two seeds), and each reply's numbers."""

    def __init__(self, sources: list[str], system: str, settings: Sampling, stream: bool) -> None:
        self.sources, self.system, self.settings, self.stream = sources, system, settings, stream
        self.clear()

    def clear(self) -> None:
        self.histories: list[list[dict[str, str]]] = [[] for _ in self.sources]
        self.replies: list[list[dict[str, Any]]] = [[] for _ in self.sources]

    def send(self, text: str) -> None:
        from lab.chat import add_exchange, messages_for, stream_reply

        for i, source in enumerate(self.sources):
            prefix = f"[{source}] " if len(self.sources) > 1 else ""
            if self.stream:
                print(prefix, end="", flush=True)
            shown = ""
            for reply in stream_reply(source, messages_for(self.system, self.histories[i], text), self.settings):
                if self.stream and reply.text.startswith(shown):  # print what is new (the text only grows)
                    print(reply.text[len(shown):], end="", flush=True)
                    shown = reply.text
            if self.stream:
                print(flush=True)
                say(f"({reply.new_tokens} tokens, {reply.tokens_per_second} tokens/s)")
            self.histories[i] = add_exchange(self.histories[i], text, reply.text)
            self.replies[i].append({"text": reply.text, "new_tokens": reply.new_tokens,
                                    "seconds": round(reply.seconds, 3), "tokens_per_second": reply.tokens_per_second})

    def undo(self) -> str | None:
        from lab.chat import undo

        last = None
        for i in range(len(self.sources)):
            self.histories[i], last = undo(self.histories[i])
            self.replies[i] = self.replies[i][:-1]
        return last

    def document(self) -> dict[str, Any]:
        from lab.chat import messages_for, rendered_prompt

        out = []
        for source, history, replies in zip(self.sources, self.histories, self.replies):
            messages = messages_for(self.system, history)
            # What the model saw for its last reply: the conversation up to that reply's user message.
            out.append({"source": source, "messages": messages, "replies": replies,
                        "last_prompt": rendered_prompt(source, messages[:-1]) if history else ""})
        return {"system": self.system, "settings": asdict(self.settings), "conversations": out}


def run_chat(args: argparse.Namespace) -> int:
    if not 1 <= len(args.source) <= 2:
        raise LabError(f"Chat with one source, or two at once (got {len(args.source)}).")
    session = Session(args.source, args.system, sampling_from(args), stream=not args.json)
    if args.message:
        for text in args.message:
            if not args.json:
                print(f"you> {text}", flush=True)
            session.send(text)
        if args.json:
            emit(args, session.document(), lambda: None)
        return 0
    if args.json:
        raise LabError("--json needs --message: without it the chat reads a person's messages from stdin.")
    repl(session)
    return 0


def repl(session: Session) -> None:
    say(f"Chatting with {' and '.join(session.sources)}. /undo, /retry, /clear, /quit.")
    while True:
        if sys.stdin.isatty():
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/quit":
            return
        text = line.strip()
        if not text:
            continue
        if text == "/clear":
            session.clear()
            say("(cleared)")
        elif text == "/undo":
            say("(undone)" if session.undo() is not None else "(nothing to undo)")
        elif text == "/retry":
            last = session.undo()
            if last is None:
                say("(nothing to retry)")
                continue
            session.settings = replace(session.settings, seed=session.settings.seed + 1)
            say(f"(again with seed {session.settings.seed})")
            session.send(last)
        else:
            session.send(text)
