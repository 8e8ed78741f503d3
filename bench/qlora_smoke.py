"""QLoRA through the lab's own path on a GPU: a random-initialised model of a published architecture
(bench/configs/*.json; speed and memory do not depend on the weights' values) is trained by
``python -m lab train`` (runner → accelerate launch → worker, 4-bit NF4 + double quantisation + bf16
compute + paged 8-bit AdamW), and the measured peak memory and tokens/s are set beside the lab's estimate.

    python bench/qlora_smoke.py --arch qwen2.5-0.5b --max-length 2048 --batch-size 4 --out bench/results/qlora.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import sft_rows  # noqa: E402
from common import ROOT, build_random_model, import_rows, lab_train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b", help="a file in bench/configs, without .json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on (else off)")
    parser.add_argument("--data", choices=("sample", "full"), default="full",
                        help="full: synthetic conversations that fill max_length (the estimate's own assumption); "
                        "sample: the bundled SFT sample (short rows)")
    parser.add_argument("--home", default="", help="LAB_HOME to keep models and data between calls")
    parser.add_argument("--out", default=str(ROOT / "bench/results/qlora.json"))
    args = parser.parse_args()

    from lab.config import TrainConfig
    from lab.home import lab_home
    from lab.models import load_tokenizer
    from lab.train.estimate import memory, model_shape, trainable_params

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    if args.data == "sample":
        dataset = "sample:sft"
    else:
        rows = sft_rows(load_tokenizer("tiny", home=home), 400, max_length=args.max_length,
                        full_length=args.max_length)
        dataset = import_rows(home, rows, f"full-length-{args.max_length}")
    checkpointing = "on" if args.checkpointing else "off"
    print(f"[bench] {args.arch} qlora, {args.data} data, batch {args.batch_size} x {args.max_length}, "
          f"checkpointing {checkpointing}", flush=True)
    sets = {"adapter": "qlora", "model": str(model_dir), "dataset": dataset, "max_steps": args.steps,
            "batch_size": args.batch_size, "max_length": args.max_length, "report_to": "none",
            "learning_rate": 2e-4, "eval_steps": 0, "save_steps": 0, "eval_split": "none", "logging_steps": 5,
            "gradient_checkpointing": checkpointing}
    run = lab_train(home, sets)
    if "run_dir" not in run:
        raise SystemExit(run.get("error") or "no run was made")
    rows = [json.loads(line) for line in Path(run["run_dir"], "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train" and "loss" in r]
    cfg = TrainConfig(**sets)
    shape = model_shape(str(model_dir))
    report = {
        "status": run["status"], "error": run["error"], "model": args.arch,
        "params": shape.params, "trainable_params": trainable_params(cfg, shape),
        "data": args.data, "gradient_checkpointing": checkpointing, "batch_size": args.batch_size,
        "max_length": args.max_length, "steps": args.steps,
        "tokens_per_second_median": statistics.median(r["tokens_per_second"] for r in train[2:])
        if len(train) > 3 else None,
        "peak_gpu_memory_gib": max((r.get("gpu_memory_gib", 0) for r in rows), default=None),
        "estimate_gib": memory(cfg, shape, bf16=True).gib(),
        "first_loss": train[0]["loss"] if train else None, "last_loss": train[-1]["loss"] if train else None,
        "log_tail": Path(run["run_dir"], "log.txt").read_text()[-3000:] if run["status"] != "succeeded" else "",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "log_tail"}, indent=2))
    if report["log_tail"]:
        print(report["log_tail"])


if __name__ == "__main__":
    main()
