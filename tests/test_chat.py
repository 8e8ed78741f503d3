"""The chat playground: multi-turn conversations keep their history and system prompt, replies stream, undo
and retry; through the engine, the CLI (scripted with --json, and the REPL on stdin) and the real app."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gradio_client import Client

from lab.chat import add_exchange, messages_for, rendered_prompt, stream_reply, undo
from lab.compare import Sampling, cached_model

ROOT = Path(__file__).resolve().parents[1]
GREEDY = Sampling(max_new_tokens=12)


def chat(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", "chat", *args], capture_output=True, text=True, cwd=ROOT,
                          input=stdin, env={**os.environ, "LAB_HOME": str(home)})


def test_second_reply_sees_the_first_exchange_and_the_system_prompt(tiny_home):
    from lab.models import generate_with

    system, history = "Answer in one line.", []
    replies = list(stream_reply("tiny", messages_for(system, history, "Hello there"), GREEDY, tiny_home))
    assert len(replies) > 1 and replies[-1].finished and not replies[0].finished  # streamed
    history = add_exchange(history, "Hello there", replies[-1].text)
    second = messages_for(system, history, "What did I just say?")
    prompt = rendered_prompt("tiny", second, tiny_home)
    first_exchange = f"<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n{replies[-1].text}<|im_end|>"
    assert prompt.startswith(f"<|im_start|>system\n{system}<|im_end|>\n" + first_exchange)
    assert prompt.endswith("<|im_start|>user\nWhat did I just say?<|im_end|>\n<|im_start|>assistant\n")
    # The streamed reply is the model's answer to exactly that prompt.
    model, tokenizer = cached_model("tiny", tiny_home)
    reply = list(stream_reply("tiny", second, GREEDY, tiny_home))[-1]
    assert [reply.text] == generate_with(model, tokenizer, [second], max_new_tokens=12)
    assert 0 < reply.new_tokens <= 12


def test_undo_drops_the_last_exchange_and_gives_its_message_back():
    history = add_exchange(add_exchange([], "one", "1"), "two", "2")
    assert undo(history) == (history[:2], "two")
    assert undo([]) == ([], None)
    assert messages_for("", history)[0]["role"] == "user"  # no system prompt: no system message


def test_cli_chat_scripted_with_json_keeps_each_sources_history(tiny_home):
    done = chat(tiny_home.root, "--source", "tiny", "--source", "tiny", "--system", "Be brief.", "--message", "Hi",
                "--message", "And then?", "--max-new-tokens", "6", "--temperature", "0", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["settings"]["temperature"] == 0.0 and len(document["conversations"]) == 2
    for conversation in document["conversations"]:
        messages = conversation["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
        first_reply = messages[2]["content"]
        assert f"Hi<|im_end|>\n<|im_start|>assistant\n{first_reply}<|im_end|>" in conversation["last_prompt"]
        assert conversation["last_prompt"].startswith("<|im_start|>system\nBe brief.")
        assert len(conversation["replies"]) == 2 and conversation["replies"][0]["tokens_per_second"] > 0


def test_cli_chat_repl_reads_lines_with_undo_and_retry(tiny_home):
    lines = "Hi\n/retry\n/undo\n/undo\n\n/quit\n"
    done = chat(tiny_home.root, "--source", "tiny", "--max-new-tokens", "4", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "(again with seed 1)" in done.stderr and "(undone)" in done.stderr and "(nothing to undo)" in done.stderr
    assert len(done.stdout.strip().splitlines()) == 2  # a reply, and the retried one


def text_of(message: dict) -> str:
    """A message's text as written, less the paragraph tags the lab's rendering wraps it in (as_shown)."""
    return re.sub(r"</?p>", "", "".join(part["text"] for part in message["content"])).strip()


def test_playground_two_at_once_through_the_app(lab_app):
    from lab.home import lab_home
    from lab.models import tiny_model_path

    client = Client(lab_app.url, verbose=False)
    a, b = "tiny", str(tiny_model_path(lab_home(lab_app.home)))  # the same weights under two names
    settings = ["You are terse.", 8, 0.8, 0.95, 0]
    bot_a, bot_b, status, *_ = client.predict("Hello", a, b, True, *settings, api_name="/chat_send")
    assert [m["role"] for m in bot_a] == ["user", "assistant"] and text_of(bot_b[0]) == "Hello"
    assert f"A ({a}):" in status and f"B ({b}):" in status and "tok/s" in status
    bot_a, bot_b, *_ = client.predict("And now?", a, b, True, *settings, api_name="/chat_send")
    assert len(bot_a) == len(bot_b) == 4 and text_of(bot_a[2]) == "And now?"
    first_replies = [text_of(bot_a[3]), text_of(bot_b[3])]

    bot_a, bot_b, status, _, seed = client.predict(a, b, True, *settings, api_name="/chat_retry")
    assert seed == 1 and len(bot_a) == len(bot_b) == 4 and text_of(bot_a[2]) == "And now?"
    assert [text_of(bot_a[3]), text_of(bot_b[3])] != first_replies or not any(first_replies)

    bot_a, bot_b, status, message, _ = client.predict(True, api_name="/chat_undo")
    assert len(bot_a) == len(bot_b) == 2 and message == "And now?"
    bot_a, bot_b, status, *_ = client.predict(api_name="/chat_clear")
    assert bot_a == bot_b == [] and "Cleared" in status
    *_, status, _, _ = client.predict("Hi", "no/such-model", b, False, *settings, api_name="/chat_send")
    assert "Could not load" in status
