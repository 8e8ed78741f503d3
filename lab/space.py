"""The lab as a Hugging Face Space: where its data lives there, why training may be off, the banners that say so,
the optional sync of votes and dataset versions to a Hub dataset, and building the Space's folder.

The Space's entry (``spaces/app.py``, copied to the built folder's ``app.py``) calls ``prepare`` and
``start_sync``, then starts the same app as ``python app.py`` (``lab.ui.app.main``). ``docs/space.md`` is the
operator's guide.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home
from lab.store import Store

ROOT = Path(__file__).resolve().parents[1]
PERSISTENT = Path("/data")  # where a Space mounts its persistent storage, when it has some
NO_TRAINING_ENV = "LAB_NO_TRAINING"  # a sentence saying why training is off; unset or empty: training is on
CPU_ONLY = ("Training is off on this Space because it has no GPU (a fine-tuning run would take hours on its CPU); "
            "data, labeling, the leaderboard, Compare and chat with small models work.")
SYNC_REPO_ENV = "LAB_SYNC_REPO"  # a Hub dataset repo id: votes and dataset versions are pushed there
SYNC_MINUTES_ENV = "LAB_SYNC_MINUTES"
SYNC_MINUTES = 10.0
VOTES_FILE = "exports/votes.jsonl"  # under LAB_HOME: every vote with its pair, rewritten before each sync
# What the sync uploads, relative to LAB_HOME: dataset versions (immutable) and the votes. Never the store itself
# (a live SQLite file copied mid-write is not a database), runs, uploads or caches.
SYNC_PATTERNS = ["datasets/*/*/train.parquet", "datasets/*/*/validation.parquet", "datasets/*/*/card.json",
                 VOTES_FILE]
# What a built Space folder holds, from this repository: the package, the recipes the Train tab lists, and the
# lab's requirements (which the Space's requirements.txt includes).
BUILD_COPIES = {"lab": "lab", "recipes": "recipes", "requirements.txt": "requirements-lab.txt"}
SPACE_TEMPLATE = ROOT / "spaces"  # README.md (front matter), requirements.txt, app.py (the entry)


def on_space(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether this process runs on a Hugging Face Space (which sets SPACE_ID)."""
    return bool(environ.get("SPACE_ID"))


def prepare(environ: MutableMapping[str, str], *, cuda: bool, persistent: Path = PERSISTENT) -> None:
    """Set what the app reads from the environment on a Space, keeping whatever the operator set: LAB_HOME on the
    persistent storage when there is some, training off without a GPU, and the address HF's proxy connects to."""
    if not environ.get("LAB_HOME"):
        writable = persistent.is_dir() and os.access(persistent, os.W_OK)
        environ["LAB_HOME"] = str(persistent / "lab_home" if writable else Path.cwd() / "lab_home")
    if NO_TRAINING_ENV not in environ:
        if not cuda:
            environ[NO_TRAINING_ENV] = CPU_ONLY
    elif environ[NO_TRAINING_ENV].strip() in ("", "0"):
        del environ[NO_TRAINING_ENV]  # the operator switched training on explicitly
    environ.setdefault("LAB_HOST", "0.0.0.0")
    environ.setdefault("LAB_PORT", environ.get("GRADIO_SERVER_PORT", "7860"))
    # Every request reaches the Space through HF's proxy, whose X-Forwarded-Proto uvicorn should believe (the page's
    # URLs are https). The sign-in throttle reads the caller's address from X-Forwarded-For itself (the last public
    # hop: lab.ui.server.client_address), not from uvicorn, which would take the leftmost, the caller's to write.
    environ.setdefault("FORWARDED_ALLOW_IPS", "*")


def storage_warning(home: Home, environ: MutableMapping[str, str] = os.environ,
                    persistent: Path = PERSISTENT) -> str | None:
    """On a Space whose LAB_HOME is not on persistent storage: a sentence saying the data will not survive."""
    if not on_space(environ) or home.root.resolve().is_relative_to(persistent):
        return None
    return ("This Space has no persistent storage: datasets, runs, campaigns and votes are lost when it restarts. "
            f"Add persistent storage in the Space's settings (it is mounted at {persistent}) and restart it"
            + (", or set LAB_SYNC_REPO to copy votes and datasets to a Hub dataset." if not environ.get(SYNC_REPO_ENV)
               else "; votes and datasets are copied to the Hub dataset " + environ[SYNC_REPO_ENV] + "."))


