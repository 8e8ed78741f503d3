"""Training throughput and memory: the plain TRL script against the lab's path, same model, data, seed and
effective batch, in one call on one machine; prints a table and writes JSON.

    # full SFT of the Qwen2.5-0.5B architecture, one epoch, 16 sequences per optimizer step each way
    python bench/train_throughput.py --arch qwen2.5-0.5b --task sft --rows 1600 --out bench/results/sft.json
    # the lab at its largest batch (packed to 2048), for MFU
    python bench/train_throughput.py --arch qwen2.5-0.5b --task sft --variants lab --lab-set packing=true \\
        --lab-set batch_size=16 --lab-set grad_accum=1 --out bench/results/sft-mfu.json
    # LoRA / QLoRA of the Llama-3.1-8B architecture on full 2048-token sequences, 40 steps
    python bench/train_throughput.py --arch llama-3.1-8b --task lora --full-length 2048 --rows 200 \\
        --plain-batch 2 --plain-accum 4 --lab-set batch_size=4 --lab-set grad_accum=2 --max-steps 40 ...
    # DPO (full model) of the 0.5B architecture
    python bench/train_throughput.py --arch qwen2.5-0.5b --task dpo --rows 800 ...

``warm`` among the variants starts the lab's warm worker there (not timed: the web app keeps one), so the lab runs
after it are forked with their imports done: ``--variants plain,warm,lab,lab`` measures the first and the second
launch (caches warm) of the whole wait. Variants: ``plain`` (bench/plain_trl.py, the tutorial settings), ``tuned`` (the same with TRL's own switches:
packing, Liger, no checkpointing) and ``lab`` (``python -m lab train`` with the lab's defaults plus --lab-set);
``lab+key=value+...`` is a lab run with more settings of its own (e.g. ``lab+gpu_memory_gib=8``);
``unsloth`` (bench/unsloth_train.py, SFT and QLoRA only: Unsloth's defaults, bf16 weights for full SFT) and
``unsloth+fp32`` (its SFT with the plain run's fp32 master weights) need Unsloth installed by
bench/unsloth_wheels.sh into ``--unsloth-env``, which goes first on that process's PYTHONPATH alone.
Tokens are real (non-padding) tokens of the data as the trainer sees it; tokens/s is epoch tokens over the
trainer's runtime (and, for ``steady``, the median over logging intervals after the first fifth of the run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import chat_tokens, preference_rows, sft_rows  # noqa: E402
from common import (PEAK_BF16_FLOPS, ROOT, build_random_model, import_rows, lab_env, lab_train,  # noqa: E402
                    matmul_params, training_flops, versions)

USUAL_LR = {"sft": 2e-5, "lora": 2e-4, "qlora": 2e-4, "dpo": 5e-7}


def sequence_lengths(tokenizer: Any, rows: list[dict], task: str, max_length: int) -> list[int]:
    """Token count of every sequence the trainer runs (DPO: chosen and rejected, each with the prompt)."""
    if task == "dpo":
        out = []
        for row in rows:
            for reply in ("chosen", "rejected"):
                out.append(chat_tokens(tokenizer, row["prompt"] + row[reply], max_length))
        return out
    return [chat_tokens(tokenizer, row["messages"], max_length) for row in rows]


def adapter_params(model_dir: Path, r: int = 16) -> int:
    """Trainable LoRA parameters (r 16, all linear layers but the head), from the architecture."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    head = model.get_output_embeddings()
    return sum(r * (m.in_features + m.out_features) for m in model.modules()
               if isinstance(m, torch.nn.Linear) and m is not head)


