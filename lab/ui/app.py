"""The web app: five tabs (Data · Train · Compare · Label · Eval) over the ``lab`` engine.

Run it::

    python app.py                       # http://127.0.0.1:7860 (labelers: http://127.0.0.1:7860/label/)
    python app.py --host 0.0.0.0 --port 8080
    LAB_HOME=/data/lab LAB_PORT=8080 python app.py

Two Gradio apps share one server: the full lab at ``/`` and the labeling page alone at ``/label``. With
no accounts in the store the lab is a local single-user tool and both are open; once accounts exist
(``python -m lab label user add``), both ask to sign in when the app starts: ``/`` admits admins only,
``/label`` any account.

Heavy libraries (torch, transformers, trl) are imported inside handlers, never here, so the
app starts in a few seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

import gradio as gr

from lab.home import Home, lab_home
from lab.housekeeping import keep_ticking
from lab.label.accounts import sign_in_required
from lab.label.throttle import SignInThrottle
from lab.paths import ALLOWED_ENV
from lab.ui import compare_tab, data_tab, eval_tab, label_tab, server, train_tab
from lab.ui.common import wire_on_show

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
"""
TAB_ORDER = ("Data", "Train", "Compare", "Label", "Eval")
GRACEFUL_STOP_S = 3  # seconds a stopping server waits for open connections
# Gradio's own copies of uploads and downloads: checked hourly, removed after an hour (the lab keeps what it needs
# under LAB_HOME/uploads, and a download is made again on request), and all of them when the server restarts.
CACHE_KEPT_S = (3600, 3600)


def build_app(home: Home | str | os.PathLike | None = None, *, sign_in: bool = False) -> gr.Blocks:
    """The app's Blocks, reading and writing under ``home`` (default: ``$LAB_HOME`` or ./lab_home)."""
    home = home if isinstance(home, Home) else lab_home(home)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_KEPT_S) as demo:
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
                                                                      tabs=tabs), home)
                    elif title == "Compare":
                        refreshes = compare_tab.on_show(compare_tab.build(home), home)
                    else:
                        refreshes = eval_tab.on_show(eval_tab.build(home), home)
                wire_on_show(tab, demo, refreshes)
    demo.queue(default_concurrency_limit=4)
    return demo


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
    from fastapi import FastAPI

    args = parse_args(argv)
    if args.allow_path:  # lab.paths reads the allow-list from the environment, as handlers run
        os.environ[ALLOWED_ENV] = os.pathsep.join(filter(None, [os.environ.get(ALLOWED_ENV), *args.allow_path]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = lab_home(args.home)
    os.environ.update(home.kernel_cache_env())  # Compare generates in this process (lab.decode compiles)
    keep_ticking(home)  # queued runs start within seconds of a GPU coming free, whoever died (lab.housekeeping)
    sign_in = sign_in_required(home)
    common = dict(
        ssr_mode=False,
        run_history=False,  # the lab keeps its own records; no copies of dataset rows in the browser
        footer_links=["api"],
        css=CSS,
        theme=gr.themes.Soft(),
        head=label_tab.SHORTCUTS,
    )
    throttle = SignInThrottle()  # one for both apps: guesses at / and at /label count together
    app = FastAPI()
    # The labeling page serves no files: no allowed_paths, Gradio's file routes refused, and Gradio's own checks
    # told to refuse LAB_HOME and its caches, which hold copies of the admin app's downloads.
    gr.mount_gradio_app(app, label_tab.labeling_app(home, sign_in), "/label",
                        auth=server.authenticator(home, throttle) if sign_in else None,
                        auth_message="Sign in to label. " + throttle.rule(), blocked_paths=server.unservable(home),
                        **common)
    gr.mount_gradio_app(app, build_app(home, sign_in=sign_in), "/",
                        auth=server.authenticator(home, throttle, admin_only=True) if sign_in else None,
                        auth_message="Admins sign in here; labelers sign in at /label/. " + throttle.rule(),
                        allowed_paths=[str(home.exports)], **common)
    app.add_middleware(server.NoFilesUnder, prefix="/label")
    app.add_middleware(server.ClientAddress)
    print(f"* Running on http://{args.host}:{args.port} (labeling page: /label/"
          f"{'; sign-in required' if sign_in else ''})", flush=True)
    # A browser's open event stream would otherwise hold a stop (Ctrl-C, SIGTERM) for as long as it stays open.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=GRACEFUL_STOP_S)


if __name__ == "__main__":
    main()