def training_off(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Why training is off here (LAB_NO_TRAINING), or None when it is on."""
    return environ.get(NO_TRAINING_ENV, "").strip() or None


def banners(home: Home) -> list[str]:
    """The sentences the app shows above everything: data that will not survive, training that is off."""
    return [text for text in (storage_warning(home), training_off()) if text]


# --------------------------------------------------------------------------- sync to a Hub dataset


def export_votes(home: Home) -> Path:
    """Write every vote that counts (``live_votes``: not retracted), with its campaign, prompt and the pair's sources, to LAB_HOME/exports/votes.jsonl; the file
    is left untouched when nothing changed, so the sync does not upload it again."""
    rows = Store(home).query(
        "SELECT v.id, v.campaign_id, c.name AS campaign, p.prompt_idx, cp.prompt, p.source_1, p.source_2, v.labeler, "
        "v.choice, v.winner, v.left_source, v.comment, v.seconds, v.created_at FROM live_votes v "
        "JOIN pairs p ON p.id = v.pair_id JOIN campaigns c ON c.id = v.campaign_id "
        "JOIN campaign_prompts cp ON cp.campaign_id = p.campaign_id AND cp.idx = p.prompt_idx ORDER BY v.id")
    text = "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)
    path = home.root / VOTES_FILE
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
            out.write(text)
        os.replace(out.name, path)  # a sync listing the folder meanwhile sees the old file or the new, never half
    return path


def sync_selection(home: Home) -> list[str]:
    """The files (relative to LAB_HOME) a sync would consider now, by the same filter the scheduler applies."""
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
    from huggingface_hub.utils import filter_repo_objects

    export_votes(home)
    files = sorted(p.relative_to(home.root).as_posix() for p in home.root.glob("**/*") if p.is_file())
    return list(filter_repo_objects(files, allow_patterns=SYNC_PATTERNS, ignore_patterns=DEFAULT_IGNORE_PATTERNS))


def start_sync(home: Home, environ: MutableMapping[str, str] = os.environ, *, hf_api: Any = None) -> Any:
    """With LAB_SYNC_REPO set, a ``huggingface_hub.CommitScheduler`` that pushes the votes and dataset versions to
    that (private) Hub dataset every LAB_SYNC_MINUTES (default 10) minutes; None when it is not set. The token is
    huggingface_hub's (HF_TOKEN, a Space secret), never written anywhere. ``hf_api`` replaces the Hub client."""
    repo = environ.get(SYNC_REPO_ENV, "").strip()
    if not repo:
        return None
    from huggingface_hub import CommitScheduler

    class LabSync(CommitScheduler):
        def push_to_hub(self) -> Any:
            export_votes(home)  # the votes as they are now, then what changed since the last push
            return super().push_to_hub()

    try:
        minutes = float(environ.get(SYNC_MINUTES_ENV) or SYNC_MINUTES)
    except ValueError:
        raise LabError(f"{SYNC_MINUTES_ENV} must be a number of minutes, not {environ[SYNC_MINUTES_ENV]!r}.") from None
    return LabSync(repo_id=repo, repo_type="dataset", folder_path=home.root, every=minutes, private=True,
                   allow_patterns=SYNC_PATTERNS, hf_api=hf_api)


# --------------------------------------------------------------------------- building the Space's folder


def build(out: Path) -> Path:
    """Write a complete Space into ``out`` (absent or empty): the Space template (README with its front matter,
    requirements, the entry app.py) and, from this repository, the package and recipes. Push the folder to a Space
    repository as it is."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LabError(f"{out} exists and is not an empty folder: give a new folder for the Space.")
    out.mkdir(parents=True, exist_ok=True)
    for template in sorted(SPACE_TEMPLATE.iterdir()):
        if template.is_file():
            shutil.copy2(template, out / template.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, target in BUILD_COPIES.items():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, out / target, ignore=ignore)
        else:
            shutil.copy2(path, out / target)
    return out
