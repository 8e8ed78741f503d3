"""Where a training step's time goes: ``LAB_PROFILE_STEPS=START:COUNT`` in the environment of a run profiles
COUNT optimizer steps from step START with ``torch.profiler`` and writes two files to the run directory:

- ``profile.txt``: the share of the wall time the GPU was busy, the step's time by category, then the operators
  and kernels that took the most device time;
- ``profile.json``: the step's wall time split into categories one can act on (:data:`RULES`): the LM head and its
  loss, attention, the other matrix products, norms/rotary/activations/elementwise, the optimizer (with gradient
  clipping), communication and copies, other, and ``idle`` (the device waiting on the CPU: launch overhead, Python,
  data loading, synchronisations). The categories and ``idle`` add up to the profiled wall time. A category with
  matrix products also has their FLOPs (torch's formulas) and so its achieved TFLOP/s; each has its top names.

On a GPU the pieces are the kernels (and copies); on a CPU run they are the operators' own time (their time less
their children's), so the same breakdown runs, and is tested, on the CPU with the tiny model.

A kernel is sorted by its name and by where it ran: the launching operator's ranges (the optimizer's step, autograd's
backward nodes) and the lab's own range around the LM head and loss (:class:`HeadRange`, forward hooks installed for
the profiled steps only). A backward kernel inherits the ranges its forward operator ran under (autograd's sequence
number links the two), so the head's gradient matrix products count as head, not as other GEMMs.

Meant for "why is my run slow" and for the benchmarks (bench/), so it is an environment switch rather than a
config field: a profile changes nothing about the run but slows the profiled steps a little (it records shapes,
for the FLOPs).
"""

from __future__ import annotations

import bisect
import json
import os
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

ENV = "LAB_PROFILE_STEPS"
SETUP_ENV = "LAB_PROFILE_SETUP"  # "1": cProfile of the worker's set-up, to RUN_DIR/setup-profile.txt
HEAD_RANGE = "lab::lm_head+loss"
STEP_RANGE = "lab::step "
BACKWARD_NODE = "autograd::engine::evaluate_function: "

# How a piece of device time is sorted: the first rule with a pattern (a case-insensitive substring) in one of the
# piece's names wins. "own" rules read what the work is: the kernel's name and the operator that launched it (on a
# CPU run, the operator's name). "context" rules read where it ran: those names and every range above the operator,
# including, for a backward kernel, the ranges of the forward operator it differentiates. So a matrix product under
# the head's range is head time, and a cast the autocast inside ``aten::linear`` launches is elementwise, not GEMM.
RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("comm_memcpy", "own", ("nccl", "memcpy", "memset", "c10d::", "gloo")),
    # foreach kernels (AdamW's, clipping's norms and scaling) run nowhere else in a step; vector_norm is clipping's
    # total norm
    ("optimizer", "context", ("optimizer.", "_foreach_", "multi_tensor_apply", "fused_adam", "clip_grad",
                              "vector_norm")),
    ("lm_head_loss", "context", (HEAD_RANGE, "cross_entropy", "crossentropy", "nll_loss", "logprob")),
    ("attention", "context", ("flash", "fmha", "sdpa", "scaled_dot_product", "varlen", "attention")),
    ("other_gemm", "own", ("gemm", "nvjet", "cutlass", "cublas", "xmma", "splitk", "triton_tem", "aten::mm",
                           "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")),
    # norms, rotary, activations and the other elementwise and reduction work (Liger's kernels among them)
    ("elementwise", "own", ("elementwise", "vectorized", "reduce", "norm", "rope", "rotary", "silu", "swiglu",
                            "gelu", "act_and_mul", "softmax", "triton_", "cat", "copy", "fill", "zero_", "index",
                            "gather", "scatter", "embedding", "sort", "where", "clamp", "add", "mul", "sub", "div",
                            "neg", "pow", "sqrt", "exp", "mean", "sum", "sin", "cos", "sigmoid")),
)
# other: what no rule names (a category's top names in profile.json show what); idle: the wall time no piece covers
OTHER, IDLE = "other", "idle"
CATEGORIES = tuple(rule[0] for rule in RULES) + (OTHER, IDLE)
_PATTERNS = tuple((category, scope, re.compile("|".join(map(re.escape, patterns)), re.IGNORECASE))
                  for category, scope, patterns in RULES)