def run_plain(args, model_dir: Path, data: Path, out: Path, tuned: bool) -> dict:
    command = [sys.executable, str(ROOT / "bench/plain_trl.py"), "--model", str(model_dir), "--data", str(data),
               "--task", args.task, "--batch-size", str(args.plain_batch), "--grad-accum", str(args.plain_accum),
               "--max-length", str(args.max_length), "--max-steps", str(args.max_steps), "--out", str(out)]
    if tuned:
        command.append("--tuned")
    if args.profile:
        command += ["--profile", args.profile]
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        return {"variant": "tuned" if tuned else "plain", "error": result.stderr[-3000:]}
    report = json.loads(out.read_text())
    report.update(wall_seconds=time.time() - started, variant="tuned" if tuned else "plain",
                  effective_batch=args.plain_batch * args.plain_accum)
    profile = out.with_suffix(".profile.txt")
    if profile.exists():
        report["profile"] = profile.read_text()
    return report


def run_unsloth(args, model_dir: Path, data: Path, out: Path, variant: str) -> dict:
    """bench/unsloth_train.py with Unsloth's own packages (trl 1.15, datasets 4) ahead of the lab's on its path."""
    command = [sys.executable, str(ROOT / "bench/unsloth_train.py"), "--model", str(model_dir), "--data", str(data),
               "--task", args.task, "--batch-size", str(args.plain_batch), "--grad-accum", str(args.plain_accum),
               "--max-length", str(args.max_length), "--max-steps", str(args.max_steps), "--out", str(out)]
    if variant == "unsloth+fp32":
        command.append("--fp32-master")
    path = os.pathsep.join(p for p in (args.unsloth_env, os.environ.get("PYTHONPATH", "")) if p)
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": path})
    if result.returncode != 0:
        return {"variant": variant, "error": result.stderr[-3000:]}
    report = json.loads(out.read_text())
    report.update(wall_seconds=time.time() - started, variant=variant,
                  effective_batch=args.plain_batch * args.plain_accum)
    return report


def start_warm(home) -> dict:
    """``python -m lab warm`` with the environment the lab's runs are started with; its state (pid, import seconds)."""
    done = subprocess.run([sys.executable, "-m", "lab", "warm", "--idle", "1800", "--json"], capture_output=True,
                          text=True, env=lab_env(home), cwd=ROOT)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]}


def run_lab(args, home, model_dir: Path, dataset: str, out: Path, variant: str = "lab") -> dict:
    objective, adapter = {"sft": ("sft", "none"), "lora": ("sft", "lora"), "qlora": ("sft", "qlora"),
                          "dpo": ("dpo", "none")}[args.task]
    # save_steps beyond the run: no checkpoint inside the timed loop (the plain script saves none either). Until
    # NoCheckpointAtTheEnd, the Trainer still saved one after the last step, inside the lab's train_runtime. The final
    # model is saved after training, outside the trainer's runtime, for both.
    sets = {"objective": objective, "adapter": adapter, "model": str(model_dir), "dataset": dataset, "max_length": args.max_length,
            "batch_size": args.plain_batch * args.plain_accum, "grad_accum": 1, "max_steps": args.max_steps,
            "epochs": 1, "learning_rate": USUAL_LR[args.task], "eval_split": "none", "save_steps": 10**6,
            "logging_steps": 5,
            "report_to": "none", "sample_prompts": 0}
    for item in args.lab_set + variant.split("+")[1:]:
        key, _, value = item.partition("=")
        sets[key] = value
    started = time.time()
    run = lab_train(home, sets, {"LAB_PROFILE_STEPS": args.profile} if args.profile else None)
    wall = time.time() - started
    if "run_dir" not in run:
        return {"variant": variant, "error": run.get("error") or "no run was made"}
    run_dir = Path(run["run_dir"])
    if run["status"] != "succeeded":
        return {"variant": variant, "error": run["error"], "log_tail": (run_dir / "log.txt").read_text()[-4000:]}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary_row = next(r for r in rows if r.get("split") == "summary")
    summary = json.loads((run_dir / "summary.json").read_text())
    report = {"variant": variant, "task": args.task, "train_runtime": summary_row["train_runtime"],
              "steps": rows[-1]["step"], "wall_seconds": wall, "setup_seconds": summary.get("setup_seconds"),
              "phases": summary.get("phases"),
              "peak_gpu_memory_gib": summary.get("peak_gpu_memory_gib"),
              "speed": json.loads((run_dir / "speed.json").read_text()), "settings": sets,
              "effective_batch": int(sets["batch_size"]) * int(sets["grad_accum"]),
              "log": [{"time": r["time"], "step": r["step"], "loss": r.get("loss"),
                       "tokens_per_second": r.get("tokens_per_second"), "grad_norm": r.get("grad_norm")}
                      for r in rows if r.get("split") == "train"]}
    if (run_dir / "profile.txt").exists():
        report["profile"] = (run_dir / "profile.txt").read_text()
    out.write_text(json.dumps(report, indent=1))
    return report


