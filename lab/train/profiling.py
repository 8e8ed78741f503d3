"""Where a training step's time goes: ``LAB_PROFILE_STEPS=START:COUNT`` in the environment of a run profiles
COUNT optimizer steps from step START with ``torch.profiler`` and writes ``profile.txt`` to the run directory:
the share of the wall time the GPU was busy, then the operators and kernels that took the most device time.

Meant for "why is my run slow" and for the benchmarks (bench/), so it is an environment switch rather than a
config field: a profile changes nothing about the run but slows the profiled steps a little.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

ENV = "LAB_PROFILE_STEPS"


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


class ProfileCallback(TrainerCallback):
    """Profiles steps ``start`` to ``start + count - 1`` (optimizer steps, as the Trainer counts them)."""

    def __init__(self, out: Path, start: int, count: int):
        self.out, self.start, self.count = out, start, count
        self.profiler: Any = None
        self.began = self.wall = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if self.profiler is None and state.global_step == self.start:
            import torch

            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                torch.cuda.synchronize()
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
            self.began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None and not self.wall and state.global_step == self.start + self.count:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.wall = time.perf_counter() - self.began
            self.profiler.__exit__(None, None, None)

    def on_train_end(self, args, state, control, **kwargs):
        # Reading the events back takes seconds to minutes (~50,000 kernels a step on an 8B model), so it waits
        # until the Trainer has measured its runtime.
        if self.profiler is not None and self.wall:
            self.out.write_text(summary(self.profiler, self.wall, self.count))
            self.profiler = None


def summary(profiler: Any, wall: float, steps: int, rows: int = 40) -> str:
    """The GPU's busy share of the wall time and the top operators by device time, as text."""
    events = profiler.events()
    kernels = [e for e in events if getattr(e, "device_type", None) is not None and e.device_type.name == "CUDA"]
    busy = union_seconds([(e.time_range.start, e.time_range.end) for e in kernels]) / 1e6
    table = profiler.key_averages().table(sort_by="self_device_time_total" if kernels else "self_cpu_time_total",
                                          row_limit=rows, max_name_column_width=70)
    head = (f"{steps} step(s) in {wall:.3f} s ({wall / steps * 1000:.1f} ms a step); GPU busy {busy:.3f} s "
            f"({busy / wall:.0%} of the wall time), {len(kernels)} kernels ({len(kernels) // max(steps, 1)} a step)\n\n")
    return head + table


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
