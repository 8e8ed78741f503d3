"""The chat playground's engine: multi-turn conversations with any checkpoint, streamed token by token.

A conversation is a plain list of ``{"role": "user" | "assistant", "content"}`` messages; the system prompt is
kept apart and put in front at every turn, so changing it applies to the whole conversation. Models come
from the Compare cache (``lab.compare.cached_model``): the playground and Compare share what is loaded.

    python -m lab chat --source tiny --system "Answer briefly."              # a REPL on stdin
    python -m lab chat --source tiny --source run:<id> --message Hi --message "And then?" --json
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from lab.compare import Sampling, cached_model, stream_generate
from lab.errors import LabError
from lab.home import Home, lab_home

# The playground samples by default (a chat should not answer the same way on every retry); Compare is greedy.
CHAT_SAMPLING = Sampling(max_new_tokens=128, temperature=0.7, top_p=0.95, seed=0)
ROLES = ("user", "assistant")


@dataclass
class Reply:
    text: str
    finished: bool = False  # False while streaming: the reply so far
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return round(self.new_tokens / self.seconds, 1) if self.seconds else 0.0


def messages_for(system: str, history: list[dict[str, str]], user: str | None = None) -> list[dict[str, str]]:
    """What the model is given: the system prompt (if any), the conversation so far, and the new user message."""
    for i, message in enumerate(history):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise LabError(f"Conversation message {i + 1} must be a user or assistant message with text "
                           f"(got {message!r}).")
    messages = ([{"role": "system", "content": system.strip()}] if system and system.strip() else []) + history
    return messages + ([{"role": "user", "content": user}] if user is not None else [])


def stream_reply(source: str, messages: list[dict[str, str]], settings: Sampling = CHAT_SAMPLING,
                 home: Home | None = None) -> Iterator[Reply]:
    """The reply of ``source`` to ``messages`` (ending with the user's), as it grows; the last one is finished
    and carries its token count and time."""
    if not messages or messages[-1]["role"] != "user":
        raise LabError("A reply needs a conversation that ends with a user message.")
    model, tokenizer = cached_model(source, home or lab_home())
    started = time.perf_counter()
    for step in stream_generate(model, tokenizer, [messages], settings):
        yield Reply(step.texts[0], step.finished, step.new_tokens,
                    time.perf_counter() - started if step.finished else 0.0)


def rendered_prompt(source: str, messages: list[dict[str, str]], home: Home | None = None) -> str:
    """``messages`` as ``source`` sees them: its chat template, with the assistant turn opened."""
    from lab.models import chat_texts

    _, tokenizer = cached_model(source, home or lab_home())
    return chat_texts(tokenizer, [messages])[0]


def add_exchange(history: list[dict[str, str]], user: str, reply: str) -> list[dict[str, str]]:
    return [*history, {"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def undo(history: list[dict[str, str]]) -> tuple[list[dict[str, str]], str | None]:
    """The conversation without its last exchange, and that exchange's user message (``None`` when empty)."""
    for i in range(len(history) - 1, -1, -1):
        if history[i]["role"] == "user":
            return history[:i], history[i]["content"]
    return [], None
