"""Where the lab keeps its state: ``LAB_HOME`` (default ``./lab_home``).

Layout::

    LAB_HOME/
      store.sqlite        the SQLite store (WAL)
      datasets/<name>/<version>/   immutable dataset versions (Parquet + card.json)
      runs/<run-id>/      one directory per training run
      models/             built-in models (the offline tiny model) and merged exports
      exports/            files written for download
      imports/            files put here are importable by path from the web app (lab.paths)
      uploads/            copies of files uploaded through the web app (lab.data.uploads: a refused one goes
                          at once; one unused for a week that no dataset version came from, at the app's start)
      logs/               cli-errors.log: tracebacks of CLI errors the lab did not foresee
      cache/              caches: judge verdicts, Triton and torch.compile kernels
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


# What the lab keeps for itself under LAB_HOME: never read back as input (lab.paths). Everything else there
# (imports/, uploads/, exports/, recipes/, a person's own files) is people's data.
STATE = ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "datasets", "runs", "models", "cache", "campaigns",
         "evals", "comparisons")


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
    def imports(self) -> Path:
        return self.root / "imports"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def state(self) -> list[Path]:
        return [self.root / name for name in STATE]

    def kernel_cache_env(self) -> dict[str, str]:
        """Where Triton (Liger's kernels) and torch.compile keep what they compiled: under LAB_HOME, so a fresh
        process or machine with the same LAB_HOME (a Space's persistent storage) skips the seconds of compiling
        a run's first step costs. Settings already in the environment win."""
        wanted = {"TRITON_CACHE_DIR": self.root / "cache" / "triton",
                  "TORCHINDUCTOR_CACHE_DIR": self.root / "cache" / "inductor"}
        return {name: os.environ.get(name) or str(path) for name, path in wanted.items()}

    def ensure(self) -> "Home":
        for path in (self.root, self.datasets, self.runs, self.models, self.exports, self.imports, self.uploads):
            path.mkdir(parents=True, exist_ok=True)
        return self


def default_home() -> Home:
    """``$LAB_HOME``, else ``./lab_home``, without creating it (a command that writes nothing leaves no home)."""
    return Home(Path(os.environ.get("LAB_HOME") or "lab_home").expanduser().resolve())


def lab_home(root: str | os.PathLike | None = None) -> Home:
    """The lab's home: ``root`` if given, else ``$LAB_HOME``, else ``./lab_home``; created if missing."""
    home = Home(Path(root).expanduser().resolve()) if root is not None else default_home()
    return home.ensure()
