"""The baseline: the TRL script a user writes from the tutorials, with nothing of the lab in it.

SFT: the model loaded in fp32 (master weights) and trained with bf16 autocast, SDPA attention, padded batches,
gradient checkpointing, fused AdamW. LoRA: a bf16 base with PEFT adapters. QLoRA: a 4-bit NF4 base (double
quantisation, bf16 compute) with paged 8-bit AdamW. DPO: the full model with a frozen reference copy.
``--tuned`` adds TRL's own speed switches (packing with BFD, Liger kernels, no checkpointing).

    python bench/plain_trl.py --model DIR --data rows.jsonl --task sft --batch-size 8 --grad-accum 2 --out r.json

Writes the trainer's runtime, the logged losses with timestamps and token counts, and the peak GPU memory.
``--profile START:COUNT`` profiles those steps with the lab's profiler callback (lab/train/profiling.py, the
only piece of the lab this script can use, and only when asked) and writes its table beside ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="JSONL of conversations (sft) or preference pairs (dpo)")
    parser.add_argument("--task", choices=("sft", "lora", "qlora", "dpo"), required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: one epoch")
    parser.add_argument("--learning-rate", type=float, default=0.0)
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tuned", action="store_true", help="TRL's own switches: packing, Liger, no checkpointing")
    parser.add_argument("--profile", default="", help="START:COUNT optimizer steps to profile")
    parser.add_argument("--memory-cap-gib", type=float, default=0, help="hold the CUDA allocator to this (0: all)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    cuda = torch.cuda.is_available()  # False only when the harness itself is tested on a CPU
    if cuda and args.memory_cap_gib:
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, args.memory_cap_gib * 1024**3 / torch.cuda.get_device_properties(0).total_memory))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    load: dict = {"dtype": torch.float32 if args.task in ("sft", "dpo") else torch.bfloat16}
    if args.task == "qlora":
        load["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                         bnb_4bit_use_double_quant=True,
                                                         bnb_4bit_compute_dtype=torch.bfloat16)
        load["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="sdpa", **load)
    peft_config = None
    if args.task in ("lora", "qlora"):
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    lr = args.learning_rate or {"sft": 2e-5, "lora": 2e-4, "qlora": 2e-4, "dpo": 5e-7}[args.task]
    common = dict(output_dir=str(Path(args.out).with_suffix("")) + "-out",
                  per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
                  gradient_checkpointing=args.checkpointing and not args.tuned, bf16=cuda, use_cpu=not cuda,
                  learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, num_train_epochs=1,
                  max_steps=args.max_steps, logging_steps=5, save_strategy="no", report_to="none", seed=42,
                  max_length=args.max_length, include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                  optim="paged_adamw_8bit" if args.task == "qlora" else "adamw_torch_fused" if cuda else "adamw_torch")
    if args.tuned:
        common["use_liger_kernel"] = True

    log: list[dict] = []

    class Timeline(TrainerCallback):  # the same accounting as the lab's metrics.jsonl
        def on_log(self, targs, state, control, logs=None, **kwargs):
            log.append({"time": time.time(), "step": state.global_step, "tokens": state.num_input_tokens_seen,
                        **{k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}})

    if args.task == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(model=model, args=DPOConfig(**common), processing_class=tokenizer,
                             train_dataset=Dataset.from_list(rows), callbacks=[Timeline()])
    else:
        from trl import SFTConfig, SFTTrainer

        sft = SFTConfig(**common, assistant_only_loss=True, packing=args.tuned)
        trainer = SFTTrainer(model=model, args=sft, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                             peft_config=peft_config, callbacks=[Timeline()])
    if args.profile:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from lab.train.profiling import ProfileCallback, profile_window

        trainer.add_callback(ProfileCallback(Path(args.out).with_suffix(".profile.txt"), *profile_window(args.profile)))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    output = trainer.train()
    report = {"variant": "trl-tuned" if args.tuned else "plain-trl", "task": args.task, "started": started,
              "train_runtime": output.metrics["train_runtime"], "steps": trainer.state.global_step,
              "tokens_seen": trainer.state.num_input_tokens_seen, "log": log,
              "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 1024**3 if cuda else None,
              "settings": {k: v for k, v in vars(args).items()}}
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
