"""Where a training step's time goes, at a few batch sizes: the lab's packed full SFT (``python -m lab train``,
grad_accum 1) profiled after warm-up with ``LAB_PROFILE_STEPS``; prints one table (steady tokens/s, MFU, the GPU's
busy share and each category's share of the step, from the run's profile.json) and writes JSON.

    # the Qwen2.5-0.5B architecture packed to 2048 (goal 3 of issue 20: MFU)
    python bench/step_anatomy.py --arch qwen2.5-0.5b --batches 8,16,32 --out bench/results/step-anatomy.json
    # end to end on a CPU, in about a minute
    python bench/step_anatomy.py --arch test-tiny-qwen2 --batches 2 --max-length 128 --steps 5 --profile 2:2 \\
        --out /tmp/step-anatomy.json

The categories are lab/train/profiling.py's RULES (one table, read there); ``idle`` is the wall time the device
had nothing to run (launch overhead, Python, synchronisations). MFU is steady tokens/s × the model FLOPs per token
of this data (bench/common.py's training_flops) over the GPU's dense BF16 peak. Steady tokens/s is the median
of the per-step rates after the warm-up steps, leaving out the profiled steps (the profiler slows them: it records
every operator's shapes, for the FLOPs; "step ms" against "prof ms" in the table shows by how much).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import MEAN_TOKENS, chat_tokens, sft_rows
from common import (
    PEAK_BF16_FLOPS,
    ROOT,
    build_random_model,
    import_rows,
    lab_train,
    matmul_params,
    training_flops,
    versions,
)

from lab.train.profiling import CATEGORIES, profile_window

WARMUP = 3  # first steps left out of the steady rate: kernel loading, the allocator and autotuning settle


def rows_for(tokenizer: Any, tokens: int, max_length: int) -> tuple[list[dict], list[int]]:
    """Chat rows holding at least ``tokens`` tokens (truncated at max_length), and each row's length."""
    n = tokens // min(MEAN_TOKENS, max_length) + 1
    while True:
        rows = sft_rows(tokenizer, n, max_length=max_length)
        lengths = [chat_tokens(tokenizer, row["messages"], max_length) for row in rows]
        if sum(lengths) >= tokens:
            return rows, lengths
        n = n * 3 // 2 + 1


def run_batch(args, home: Any, model_dir: Path, dataset: str, batch: int, flops_per_token: float) -> dict[str, Any]:
    """One lab run at ``batch`` packed sequences a step: its steady rate, MFU and the profile's breakdown."""
    sets = {"objective": "sft", "adapter": "none", "model": str(model_dir), "dataset": dataset, "packing": "true",
            "max_length": args.max_length, "batch_size": batch, "grad_accum": 1, "max_steps": args.steps,
            "epochs": 1, "learning_rate": 2e-5, "eval_split": "none", "save_steps": 10**6, "logging_steps": 1,
            "report_to": "none", "sample_prompts": 0}
    for item in args.lab_set:
        key, _, value = item.partition("=")
        sets[key] = value
    run = lab_train(home, sets, {"LAB_PROFILE_STEPS": args.profile})
    if "run_dir" not in run:
        return {"batch": batch, "error": run.get("error") or "no run was made"}
    run_dir = Path(run["run_dir"])
    if run["status"] != "succeeded":
        return {"batch": batch, "error": run["error"], "log_tail": (run_dir / "log.txt").read_text()[-4000:]}
    start, count = profile_window(args.profile)
    if not (run_dir / "profile.json").exists():
        return {"batch": batch, "error": f"no profile.json in {run_dir}: the run stopped before step {start} "
                                         "(fewer packed sequences than --steps × batch?)"}
    profiled = range(start + 1, start + count + 1)  # the Trainer logs a step after counting it
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    # logged every step, so each row's rate and the time since the row before are one step's
    steady_rows = [(r, before) for before, r in itertools.pairwise(train)
                   if r["step"] > WARMUP and r["step"] not in profiled and r.get("tokens_per_second")]
    steady = statistics.median(r["tokens_per_second"] for r, _ in steady_rows) if steady_rows else None
    step_ms = statistics.median(r["time"] - b["time"] for r, b in steady_rows) * 1000 if steady_rows else None
    summary = json.loads((run_dir / "summary.json").read_text())
    speed = json.loads((run_dir / "speed.json").read_text())
    return {"batch": batch, "run_dir": str(run_dir), "steady_tokens_per_second": round(steady) if steady else None,
            "mfu": round(steady * flops_per_token / PEAK_BF16_FLOPS, 4) if steady else None,
            "steady_step_ms": round(step_ms, 1) if step_ms else None,
            "peak_gpu_memory_gib": summary.get("peak_gpu_memory_gib"),
            "gradient_checkpointing": speed.get("gradient_checkpointing"), "speed": speed,
            "profile": json.loads((run_dir / "profile.json").read_text())}


