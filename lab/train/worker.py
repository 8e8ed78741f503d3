"""The training process: ``python -m lab.train.worker RUN_DIR`` (started by the runner through
``accelerate launch``). Reads the run's config.yaml, trains with TRL, saves the final model, and
reports the outcome to the store; stdout and stderr go to RUN_DIR/log.txt."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lab import adapters
from lab.config import TrainConfig, load_yaml
from lab.errors import LabError
from lab.home import Home, lab_home


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def build_trainer(cfg: TrainConfig, run_dir: Path, home: Home, resume_from: str | None):
    """Tokenizer, model, datasets and the objective's TRL trainer for this run; each phase's end goes to the run's
    timeline (``lab.train.phases``)."""
    import torch
    from transformers import EarlyStoppingCallback, Trainer  # noqa: F401 - most of the import time, counted here

    from lab.decode import release
    from lab.train import early_head
    from lab.train.callbacks import MetricsCallback, NoCheckpointAtTheEnd, TokenCount
    from lab.train.convert import common_args, precision
    from lab.train.datasets import training_rows
    from lab.train.distributed import shards_weights
    from lab.train.estimate import shape_of
    from lab.train.fused_lora import fuse_lora
    from lab.train.loading import load_for_training
    from lab.train.methods import Build, objective
    from lab.train.profiling import ProfileCallback, profile_window
    from lab.train.samples import fixed_prompts, write_before
    from lab.train.speed import (
        half_activations,
        loss_counts_tokens,
        plan,
        unpad_inside,
        use_attention,
        use_head_tile,
        write_plan,
    )

    mark = phase_marker(run_dir)
    mark("imports")
    entry = objective(cfg.objective)
    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    gpu_bytes = cap_gpu_memory(cfg) if cuda else None
    tokenizer, model = load_for_training(cfg, home, cuda=cuda, precision=precision(cfg, cuda=cuda,
                                                                                      bf16_supported=bf16_ok))
    mark("model")
    kind = entry.data_kind
    train_rows = training_rows(cfg.dataset, cfg.train_split, kind, home, entry.columns)
    eval_rows = training_rows(cfg.dataset, cfg.eval_split, kind, home, entry.columns) if cfg.eval_split != "none" else []
    mark("data")
    # One process cannot run a sharded model (FSDP, ZeRO-3) alone, so such runs have no before/after samples.
    if is_main_process() and entry.generates and cfg.sample_prompts and not shards_weights(cfg):
        print("[lab] answering the fixed prompts with the model before training", flush=True)
        write_before(run_dir, cfg, model, tokenizer, fixed_prompts(eval_rows or train_rows, cfg.sample_prompts))
        release(model)  # the sampling KV cache and graphs would otherwise be held through training
        mark("samples before")
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    speed = plan(cfg, cuda=cuda, model_type=getattr(model.config, "model_type", ""), gpu_bytes=gpu_bytes,
                 shape=shape_of(model.config) if cuda else None, processes=processes,
                 loss_counts_tokens=loss_counts_tokens(model))
    # As run: the summary's estimate, an OOM's message and the TrainingArguments read these.
    for name, value in {**speed.memory_settings(), **speed.batch_settings(cfg.batch_size, cfg.grad_accum)}.items():
        setattr(cfg, name, value)
    if is_main_process():
        write_plan(run_dir, speed)
        print("[lab] speed: " + "; ".join(speed.describe()), flush=True)
    if speed.attention != "sdpa":
        use_attention(model, speed.attention)
    if speed.padding_free and entry.padding_free == "unpad":
        unpad_inside(model)
    if speed.half_activations:
        half_activations(model)
    use_head_tile(speed.head_tile_tokens)
    if speed.liger_kernels:  # a CUDA GPU with Liger, so Triton is there to import
        from lab.train import rms_norm_backward

        rms_norm_backward.install()
    if speed.early_head:
        early_head.install()
    args = common_args(cfg, run_dir, cuda=cuda, bf16_supported=bf16_ok, speed=speed)
    if not eval_rows:
        if cfg.load_best_model_at_end or cfg.early_stopping_patience:
            raise LabError(f"The {cfg.eval_split} split of {cfg.dataset} is empty, but load_best_model_at_end / "
                           "early stopping need evaluation; import the dataset with a validation split.")
        args["eval_strategy"] = "no"
        print(f"[lab] no {cfg.eval_split} rows: evaluation is off", flush=True)
    callbacks: list[Any] = [MetricsCallback(run_dir / "metrics.jsonl"), NoCheckpointAtTheEnd()]
    window = profile_window()
    if window and is_main_process():
        callbacks.append(ProfileCallback(run_dir / "profile.txt", *window))
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience,
                                               early_stopping_threshold=cfg.early_stopping_threshold))
    trainer = entry.module().build(Build(cfg, run_dir, model, tokenizer, train_rows, eval_rows, args, speed,
                                         callbacks))
    mark("tokenising")
    if trainer.args.include_num_input_tokens_seen != "no":
        trainer.add_callback(TokenCount(trainer))
    if speed.fused_lora:  # PEFT wraps the model inside the trainer
        print(f"[lab] fused LoRA layers: {fuse_lora(trainer.model)}", flush=True)
    if speed.tiled_mlp or speed.offload_activations:
        from lab.train.memory import memory_callback

        trainer.add_callback(memory_callback(offload=speed.offload_activations, tile=speed.tiled_mlp))
    return trainer


def phase_marker(run_dir: Path):
    """``mark(phase)``: the end of a phase in the run's timeline, written by the main process only."""
    from lab.train import phases

    def mark(phase: str) -> None:
        if is_main_process():
            phases.mark(run_dir, phase)

    return mark


