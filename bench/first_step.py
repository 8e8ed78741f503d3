"""Where a lab run's first steps go: the trainer the lab's worker builds (``lab.train.worker.build_trainer``, same
config, data and speed plan as ``python -m lab train``) trained in this process for a few steps under cProfile.
Prints each step's wall time and the host functions that took the most time, and writes them as text.

    python bench/first_step.py --arch qwen2.5-0.5b --rows 2000 --steps 6 --out bench/results/first-step.txt
    python bench/first_step.py ... --set liger_kernels=off     # any TrainConfig field, as with lab train --set

The benchmarks' runs spend several seconds in their first step against ~0.2 s for later ones (docs/benchmarks.md);
this names what those seconds are (kernel compiling, dataloader workers, allocator growth, waiting on the GPU).
Run it twice with the same --home to see what the kernel caches under LAB_HOME save.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import sft_rows  # noqa: E402
from common import ROOT, build_random_model, import_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b",
                        help="a file in bench/configs, without .json, or tiny (the built-in model: a CPU smoke run)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--set", action="append", default=[], help="key=value for the run's config (repeat)")
    parser.add_argument("--home", default="")
    parser.add_argument("--out", default=str(ROOT / "bench/results/first-step.txt"))
    args = parser.parse_args()

    import os

    from lab.config import load_yaml
    from lab.home import lab_home
    from lab.models import load_tokenizer

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    os.environ.update(home.kernel_cache_env())  # as the runner sets them for its workers
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    model = "tiny" if args.arch == "tiny" else build_random_model(args.arch, home.models / args.arch, home)
    rows = sft_rows(load_tokenizer("tiny", home=home), args.rows, max_length=2048)
    dataset = import_rows(home, rows, f"bench-first-step-{args.rows}")
    overrides = [f"model={model}", f"dataset={dataset}", "batch_size=16", "grad_accum=1", "eval_split=none",
                 "save_steps=1000000", "logging_steps=1", "report_to=none", "sample_prompts=0", "learning_rate=2e-5",
                 f"max_steps={args.steps}", *args.set]
    cfg = load_yaml(str(ROOT / "recipes/tiny-sft.yaml"), overrides=overrides)

    from transformers import TrainerCallback

    from lab.train.worker import build_trainer

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[str, float]] = []

        def on_train_begin(self, *a, **k):
            self.marks.append(("train begins", time.perf_counter()))

        def on_step_end(self, args, state, control, **k):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()  # a step's time includes its kernels
            self.marks.append((f"step {state.global_step}", time.perf_counter()))

    run_dir = Path(tempfile.mkdtemp(prefix="first-step-"))
    started = time.perf_counter()
    trainer = build_trainer(cfg, run_dir, home, None)
    built = time.perf_counter() - started
    times = StepTimes()
    trainer.add_callback(times)
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    trainer.train()
    profiler.disable()
    total = time.perf_counter() - began

    lines = [f"{args.arch}, {args.steps} steps, settings: {' '.join(args.set) or 'the lab defaults'}",
             f"trainer built in {built:.2f} s; train() took {total:.2f} s"]
    last = began
    for name, mark in times.marks:
        lines.append(f"  {name:<14} +{mark - last:7.3f} s")
        last = mark
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(45)
        lines += ["", f"--- host functions by {order} time ---", text.getvalue().split("\n", 6)[-1]]
    report = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report[:12000])


if __name__ == "__main__":
    main()
