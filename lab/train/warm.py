"""The warm worker: a resident process that has already imported torch, transformers, TRL and the lab's training
code, and starts each one-process training run by forking, so a run skips the imports (5 s on a laptop-class CPU,
13-21 s on a sandboxed GPU machine) that otherwise open its whole wait.

The web app keeps one per home (started a few seconds after the app, restarted when it goes); ``python -m lab
warm`` starts one for command-line use. ``lab.train.runner.launch`` asks it first for a run of one process on this
machine and falls back to a fresh process when there is none, or it refuses (its code or packages changed since it
started, or the asking environment differs in a setting read at import time), saying why in the run's log.

Why a fork is safe here: the server never touches CUDA (``PYTORCH_NVML_BASED_CUDA_CHECK`` keeps even an
availability check off the CUDA runtime, and it checks that CUDA is still uninitialised after importing), runs
no torch operation (no thread pools exist to be copied half-locked), and is single-threaded. Each run is a child
in a session of its own, with the asking environment, its output in the run's log; the server reaps it and records
an outcome the run could not (killed, crashed), then starts the next queued run, as a run's supervisor does.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.processes import alive

SWITCH = "LAB_WARM_WORKER"  # "0" turns it off (the app starts none, and runs start in fresh processes)
ROOT = Path(__file__).resolve().parents[2]
# What a run's worker imports, most of its import time: the packages and every lab module a run loads.
PRELOAD = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "safetensors",
           "lab.train.worker", "lab.train.callbacks", "lab.train.convert", "lab.train.data_cache",
           "lab.train.datasets", "lab.train.distributed", "lab.train.estimate", "lab.train.loading",
           "lab.train.memory", "lab.train.methods", "lab.train.profiling", "lab.train.samples", "lab.train.speed",
           "lab.decode")
# Imported when present; a missing one (not installed, or a version without it) is left to the run, which may not
# need it. Not torch.nn.attention.varlen: its import loads torch._dynamo (3-6 s on the H200), and the lab calls the
# flash kernel's aten operator instead (lab.train.speed._torch_varlen). Not bitsandbytes: its import queries the GPU, which must not happen before a fork. An import found to start CUDA
# all the same is left to the runs from then on (``skipped``).
OPTIONAL = ("liger_kernel.transformers",)
# Imported lazily by the server (see Deferred).
DEFERRED = ("bitsandbytes",)
# Model classes, whose modules transformers imports lazily when a model of that kind is loaded.
MODEL_CLASSES = ("AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoTokenizer", "Trainer",
                 "EarlyStoppingCallback", "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                 "MistralForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM")
# Settings read when a package is imported: a run asking with other values than the server imported under starts
# in a fresh process instead.
IMPORT_TIME = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "TRITON_", "DATASETS_", "ACCELERATE_",
               "TRL_", "PEFT_", "NCCL_", "OMP_", "MKL_", "PYTHONPATH", "LD_LIBRARY_PATH", "LAB_HOME")
# ... except these, which are read when used, after the fork, and differ from run to run.
PER_RUN = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_NVML_BASED_CUDA_CHECK",
                     "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"})
CONNECT_TIMEOUT_S = 5.0
POLL_S = 2.0  # how often the server looks for its owner and its idle time


def enabled() -> str | None:
    """Why the warm worker is off, or None when it may run."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{SWITCH}=0"
    from lab.space import training_off

    return training_off()


def state_dir(home: Home) -> Path:
    return home.root / "cache" / "warm"


def state_file(home: Home) -> Path:
    return state_dir(home) / "state.json"


def socket_path(home: Home) -> Path:
    """The server's Unix socket: in the home when its path fits a socket address (107 bytes), else in a private
    folder of the temporary directory named by the home."""
    path = state_dir(home) / "sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(home.root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"lab-warm-{os.getuid()}" / f"{digest}.sock"