def cap_gpu_memory(cfg: TrainConfig) -> int:
    """This process's GPU's memory in bytes, capped at ``gpu_memory_gib`` (the allocator is held to it too)."""
    import torch

    from lab.train.estimate import memory_budget

    device = int(os.environ.get("LOCAL_RANK", 0))
    total = torch.cuda.get_device_properties(device).total_memory
    cap = memory_budget(cfg, total)
    if cap < total:
        torch.cuda.set_per_process_memory_fraction(cap / total, device)
    return int(cap)


def human_error(err: BaseException, step: int, cfg: TrainConfig | None = None, merged: int = 1) -> str:
    """One sentence for the UI; the traceback goes to the log. ``cfg`` is the run's config as it ran (its 'auto'
    memory choices resolved), so an out-of-memory says which memory savers are still off; ``merged``: the
    micro-batches the speed plan ran as one."""
    import torch

    if isinstance(err, LabError):
        return str(err)
    if isinstance(err, torch.OutOfMemoryError):
        from lab.train.speed import MEMORY_SAVERS

        off = [name for name in MEMORY_SAVERS if cfg is None or getattr(cfg, name) != "on"]
        cap = f" (capped at {cfg.gpu_memory_gib:g} GiB by gpu_memory_gib)" if cfg and cfg.gpu_memory_gib else ""
        as_run = (f" (batch_size {cfg.batch_size} × grad_accum {cfg.grad_accum} as run: the speed plan merged "
                  "micro-batches, so set merge_micro_batches: off first)") if cfg and merged > 1 else ""
        return (f"Out of GPU memory at step {step}{cap}{as_run}: lower batch_size or max_length, raising grad_accum "
                "to keep the effective batch" + (f", or turn on {' / '.join(off)}." if off else
                                                 "; every memory saver is already on, so QLoRA or a shorter "
                                                 "max_length is what is left."))
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__} at step {step}: {text} (full traceback in log.txt)"