def summarise(report: dict, tokens: int, flops: float, rows: int, max_steps: int) -> dict:
    """Headline numbers of one variant; tokens and FLOPs are of the part of the epoch that was trained."""
    if "error" in report:
        return {"variant": report["variant"], "error": report["error"][-600:]}
    share = 1.0 if max_steps <= 0 else min(1.0, report["steps"] * report["effective_batch"] / rows)
    runtime = report["train_runtime"]
    losses = [r["loss"] for r in report["log"] if r.get("loss") is not None]
    if report["variant"].startswith("lab"):
        rates = [r["tokens_per_second"] for r in report["log"] if r.get("tokens_per_second")]
    else:
        points = [r for r in report["log"] if "loss" in r]
        rates = [(b["tokens"] - a["tokens"]) / (b["time"] - a["time"]) for a, b in zip(points, points[1:])]
    steady = statistics.median(rates[len(rates) // 5:]) if rates else None
    tail = losses[-max(1, len(losses) // 10):]
    norms = [r["grad_norm"] for r in report["log"] if r.get("grad_norm") is not None]
    return {"variant": report["variant"], "train_runtime_s": round(runtime, 1),
            "tokens_per_second": round(tokens * share / runtime),
            "steady_tokens_per_second": round(steady) if steady else None,
            "mfu": round(flops * share / runtime / PEAK_BF16_FLOPS, 4),
            "peak_gpu_memory_gib": round(report["peak_gpu_memory_gib"], 2) if report.get("peak_gpu_memory_gib")
            else None,
            "final_loss": round(statistics.mean(tail), 4) if tail else None, "steps": report["steps"],
            "setup_seconds": report.get("setup_seconds"), "wall_seconds": round(report.get("wall_seconds", 0), 1),
            # a row whose gradients were zero measured nothing: the last logged norm shows they were not
            "grad_norm": round(norms[-1], 4) if norms else None, "phases": report.get("phases"),
            "speed": report.get("speed"), "profile": report.get("profile")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b", help="a file in bench/configs, without .json")
    parser.add_argument("--task", choices=("sft", "lora", "qlora", "dpo"), default="sft")
    parser.add_argument("--rows", type=int, default=1600)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--full-length", type=int, default=0, help="rows longer than this (every sequence full)")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: one epoch")
    parser.add_argument("--plain-batch", type=int, default=8)
    parser.add_argument("--plain-accum", type=int, default=2)
    parser.add_argument("--variants", default="plain,lab", help="comma-separated: plain, tuned, lab, unsloth; "
                        "'warm' starts the warm worker (untimed, as the web app keeps one) for the lab variants after it")
    parser.add_argument("--unsloth-env", default="/tmp/unsloth-env", help="where bench/unsloth_wheels.sh's set is")
    parser.add_argument("--lab-set", action="append", default=[], help="key=value for the lab's run (repeat)")
    parser.add_argument("--profile", default="", help="START:COUNT optimizer steps to profile in every variant")
    parser.add_argument("--home", default="", help="LAB_HOME to keep models and data between calls")
    parser.add_argument("--out", default=str(ROOT / "bench/results/train.json"))
    args = parser.parse_args()

    from lab.home import lab_home
    from lab.models import load_tokenizer

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    tokenizer = load_tokenizer("tiny", home=home)
    make = preference_rows if args.task == "dpo" else sft_rows
    extra = {"full_length": args.full_length} if args.full_length and args.task != "dpo" else {}
    rows = make(tokenizer, args.rows, max_length=args.max_length, **extra)
    name = f"bench-{args.task}-{args.rows}-{args.full_length}"
    dataset = import_rows(home, rows, name)
    data = home.root / f"{name}.jsonl"  # the plain script reads the same rows from the file import_rows wrote

    lengths = sequence_lengths(tokenizer, rows, args.task, args.max_length)
    shape = matmul_params(model_dir)
    trainable = adapter_params(model_dir) if args.task in ("lora", "qlora") else None
    flops = training_flops(shape, lengths, trainable=trainable)
    effective = args.plain_batch * args.plain_accum
    results_dir = Path(args.out).with_suffix("")
    results_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for variant in args.variants.split(","):
        if variant == "warm":  # the warm worker, as the web app keeps one: started here, not timed
            print(f"[bench] warm worker: {start_warm(home)}", flush=True)
            continue
        print(f"[bench] {args.arch} {args.task}: {variant} ...", flush=True)
        out = results_dir / f"{variant.split('+')[0]}{len(reports)}.json"
        report = (run_lab(args, home, model_dir, dataset, out, variant) if variant.startswith("lab")
                  else run_unsloth(args, model_dir, data, out, variant) if variant.startswith("unsloth")
                  else run_plain(args, model_dir, data, out, tuned=variant == "tuned"))
        reports.append(summarise(report, sum(lengths), flops, len(rows), args.max_steps))
        print(json.dumps({k: v for k, v in reports[-1].items() if k != "profile"}), flush=True)
        if reports[-1].get("profile"):
            print(reports[-1]["profile"][:7000], flush=True)
    document = {"arch": args.arch, "task": args.task, "rows": args.rows, "tokens": sum(lengths),
                "mean_length": round(sum(lengths) / len(lengths), 1), "max_length": args.max_length,
                "effective_batch": effective, "flops_per_epoch": flops, "params": shape, "versions": versions(),
                "command": " ".join(sys.argv), "results": reports}
    base = next((r for r in reports if r["variant"] == "plain" and "error" not in r), None)
    if base:
        for r in reports:
            if "error" not in r:
                r["speedup"] = round(r["tokens_per_second"] / base["tokens_per_second"], 2)
                if r["steady_tokens_per_second"] and base["steady_tokens_per_second"]:
                    r["steady_speedup"] = round(r["steady_tokens_per_second"] / base["steady_tokens_per_second"], 2)
                if r["wall_seconds"] and base["wall_seconds"]:  # the whole wait, process start to exit
                    r["wall_speedup"] = round(base["wall_seconds"] / r["wall_seconds"], 2)
                if r["final_loss"] and base["final_loss"]:
                    r["loss_vs_plain"] = round(r["final_loss"] / base["final_loss"] - 1, 4)
    Path(args.out).write_text(json.dumps(document, indent=1))
    print(f"\n{args.arch} {args.task}: {len(lengths)} sequences, {sum(lengths):,} tokens "
          f"(mean {document['mean_length']})")
    print(f"{'variant':<30} {'tokens/s':>10} {'speedup':>8} {'steady':>8} {'MFU':>6} {'peak GiB':>9} {'final loss':>10} "
          f"{'runtime s':>9} {'wall s':>7} {'wall ×':>6} {'grad norm':>9}")
    for r in reports:
        if "error" in r:
            print(f"{r['variant']:<30} ERROR {r['error'][-300:]}")
            continue
        print(f"{r['variant']:<30} {r['tokens_per_second']:>10,} {r.get('speedup', ''):>8} "
              f"{r['steady_tokens_per_second'] or 0:>8,} {r['mfu']:>6.1%} "
              f"{r['peak_gpu_memory_gib'] or 0:>9.2f} {r['final_loss'] or 0:>10.4f} {r['train_runtime_s']:>9} "
              f"{r['wall_seconds']:>7} {r.get('wall_speedup', ''):>6} {r['grad_norm'] or 0:>9.3g}")
        if r.get("phases"):
            print(f"{'':<30} phases: " + " · ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()))


if __name__ == "__main__":
    main()
