"""Which files the lab reads when it is handed a path, and from where the web app may read them.

Two rules, checked before a file is opened (resolving a path only stats it), so nothing of a refused file is
ever read or shown:

- **Never the lab's own state** (``lab.home.STATE``: the store's files, dataset versions, runs, models, caches),
  for the CLI too; people's files under LAB_HOME (``imports/``, ``uploads/``, ``exports/``, their own) are input.
  Reading the store's database in a process that has it open would drop that process's SQLite locks
  (see ``lab.store``).
- **The web app reads only where the operator allows.** A path typed into the app is resolved (symlinks,
  ``..``) and must lie inside LAB_HOME/imports, the app's copies of uploads, the bundled samples, or a folder
  named in ``LAB_ALLOWED_PATHS`` (``os.pathsep``-separated) or ``python app.py --allow-path``. With no accounts
  anyone who reaches the port is the user, so this is what keeps ``/etc/passwd`` out of the Data tab. The CLI,
  run by the machine's own user, reads any file that user can.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import LabError
from lab.home import Home, default_home

ALLOWED_ENV = "LAB_ALLOWED_PATHS"


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and resolved (symlinks, ``..``, ``~``); the file itself is not opened."""
    if "\0" in os.fspath(path):  # the operating system would refuse it with a ValueError
        raise LabError(f"{os.fspath(path)!r} is not a usable path: it contains a NUL character.")
    return Path(path).expanduser().resolve()


def lab_homes(home: Home | None) -> set[Home]:
    """Every LAB_HOME this process knows of: the one given, $LAB_HOME (or ./lab_home), and each store opened."""
    from lab.store import opened_stores

    roots = {default_home().root}
    roots.update(store.parent for store in opened_stores())
    if home is not None:
        roots.add(home.root)
    return {Home(root) for root in roots}


def is_store_file(path: Path) -> bool:
    """Whether ``path`` is one of an opened store's files, under any name (a hard link, a bind mount)."""
    from lab.store import file_identity, opened_stores, store_files

    identity = file_identity(path)
    return identity is not None and any(identity == file_identity(f) for store in opened_stores()
                                        for f in store_files(store))


def input_path(path: str | os.PathLike, home: Home | None = None) -> Path:
    """``path`` resolved, or a ``LabError`` if it is part of the lab's own state."""
    resolved = absolute(path)
    for known in lab_homes(home):
        if any(within(resolved, state) for state in known.state):
            what = "the lab's own store" if resolved.name.startswith("store.sqlite") else "part of the lab's own state"
            raise LabError(f"{path} is {what}, which the lab never reads as input: import the original file, or a "
                           "dataset version's export (Versions tab, or python -m lab data export).")
    if is_store_file(resolved):
        raise LabError(f"{path} is the lab's own store, which the lab never reads as input.")
    return resolved


def allowed_folders(home: Home) -> list[Path]:
    """Where the web app may read files: LAB_HOME/imports and /uploads, the bundled samples, and the operator's."""
    from lab.data.samples import SAMPLES_DIR

    extra = [absolute(p) for p in os.environ.get(ALLOWED_ENV, "").split(os.pathsep) if p.strip()]
    return [home.imports, home.uploads, SAMPLES_DIR, *extra]


def server_path(text: str, home: Home) -> str:
    """A path (or hub dataset id) typed into the web app, checked before anything is opened: the resolved path
    inside an allowed folder, or the hub id as typed. The refusal names no file content, only the rule."""
    from lab.data.readers import HUB_ID, path_shaped

    raw = text.strip()
    resolved = absolute(raw)
    if not any(within(resolved, folder) for folder in allowed_folders(home)):
        if HUB_ID.match(raw) and not resolved.exists() and not path_shaped(raw):
            return raw  # owner/name[:split]: read from the hub, not the disk
        raise LabError(f"'{raw}' is outside the folders this server reads files from: upload the file instead, or "
                       f"put it in LAB_HOME/imports (whoever runs the server can allow more folders with "
                       f"--allow-path or {ALLOWED_ENV}).")
    return str(input_path(resolved, home))
