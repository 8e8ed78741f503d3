"""Whether a run can train, before it is launched, and whether it did, after.

Before: the optimizer steps a run will take, counted as transformers' Trainer counts them (batches of the split,
shared out among the processes, accumulated), and the learning rate its schedule gives them. A run with no steps,
or whose warm-up takes every step (the learning rate starts at 0, so a one-step run never moves), is refused with
settings that would train (``check_trains``: used by ``create_run``, the estimate and the Train tab).

After: the worker compares a fingerprint of the trainable weights before and after ``train()`` and the learning
rates the optimizer stepped with (``lab.train.callbacks.ChangeWatch``); a model that did not change fails its run
whatever the trainer returned (``unchanged``).

``propose_dpo`` gives settings for DPO on a preference export that train on the pairs it has (the Label tab's
"Train DPO on this", ``python -m lab train --propose-dpo``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import Home
from lab.train.methods import objective

MIN_STEPS = 10  # what a proposal aims for: enough optimizer steps for the weights to move visibly
MAX_EPOCHS = 10  # ... without passing over a handful of pairs more often than this
WARMUP_FROM_STEPS = 50  # proposals warm up (10% of the steps) only from this many steps on


@dataclass
class Steps:
    """The optimizer steps of a run on ``rows`` rows, as the Trainer will count them."""

    rows: int
    processes: int
    effective_batch: int
    per_epoch: int
    total: int
    warmup: int

    @property
    def trains(self) -> bool:
        """Some step moves the weights: there are steps, and warm-up (which starts at a learning rate of 0)
        ends before the last one."""
        return self.total > 0 and self.warmup < self.total


def count_steps(cfg: TrainConfig, rows: int, processes: int = 1) -> Steps:
    """Steps as transformers' Trainer counts them: the split's batches are dealt out to the processes (accelerate
    evens them out), each process's batches are accumulated ``grad_accum`` at a time, the last partial group
    counting as a step; ``max_steps`` overrides epochs. Warm-up as TrainingArguments.get_warmup_steps reads the
    ratio (lab.train.convert passes it as warmup_steps below 1); the 'constant' schedule has none."""
    processes = max(processes, 1)
    entries = rows * objective(cfg.objective).entries_per_row(cfg)  # GRPO: each prompt's completions
    batches = math.ceil(entries / cfg.batch_size) if rows else 0
    per_process = math.ceil(batches / processes)
    per_epoch = math.ceil(per_process / cfg.grad_accum) if per_process else 0
    if cfg.max_steps > 0 and rows:
        total = cfg.max_steps
    else:
        total = math.ceil(per_epoch * cfg.epochs)
    warmup = 0 if cfg.lr_scheduler == "constant" else math.ceil(total * cfg.warmup_ratio)
    return Steps(rows, processes, cfg.batch_size * cfg.grad_accum * processes, per_epoch, total, warmup)


def refusal(cfg: TrainConfig, steps: Steps) -> str | None:
    """Why a run with these steps would not train, with settings that would; None when it trains."""
    if steps.trains:
        return None
    split = f"the {cfg.train_split} split of {cfg.dataset}"
    if not steps.rows:
        return (f"This run would not train: {split} has no rows. Choose a dataset version with rows in that split "
                "(or train_split validation, if that one has them).")
    plural = "s" if steps.total != 1 else ""
    count = (f"{split} has {steps.rows} row{'s' if steps.rows != 1 else ''}, which make {steps.total} optimizer "
             f"step{plural} (batch_size {cfg.batch_size} × grad_accum {cfg.grad_accum} × {steps.processes} "
             f"process{'es' if steps.processes != 1 else ''}, "
             + (f"max_steps {cfg.max_steps})" if cfg.max_steps > 0 else f"epochs {cfg.epochs:g})"))
    why = ("the learning rate is 0 on its only step" if steps.total == 1 else
           f"warm-up takes all {steps.total} of them, so the learning rate never reaches {cfg.lr:g}")
    return f"This run would not train: {count}, and {why}. Settings that train: {remedies(cfg, steps)}."


def remedies(cfg: TrainConfig, steps: Steps) -> str:
    """Concrete changes that give the run steps with a learning rate above 0, each with its step count."""
    options = [f"warmup_ratio 0 ({steps.total} step{'s' if steps.total != 1 else ''} at {cfg.lr:g})"]
    more = trainable(cfg, steps.rows, steps.processes)
    if set(more.values) - {"warmup_ratio"}:  # warm-up off alone is the first option already
        changes = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in more.values.items())
        warm = f"{more.steps.warmup} of them warm-up" if more.steps.warmup else "no warm-up"
        options.append(f"{changes} ({more.steps.total} steps, {warm})")
    return "; or ".join(options)


@dataclass
class Schedule:
    """Settings (TrainConfig field → value) and the steps they give."""

    values: dict[str, Any]
    steps: Steps


def trainable(cfg: TrainConfig, rows: int, processes: int = 1) -> Schedule:
    """The fewest changes to batch size, accumulation, epochs and warm-up that give ``cfg`` at least ``MIN_STEPS``
    optimizer steps on ``rows`` rows where the data allows (at most ``MAX_EPOCHS`` passes), with a warm-up that
    leaves steps at the full rate. The effective batch shrinks first (down to one row per step), then epochs grow."""
    values: dict[str, Any] = {}
    current = cfg
    if count_steps(cfg, rows, processes).per_epoch < MIN_STEPS and cfg.max_steps <= 0:
        batch, accum = cfg.batch_size, cfg.grad_accum
        while count_steps(dataclasses.replace(cfg, batch_size=batch, grad_accum=accum), rows, processes).per_epoch \
                < MIN_STEPS and batch * accum > 1:
            accum, batch = (accum // 2, batch) if accum > 1 else (accum, batch // 2)
        values.update({k: v for k, v in (("batch_size", batch), ("grad_accum", accum)) if v != getattr(cfg, k)})
        current = dataclasses.replace(cfg, batch_size=batch, grad_accum=accum)
        per_epoch = count_steps(current, rows, processes).per_epoch
        epochs = float(min(MAX_EPOCHS, max(math.ceil(cfg.epochs), math.ceil(MIN_STEPS / max(per_epoch, 1)))))
        if epochs != cfg.epochs:
            values["epochs"] = epochs
            current = dataclasses.replace(current, epochs=epochs)
    total = count_steps(current, rows, processes).total
    warmup = current.warmup_ratio if total >= WARMUP_FROM_STEPS else 0.0
    if warmup != cfg.warmup_ratio:
        values["warmup_ratio"] = warmup
        current = dataclasses.replace(current, warmup_ratio=warmup)
    return Schedule(values, count_steps(current, rows, processes))


def run_processes(cfg: TrainConfig) -> int:
    """The processes a run of ``cfg`` starts on this machine (its GPUs, or CPU processes)."""
    from lab.train.distributed import processes, visible_gpus

    return processes(cfg, len(visible_gpus()))


def check_trains(cfg: TrainConfig, rows: int, processes: int) -> Steps:
    """The run's steps; a ``LabError`` saying why and what to change when the run would not train."""
    steps = count_steps(cfg, rows, processes)
    reason = refusal(cfg, steps)
    if reason:
        raise LabError(reason)
    return steps


