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
from lab.label.accounts import role_of, sign_in_required, verify
from lab.ui import compare_tab, data_tab, eval_tab, label_tab, train_tab

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


def build_app(home: Home | str | os.PathLike | None = None, *, sign_in: bool = False) -> gr.Blocks:
    """The app's Blocks, reading and writing under ``home`` (default: ``$LAB_HOME`` or ./lab_home)."""
    home = home if isinstance(home, Home) else lab_home(home)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            for title in TAB_ORDER:
                with gr.Tab(title, id=title.lower()):
                    if title == "Data":
                        data_tab.build(home)
                    elif title == "Train":
                        train_ui = train_tab.build(home)
                    elif title == "Label":
                        label_tab.build(home, sign_in, train_form=train_ui.form, tabs=tabs)
                    elif title == "Compare":
                        compare_tab.build(home)
                    else:
                        eval_tab.build(home)
    demo.queue(default_concurrency_limit=4)
    return demo


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start the fine-tuning lab's web app.")
    parser.add_argument("--host", default=os.environ.get("LAB_HOST", "127.0.0.1"),
                        help="Address to listen on (env LAB_HOST; default 127.0.0.1, only this machine).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", "7860")),
                        help="Port to listen on (env LAB_PORT; default 7860).")
    parser.add_argument("--home", default=None, help="Lab home folder (default: $LAB_HOME or ./lab_home).")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn
    from fastapi import FastAPI

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = lab_home(args.home)
    os.environ.update(home.kernel_cache_env())  # Compare generates in this process (lab.decode compiles)
    sign_in = sign_in_required(home)
    common = dict(
        allowed_paths=[str(home.exports)],
        ssr_mode=False,
        run_history=False,  # the lab keeps its own records; no copies of dataset rows in the browser
        footer_links=["api"],
        css=CSS,
        theme=gr.themes.Soft(),
        head=label_tab.SHORTCUTS,
    )
    app = FastAPI()
    gr.mount_gradio_app(app, label_tab.labeling_app(home, sign_in), "/label",
                        auth=(lambda user, password: verify(user, password, home=home)) if sign_in else None,
                        auth_message="Sign in to label.", **common)
    gr.mount_gradio_app(app, build_app(home, sign_in=sign_in), "/",
                        auth=(lambda user, password: verify(user, password, home=home)
                              and role_of(user, home=home) == "admin") if sign_in else None,
                        auth_message="Admins sign in here; labelers sign in at /label/.", **common)
    print(f"* Running on http://{args.host}:{args.port} (labeling page: /label/"
          f"{'; sign-in required' if sign_in else ''})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
