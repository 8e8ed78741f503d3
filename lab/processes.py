"""Background workers that outlive the app: labeling-campaign generation and evaluation jobs start a Python
module in its own session with its output in a log file, and are found dead by their pid. (Training runs have
their own supervisor with process groups and ranks: ``lab.train.runner``.)"""

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


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/stat")
    try:
        return status.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
