"""What every tab's handlers share: errors become a toast and a status line, never a traceback; text is kept
readable; pickers offer what exists now (``lab.catalog``)."""

from __future__ import annotations

import functools
import html
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from markdown_it import MarkdownIt

from lab.errors import LabError, explain
from lab.home import Home
from lab.ui.inputs import checker

log = logging.getLogger(__name__)


def status_ok(message: str) -> str:
    return f"**✓ {message}**"


def error_text(message: str) -> str:
    return f"**⚠ {message}**"


def guarded(fn: Callable[..., dict], status: gr.components.Component | None, *bound: Any) -> Callable[..., dict]:
    """``fn`` with ``bound`` arguments first; errors become a toast plus a message in ``status``.

    ``LabError`` messages are shown as they are; anything else is logged with its traceback and
    said in a sentence (``user_message``). An event with no status line among its outputs passes
    ``status`` None: the message is raised as ``gr.Error``, which Gradio shows as a toast (and a
    client gets as the error's message). The signature seen by Gradio is ``fn``'s without ``bound``.
    An empty dict means "nothing changes" (``unchanged``). Inputs of the wrong type (an API client's) are refused
    with a message naming them (``lab.ui.inputs``).
    """
    inner = functools.partial(fn, *bound)
    check = checker(inner)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> dict:
        try:
            check(args, kwargs)
            return unchanged(inner(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - the UI must never show a traceback
            return failure(fn, err, status)

    run.__wrapped__ = inner  # type: ignore[attr-defined]  # Gradio reads the bound signature
    return run


def streamed(fn: Callable[..., Iterator[dict]], status: gr.components.Component,
             *bound: Any) -> Callable[..., Iterator[dict]]:
    """``guarded`` for handlers that stream: errors end the stream with a toast and a message in ``status``."""
    inner = functools.partial(fn, *bound)
    check = checker(inner)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Iterator[dict]:
        try:
            check(args, kwargs)
            for update in inner(*args, **kwargs):
                yield unchanged(update)
        except Exception as err:  # noqa: BLE001 - the UI must never show a traceback
            yield failure(fn, err, status)

    run.__wrapped__ = inner  # type: ignore[attr-defined]  # Gradio reads the bound signature
    return run


def unchanged(update: Any) -> Any:
    """A handler's empty dict as Gradio's "leave every output as it is" (``gr.skip()``): Gradio itself reads an
    empty dict as one output's value, which fails an event with several outputs and shows "{}" or an error in one
    with a single output."""
    return gr.skip() if isinstance(update, dict) and not update else update


def failure(fn: Callable, err: Exception, status: gr.components.Component | None) -> dict:
    """The toast and status line for ``err`` (or, with no status line, ``gr.Error``)."""
    # The page renders messages as HTML, and they quote what people typed and files hold (run:<id> lost "<id>" and
    # everything after it): their characters are shown as they are.
    message = html.escape(user_message(fn, err), quote=False)
    if status is None:
        raise gr.Error(message) from None
    gr.Warning(message)
    return {status: error_text(message)}


def user_message(fn: Callable, err: Exception) -> str:
    """What a person reads about ``err``: a ``LabError`` as it is; anything else is a case the lab does not
    handle yet, logged with its traceback and said in one sentence naming the action that failed."""
    if isinstance(err, LabError):
        return str(err)
    log.exception("%s failed", fn.__name__)
    action = fn.__name__.replace("_", " ").strip().capitalize()
    return f"{action} failed unexpectedly: {explain(err)} (the full error is in the app's log)."


def clip(text: str, limit: int = 300) -> str:
    """Samples of an untrained model can be one endless unbroken token: keep the table readable (cut long text,
    and let words of over 40 characters wrap, or they push the next column off the screen)."""
    text = text if len(text) <= limit else text[:limit] + " …"
    return re.sub(r"\S{40}", lambda m: m.group(0) + "\u200b", text)


# Markdown from models and datasets is rendered here, not by the page: one parser (CommonMark) decides what is code,
# HTML is never passed through (it shows as its characters), images are not loaded (an answer could otherwise make
# every labeler's browser fetch a URL), and links go only where markdown-it's default check allows (no javascript:).
# The page's own Markdown renderer then only sees the HTML written here, which it passes through as HTML blocks.
SAFE_MARKDOWN = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"]).disable(
    "image")


def _link_in_new_tab(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
    """A link in an answer opens beside the page (a labeler clicking one does not leave the pair they vote on)."""
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


SAFE_MARKDOWN.add_render_rule("link_open", _link_in_new_tab)


def safe_html(markdown: str) -> str:
    """Markdown as HTML whose raw HTML shows as text. Answers and prompts come from models and datasets, not from the
    lab: Gradio's sanitiser drops scripts but keeps styles and forms, enough for an answer to cover the labeling page
    ("press 1") or ask for a password; and escaping ``<`` in the Markdown itself missed cases where the lab's idea of
    a code span differed from the page's renderer's (an escaped backtick, unequal backtick runs, an indented fence)."""
    return SAFE_MARKDOWN.render(markdown)


def chat_markdown(messages: list[dict[str, Any]]) -> str:
    """A conversation as Markdown (its texts as written: show it through :func:`safe_html`): each turn labelled by its
    role; a tool call as the function's name with its arguments, and a tool's result labelled with the function it
    answers."""
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(f"*System: {message['content']}*")
        elif message["role"] == "tool":
            parts.append(f"**Tool result ({message.get('name') or 'tool'}):**\n```\n{message['content']}\n```")
        else:
            calls = [f"**→ calls `{c['function']['name']}`** with\n```json\n"
                     f"{json.dumps(c['function']['arguments'], ensure_ascii=False, indent=1)}\n```"
                     for c in message.get("tool_calls") or []]
            head = f"**{message['role'].capitalize()}:**"
            said = f"{head} {message['content']}" if message["content"] or not calls else head
            parts.append("\n\n".join([said, *calls]))
    return "\n\n".join(parts)


def chat_html(messages: list[dict[str, Any]]) -> str:
    """A conversation as the lab shows it: :func:`chat_markdown` through :func:`safe_html`."""
    return safe_html(chat_markdown(messages))


@dataclass
class OnShow:
    """What a tab refreshes when it is shown and when the page loads, so its pickers and lists hold what exists
    now (a dataset saved in Data is in Train's picker without a reload). ``fn`` takes the values of ``inputs`` (none
    by default: most refreshes need nothing of the page) and returns ``{component: update}`` for ``outputs``. A
    picker refreshed this way also takes ``allow_custom_value=True``: Gradio checks an API caller's value against the
    choices the app started with, so the handler checks it."""
    fn: Callable[..., dict]
    outputs: list[gr.components.Component]
    inputs: list[gr.components.Component] = field(default_factory=list)


REFRESH_CLASS = "lab-refresh"
# Gradio buttons take no aria-label: the page names each ↻ for screen readers and shows the name as a tooltip.
REFRESH_SCRIPT = f"""
<script>
new MutationObserver(() => {{
  for (const button of document.querySelectorAll('button.{REFRESH_CLASS}:not([aria-label])')) {{
    button.setAttribute('aria-label', 'Refresh the list');
    button.title = 'Refresh the list';
  }}
}}).observe(document.documentElement, {{childList: true, subtree: true}});
</script>
"""


def refresh_button() -> gr.Button:
    """The small ↻ beside a picker that lists what exists now."""
    return gr.Button("↻", scale=0, min_width=40, elem_classes=REFRESH_CLASS)


def wire_on_show(tab: gr.Tab, page: gr.Blocks, refreshes: list[OnShow]) -> None:
    for refresh in refreshes:
        for event in (tab.select, page.load):
            event(refresh.fn, inputs=refresh.inputs or None, outputs=refresh.outputs, api_visibility="private",
                  queue=False)


def number(value: float | None) -> str:
    """A statistic (κ, a score) to two decimals, or a dash where there is none yet."""
    return f"{value:.2f}" if value is not None else "–"


def percent(value: float | None) -> str:
    """A share as a whole percentage, or a dash where there is none yet."""
    return f"{value:.0%}" if value is not None else "–"


def signed_in_line(page: gr.Blocks, home: Home, *, logout: str) -> gr.HTML:
    """A line filled in for each visitor as ``page`` loads (:func:`signed_in_update`). Call inside the page's
    Blocks."""

    def line(request: gr.Request) -> dict:  # a closure, not a partial: Gradio finds gr.Request by a function's hints
        return signed_in_update(home, request.username, logout)

    shown = gr.HTML(visible=False)  # not Markdown, whose links open a new tab: Sign out leaves this page
    page.load(line, outputs=shown, api_visibility="private", queue=False)
    return shown


def signed_in_update(home: Home, username: str | None, logout: str) -> dict:
    """"Signed in as NAME · Sign out" while sign-in is on (``logout``: the sign-out route of the app the page
    belongs to); nothing while the lab is open to whoever reaches it."""
    from lab.label.accounts import sign_in_required

    if not sign_in_required(home):
        return gr.update(visible=False)
    return gr.update(value=f'Signed in as <b>{html.escape(username or "")}</b> · <a href="{logout}" '
                           'target="_self">Sign out</a>', visible=True)
