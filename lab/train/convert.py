"""Pure functions from a ``TrainConfig`` to the objects TRL, PEFT and bitsandbytes take
(in the manner of TRL's ``get_peft_config`` / ``get_quantization_config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.config import TrainConfig
from lab.train.speed import SpeedPlan, liger_config


def peft_config(cfg: TrainConfig):
    """LoRA settings, or None for full fine-tuning."""
    if cfg.adapter == "none":
        return None
    from peft import LoraConfig

    from lab.train.methods import objective

    # A reward model's score head is new: it trains in full beside the adapters (PEFT's SEQ_CLS saves it).
    task = "SEQ_CLS" if objective(cfg.objective).model_kind == "score" else "CAUSAL_LM"
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules(), task_type=task)


def quantization_config(cfg: TrainConfig, *, bf16: bool = True):
    """4-bit NF4 (double-quantised, 16-bit compute) for QLoRA, else None."""
    if cfg.adapter != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    from lab.train.distributed import quant_storage

    # Sharded (FSDP, ZeRO-3), the 4-bit weights are stored in the dtype of the others, so they shard alike.
    storage = quant_storage(cfg, "bf16" if bf16 else "fp16")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type,
                              bnb_4bit_use_double_quant=cfg.double_quant,
                              bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
                              bnb_4bit_quant_storage=getattr(torch, storage or "uint8"))


def precision(cfg: TrainConfig, *, cuda: bool, bf16_supported: bool) -> str:
    """The precision a run uses: as configured, or bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU."""
    if cfg.precision != "auto":
        return cfg.precision
    if not cuda:
        return "fp32"
    return "bf16" if bf16_supported else "fp16"


def common_args(cfg: TrainConfig, run_dir: Path, *, cuda: bool, bf16_supported: bool,
                speed: SpeedPlan | None = None) -> dict[str, Any]:
    """The TrainingArguments fields every objective shares (``speed``: the run's fast path, see lab.train.speed)."""
    chosen = precision(cfg, cuda=cuda, bf16_supported=bf16_supported)
    evaluating = cfg.eval_split != "none"
    args: dict[str, Any] = dict(
        output_dir=str(run_dir / "checkpoints"),
        run_name=cfg.name,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        weight_decay=cfg.weight_decay,
        bf16=chosen == "bf16",
        fp16=chosen == "fp16",
        use_cpu=not cuda,
        gradient_checkpointing=speed.gradient_checkpointing if speed else cfg.gradient_checkpointing == "on",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy=("steps" if cfg.eval_steps else "epoch") if evaluating else "no",
        eval_steps=cfg.eval_steps or None,
        save_strategy="steps" if cfg.save_steps else "epoch",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit or None,
        load_best_model_at_end=cfg.load_best_model_at_end or bool(cfg.early_stopping_patience),
        metric_for_best_model="eval_loss" if evaluating else None,
        greater_is_better=False if evaluating else None,
        seed=cfg.seed,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        disable_tqdm=True,  # the lab's own metrics show progress; tqdm bars would flood the log
        # Paged 8-bit AdamW for QLoRA on whole-model copies; FSDP cannot checkpoint it (and ZeRO shards the state).
        optim="paged_adamw_8bit" if cfg.adapter == "qlora" and cfg.distributed == "ddp"
        else ("adamw_torch_fused" if cuda else "adamw_torch"),
        # Collating tokenized rows is cheap; two workers keep the next batch ready while the GPU works.
        dataloader_num_workers=2 if cuda else 0,
        dataloader_persistent_workers=cuda,
        include_num_input_tokens_seen="non_padding",  # real tokens, for tokens per second (callbacks.TokenCount)
        # The filter reads every micro-batch's loss back (a synchronisation, so the GPU idles while the CPU prepares
        # the next batch) to keep a NaN or infinite loss out of the logged mean: the lab would rather show it.
        logging_nan_inf_filter=False,
    )
    if speed is not None and speed.liger_kernels:
        args.update(use_liger_kernel=True, liger_kernel_config=liger_config())
    if speed is not None and speed.compile:
        args.update(torch_compile=True)
    if args["load_best_model_at_end"] and cfg.save_steps and cfg.eval_steps:
        # The Trainer needs checkpoints on evaluation steps to pick the best one.
        args["save_steps"] = cfg.eval_steps
    return args


def trainer_config(cfg: TrainConfig, run_dir: Path, *, cuda: bool = False, bf16_supported: bool = False,
                   speed: SpeedPlan | None = None):
    """The objective's TRL config (``SFTConfig``, ``DPOConfig``, …) for this run."""
    from lab.train.methods import objective

    common = common_args(cfg, run_dir, cuda=cuda, bf16_supported=bf16_supported, speed=speed)
    return objective(cfg.objective).module().config(cfg, common)
