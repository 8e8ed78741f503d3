"""Several GPUs through the lab's own path: tokens/s and loss curves of one run on 1 GPU against N, DDP against
FSDP (and DeepSpeed ZeRO where it is installed), with the same effective batch, so the curves should agree.

    # DDP against FSDP: full SFT of the Qwen2.5-1.5B architecture on 1 and 2 GPUs
    python bench/multi_gpu.py --arch qwen2.5-1.5b --method sft --runs 1:ddp,2:ddp,2:fsdp \\
        --out bench/results/multi-gpu-qwen2.5-1.5b.json
    # QLoRA of the Llama-3.1-8B architecture over 2 GPUs: a 4-bit copy per GPU (ddp) and FSDP-QLoRA
    python bench/multi_gpu.py --arch llama-3.1-8b --method qlora --runs 1:ddp,2:ddp,2:fsdp --max-length 2048 \\
        --batch-size 4 --effective-batch 16 --out bench/results/multi-gpu-llama-3.1-8b-qlora.json
    # what it would run (run configs and accelerate.yaml), on any machine, starting nothing
    python bench/multi_gpu.py --arch qwen2.5-1.5b --runs 1:ddp,2:ddp,2:fsdp --dry-run

Each run is ``python -m lab train`` (runner → accelerate launch → one worker per GPU) of a random-initialised
model of a published architecture (bench/configs; speed and memory do not depend on the weights' values) on
synthetic chat rows of real lengths (bench/chat_data.py). Every run keeps the effective batch: batch_size per
GPU × grad_accum × GPUs = --effective-batch, so a run on N GPUs should give the same loss curve as on one, N
times faster at best. tokens/s is the median of the lab's per-log-interval figure after the first fifth of the
run (real tokens, counted over all GPUs); the peak memory is GPU 0's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import ROOT, build_random_model, import_rows, lab_train, versions  # noqa: E402

USUAL_LR = {"sft": 2e-5, "lora": 2e-4, "qlora": 2e-4}


@dataclass(frozen=True)
class Case:
    gpus: int
    strategy: str

    @property
    def name(self) -> str:
        return f"{self.gpus}x{self.strategy}"


def parse_runs(text: str) -> list[Case]:
    """``1:ddp,2:fsdp`` → cases; a strategy alone means 1 GPU."""
    cases = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        count, _, strategy = item.rpartition(":")
        if strategy not in ("ddp", "fsdp", "deepspeed") or (count and not count.isdigit()) or count == "0":
            raise argparse.ArgumentTypeError(f"run {item!r}: write GPUS:STRATEGY, e.g. 2:fsdp (strategies ddp, "
                                             "fsdp, deepspeed)")
        cases.append(Case(int(count or 1), strategy))
    if not cases:
        raise argparse.ArgumentTypeError("give at least one run, e.g. 1:ddp,2:ddp")
    return cases


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="qwen2.5-1.5b", help="a file in bench/configs, without .json")
    p.add_argument("--method", choices=tuple(USUAL_LR), default="sft")
    p.add_argument("--runs", type=parse_runs, default=parse_runs("1:ddp,2:ddp,2:fsdp"),
                   help="comma-separated GPUS:STRATEGY (default 1:ddp,2:ddp,2:fsdp)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per GPU per forward pass")
    p.add_argument("--effective-batch", type=int, default=32, help="sequences per optimizer step, in every run")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--rows", type=int, default=4000, help="synthetic chat rows (log-normal lengths, mean ~450)")
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    p.add_argument("--lab-set", action="append", default=[], metavar="KEY=VALUE", help="more run settings")
    p.add_argument("--home", default="", help="LAB_HOME to keep models and data between calls")
    p.add_argument("--out", default=str(ROOT / "bench/results/multi-gpu.json"))
    p.add_argument("--dry-run", action="store_true", help="print the runs and their accelerate configs, run nothing")
    return p


def settings(args: argparse.Namespace, case: Case, model: str, dataset: str) -> dict[str, Any]:
    """The run's settings: the same effective batch whatever the GPU count."""
    per_step = args.batch_size * case.gpus
    if args.effective_batch % per_step:
        raise SystemExit(f"--effective-batch {args.effective_batch} is not a multiple of batch {args.batch_size} × "
                         f"{case.gpus} GPUs; choose sizes that divide it for every run.")
    sets = {"method": args.method, "model": model, "dataset": dataset, "gpus": case.gpus,
            "distributed": case.strategy, "batch_size": args.batch_size,
            "grad_accum": args.effective_batch // per_step, "max_length": args.max_length,
            "max_steps": args.max_steps, "learning_rate": USUAL_LR[args.method], "warmup_ratio": 0.1,
            "gradient_checkpointing": args.checkpointing, "eval_split": "none", "save_steps": 0, "logging_steps": 2,
            "report_to": "none", "sample_prompts": 0, "seed": 0}
    for item in args.lab_set:
        key, _, value = item.partition("=")
        sets[key] = value
    return sets