def table(results: list[dict[str, Any]]) -> str:
    """One line a batch size: the rate, MFU, the step's time unprofiled and profiled (the profiler's own overhead
    shows as the difference, and inflates idle), the busy share and every category's share of the profiled step."""
    lines = [f"{'batch':>5} {'tokens/s':>9} {'MFU':>6} {'step ms':>8} {'prof ms':>8} {'busy':>5} "
             + " ".join(f"{c:>12}" for c in CATEGORIES) + f" {'GEMM TF/s':>9} {'head TF/s':>9} {'ckpt':>5}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['batch']:>5} ERROR {r['error'][-300:]}")
            continue
        p, cats = r["profile"], r["profile"]["categories"]
        lines.append(f"{r['batch']:>5} {r['steady_tokens_per_second'] or 0:>9,} {r['mfu'] or 0:>6.1%} "
                     f"{r['steady_step_ms'] or 0:>8.1f} {p['wall_ms_per_step']:>8.1f} {p['busy_share']:>5.0%} "
                     + " ".join(f"{cats[c]['share']:>12.1%}" for c in CATEGORIES)
                     + f" {cats['other_gemm'].get('tflops') or 0:>9.3g} {cats['lm_head_loss'].get('tflops') or 0:>9.3g}"
                     f" {'on' if r['gradient_checkpointing'] else 'off':>5}")
    return "\n".join(lines)


def top_names(result: dict[str, Any]) -> str:
    """The names that took the most time in each category, per step: what a remedy would target."""
    p = result["profile"]
    lines = [f"top names at batch {result['batch']} (ms a step, raw device time):"]
    for category, row in p["categories"].items():
        if row.get("top"):
            lines.append(f"  {category:<13} " + " · ".join(f"{n[:70]} {s / p['steps'] * 1000:.1f}"
                                                          for n, s in row["top"]))
    lines.append("the operators that launched them (what they ran under), per category:")
    for category, row in p["categories"].items():
        if row.get("top_ops"):
            lines.append(f"  {category:<13} " + " · ".join(f"{n[:90]} {s / p['steps'] * 1000:.1f}"
                                                          for n, s in row["top_ops"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b", help="a file in bench/configs, without .json")
    parser.add_argument("--batches", default="8,16,32", help="comma-separated packed sequences a step")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps a run")
    parser.add_argument("--profile", default="6:3", help="START:COUNT steps to profile (after the warm-up)")
    parser.add_argument("--lab-set", action="append", default=[], help="key=value for every run (repeat)")
    parser.add_argument("--home", default="", help="LAB_HOME to keep models and data between calls")
    parser.add_argument("--out", default=str(ROOT / "bench/results/step-anatomy.json"))
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    start, count = profile_window(args.profile)
    if start + count > args.steps:
        raise SystemExit(f"--profile {args.profile} reaches past --steps {args.steps}; raise --steps")

    from lab.home import lab_home
    from lab.models import load_tokenizer

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    tokenizer = load_tokenizer("tiny", home=home)
    # packing wastes a little at each sequence's end: 10% more tokens than the largest run needs
    rows, lengths = rows_for(tokenizer, int(args.steps * max(batches) * args.max_length * 1.1), args.max_length)
    dataset = import_rows(home, rows, f"bench-anatomy-{len(rows)}-{args.max_length}")
    flops_per_token = training_flops(matmul_params(model_dir), lengths) / sum(lengths)
    results = []
    for batch in batches:
        print(f"[bench] {args.arch} packed SFT, batch {batch} ...", flush=True)
        results.append(run_batch(args, home, model_dir, dataset, batch, flops_per_token))
        print(json.dumps({k: v for k, v in results[-1].items() if k not in ("profile", "speed")}), flush=True)
    document = {"arch": args.arch, "max_length": args.max_length, "rows": len(rows), "tokens": sum(lengths),
                "mean_length": round(sum(lengths) / len(lengths), 1), "flops_per_token": flops_per_token,
                "peak_flops": PEAK_BF16_FLOPS, "steps": args.steps, "profile": args.profile,
                "versions": versions(), "command": " ".join(sys.argv), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=1))
    print(f"\n{args.arch} packed full SFT to {args.max_length}: {len(rows)} rows, mean {document['mean_length']} "
          f"tokens; steps {args.steps}, profiled {args.profile}; shares are of the step's wall time")
    print(table(results))
    done = [r for r in results if "error" not in r]
    if done:
        print("\n" + top_names(done[-1]))


if __name__ == "__main__":
    main()