def private_dir(path: Path) -> None:
    """Create ``path`` readable by this user alone; refuse one that another user owns (its socket could be theirs)."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise LabError(f"{path} belongs to another user; the warm worker will not put its socket there.")
    path.chmod(0o700)


def fingerprint(root: Path = ROOT) -> str:
    """The lab's code (under ``root``) and the training packages as installed now: a server whose imports are older
    refuses runs."""
    digest = hashlib.sha256()
    for path in sorted((root / "lab").rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        module = sys.modules.get(name)
        spec = importlib.util.find_spec(name) if module is None else module.__spec__
        origin = spec.origin if spec and spec.origin else ""
        if origin:
            digest.update(f"{origin}:{os.stat(origin).st_mtime_ns}".encode())
    digest.update(sys.executable.encode())
    return digest.hexdigest()[:16]


def import_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME) and k not in PER_RUN}


def env_difference(server: dict[str, str], asking: dict[str, str]) -> list[str]:
    """The import-time settings in which a run's environment differs from the server's."""
    mine, theirs = import_settings(server), import_settings(asking)
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


def base_env(home: Home) -> dict[str, str]:
    """What every run's environment holds besides the asking process's (``lab.train.runner.worker_env`` less the
    per-run settings): the server imports under it."""
    return {**home.kernel_cache_env(), "LAB_HOME": str(home.root), "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


class CudaStarted(RuntimeError):
    """Importing ``module`` started CUDA: this process can no longer fork runs that use the GPU."""

    def __init__(self, module: str):
        super().__init__(f"importing {module} started CUDA")
        self.module = module


class Deferred(importlib.abc.MetaPathFinder):
    """Imports ``names`` lazily (``importlib.util.LazyLoader``): the module's code runs at its first attribute
    access, which comes in a run, after the fork. For bitsandbytes: peft imports it when peft is imported, and its
    own import asks the GPU's compute capability, which starts CUDA."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def preload(skip: frozenset[str] = frozenset()) -> list[str]:
    """Import what a run imports, but ``skip`` (and ``DEFERRED`` only lazily); returns what was imported. Raises
    CudaStarted naming the first import that started CUDA (a package that queries the GPU when imported)."""
    deferred = Deferred(DEFERRED)
    sys.meta_path.insert(0, deferred)
    try:
        return import_all(skip)
    finally:
        sys.meta_path.remove(deferred)


def import_all(skip: frozenset[str]) -> list[str]:
    done = []
    for name in (*PRELOAD, *OPTIONAL, "model classes", "objectives"):
        if name in skip:
            continue
        if name == "model classes":
            transformers = sys.modules["transformers"]
            for cls in MODEL_CLASSES:
                if hasattr(transformers, cls):  # lazy attributes: this imports the class's module
                    getattr(transformers, cls)
        elif name == "objectives":
            from lab.train.methods import OBJECTIVES

            trl = sys.modules.get("trl")  # absent when its import was found to start CUDA (``skipped``)
            for entry in OBJECTIVES.values():  # each objective's module, and the TRL trainer it builds on
                entry.module()
                if trl is not None:
                    getattr(trl, entry.trainer)  # a lazy attribute: this imports the trainer's module
        else:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                if name not in OPTIONAL:
                    raise
                continue
        done.append(name)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            raise CudaStarted(name)
    return done


def skipped(home: Home) -> frozenset[str]:
    """Imports found to start CUDA on this machine, which the server leaves to the runs."""
    try:
        return frozenset(filter(None, (state_dir(home) / "skip").read_text().splitlines()))
    except OSError:
        return frozenset()


