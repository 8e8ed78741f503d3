"""Copies of files uploaded through the web app: ``LAB_HOME/uploads/<digest>/<file name>``.

Gradio's own temporary copy of an upload does not last, and the Data tab reads the file again for each
step (check, preview, save, explore), so the file is copied under LAB_HOME. What stays there:

- a file the check refuses is removed at once (``discard``): nothing can be done with it;
- an accepted file stays while it may still be previewed, saved or explored, and is swept
  (``sweep``, at the app's start) once untouched for ``KEEP_DAYS`` days, unless a dataset version's
  card names it as its source.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from lab.errors import LabError
from lab.home import Home

log = logging.getLogger(__name__)

KEEP_DAYS = 7
DIGEST_CHARS = 12


def keep(home: Home, upload: str | Path, *, upload_folder: str | Path) -> tuple[Path, bool]:
    """The kept copy of ``upload``, and whether this call made it (False: the same bytes were kept already).

    ``upload`` must be a regular file in ``upload_folder`` (where the web server put the browser's upload), not a
    link: a request names its file by path, so anything else would let it copy any file the server can read."""
    src = Path(upload)
    folder = Path(upload_folder).resolve()
    if src.is_symlink() or not src.resolve().is_relative_to(folder) or not src.resolve().is_file():
        raise LabError("That file did not come through the upload: upload it from your computer.")
    with src.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:DIGEST_CHARS]
    dest = home.uploads / digest / src.name
    if dest.exists():
        os.utime(dest)  # in use again: the sweep counts the days from now
        return dest, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Copied under a temporary name, then renamed: a second upload of the same file never sees half of it.
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
    os.close(fd)
    try:
        shutil.copyfile(src, partial)
        os.replace(partial, dest)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return dest, True


def discard(home: Home, kept: Path) -> None:
    """Remove a kept upload (its digest folder) that turned out to be of no use."""
    folder = kept.parent
    if folder.parent == home.uploads:  # never anything outside LAB_HOME/uploads
        shutil.rmtree(folder, ignore_errors=True)


def sweep(home: Home, *, days: float = KEEP_DAYS) -> list[Path]:
    """Remove the uploads untouched for ``days`` that no dataset version names as its source; the folders removed.
    A folder that cannot be read or removed is left for the next sweep."""
    from lab.data.versions import list_versions

    sources = {str(v.card.get("source")) for v in list_versions(home)}
    cutoff = time.time() - days * 86_400
    removed: list[Path] = []
    for folder in sorted(home.uploads.iterdir()) if home.uploads.is_dir() else []:
        try:
            files = list(folder.rglob("*"))
            if any(str(p) in sources for p in files) or max(p.stat().st_mtime for p in [folder, *files]) > cutoff:
                continue
            if folder.is_dir():
                shutil.rmtree(folder)
            else:
                folder.unlink()
        except OSError as err:
            log.warning("Left %s in place: %s", folder, err)
            continue
        removed.append(folder)
    return removed
