"""Where the lab keeps its state: ``LAB_HOME`` (default ``./lab_home``).

Layout::

    LAB_HOME/
      store.sqlite        the SQLite store (WAL)
      datasets/<name>/<version>/   immutable dataset versions (Parquet + card.json)
      runs/<run-id>/      one directory per training run
      models/             built-in models (the offline tiny model) and merged exports
      exports/            files written for download
      uploads/            copies of files uploaded through the web app
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def store_path(self) -> Path:
        return self.root / "store.sqlite"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def ensure(self) -> "Home":
        for path in (self.root, self.datasets, self.runs, self.models, self.exports, self.uploads):
            path.mkdir(parents=True, exist_ok=True)
        return self


def lab_home(root: str | os.PathLike | None = None) -> Home:
    """The lab's home: ``root`` if given, else ``$LAB_HOME``, else ``./lab_home``; created if missing."""
    chosen = root if root is not None else os.environ.get("LAB_HOME") or "lab_home"
    return Home(Path(chosen).expanduser().resolve()).ensure()