def fork() -> int:
    """``os.fork`` with this process's buffered output flushed first (else the child writes it again); in the child,
    the server's signal handling undone. Returns the child's pid, 0 in the child."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
    return pid


def probe_gpu() -> str | None:
    """Whether a fork of this process can use the GPU, tried in a fork: None when it can (or there is no GPU),
    else why not. The server answers no run before this has passed."""
    torch = sys.modules["torch"]
    if not torch.cuda.is_available():  # NVML's count here: starts no CUDA
        return None
    pid = fork()
    if pid == 0:
        code = 1
        try:
            os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
            torch.ones(1, device="cuda").add_(1).item()
            code = 0
        except BaseException:  # noqa: BLE001 - reported by the exit code, the traceback in the server's log
            traceback.print_exc()
        finally:
            os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return None if code == 0 else f"a process forked from it could not use the GPU (exit code {code}; see above)"


def refused_file(home: Home) -> Path:
    return state_dir(home) / "refused"


def read_state(home: Home) -> dict[str, Any] | None:
    """The live server's state (pid, socket, fingerprint, preload seconds), or None."""
    try:
        state = json.loads(state_file(home).read_text())
    except (OSError, ValueError):
        return None
    return state if alive(int(state.get("pid", 0))) else None


def ask(home: Home, request: dict[str, Any], timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """One request to the home's server, its answer; OSError when there is no server or it does not answer."""
    state = read_state(home)
    if state is None:
        raise ConnectionRefusedError("no warm worker is running")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(state["socket"])
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = read_line(conn)
    if not reply:
        raise ConnectionResetError("the warm worker closed the connection without an answer")
    return json.loads(reply)


def read_line(conn: socket.socket, limit: int = 4 << 20) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def request_run(home: Home, run_dir: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Fork the run's worker from the warm server: (its pid, '') or (None, why not; '' when there is no server).
    ``env`` is the run's whole environment (secrets included: they travel over the private socket, never to disk)."""
    if Server.current is not None:  # the server itself dispatching the next run (after one ended)
        return Server.current.start_run(Path(run_dir), env), ""
    if enabled() is not None or read_state(home) is None:
        return None, ""
    try:
        reply = ask(home, {"op": "run", "run_dir": str(run_dir), "env": env, "python": sys.executable})
    except (OSError, ValueError) as err:
        return None, f"the warm worker did not answer ({err})"
    if "pid" in reply:
        return int(reply["pid"]), ""
    return None, str(reply.get("error", reply))


def precompute(home: Home, config: dict[str, Any]) -> None:
    """Before a launch's checks: have the warm worker measure, in a fork, what they would import torch and
    transformers for (the model's shape, the objective's own check), into the disk caches the checks then read.
    Best effort: without a server, or when it fails, the checks do the work themselves."""
    if "transformers" in sys.modules or Server.current is not None or enabled() is not None \
            or read_state(home) is None:  # with transformers imported here, the checks cost little here
        return
    try:
        ask(home, {"op": "precompute", "config": config, "env": {**os.environ, **base_env(home)},
                   "python": sys.executable},
            timeout_s=120)
    except (OSError, ValueError):
        pass


def measure_for_checks(config: dict[str, Any]) -> None:
    """In a fork of the server: the model's shape and the objective's precheck for ``config`` (a TrainConfig's
    fields), each kept on disk by its own cache. A failure is left for the checks to find and report."""
    from lab.config import TrainConfig, from_dict
    from lab.train.loading import model_params
    from lab.train.methods import objective

    home = lab_home()
    cfg = from_dict(TrainConfig, config, where="the run being checked")
    model_params(cfg.model, home)
    check = objective(cfg.objective).precheck
    if check is not None:
        check(cfg, home)


class Server:
    """The resident process: imports once, then forks a run's worker per request on its Unix socket."""

    current: "Server | None" = None  # set in the server's own process

    def __init__(self, home: Home, owner: int | None, idle_s: float | None):
        self.home, self.owner, self.idle_s = home, owner, idle_s
        self.children: dict[int, Path] = {}  # runs
        self.helpers: set[int] = set()  # forks measuring for a launch's checks
        self.dispatch_due = False  # a run ended: start queued runs once the dispatch lock is free
        self.env = dict(os.environ)
        self.fingerprint = ""
        self.retiring = False
        self.last_active = time.monotonic()
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = socket.socketpair()

    def serve(self) -> int:
        started = time.monotonic()
        skip = skipped(self.home)
        try:
            modules = preload(skip)
        except CudaStarted as err:  # start again without that import, and remember it for the next start
            if err.module in skip or len(skip) >= len(PRELOAD):
                raise
            (state_dir(self.home) / "skip").write_text("\n".join(sorted(skip | {err.module})) + "\n")
            print(f"[warm] {err}; starting again without it (the runs import it themselves)", flush=True)
            sys.stdout.flush()
            os.execv(sys.executable, [sys.executable, "-m", "lab.train.warm", *sys.argv[1:]])
        self.fingerprint = fingerprint()
        broken = probe_gpu()
        if broken:  # runs start in fresh processes; no new server is tried until the code or packages change
            refused_file(self.home).write_text(json.dumps({"fingerprint": self.fingerprint, "why": broken}))
            print(f"[warm] not serving: {broken}", flush=True)
            return 1
        Server.current = self
        path = socket_path(self.home)
        private_dir(path.parent)
        private_dir(state_dir(self.home))
        path.unlink(missing_ok=True)  # a dead server's (read_state found none alive, or start would not run)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        path.chmod(0o600)
        self.listener.listen(16)
        for end in (self.wake_r, self.wake_w):
            end.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd; reaped in the loop
        signal.signal(signal.SIGTERM, self.retire)
        state = {"pid": os.getpid(), "socket": str(path), "fingerprint": self.fingerprint, "owner": self.owner,
                 "preload_seconds": round(time.monotonic() - started, 2), "modules": len(modules),
                 "left_to_runs": sorted(skip),
                 "started_at": time.time()}
        tmp = state_file(self.home).with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(state_file(self.home))
        print(f"[warm] ready in {state['preload_seconds']} s ({len(modules)} modules), pid {os.getpid()}, "
              f"socket {path}", flush=True)
        try:
            self.loop()
        finally:
            self.close()
        return 0

    def loop(self) -> None:
        while not (self.retiring and not self.children):
            if self.retiring:
                self.close_listener()
            sources = [self.wake_r] + ([self.listener] if self.listener else [])
            try:
                ready, _, _ = select.select(sources, [], [], 0.2 if self.dispatch_due else POLL_S)
            except InterruptedError:
                ready = []
            if self.wake_r in ready:
                try:
                    while self.wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            if self.listener in ready:
                self.answer()
            if self.children:
                self.last_active = time.monotonic()
            elif self.owner and not alive(self.owner):
                self.retire()
            elif self.idle_s and time.monotonic() - self.last_active > self.idle_s:
                self.retire()

    def retire(self, *_: Any) -> None:
        """Take no more runs; exit once the running ones have been reaped (the loop closes the socket: this may
        run as a signal handler while select waits on it)."""
        self.retiring = True

    def close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            mine = read_state(self.home)
            if mine and mine.get("pid") == os.getpid():
                state_file(self.home).unlink(missing_ok=True)
                Path(mine["socket"]).unlink(missing_ok=True)

    def close(self) -> None:
        self.close_listener()
        print(f"[warm] pid {os.getpid()} stopped", flush=True)

    def answer(self) -> None:
        assert self.listener is not None
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(CONNECT_TIMEOUT_S)
            try:
                reply = self.handle(conn)
            except (OSError, ValueError, KeyError) as err:
                reply = {"error": f"bad request ({err})"}
            if reply is None:
                return
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass

    def handle(self, conn: socket.socket) -> dict[str, Any] | None:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.getuid():
            return {"error": "only the user who started the warm worker may use it"}
        request = json.loads(read_line(conn))
        self.last_active = time.monotonic()
        if request.get("op") == "status":
            return {"pid": os.getpid(), "runs": {str(pid): str(path) for pid, path in self.children.items()},
                    "fingerprint": self.fingerprint, "retiring": self.retiring}
        if request.get("op") not in ("run", "precompute"):
            return {"error": f"unknown request {request.get('op')!r}"}
        if self.retiring:
            return {"error": "the warm worker is stopping"}
        if fingerprint() != self.fingerprint:
            self.retire()
            return {"error": "the lab's code or the training packages changed since the warm worker started "
                             "(it stops; the app starts a new one)"}
        if request.get("python") != sys.executable:
            return {"error": f"the warm worker runs {sys.executable}, the run asked for {request.get('python')}"}
        differ = env_difference(self.env, request["env"])
        if differ:
            return {"error": "the warm worker was started with other values of " + ", ".join(differ) +
                             " (read at import time)"}
        if request["op"] == "precompute":
            self.fork_helper(conn, request["config"], request["env"])
            return None  # the fork answers, once done
        return {"pid": self.start_run(Path(request["run_dir"]), request["env"])}

    def fork_helper(self, conn: socket.socket, config: dict[str, Any], env: dict[str, str]) -> None:
        """``measure_for_checks`` in a fork, which answers on ``conn`` when done."""
        pid = fork()
        if pid:
            self.helpers.add(pid)
            return
        code = 0
        try:
            os.environ.clear()
            os.environ.update(env)
            try:
                measure_for_checks(config)
                reply = {"done": True}
            except Exception as err:  # noqa: BLE001 - the asking process's checks report it
                reply = {"done": False, "error": str(err)}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except BaseException:  # noqa: BLE001 - never return into the server's loop
            code = 1
        finally:
            os._exit(code)

    def start_run(self, run_dir: Path, env: dict[str, str]) -> int:
        """Fork the run's worker; returns its pid. The child never returns from here."""
        ready_r, ready_w = os.pipe()
        pid = fork()
        if pid == 0:
            os.close(ready_r)
            self.become_run(run_dir, env, ready_w)
        os.close(ready_w)
        # Answer once the child leads its own session: until then the runner, which finds a run's processes by
        # their process group, would think the run already dead.
        select.select([ready_r], [], [], CONNECT_TIMEOUT_S)
        os.close(ready_r)
        self.children[pid] = run_dir
        return pid

    def become_run(self, run_dir: Path, env: dict[str, str], ready: int) -> None:
        """In the child: drop the server's sockets and signals, take the run's session (then say so on ``ready``),
        environment and log, and run the worker."""
        code = 1
        try:
            for sock in (self.listener, self.wake_r, self.wake_w):
                if sock is not None:
                    sock.close()
            Server.current = None
            os.setsid()  # its own session and process group, which the runner signals and counts
            os.write(ready, b"1")
            os.close(ready)
            os.chdir(ROOT)
            log = os.open(run_dir / "log.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.close(devnull)
            sys.stdout.reconfigure(line_buffering=True)
            sys.stderr.reconfigure(line_buffering=True)
            os.environ.clear()
            os.environ.update(env)
            print(f"[lab] started by the warm worker (pid {os.getppid()}): torch, transformers and TRL already "
                  "imported", flush=True)
            from lab.train import worker

            code = worker.main(str(run_dir))
        except BaseException:  # noqa: BLE001 - the child must end here, never return into the server's loop
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def reap(self) -> None:
        """Collect ended runs: record what a run could not (it was killed or crashed), then start queued runs."""
        from lab.train import runner

        for pid in list(self.helpers):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    self.helpers.discard(pid)
            except ChildProcessError:
                self.helpers.discard(pid)
        ended = False
        for pid, run_dir in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if not done:
                continue
            del self.children[pid]
            ended = True
            code = os.waitstatus_to_exitcode(status)
            try:
                runner.record_outcome(run_dir, self.home, code, cancelling=code == -signal.SIGTERM)
            except Exception:  # noqa: BLE001 - one run's bookkeeping must not stop the server
                traceback.print_exc()
        self.dispatch_due = self.dispatch_due or (ended and not self.retiring)
        if self.dispatch_due:
            try:
                runner.dispatch(self.home, wait=False)
                self.dispatch_due = False
            except runner.Busy:  # another process is dispatching, perhaps asking this one: try again shortly
                pass
            except Exception:  # noqa: BLE001
                self.dispatch_due = False
                traceback.print_exc()


def serve(home: Home, owner: int | None = None, idle_s: float | None = None) -> int:
    """The server's process: ``python -m lab.train.warm serve``."""
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # an availability check through NVML, not the CUDA runtime
    os.environ.update(base_env(home))
    return Server(home, owner, idle_s).serve()


def start(home: Home, *, owner: int | None = None, idle_s: float | None = None, wait_s: float = 0.0) -> dict | None:
    """Start the home's server unless one runs; with ``wait_s``, wait that long for it to be ready. Returns its
    state (None while it is still importing)."""
    state = read_state(home)
    if state is not None:
        return state
    off = enabled()
    if off:
        raise LabError(f"The warm worker is off here ({off}).")
    try:
        refused = json.loads(refused_file(home).read_text())
    except (OSError, ValueError):
        refused = {}
    if refused.get("fingerprint") == fingerprint():
        raise LabError(f"The warm worker cannot serve on this machine: {refused['why']}; runs start in fresh "
                       f"processes (it is tried again once the lab or its packages change; "
                       f"{home.root / 'logs' / 'warm.log'} has the details).")
    logs = home.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    private_dir(state_dir(home))
    lock = state_dir(home) / "starting"
    try:  # one start at a time: a start younger than a minute is still importing
        if time.time() - lock.stat().st_mtime < 60:
            return wait_ready(home, wait_s)
    except FileNotFoundError:
        pass
    lock.touch()
    command = [sys.executable, "-m", "lab.train.warm", "serve", "--home", str(home.root)]
    if owner:
        command += ["--owner", str(owner)]
    if idle_s:
        command += ["--idle", str(idle_s)]
    with open(logs / "warm.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=str(ROOT), env={**os.environ, **base_env(home)}, start_new_session=True)
    return wait_ready(home, wait_s, process)


def wait_ready(home: Home, wait_s: float, process: subprocess.Popen | None = None) -> dict | None:
    deadline = time.monotonic() + wait_s
    while True:
        state = read_state(home)
        if state is not None or time.monotonic() >= deadline:
            if state is not None:
                (state_dir(home) / "starting").unlink(missing_ok=True)
            return state
        if process is not None and process.poll() is not None:
            (state_dir(home) / "starting").unlink(missing_ok=True)
            log = (home.root / "logs" / "warm.log").read_text(errors="replace").strip().splitlines()
            raise LabError(f"The warm worker stopped while starting (exit code {process.returncode}): "
                           f"{log[-1] if log else 'no output'} (see {home.root / 'logs' / 'warm.log'}).")
        time.sleep(0.2)


def ensure(home: Home, owner: int) -> None:
    """The web app's tick: start a server bound to the app unless one runs or it is off. Never raises."""
    try:
        if enabled() is None and read_state(home) is None:
            start(home, owner=owner)
    except (OSError, LabError):
        pass


def keep_warm(home: Home, *, delay_s: float = 5.0, every_s: float = 30.0) -> None:
    """The web app's: a server bound to this process, started ``delay_s`` after the app (its imports would slow
    the app's own start) and again whenever it has gone (its code changed, it was stopped), in a daemon thread."""
    import threading

    owner = os.getpid()

    def loop() -> None:
        time.sleep(delay_s)
        while True:
            ensure(home, owner)
            time.sleep(every_s)

    if enabled() is None:
        threading.Thread(target=loop, name="lab-warm-worker", daemon=True).start()


def stop(home: Home, timeout_s: float = 10.0) -> bool:
    """Stop the home's server (runs it started go on); whether one was running."""
    state = read_state(home)
    if state is None:
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(int(state["pid"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.train.warm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="be the warm worker (python -m lab warm starts it in the background)")
    run.add_argument("--home", required=True)
    run.add_argument("--owner", type=int, help="stop when this process (the web app) is gone and no run is left")
    run.add_argument("--idle", type=float, help="stop after this many seconds without a run")
    args = parser.parse_args(argv)
    return serve(lab_home(args.home), owner=args.owner, idle_s=args.idle)


if __name__ == "__main__":
    raise SystemExit(main())