def main(run_dir: str) -> int:
    run_path = Path(run_dir).resolve()
    mark = phase_marker(run_path)
    mark("launch")
    from lab.train import runner
    from lab.train.callbacks import ChangeWatch, GracefulStop
    from lab.train.profiling import setup_profile
    from lab.train.speed import use_attention

    home = lab_home()
    run_id = run_path.name
    main_process = is_main_process()
    stop = GracefulStop()
    trainer = None
    cfg: TrainConfig | None = None
    try:
        cfg = load_yaml(str(run_path / "config.yaml"))
        resume_from = runner.get_run(run_id, home).resume_from
        print(f"[lab] run {run_id}: {cfg.method_title} of {cfg.model} on {cfg.dataset}"
              f"{' resuming from ' + resume_from if resume_from else ''}", flush=True)
        started = time.monotonic()
        with setup_profile(run_path):
            trainer = build_trainer(cfg, run_path, home, resume_from)
        setup_seconds = time.monotonic() - started
        trainer.add_callback(stop)
        watch = ChangeWatch(trainer)
        trainer.add_callback(watch)
        trainer.train(resume_from_checkpoint=resume_from)
        mark("training")
        if stop.requested:
            if main_process:
                runner.update(run_id, home, status="cancelled", finished_at=runner.now(),
                              error=f"Cancelled at step {trainer.state.global_step}; a checkpoint was saved, "
                                    "resume continues from it.")
            return 0
        use_attention(trainer.model, "sdpa")  # the saved model and the closing samples use padded batches
        final = run_path / "final"
        trainer.save_model(str(final))  # on every rank: FSDP and ZeRO-3 gather the shards; only rank 0 writes
        if not main_process:
            return 0
        trainer.processing_class.save_pretrained(str(final))
        from lab.train.loading import resolve_model_path

        adapters.record_below(final, resolve_model_path(cfg.model, home))  # the stack beneath a LoRA run's adapter
        mark("saving")
        finish_reports(run_path, cfg, trainer, setup_seconds)
        unchanged = watch.verdict()  # whatever the trainer returned, a model that did not change is no result
        if unchanged:
            raise LabError(unchanged)
        losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
        runner.update(run_id, home, status="succeeded", finished_at=runner.now(),
                      final_loss=losses[-1] if losses else None, wandb_url=wandb_url())
        print(f"[lab] run {run_id} succeeded; final model in {final}", flush=True)
        return 0
    except BaseException as err:  # everything, so the store never shows a dead run as running
        traceback.print_exc()
        step = trainer.state.global_step if trainer is not None else 0
        # Every rank leaves its error in errors/; the run's message is the first failing rank's (the
        # supervisor, python -m lab.train.runner, settles it once all have exited and starts the next run).
        message = record_failure(run_path, err, human_error(err, step, cfg, merged_as_run(run_path)))
        if main_process:
            runner.update(run_id, home, status="failed", finished_at=runner.now(), error=message)
        return 1
    finally:
        sys.stdout.flush()


def merged_as_run(run_dir: Path) -> int:
    """The micro-batches the run's speed plan merged into one (1 when it wrote none or it cannot be read)."""
    from lab.train.speed import read_plan

    try:
        return int((read_plan(run_dir) or {}).get("merged", 1))
    except (OSError, ValueError, TypeError):
        return 1


def record_failure(run_dir: Path, err: BaseException, message: str) -> str:
    """Write this rank's error file; the run's failure message as far as the ranks have reported."""
    from lab.train import distributed

    distributed.write_rank_error(run_dir, message, secondary=distributed.lost_peer(err))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return distributed.failure_message(distributed.rank_errors(run_dir), world) or message


def finish_reports(run_dir: Path, cfg: TrainConfig, trainer: Any, setup_seconds: float) -> None:
    """The tuned model's answers to the fixed prompts, then the summary: the measured peak beside the estimate, the
    loop's rate and the whole wait by phase. Neither may fail a run whose model is already saved."""
    from lab.train import phases
    from lab.train.methods import objective
    from lab.train.samples import write_after, write_summary

    try:
        if cfg.sample_prompts and objective(cfg.objective).generates:
            print("[lab] answering the fixed prompts with the tuned model", flush=True)
            write_after(run_dir, cfg, trainer.model, trainer.processing_class)
            phases.mark(run_dir, "samples after")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("[lab] answering the fixed prompts failed (above); the model is saved", flush=True)
    try:
        args = trainer.args
        write_summary(run_dir, cfg, precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
                      train_rows=len(trainer.train_dataset), setup_seconds=round(setup_seconds, 2),
                      loop=loop_rate(trainer))
        print("[lab] " + phases.describe(phases.durations(run_dir)), flush=True)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("[lab] the closing summary failed (above); the model is saved", flush=True)


def loop_rate(trainer: Any) -> dict[str, Any]:
    """The training loop's real (non-padding) tokens, its seconds and their ratio, as the Trainer counted them."""
    state = trainer.state
    runtime = next((row["train_runtime"] for row in reversed(state.log_history) if "train_runtime" in row), None)
    tokens = state.num_input_tokens_seen or 0
    out: dict[str, Any] = {"train_tokens": tokens, "train_runtime": runtime}
    if tokens and runtime:
        out["tokens_per_second"] = round(tokens / runtime, 1)
    return out


def wandb_url() -> str | None:
    try:
        import wandb
    except ImportError:
        return None
    run = wandb.run
    return run.url if run is not None and not run.offline else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
