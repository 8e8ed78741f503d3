"""The peer: the same SFT / QLoRA run as bench/plain_trl.py, through Unsloth as its documentation writes it.

FastLanguageModel loads the saved model folder (no hub), Unsloth's own gradient checkpointing ("unsloth") and
its patched TRL SFTTrainer train it, and Unsloth picks padded or padding-free batches itself (its default; no
packing, so every optimizer step sees the same 16 sequences as the plain run). Data, seed, effective batch,
learning rate, schedule, optimizer, max length and assistant-only loss are the plain script's. SFT is full
fine-tuning in Unsloth's default precision (bf16 weights where the GPU has bf16) unless ``--fp32-master`` asks
for the plain run's fp32 master weights; QLoRA is a 4-bit NF4 base with LoRA r 16, alpha 32, dropout 0
(Unsloth's fast path) on all seven projections.

    PYTHONPATH=/tmp/unsloth-env python bench/unsloth_train.py --model DIR --data rows.jsonl --task sft --out r.json

Writes what bench/plain_trl.py writes (train_runtime, the logged losses with timestamps and token counts, peak
GPU memory), plus the gradient norm of every logged step twice over (the trainer's, before clipping, and one
measured here from the parameters' .grad just before the optimizer step, after clipping to 1.0), the final
loss, and what Unsloth chose (attention, padding-free, precision). Exits 3 after writing the report when no
logged step had a non-zero gradient norm: a throughput figure from a run whose gradients are zero measures nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
USUAL_LR = {"sft": 2e-5, "qlora": 2e-4}  # bench/plain_trl.py's


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved model folder (config, weights, tokenizer)")
    parser.add_argument("--data", required=True, help="JSONL of conversations ({'messages': [...]})")
    parser.add_argument("--task", choices=("sft", "qlora"), required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: one epoch")
    parser.add_argument("--learning-rate", type=float, default=0.0)
    parser.add_argument("--fp32-master", action="store_true",
                        help="SFT: fp32 master weights and bf16 autocast, as the plain run (Unsloth's default: bf16)")
    parser.add_argument("--out", required=True)
    return parser.parse_args()


def offline_environment() -> None:
    """Before Unsloth is imported: no hub, no usage statistics (the GPU machine has no network and Unsloth would
    wait on each request), and its compiled modules (generated source, a few hundred files) under the temporary
    folder rather than in the working directory or beside the report, whose folder comes back from the GPU machine
    (unsloth_zoo/compiler.py reads ``UNSLOTH_COMPILE_LOCATION`` once, when it is first imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(Path(tempfile.gettempdir()) / "unsloth_compiled_cache"))


def preload_cuda12_runtime() -> str | None:
    """xformers 0.0.35's extension links CUDA 12.8's runtime (libcudart.so.12) while the GPU image's torch is built
    for CUDA 13, and Unsloth runs attention through xformers only when that extension loads (else SDPA).
    bench/unsloth_wheels.sh ships the runtime for a ``.cudart12`` folder beside Unsloth's packages, off sys.path
    (there torch's own CUDA preloading would find it first); loaded here, the extension's dependency resolves to
    it by name. Returns the library loaded, or None when it is not installed."""
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("unsloth")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    lib = Path(spec.origin).parents[1] / ".cudart12/nvidia/cuda_runtime/lib/libcudart.so.12"
    if not lib.exists():
        return None
    ctypes.CDLL(str(lib))
    return str(lib)


def output_dir(out: Path) -> Path:
    return Path(str(out.with_suffix("")) + "-out")


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    common = {"model_name": args.model, "max_seq_length": args.max_length, "dtype": None,
              "use_gradient_checkpointing": "unsloth", "random_state": 42}
    if args.task == "sft":
        precision = {"float32_mixed_precision": True} if args.fp32_master else {}  # absent: Unsloth's default
        return FastLanguageModel.from_pretrained(**common, load_in_4bit=False, full_finetuning=True, **precision)
    model, tokenizer = FastLanguageModel.from_pretrained(**common, load_in_4bit=True)
    model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0, target_modules=LORA_TARGETS,
                                             bias="none", use_gradient_checkpointing="unsloth", random_state=42)
    return model, tokenizer


