"""The web app: five tabs (Data · Train · Compare · Label · Eval) over the ``lab`` engine.

Run it::

    python app.py                       # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080
    LAB_HOME=/data/lab LAB_PORT=8080 python app.py

Heavy libraries (torch, transformers, trl) are imported inside handlers, never here, so the
app starts in a few seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

import gradio as gr

from lab.home import Home, lab_home
from lab.ui import data_tab, train_tab
from lab.ui.placeholder import PLANNED, build_placeholder

TITLE = "Fine-tuning lab"
INTRO = (
    f"# {TITLE}\n"
    "Bring a dataset in and clean it (**Data**), fine-tune on it (**Train**), look at checkpoints side "
    "by side (**Compare**), collect human preferences (**Label**) and score everything (**Eval**)."
)
CSS = """
.lab-placeholder { padding: 1.5rem 0; font-size: 1.05rem; }
.lab-status p { margin: 0; }
.lab-step { margin-top: 0.75rem; }
.prose.lab-warning { background: #fff7ed; border: 1px solid #fdba74; border-radius: 8px; padding: 8px 12px;
                     color: #7c2d12; }
"""
TAB_ORDER = ("Data", "Train", "Compare", "Label", "Eval")


def build_app(home: Home | str | os.PathLike | None = None) -> gr.Blocks:
    """The app's Blocks, reading and writing under ``home`` (default: ``$LAB_HOME`` or ./lab_home)."""
    home = home if isinstance(home, Home) else lab_home(home)
    planned = {plan.title: plan for plan in PLANNED}
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            for title in TAB_ORDER:
                with gr.Tab(title, id=title.lower()):
                    if title == "Data":
                        data_tab.build(home)
                    elif title == "Train":
                        train_tab.build(home)
                    else:
                        build_placeholder(planned[title])
    demo.queue(default_concurrency_limit=4)
    return demo


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start the fine-tuning lab's web app.")
    parser.add_argument("--host", default=os.environ.get("LAB_HOST", "127.0.0.1"),
                        help="Address to listen on (env LAB_HOST; default 127.0.0.1, only this machine).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", "7860")),
                        help="Port to listen on (env LAB_PORT; default 7860).")
    parser.add_argument("--share", action="store_true",
                        help="Also open a temporary public gradio.live link (off by default).")
    parser.add_argument("--home", default=None, help="Lab home folder (default: $LAB_HOME or ./lab_home).")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = lab_home(args.home)
    demo = build_app(home)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        allowed_paths=[str(home.exports)],
        ssr_mode=False,
        run_history=False,  # the lab keeps its own records; no copies of dataset rows in the browser
        footer_links=["api"],
        css=CSS,
        theme=gr.themes.Soft(),
    )


if __name__ == "__main__":
    main()