def profile_window(value: str | None = None) -> tuple[int, int] | None:
    """(first step, steps) from ``START:COUNT``; None when unset. A malformed value is an error naming it."""
    value = os.environ.get(ENV, "") if value is None else value
    if not value.strip():
        return None
    start, _, count = value.partition(":")
    try:
        window = int(start), int(count or 1)
    except ValueError:
        raise ValueError(f"{ENV} must be START:COUNT, e.g. 10:3 (got {value!r})") from None
    if window[0] < 0 or window[1] < 1:
        raise ValueError(f"{ENV} must be START:COUNT with START >= 0 and COUNT >= 1 (got {value!r})")
    return window


@contextmanager
def setup_profile(run_dir: Path) -> Iterator[None]:
    """With ``LAB_PROFILE_SETUP=1``: Python's profiler over the worker's set-up (loading, tokenising, DPO's reference
    pass), the 40 calls of most cumulative time to ``RUN_DIR/setup-profile.txt``: where a run's wait before its first
    step goes, down to the function."""
    if os.environ.get(SETUP_ENV, "") in ("", "0"):
        yield
        return
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        (Path(run_dir) / "setup-profile.txt").write_text(text.getvalue())


class ProfileCallback(TrainerCallback):
    """Profiles steps ``start`` to ``start + count - 1`` (optimizer steps, as the Trainer counts them); writes
    ``out`` (profile.txt) and ``out`` with a .json suffix."""

    def __init__(self, out: Path, start: int, count: int):
        self.out, self.start, self.count = out, start, count
        self.profiler: Any = None
        self.head: HeadRange | None = None
        self.step_range: Any = None
        self.began = self.wall = 0.0

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.profiler is None and state.global_step == self.start:
            import torch

            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                torch.cuda.synchronize()
            self.profiler = torch.profiler.profile(activities=activities, with_flops=True)
            self.profiler.__enter__()
            self.head = HeadRange(model)
            self.began = time.perf_counter()
        if self.profiler is not None and not self.wall:
            self._mark_step(state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None and not self.wall and state.global_step == self.start + self.count:
            self._stop()

    def on_train_end(self, args, state, control, **kwargs):
        # Reading the events back takes seconds to minutes (~50,000 kernels a step on an 8B model), so it waits
        # until the Trainer has measured its runtime. A window reaching past the run's end profiles the steps run.
        if self.profiler is None:
            return
        if not self.wall:
            self.count = state.global_step - self.start
            self._stop()
        if self.count > 0:
            parts = anatomy(self.profiler.events(), self.wall, self.count)
            self.out.write_text(summary(self.profiler, parts))
            self.out.with_suffix(".json").write_text(json.dumps(parts, indent=1))
        self.profiler = None

    def _mark_step(self, step: int | None) -> None:
        """Closes the previous step's range and opens ``lab::step N`` (None: only closes), so every kernel knows
        its step: the data loading and logging between two steps count in the earlier one."""
        from torch.autograd.profiler import record_function

        if self.step_range is not None:
            self.step_range.__exit__(None, None, None)
            self.step_range = None
        if step is not None:
            self.step_range = record_function(f"{STEP_RANGE}{step}")
            self.step_range.__enter__()

    def _stop(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.wall = time.perf_counter() - self.began
        self._mark_step(None)
        if self.head is not None:
            self.head.remove()
        self.profiler.__exit__(None, None, None)


class HeadRange:
    """The ``lab::lm_head+loss`` range: from the moment a causal LM's backbone returns to the moment the whole model
    returns. That covers transformers' own head and loss, TRL's fused head and Liger's fused cross-entropy alike,
    whichever forward the model runs. No causal LM inside ``model`` (or no model): no range, names alone sort."""

    def __init__(self, model: Any):
        self.range: Any = None
        self.handles: list[Any] = []
        causal = causal_lm(model) if model is not None else None
        if causal is not None:
            self.handles = [causal.base_model.register_forward_hook(self.open),
                            causal.register_forward_hook(self.close)]

    def open(self, *_: Any) -> None:
        from torch.autograd.profiler import record_function

        self.close()
        self.range = record_function(HEAD_RANGE)
        self.range.__enter__()

    def close(self, *_: Any) -> None:
        if self.range is not None:
            self.range.__exit__(None, None, None)
            self.range = None

    def remove(self) -> None:
        self.close()
        for handle in self.handles:
            handle.remove()


def causal_lm(model: Any) -> Any:
    """The first transformers model inside ``model`` (a PEFT wrapper, say) with a backbone and an output head."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if (isinstance(module, PreTrainedModel) and module.base_model is not module
                and module.get_output_embeddings() is not None):
            return module
    return None


@lru_cache(maxsize=1 << 16)
def classify(own: tuple[str, ...], context: tuple[str, ...]) -> str:
    """The category of a piece of work named ``own`` (kernel, launching operator) that ran under ``context``."""
    own_text, context_text = "\n".join(own), "\n".join(own + context)
    for category, scope, pattern in _PATTERNS:
        if pattern.search(own_text if scope == "own" else context_text):
            return category
    return OTHER


class Ranges:
    """The names above each CPU operator: its parents up to the step, and for autograd's backward node, the names
    its forward operator ran under (linked by the forward thread and sequence number)."""

    def __init__(self, ops: list[Any]):
        self.memo: dict[int, tuple[str, ...]] = {}
        self.forward: dict[tuple[int, int], tuple[str, ...]] = {}
        for op in sorted(ops, key=lambda e: (e.time_range.start, -e.time_range.end)):
            names = self.of(op)
            if op.sequence_nr >= 0 and not any(n.startswith(BACKWARD_NODE) for n in names):
                self.forward.setdefault((op.thread, op.sequence_nr), names)  # the outermost op of that number

    def of(self, op: Any | None) -> tuple[str, ...]:
        """``op``'s name and the names above it, nearest first."""
        if op is None:
            return ()
        key = id(op)
        if key not in self.memo:
            names = () if op.name.startswith(STEP_RANGE) else (op.name,)  # the step is known by time (per_step)
            if op.name.startswith(BACKWARD_NODE) and op.sequence_nr >= 0:
                names += self.forward.get((op.fwd_thread, op.sequence_nr), ())
            self.memo[key] = names + self.of(op.cpu_parent)
        return self.memo[key]


def anatomy(events: list[Any], wall: float, steps: int, top: int = 8) -> dict[str, Any]:
    """The profiled window's wall time split into :data:`CATEGORIES` (which add up to ``wall``), with FLOPs, the
    top names of each category and each step's busy time. ``events``: ``torch.profiler.profile.events()``."""
    ops = [e for e in events if e.device_type.name == "CPU" and not e.is_async]
    kernels = [e for e in events if e.device_type.name == "CUDA" and not e.is_user_annotation]
    ranges = Ranges(ops)
    named = sort_pieces(kernel_pieces(kernels, ops) if kernels else op_pieces(ops), ranges)
    seconds = split_union([(start, end, category) for start, end, _, _, category in named])
    busy = union_seconds([(start, end) for start, end, *_ in named]) / 1e6
    categories = {category: category_row([p for p in named if p[4] == category], seconds.get(category, 0) / 1e6,
                                         wall, steps, top, ranges) for category in CATEGORIES if category != IDLE}
    idle = max(0.0, wall - busy)
    categories[IDLE] = {"seconds": round(idle, 6), "ms_per_step": round(idle / steps * 1000, 3),
                        "share": round(idle / wall, 4) if wall else 0.0,
                        "top": idle_causes(named, ops, ranges, idle, top)}
    return {"device": "cuda" if kernels else "cpu", "pieces": "kernels" if kernels else "CPU operators' own time",
            "steps": steps, "wall_seconds": round(wall, 6), "wall_ms_per_step": round(wall / steps * 1000, 3),
            "busy_seconds": round(busy, 6), "idle_seconds": round(idle, 6),
            "busy_share": round(busy / wall, 4) if wall else 0.0, "head_range": any(e.name == HEAD_RANGE for e in ops),
            "categories": categories, "per_step": per_step(named, ops)}


# CUDA runtime calls that block the CPU until the GPU has drained (an .item(), a boolean mask's nonzero, a copy to
# the host): the GPU then idles until the CPU has launched the next kernel.
SYNCS = ("Synchronize", "cudaMemcpy", "cudaStreamWaitEvent")
# A sync returns once the GPU has drained, but the CPU's and GPU's clocks are aligned only to some microseconds, so
# its return can show just before the last kernel's end.
SKEW_US = 50


def idle_causes(named: list[tuple], ops: list[Any], ranges: Ranges, idle: float, top: int) -> list[list[Any]]:
    """The idle time's causes, most first, as [cause, seconds]: each gap between the device's pieces is put down to
    the synchronisation the CPU came back from during the gap (``sync in ...``: what called it), or else to the work
    whose launch ended it (``before ...``: the launching operator and the names above it). The time outside the
    first and last piece is ``outside the pieces``. The names are torch's, nearest first."""
    syncs = sorted((op.time_range.end, op) for op in ops if any(name in op.name for name in SYNCS))
    ends = [end for end, _ in syncs]
    causes: Counter = Counter()
    reach = float("-inf")
    for start, end, name, op, _ in sorted(named, key=lambda p: p[0]):
        if reach < start:
            gap = start - reach if reach > float("-inf") else 0.0
            at = bisect.bisect_right(ends, start) - 1  # the last sync the CPU came back from before this launch
            if gap and at >= 0 and ends[at] > reach - SKEW_US:
                causes["sync in " + chain(ranges.of(syncs[at][1].cpu_parent))] += gap / 1e6
            elif gap:
                causes["before " + (chain(ranges.of(op)) if op is not None else name[:60])] += gap / 1e6
        reach = max(reach, end)
    outside = idle - sum(causes.values())
    if outside > 1e-6:
        causes["outside the pieces"] += outside
    return [[cause, round(seconds, 6)] for cause, seconds in causes.most_common(top)]


def chain(names: tuple[str, ...], depth: int = 3) -> str:
    """The first ``depth`` names of an operator and the ranges above it, without repeats, as ``a < b < c``."""
    kept: list[str] = []
    for name in names:
        short = name.removeprefix(BACKWARD_NODE)[:60]
        if short not in kept:
            kept.append(short)
        if len(kept) == depth:
            break
    return " < ".join(kept) or "?"


def sort_pieces(pieces: list[tuple[float, float, str, Any]], ranges: Ranges) -> list[tuple[float, float, str, Any, str]]:
    """(start µs, end µs, name, launching operator or None, category) of every piece."""
    named = []
    for start, end, name, op in pieces:
        names = ranges.of(op)  # the launching operator's name, then the ranges above it
        named.append((start, end, name, op, classify((name,) + names[:1], names[1:])))
    return named


def category_row(pieces: list[tuple], spent: float, wall: float, steps: int, top: int,
                 ranges: Ranges | None = None) -> dict[str, Any]:
    """One category: its share of the wall time (``spent`` seconds), its pieces, the FLOPs of its matrix products
    and so their TFLOP/s, its names that took the most (raw) time, and (``ranges`` given) the operators that
    launched them, with what they ran under (``top_ops``: one kernel name, e.g. an element-wise addition, is many
    operators' work, and a remedy targets the operator)."""
    by_name: Counter = Counter()
    by_op: Counter = Counter()
    products: dict[int, int] = {}
    for start, end, name, op, _ in pieces:
        by_name[name[:120]] += (end - start) / 1e6
        if ranges is not None:
            by_op[chain(ranges.of(op)) if op is not None else "?"] += (end - start) / 1e6
        # torch counts elementwise adds and multiplies too; only matrix products (the operators the GEMM rule
        # names) make a TFLOP/s worth comparing with the peak. An operator counts once, however many kernels it ran.
        flops = product_flops(op) if op is not None else 0
        if flops and classify((op.name,), ()) == "other_gemm":
            products[id(op)] = flops
    row: dict[str, Any] = {"seconds": round(spent, 6), "ms_per_step": round(spent / steps * 1000, 3),
                           "share": round(spent / wall, 4) if wall else 0.0, "count": len(pieces)}
    if products:
        row["flops"] = sum(products.values())
        row["tflops"] = float(f"{row['flops'] / spent / 1e12:.3g}") if spent else None
    row["top"] = [[n, round(s, 6)] for n, s in by_name.most_common(top)]
    if ranges is not None:
        row["top_ops"] = [[n, round(s, 6)] for n, s in by_op.most_common(top)]
    return row


def product_flops(op: Any) -> int:
    """An operator's FLOPs as torch counts them; for the in-place ``addmm_`` (the fused LoRA layer's backward),
    which torch leaves uncounted, 2·M·K·N from its recorded shapes (self M×N, mat1 M×K, mat2 K×N)."""
    if op.flops:
        return op.flops
    shapes = getattr(op, "input_shapes", None) or []
    if op.name == "aten::addmm_" and len(shapes) >= 3 and len(shapes[1]) == 2 and len(shapes[2]) == 2:
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    return 0


def kernel_pieces(kernels: list[Any], ops: list[Any]) -> list[tuple[float, float, str, Any]]:
    """(start µs, end µs, kernel name, launching operator or None) of every kernel, copy and set."""
    if not hasattr(kernels[0], "linked_correlation_id"):  # torch before 2.12
        return kernels_by_launch_order(kernels, ops)
    launcher = {op.id: op for op in ops if op.linked_correlation_id == 0}
    return [(k.time_range.start, k.time_range.end, k.name, launcher.get(k.linked_correlation_id)) for k in kernels]


def kernels_by_launch_order(kernels: list[Any], ops: list[Any]) -> list[tuple[float, float, str, Any]]:
    """``kernel_pieces`` where torch's events do not link a kernel to its operator (torch 2.11 and before): each
    operator lists its kernels as (name, duration) (``FunctionEvent.kernels``, from the same link), so operators
    taken in launch order each claim the earliest unclaimed kernel of that name and duration. Identical kernels of
    equal duration may swap operators; they are the same work."""
    waiting: dict[tuple[str, float], deque] = defaultdict(deque)
    for kernel in sorted(kernels, key=lambda k: k.time_range.start):
        waiting[(kernel.name, kernel.time_range.end - kernel.time_range.start)].append(kernel)
    launcher: dict[int, Any] = {}
    for op in sorted(ops, key=lambda o: o.time_range.start):
        for launched in getattr(op, "kernels", ()):
            queue = waiting.get((launched.name, launched.duration))
            if queue:
                launcher[id(queue.popleft())] = op
    return [(k.time_range.start, k.time_range.end, k.name, launcher.get(id(k))) for k in kernels]


def op_pieces(ops: list[Any]) -> list[tuple[float, float, str, Any]]:
    """On a CPU run: each operator's own time, its span less its children's, as (start µs, end µs, name, op).
    Ranges (steps, the head, the optimizer's step) are not work: their own time is Python's, so idle."""
    pieces = []
    for op in ops:
        if op.is_user_annotation:
            continue
        cursor = op.time_range.start
        for child in sorted(op.cpu_children, key=lambda c: c.time_range.start):
            if child.time_range.start > cursor:
                pieces.append((cursor, child.time_range.start, op.name, op))
            cursor = max(cursor, child.time_range.end)
        if op.time_range.end > cursor:
            pieces.append((cursor, op.time_range.end, op.name, op))
    return pieces


def per_step(named: list[tuple], ops: list[Any]) -> list[dict[str, Any]]:
    """Each step's wall time (its ``lab::step N`` range, on the CPU's clock) and busy time: the pieces whose
    operator started inside that range (on any thread: CUDA's backward runs on autograd's own). A GPU runs behind the
    CPU, so a step's kernels can end inside the next step's range."""
    steps = sorted((e.time_range.start, int(e.name[len(STEP_RANGE):]), e.time_range.end - e.time_range.start)
                   for e in ops if e.is_user_annotation and e.name.startswith(STEP_RANGE))
    starts = [start for start, _, _ in steps]
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for start, end, _, op, _ in named:
        at = bisect.bisect_right(starts, op.time_range.start if op is not None else start) - 1
        if at >= 0:
            spans[steps[at][1]].append((start, end))
    return [{"step": step, "wall_ms": round(wall / 1000, 3), "busy_ms": round(union_seconds(spans[step]) / 1000, 3),
             "pieces": len(spans[step])} for _, step, wall in steps]


def summary(profiler: Any, parts: dict[str, Any], rows: int = 40) -> str:
    """The busy share of the wall time, the time by category, and the top operators by device time, as text."""
    on_gpu = parts["device"] == "cuda"
    steps, wall, busy = parts["steps"], parts["wall_seconds"], parts["busy_seconds"]
    pieces = sum(row.get("count", 0) for row in parts["categories"].values())
    table = profiler.key_averages().table(sort_by="self_device_time_total" if on_gpu else "self_cpu_time_total",
                                          row_limit=rows, max_name_column_width=70)
    head = (f"{steps} step(s) in {wall:.3f} s ({wall / steps * 1000:.1f} ms a step); "
            f"{'GPU' if on_gpu else 'CPU operators'} busy {busy:.3f} s ({parts['busy_share']:.0%} of the wall "
            f"time), {pieces} {'kernels' if on_gpu else 'operator pieces'} ({pieces // max(steps, 1)} a step)\n\n")
    lines = [f"{'category':<14} {'ms a step':>10} {'share':>7} {'TFLOP/s':>8}  top"]
    for category, row in parts["categories"].items():
        top = row.get("top", [[""]])[0][0] if row.get("top") else ""
        tflops = f"{row['tflops']:.3g}" if row.get("tflops") else ""
        lines.append(f"{category:<14} {row['ms_per_step']:>10.1f} {row['share']:>7.1%} {tflops:>8}  {top[:60]}")
    causes = [f"  {seconds / steps * 1000:>8.1f} ms  {cause}" for cause, seconds in parts["categories"][IDLE]["top"]]
    idle = "\n\nidle a step, by cause:\n" + "\n".join(causes) if causes else ""
    return head + "\n".join(lines) + idle + "\n\n" + table


def split_union(pieces: list[tuple[float, float, str]]) -> dict[str, float]:
    """Each instant covered by any piece, shared equally among the pieces running then, summed by their label:
    the labels' times add up to the union's length however the pieces overlap (kernels on several streams)."""
    marks = sorted([(s, 1, c) for s, e, c in pieces if e > s] + [(e, -1, c) for s, e, c in pieces if e > s],
                   key=lambda m: (m[0], m[1]))
    running: Counter = Counter()
    total: Counter = Counter()
    active, last = 0, 0.0
    for t, change, label in marks:
        if active and t > last:
            for name, n in running.items():
                if n:
                    total[name] += (t - last) * n / active
        running[label] += change
        active += change
        last = t
    return dict(total)


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) spans: kernels on several streams overlap."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total