@dataclass
class Proposal:
    values: dict[str, Any]  # TrainConfig field -> value, including objective="dpo", adapter, model, dataset, epochs, warmup_ratio, batch_size, grad_accum, learning_rate and name; every key a TrainConfig field
    text: str  # one sentence: how many pairs, how many optimizer steps, at what learning rate


def propose_dpo(dataset_ref: str, model: str, home: Home) -> Proposal:
    """DPO with a LoRA adapter on ``model`` (e.g. run:<SFT id>) over the preference version ``dataset_ref``, with
    a schedule that trains on the pairs it has (``trainable``) at the usual rate for the model's size."""
    from lab.names import derived_name
    from lab.train.datasets import resolve_version
    from lab.train.loading import model_params

    version = resolve_version(dataset_ref, home)
    if version.kind != objective("dpo").data_kind:
        raise LabError(f"Dataset {version.ref} holds {version.kind} data; DPO needs preference pairs "
                       "(a Label export or a preference file).")
    base = TrainConfig(objective="dpo", adapter="lora", model=model, dataset=version.ref)
    rate = base.usual_lr_for(model_params(model, home))
    base = dataclasses.replace(base, learning_rate=rate)
    pairs = version.rows[base.train_split]
    processes = run_processes(base)
    plan = trainable(base, pairs, processes)
    values = {"objective": "dpo", "adapter": base.adapter, "model": model, "dataset": version.ref,
              "batch_size": base.batch_size, "grad_accum": base.grad_accum, "epochs": base.epochs,
              "warmup_ratio": base.warmup_ratio, **plan.values, "learning_rate": rate,
              # Every field the schedule and the refusals read, so nothing left in a form from an SFT run (a
              # max_steps, a max_length below DPO's prompt length) overrides the proposal.
              "max_steps": base.max_steps, "max_length": base.max_length,
              "max_prompt_length": base.max_prompt_length,
              "eval_split": "validation" if version.rows.get("validation") else "none",
              "name": derived_name(version.name, prefix="dpo-")}
    if not plan.steps.trains:
        raise LabError(f"Dataset {version.ref} has no {base.train_split} pairs to train on; export a campaign "
                       "with votes first.")
    steps = plan.steps
    text = (f"{pairs} pair{'s' if pairs != 1 else ''} of {version.ref} make {steps.total} optimizer step"
            f"{'s' if steps.total != 1 else ''} (batch {values['batch_size']} × {values['grad_accum']} accumulated"
            f"{f' × {processes} processes' if processes > 1 else ''} per step, {values['epochs']:g} epoch"
            f"{'s' if values['epochs'] != 1 else ''}) at learning rate {rate:g}"
            + (f" after {steps.warmup} warm-up steps." if steps.warmup else ", with no warm-up."))
    return Proposal(values, text)


