"""QLoRA through the lab's own path on a GPU: a random-initialised model of a published architecture
(bench/configs/*.json; speed and memory do not depend on the weights' values) is trained by
``python -m lab train`` (runner → accelerate launch → worker, 4-bit NF4 + double quantisation + bf16
compute + paged 8-bit AdamW), and the measured peak memory and tokens/s are set beside the lab's estimate.

    python bench/qlora_smoke.py --config bench/configs/qwen2.5-0.5b.json --out bench/results/qlora.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_random_model(config_path: Path, out: Path, home) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lab.models import load_tokenizer

    config = AutoConfig.for_model(**{k: v for k, v in json.loads(config_path.read_text()).items()
                                     if k != "architectures"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    load_tokenizer("tiny", home=home).save_pretrained(out)  # ids fit in the larger vocabulary


def import_full_length(home, max_length: int, rows: int = 400) -> str:
    """Conversations long enough that truncation makes every sequence exactly ``max_length`` tokens."""
    import random

    rng = random.Random(0)
    words = ["alpha", "river", "stone", "cloud", "green", "seven", "market", "window", "quiet", "number"]
    name = f"full-length-{max_length}"
    path = home.root / f"{name}.jsonl"
    with open(path, "w") as out:
        for i in range(rows):
            reply = " ".join(rng.choice(words) for _ in range(max_length * 2))
            out.write(json.dumps({"messages": [{"role": "user", "content": f"Write long text {i}."},
                                               {"role": "assistant", "content": reply}]}) + "\n")
    subprocess.run([sys.executable, "-m", "lab", "data", "import", str(path), "--name", name,
                    "--no-dedup-near", "--val-fraction", "0"], check=True, cwd=ROOT,
                   env={**os.environ, "LAB_HOME": str(home.root)}, capture_output=True)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "bench/configs/qwen2.5-0.5b.json"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    parser.add_argument("--data", choices=("sample", "full"), default="full",
                        help="full: synthetic conversations that fill max_length (the estimate's own assumption); "
                        "sample: the bundled SFT sample (short rows)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/qlora.json"))
    args = parser.parse_args()

    from lab.config import TrainConfig
    from lab.home import lab_home
    from lab.train.estimate import memory, model_shape, trainable_params

    home = lab_home(os.environ.get("LAB_HOME") or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = home.models / Path(args.config).stem
    if not model_dir.exists():
        build_random_model(Path(args.config), model_dir, home)
    dataset = "sample:sft" if args.data == "sample" else import_full_length(home, args.max_length)
    print(f"[bench] {Path(args.config).stem} qlora, {args.data} data, batch {args.batch_size} x {args.max_length}, "
          f"checkpointing {args.checkpointing}", flush=True)
    sets = {"method": "qlora", "model": str(model_dir), "dataset": dataset, "max_steps": args.steps, "batch_size": args.batch_size,
            "max_length": args.max_length, "report_to": "none", "learning_rate": 2e-4, "eval_steps": 0,
            "save_steps": 0, "eval_split": "none", "logging_steps": 5,
            "gradient_checkpointing": args.checkpointing}
    command = [sys.executable, "-m", "lab", "train", str(ROOT / "recipes/tiny-sft.yaml"), "--wait", "--json"]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    env = {**os.environ, "LAB_HOME": str(home.root)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    run = json.loads(result.stdout)
    rows = [json.loads(line) for line in Path(run["run_dir"], "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train" and "loss" in r]
    cfg = TrainConfig(**{k: v for k, v in sets.items()})
    shape = model_shape(str(model_dir))
    estimate = memory(cfg, shape, bf16=True)
    report = {
        "status": run["status"], "error": run["error"], "model": Path(args.config).stem,
        "params": shape.params, "trainable_params": trainable_params(cfg, shape),
        "data": args.data, "gradient_checkpointing": args.checkpointing, "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
        "tokens_per_second_median": statistics.median(r["tokens_per_second"] for r in train[2:])
        if len(train) > 3 else None,
        "peak_gpu_memory_gib": max((r.get("gpu_memory_gib", 0) for r in rows), default=None),
        "estimate_gib": estimate.gib(),
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
