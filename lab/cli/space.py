"""``python -m lab space build|sync-files``: the lab as a Hugging Face Space (docs/space.md).

    python -m lab space build /tmp/lab-space     # a complete Space folder, ready to push to a Space repository
    python -m lab space sync-files               # what the scheduled sync would push to LAB_SYNC_REPO now
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli import add_json_flag, emit, say


def register(commands: argparse._SubParsersAction) -> None:
    space = commands.add_parser("space", help="the lab as a Hugging Face Space: build its folder, preview the sync",
                                description="The lab as a Hugging Face Space (see docs/space.md).")
    sub = space.add_subparsers(dest="space_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write a complete Space folder",
                           description="Write a complete Space into OUT_DIR (absent or empty): README with its front "
                           "matter, requirements, the entry app.py, the lab package and recipes. Push that folder to "
                           "a Space repository as it is.")
    build.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="the folder to write (absent or empty)")
    add_json_flag(build)
    build.set_defaults(handler=run_build)
    files = sub.add_parser("sync-files", help="the files the scheduled sync would push now",
                           description="Export the votes to LAB_HOME/exports/votes.jsonl and list the files (relative "
                           "to LAB_HOME) the scheduled sync pushes to LAB_SYNC_REPO: dataset versions and the votes. "
                           "Nothing is pushed.")
    add_json_flag(files)
    files.set_defaults(handler=run_sync_files)


def run_build(args: argparse.Namespace) -> int:
    from lab.space import build

    out = build(args.out_dir)
    say(f"Space written to {out}: push it to a Space repository (see docs/space.md)")
    emit(args, {"path": str(out)}, lambda: print(out))
    return 0


def run_sync_files(args: argparse.Namespace) -> int:
    from lab.home import lab_home
    from lab.space import sync_selection

    files = sync_selection(lab_home())
    emit(args, files, lambda: print("\n".join(files) or "nothing to sync"))
    return 0
