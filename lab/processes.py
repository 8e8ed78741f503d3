"""Background workers that outlive the app, and the process table: labeling-campaign generation and evaluation
jobs start a Python module in its own session with its output in a log file, and are found dead by their pid;
training runs (``lab.train.runner``, a supervisor over several ranks) find their processes in the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.home import Home

ROOT = Path(__file__).resolve().parents[1]


def launch_worker(module: str, argument: str, log: Path, home: Home) -> int:
    """``python -m MODULE ARGUMENT`` in a new session (a closed app or a Ctrl-C does not stop it), stdout and
    stderr appended to ``log``; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **home.kernel_cache_env(), "LAB_HOME": str(home.root), "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", module, argument], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True, cwd=ROOT)
    return process.pid


def stat(pid: int | str) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) from /proc, or None for a process that is gone."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def started(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc's field 22), or None: with the pid, it names one
    process, as a pid alone does not once the pid is reused."""
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    found = stat(pid)
    return found is None or found[0] != "Z"


def live_processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every live process (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat(entry.name)) and fields[0] != "Z":
            found.append((int(entry.name), fields[1], fields[2]))
    return found


def signal_all(pids: list[int], signum: int) -> None:
    """Send ``signum`` to each process; one that has ended meanwhile is no error."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
