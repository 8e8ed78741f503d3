"""The web app: five tabs (Data · Train · Compare · Label · Eval) over the ``lab`` engine.

Run it::

    python app.py                       # http://127.0.0.1:7860 (labelers: http://127.0.0.1:7860/label/)
    python app.py --host 0.0.0.0 --port 8080
    LAB_HOME=/data/lab LAB_PORT=8080 python app.py

Two Gradio apps share one server: the full lab at ``/`` and the labeling page alone at ``/label``. With
no accounts in the store (and no Hugging Face sign-in configured) the lab is a local single-user tool and both
are open. As soon as the first account exists (an admin: ``python -m lab label user add NAME --role admin``,
or the Label tab's Accounts), both ask to sign in, on the next request, without a restart: ``/`` admits admins
only, ``/label`` any account, and a labeler who signs in at ``/`` is sent on to ``/label/``. Roles are read
from the store on every request (``lab.ui.server.sign_in_per_request``). With ``LAB_HF_ADMINS`` or
``LAB_HF_LABELERS`` set, people may also sign in with Hugging Face (Gradio's OAuth; a local mock off a Space),
and their role comes from those lists (``lab.label.accounts.hf_role``).

Banners at the top of the lab say what an operator must know: a Space without persistent storage, training
switched off (``LAB_NO_TRAINING``, set by the Space's entry without a GPU); see ``lab.space`` and
docs/space.md.

Heavy libraries (torch, transformers, trl) are imported inside handlers, never here, so the
app starts in a few seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from lab.data.limits import read_limits
from lab.data.versions import sweep_staging
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.housekeeping import keep_ticking
from lab.label.accounts import HF_MOCK_ENV, hf_sign_in, hf_sign_in_refusal
from lab.label.throttle import SignInThrottle
from lab.paths import ALLOWED_ENV
from lab.space import banners, on_space
from lab.train.warm import keep_warm
from lab.ui import compare_tab, data_tab, eval_tab, label_tab, server, train_tab
from lab.ui.common import REFRESH_SCRIPT, signed_in_line, wire_on_show

TITLE = "Fine-tuning lab"
INTRO = (
    f"# {TITLE}\n"
    "Bring a dataset in and clean it (**Data**), fine-tune on it (**Train**), look at checkpoints side "
    "by side (**Compare**), collect human preferences (**Label**) and score everything (**Eval**)."
)
CSS = """
.lab-status p { margin: 0; }
.lab-step { margin-top: 0.75rem; }
/* Gradio puts elem_classes on a Markdown's block and on its prose: style the block only. */
.block.lab-prompt { background: #f8fafc; border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px 14px; }
.block.lab-response { border: 1px solid #cbd5e1; border-radius: 8px; padding: 12px 14px; min-height: 140px;
                background: #ffffff; }
.prose.lab-warning { background: #fff7ed; border: 1px solid #fdba74; border-radius: 8px; padding: 8px 12px;
                     color: #7c2d12; }
.block.lab-banner { background: #fef3c7; border: 1px solid #f59e0b; border-radius: 8px; padding: 8px 14px; }
.block.lab-banner p { margin: 0; color: #78350f; }
/* A dropdown's chosen text ends in "…" before its arrow, which Gradio lays over the input's last 30 px. */
.secondary-wrap > input[role="combobox"] { box-sizing: border-box; padding-right: 30px; text-overflow: ellipsis; }
/* Table headers wrap between words, never inside one ("gold accurac y"). */
th .header.wrap { word-break: normal; overflow-wrap: normal; }
/* The chat's label badge floats over the conversation's top, where it covered the first message: it takes a row of
   its own above the messages (its buttons sit at that row's right end). */
.lab-chat .wrapper > label.float { position: static; align-self: flex-start; margin: 4px 0 4px 4px; }
/* One way to clear the playground, "✕ Clear" (both conversations, as Retry and Undo act on both): each chat's own
   trash button is hidden. */
.lab-chat button[aria-label="Clear"] { display: none; }
"""
TAB_ORDER = ("Data", "Train", "Compare", "Label", "Eval")
GRACEFUL_STOP_S = 3  # seconds a stopping server waits for open connections
# Gradio's own copies of uploads and downloads: checked hourly, removed after an hour (the lab keeps what it needs
# under LAB_HOME/uploads, and a download is made again on request), and all of them when the server restarts.
CACHE_KEPT_S = (3600, 3600)


def build_app(home: Home | str | os.PathLike | None = None, *, sign_in: bool = False) -> gr.Blocks:
    """The app's Blocks, reading and writing under ``home`` (default: ``$LAB_HOME`` or ./lab_home). ``sign_in``:
    the handlers ask who is calling (``lab.label.accounts.identify``); without it everyone is the local admin."""
    home = home if isinstance(home, Home) else lab_home(home)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_KEPT_S) as demo:
        for text in banners(home):
            gr.Markdown(f"⚠ **{text}**", elem_classes="lab-banner")
        if sign_in:
            signed_in_line(demo, home, logout="/logout")
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            for title in TAB_ORDER:
                with gr.Tab(title, id=title.lower()) as tab:
                    if title == "Data":
                        refreshes = data_tab.on_show(data_tab.build(home), home)
                    elif title == "Train":
                        train_ui = train_tab.build(home)
                        refreshes = train_tab.on_show(train_ui, home)
                    elif title == "Label":
                        refreshes = label_tab.on_show(label_tab.build(home, sign_in, train_form=train_ui.form,
                                                                      tabs=tabs, train_status=train_ui.status),
                                                      home)
                    elif title == "Compare":
                        refreshes = compare_tab.on_show(compare_tab.build(home), home)
                    else:
                        refreshes = eval_tab.on_show(eval_tab.build(home), home)
                wire_on_show(tab, demo, refreshes)
    demo.queue(default_concurrency_limit=4)
    return demo


def with_hf_sign_in(page: gr.Blocks) -> gr.Blocks:
    """``page`` with Gradio's "Sign in with Hugging Face" button at its top when Hugging Face sign-in is configured
    (the button is what makes Gradio add its OAuth routes; once signed in it reads "Sign out (name)")."""
    if hf_sign_in():
        with page, gr.Row():
            # No icon: Gradio serves its logo through the file routes, which the labeling page refuses.
            gr.LoginButton(logout_value="Sign out of Hugging Face ({})", size="sm", icon=None, scale=0,
                           min_width=260)
        page.children.insert(0, page.children.pop())  # added last, shown first
    return page


def sign_in_message(text: str, throttle: SignInThrottle, *, target: str) -> str:
    """What Gradio's sign-in page shows above its form (HTML): ``text``, the Hugging Face link when that sign-in is
    configured (back to ``target`` afterwards), and the throttle's rule."""
    link = (f' Or <a href="/login/huggingface?_target_url={target}"><b>sign in with Hugging Face</b></a> (for the '
            "usernames the operator listed).") if hf_sign_in() else ""
    return f"{text}{link} {throttle.rule()}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start the fine-tuning lab's web app.")
    parser.add_argument("--host", default=os.environ.get("LAB_HOST", "127.0.0.1"),
                        help="Address to listen on (env LAB_HOST; default 127.0.0.1, only this machine).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", "7860")),
                        help="Port to listen on (env LAB_PORT; default 7860).")
    parser.add_argument("--home", default=None, help="Lab home folder (default: $LAB_HOME or ./lab_home).")
    parser.add_argument("--allow-path", action="append", default=[], metavar="FOLDER",
                        help="A folder whose files the web app may import by path, besides LAB_HOME/imports and "
                             f"uploads (repeatable; env {ALLOWED_ENV}, {os.pathsep!r}-separated).")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    refusal = hf_sign_in_refusal()
    if refusal is None and hf_sign_in() and os.environ.get(HF_MOCK_ENV) == "1" and args.host not in server.LOOPBACK:
        refusal = f"{HF_MOCK_ENV}=1 serves Gradio's stand-in for Hugging Face sign-in, which anyone could get past: on " \
                  f"127.0.0.1 only, not on {args.host}."
    if refusal:
        raise SystemExit(f"error: {refusal}")
    if args.allow_path:  # lab.paths reads the allow-list from the environment, as handlers run
        os.environ[ALLOWED_ENV] = os.pathsep.join(filter(None, [os.environ.get(ALLOWED_ENV), *args.allow_path]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = lab_home(args.home)
    os.environ.update(home.kernel_cache_env())  # Compare generates in this process (lab.decode compiles)
    keep_ticking(home)  # queued runs start within seconds of a GPU coming free, whoever died (lab.housekeeping)
    sweep_staging(home)  # dataset files a server killed mid-import left half-written (never listed)
    keep_warm(home)  # a pre-imported process that forks runs, so Start skips the imports (lab.train.warm)
    app = server_app(home)
    # Only the names this server is reached by: a web page whose name its author points at 127.0.0.1 (DNS rebinding)
    # would otherwise drive the open lab, accounts and all, from the operator's own browser.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=server.allowed_hosts(args.host))
    print(f"* Running on http://{args.host}:{args.port} (labeling page: /label/; sign-in as soon as an account "
          f"exists{'; Sign in with Hugging Face on' if hf_sign_in() else ''})", flush=True)
    # A browser's open event stream would otherwise hold a stop (Ctrl-C, SIGTERM) for as long as it stays open.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=GRACEFUL_STOP_S,
                forwarded_allow_ips=server.forwarded_allow_ips())


def server_app(home: Home) -> FastAPI:
    """What the server serves: the full lab at ``/`` and the labeling page at ``/label``, with sign-in decided on
    each request, and the middleware around them (``lab.ui.server``)."""
    common = dict(
        ssr_mode=False,
        run_history=False,  # the lab keeps its own records; no copies of dataset rows in the browser
        footer_links=["api"],
        css=CSS,
        theme=gr.themes.Soft(),
        head=label_tab.SHORTCUTS + REFRESH_SCRIPT,
        max_file_size=read_limits().max_import_bytes,  # a bigger upload could not be imported anyway
        # Gradio 6's own translations lack the words its status line says to screen readers after each event,
        # which then read out the keys ("common.complete").
        i18n=gr.I18n(en={"common.complete": "Done", "common.error": "Error", "common.loading": "Loading",
                         "common.progress": "Progress", "common.clear": "Clear"}),
    )
    refusal = hf_sign_in_refusal()
    if refusal:
        raise LabError(refusal)
    throttle = SignInThrottle()  # one for both apps: guesses at / and at /label count together
    authenticate = server.authenticator(home, throttle)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # Gradio's own API pages say what there is
    # Gradio's sign-out at /label/logout sends the browser to /label, which the mount at /label/ does not answer (the
    # app at / would, with a 404): on to the labeling page's sign-in. Relative, so a proxy's path prefix is kept.
    app.add_api_route("/label", lambda: RedirectResponse("label/", status_code=302), methods=["GET"],
                      include_in_schema=False)
    # Both apps always have Gradio's sign-in; whether it is asked for is decided on each request (no account: open).
    # The labeling page serves no files: no allowed_paths, Gradio's file routes refused, and Gradio's own checks
    # told to refuse LAB_HOME and its caches, which hold copies of the admin app's downloads.
    labeling, admin = with_hf_sign_in(label_tab.labeling_app(home, True)), with_hf_sign_in(build_app(home, sign_in=True))
    # Labelers see no footer ("Use via API" is for the people who run the lab; the API itself is unchanged).
    gr.mount_gradio_app(app, labeling, "/label", auth=authenticate,
                        auth_message=sign_in_message("Sign in to label.", throttle, target="/label/"),
                        blocked_paths=server.unservable(home), **{**common, "footer_links": []})
    gr.mount_gradio_app(app, admin, "/", auth=authenticate,
                        auth_message=sign_in_message("Sign in to the lab; labelers are sent on to the labeling page.",
                                                     throttle, target="/"),
                        allowed_paths=[str(home.exports)], **common)
    for blocks in (labeling, admin):
        # Gradio checks that a file a request names came through its upload route (and that a file an event returns
        # lies in an allowed folder) only in apps it counts as launched, which mounting never marks: without this,
        # a request could name any file on the server as an "upload" (docs/security.md).
        blocks.has_launched = True
    server.sign_in_per_request(app, home, admin_at="/", labeling_at="/label")
    server.unknown_api_not_found(app, "/", "/label")
    app.add_middleware(server.NoFilesUnder, prefix="/label")
    app.add_middleware(server.ClientAddress, proxied=on_space())
    # No origin but the page's own: Gradio's own CORS answers any origin, with credentials, when the host is not
    # localhost (a Space, a LAN address); a CORS policy of the parent's makes it stand aside.
    app.add_middleware(CORSMiddleware, allow_origins=[])
    return app

if __name__ == "__main__":
    main()