def check(sets: dict[str, Any]) -> tuple[Any, list[str]]:
    """The run config as the lab reads it, validated as on a GPU machine."""
    from lab.config import TrainConfig, from_dict

    cfg = from_dict(TrainConfig, {k: str(v) if k == "gpus" else v for k, v in sets.items()}, where="bench")
    return cfg, cfg.validate(cuda=True)


def dry_run(args: argparse.Namespace) -> None:
    from lab.errors import LabError
    from lab.train import distributed

    for case in args.runs:
        sets = settings(args, case, f"<random {args.arch}>", "<synthetic chat rows>")
        try:
            cfg, warnings = check(sets)
        except LabError as err:
            print(f"== {case.name}: refused: {err}")
            continue
        model_type = json.loads((ROOT / "bench/configs" / f"{args.arch}.json").read_text())["model_type"]
        config = distributed.accelerate_config(cfg, case.gpus, layer_cls=distributed.layer_class_for(model_type))
        print(f"== {case.name}: {case.gpus} GPU(s) × batch {cfg.batch_size} × accumulation {cfg.grad_accum} = "
              f"effective batch {cfg.batch_size * cfg.grad_accum * case.gpus}")
        print("python -m lab train recipes/tiny-sft.yaml --wait " + " ".join(f"--set {k}={v}" for k, v in sets.items()))
        for warning in warnings:
            print(f"warning: {warning}")
        print(distributed.to_yaml(config, "accelerate.yaml"))


def run(sets: dict[str, Any], home: Any) -> dict[str, Any]:
    started = time.time()
    document = lab_train(home, sets)
    if document.get("status") != "succeeded":
        return {"error": document.get("error") or "the run did not succeed"}
    run_dir = Path(document["run_dir"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    rates = [r["tokens_per_second"] for r in train if r.get("tokens_per_second")]
    steady = rates[len(rates) // 5:] or rates
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"run_id": document["id"], "wall_seconds": round(time.time() - started, 1),
            "tokens_per_second": round(statistics.median(steady)) if steady else None,
            "train_runtime_s": next((r["train_runtime"] for r in rows if r.get("split") == "summary"), None),
            "peak_gpu_memory_gib": summary.get("peak_gpu_memory_gib"),
            "launch": json.loads((run_dir / "launch.json").read_text()),
            "losses": [(r["step"], r["loss"]) for r in train if "loss" in r]}


def curve_gap(base: list[tuple[int, float]], other: list[tuple[int, float]]) -> float | None:
    """Largest relative loss difference at the steps both curves logged."""
    theirs = dict(other)
    gaps = [abs(theirs[step] - loss) / abs(loss) for step, loss in base if step in theirs and loss]
    return round(max(gaps), 4) if gaps else None


def main() -> None:
    args = parser().parse_args()
    if args.dry_run:
        dry_run(args)
        return
    import torch

    need = max(case.gpus for case in args.runs)
    if torch.cuda.device_count() < need:
        raise SystemExit(f"these runs need {need} GPUs and {torch.cuda.device_count()} are visible (--dry-run shows "
                         "what would run)")
    from chat_data import sft_rows

    from lab.home import lab_home
    from lab.models import load_tokenizer

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    rows = sft_rows(load_tokenizer("tiny", home=home), args.rows, max_length=args.max_length)
    dataset = import_rows(home, rows, f"bench-multi-gpu-{args.rows}")
    results = []
    for case in args.runs:
        sets = settings(args, case, str(model_dir), dataset)
        print(f"[bench] {args.arch} {args.method} {case.name} ...", flush=True)
        results.append({"case": case.name, "gpus": case.gpus, "strategy": case.strategy, "settings": sets,
                        **run(sets, home)})
        print(json.dumps({k: v for k, v in results[-1].items() if k not in ("losses", "settings")}), flush=True)
    base = next((r for r in results if "error" not in r), None)
    for r in results:
        if base and "error" not in r and r["tokens_per_second"] and base["tokens_per_second"]:
            r["speedup"] = round(r["tokens_per_second"] / base["tokens_per_second"], 2)
            r["scaling_efficiency"] = round(r["speedup"] / (r["gpus"] / base["gpus"]), 2)
            r["loss_gap_vs_first"] = curve_gap(base["losses"], r["losses"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"arch": args.arch, "method": args.method, "effective_batch": args.effective_batch,
                               "max_length": args.max_length, "versions": versions(), "command": " ".join(sys.argv),
                               "results": results}, indent=1))
    print(f"\n{args.arch} {args.method}, effective batch {args.effective_batch}, {args.max_steps} steps")
    print(f"{'run':<12} {'tokens/s':>10} {'speedup':>8} {'scaling':>8} {'peak GiB':>9} {'final loss':>10} "
          f"{'loss gap':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:<12} ERROR {r['error'][-300:]}")
            continue
        print(f"{r['case']:<12} {r['tokens_per_second'] or 0:>10,} {r.get('speedup', ''):>8} "
              f"{r.get('scaling_efficiency', ''):>8} {r['peak_gpu_memory_gib'] or 0:>9.2f} "
              f"{r['losses'][-1][1] if r['losses'] else 0:>10.4f} {r.get('loss_gap_vs_first') or 0:>9.2%}")


if __name__ == "__main__":
    main()
