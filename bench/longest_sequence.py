"""The longest sequence one QLoRA step can train at batch 1 under a GPU memory cap: plain TRL (checkpointing on,
as the tutorials set it) against the lab (``gpu_memory_gib`` set to the same cap, its memory choices left on
auto). Each trial is one optimizer step on one row of exactly that many tokens, in a fresh process; a variant
stops at its first out-of-memory. Prints a table and writes JSON.

    python bench/longest_sequence.py --arch llama-3.1-8b --cap-gib 16 --plain 8192,12288,16384,20480,24576 \\
        --lab 49152,65536

A cap stands for a smaller GPU (16 GiB: a consumer card) and keeps every trial short; the memory either way
is what the CUDA allocator is allowed, so the comparison is the same one a smaller card would make.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import sft_rows  # noqa: E402
from common import ROOT, build_random_model, import_rows, lab_train, versions  # noqa: E402


def trial_plain(model_dir: Path, data: Path, length: int, cap: float, out: Path) -> dict:
    command = [sys.executable, str(ROOT / "bench/plain_trl.py"), "--model", str(model_dir), "--data", str(data),
               "--task", "qlora", "--batch-size", "1", "--grad-accum", "1", "--max-length", str(length),
               "--max-steps", "1", "--memory-cap-gib", str(cap), "--out", str(out)]
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        oom = "OutOfMemoryError" in result.stderr or "out of memory" in result.stderr
        return {"ok": False, "oom": oom, "error": result.stderr[-400:], "seconds": round(time.time() - started)}
    report = json.loads(out.read_text())
    return {"ok": True, "peak_gpu_memory_gib": round(report["peak_gpu_memory_gib"], 2),
            "seconds": round(time.time() - started)}


def trial_lab(home, model_dir: Path, dataset: str, length: int, cap: float) -> dict:
    sets = {"adapter": "qlora", "model": str(model_dir), "dataset": dataset, "max_length": length, "batch_size": 1,
            "grad_accum": 1, "max_steps": 1, "eval_split": "none", "save_steps": 10**6, "report_to": "none",
            "sample_prompts": 0, "gpu_memory_gib": cap, "warmup_ratio": 0}  # one step: no warm-up
    started = time.time()
    run = lab_train(home, sets)
    if run.get("status") != "succeeded":
        error = run.get("error") or ""
        log = Path(run["run_dir"], "log.txt").read_text().splitlines() if run.get("run_dir") else []
        return {"ok": False, "oom": "Out of GPU memory" in error, "error": error[-400:],
                "log": [line for line in log if line.startswith("[lab]")] + log[-25:],
                "seconds": round(time.time() - started)}
    run_dir = Path(run["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"ok": True, "peak_gpu_memory_gib": summary.get("peak_gpu_memory_gib"),
            "speed": json.loads((run_dir / "speed.json").read_text()), "seconds": round(time.time() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="llama-3.1-8b")
    parser.add_argument("--cap-gib", type=float, default=16)
    parser.add_argument("--plain", default="8192,12288,16384,20480,24576", help="lengths to try, ascending")
    parser.add_argument("--lab", default="49152,65536", help="lengths to try, ascending")
    parser.add_argument("--home", default="")
    parser.add_argument("--out", default=str(ROOT / "bench/results/longest.json"))
    args = parser.parse_args()

    from lab.home import lab_home
    from lab.models import load_tokenizer

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    tokenizer = load_tokenizer("tiny", home=home)
    trials: list[dict] = []
    for variant, lengths in (("plain", args.plain), ("lab", args.lab)):
        for length in [int(x) for x in lengths.split(",") if x]:
            name = f"longest-{length}"
            dataset = import_rows(home, sft_rows(tokenizer, 1, max_length=length, full_length=length), name)
            out = Path(args.out).with_suffix("") / f"{variant}-{length}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            result = (trial_plain(model_dir, home.root / f"{name}.jsonl", length, args.cap_gib, out)
                      if variant == "plain" else trial_lab(home, model_dir, dataset, length, args.cap_gib))
            trials.append({"variant": variant, "length": length, **result})
            print(json.dumps({k: v for k, v in trials[-1].items() if k not in ("speed", "log")}), flush=True)
            if trials[-1].get("log"):
                print("\n".join(line[:300] for line in trials[-1]["log"]), flush=True)
            if not result["ok"]:
                break
    best = {v: max((t["length"] for t in trials if t["variant"] == v and t["ok"]), default=0) for v in ("plain", "lab")}
    document = {"arch": args.arch, "cap_gib": args.cap_gib, "versions": versions(), "command": " ".join(sys.argv),
                "trials": trials, "longest": best,
                "ratio": round(best["lab"] / best["plain"], 2) if best["plain"] else None}
    Path(args.out).write_text(json.dumps(document, indent=1))
    print(f"\n{args.arch} QLoRA, batch 1, cap {args.cap_gib:g} GiB: longest trained plain {best['plain']:,}, "
          f"lab {best['lab']:,} tokens ({document['ratio']}x)")


if __name__ == "__main__":
    main()