def fingerprint(model: Any) -> dict[str, tuple[float, float]]:
    """Per trainable tensor, by name, the sum and sum of squares of this process's part of it (a shard under FSDP
    or ZeRO-3), in float64: any optimizer step with a learning rate above 0 changes some of them. Read locally, so
    no process waits on another."""
    import torch

    prints = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            local = getattr(param, "ds_tensor", None)  # DeepSpeed ZeRO-3 keeps the shard beside an empty param
            if local is None:
                local = param.to_local() if hasattr(param, "to_local") else param  # FSDP2's DTensor
            values = local.detach().double()
            prints[name] = (values.sum().item(), values.square().sum().item())
    return prints


def unchanged(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], top_lr: float,
              steps: int) -> str | None:
    """Why the model did not change ("The model did not change: …"), or None when it did. ``top_lr``: the highest
    learning rate the optimizer stepped with; ``steps``: the optimizer steps taken."""
    more_steps = "train with more steps (more epochs, a smaller batch) and warmup_ratio 0"
    if steps == 0:
        why, fix = "the run took no optimizer step", more_steps
    elif top_lr <= 0:
        why = (f"the learning rate was 0 on every one of its {steps} optimizer step{'s' if steps != 1 else ''} "
               "(warm-up took them all)")
        fix = more_steps
    elif before == after:
        lora_b = [square for name, (_, square) in after.items() if "lora_B" in name]
        zero = ", every lora_B still zero" if lora_b and not any(lora_b) else ""
        why = (f"its trainable weights are exactly as they were after {steps} step{'s' if steps != 1 else ''} at "
               f"learning rates up to {top_lr:g}{zero}")
        fix = "raise learning_rate so the updates register in the weights' precision"
    else:
        return None
    return f"The model did not change: {why}. It is the model it started from; {fix}."