def grad_norm(model: Any) -> tuple[float, int]:
    """L2 norm over every trainable parameter's gradient, and how many parameters had one."""
    import torch

    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        return 0.0, 0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))), \
        len(grads)


def attention_backend() -> str:
    """What Unsloth runs attention with on this machine (xformers only when its extension loaded). Its GPU
    modules are not loaded at all in its CPU fallback, which trains transformers' own model."""
    _utils = sys.modules.get("unsloth.models._utils")
    if _utils is None:
        return "cpu-fallback"
    if getattr(_utils, "HAS_FLASH_ATTENTION", False):
        return "flash-attn"
    return "xformers" if getattr(_utils, "xformers", None) is not None else "sdpa"


def main() -> None:
    args = parse()
    out = Path(args.out)
    offline_environment()
    cuda12_runtime = preload_cuda12_runtime()
    # Unsloth first: it patches transformers, TRL and PEFT as it is imported.
    import unsloth  # noqa: I001

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    cuda = torch.cuda.is_available()  # False only on a CPU, where Unsloth trains in its CPU fallback
    model, tokenizer = load(args)
    logging_steps = 5
    config = SFTConfig(output_dir=str(output_dir(out)), per_device_train_batch_size=args.batch_size,
                       gradient_accumulation_steps=args.grad_accum,
                       learning_rate=args.learning_rate or USUAL_LR[args.task], lr_scheduler_type="cosine",
                       warmup_steps=0.03, num_train_epochs=1, max_steps=args.max_steps, logging_steps=logging_steps,
                       save_strategy="no", report_to="none", seed=42, max_length=args.max_length,
                       include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                       optim="paged_adamw_8bit" if args.task == "qlora" else "adamw_torch_fused" if cuda
                       else "adamw_torch",
                       assistant_only_loss=True, packing=False)

    log: list[dict] = []
    measured: list[dict] = []

    class Timeline(TrainerCallback):  # bench/plain_trl.py's accounting, plus the gradients of logged steps
        def on_pre_optimizer_step(self, targs, state, control, **kwargs):
            if (state.global_step + 1) % logging_steps == 0:
                norm, count = grad_norm(model)
                measured.append({"step": state.global_step + 1, "grad_norm": norm, "params_with_grad": count})

        def on_log(self, targs, state, control, logs=None, **kwargs):
            log.append({"time": time.time(), "step": state.global_step, "tokens": state.num_input_tokens_seen,
                        **{k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}})

    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                         callbacks=[Timeline()])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    output = trainer.train()
    losses = [r["loss"] for r in log if "loss" in r]
    grad_norms = [r["grad_norm"] for r in log if "grad_norm" in r]
    report = {"variant": "unsloth+fp32" if args.fp32_master else "unsloth", "task": args.task, "started": started,
              "train_runtime": output.metrics["train_runtime"], "steps": trainer.state.global_step,
              "tokens_seen": trainer.state.num_input_tokens_seen, "log": log,
              "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 1024**3 if cuda else None,
              "final_loss": losses[-1] if losses else None, "grad_norms": grad_norms, "measured_grad_norms": measured,
              "unsloth": {"version": unsloth.__version__, "attention": attention_backend(),
                          "cuda12_runtime": cuda12_runtime,
                          "padding_free": bool(getattr(trainer.args, "padding_free", False)),
                          "packing": bool(getattr(trainer.args, "packing", False)),
                          "bf16_autocast": bool(trainer.args.bf16),
                          "weights_dtype": str(next(p for p in model.parameters() if p.requires_grad).dtype),
                          "device": torch.cuda.get_device_name() if cuda else "cpu"},
              "settings": {k: v for k, v in vars(args).items()}}
    out.write_text(json.dumps(report, indent=1))
    live = [n for n in grad_norms + [m["grad_norm"] for m in measured] if math.isfinite(n) and n > 0]
    if not live:
        print(f"unsloth_train: no logged step had a non-zero gradient norm (trainer {grad_norms}, measured "
              f"{measured}); the run reported in {out} trained nothing", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
