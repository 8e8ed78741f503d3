"""What the worker reports while it trains: one JSON object per log in ``metrics.jsonl``, and a
graceful stop (checkpoint, then exit) when the runner sends SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class MetricsCallback(TrainerCallback):
    """Appends ``{time, step, max_steps, epoch, split, ...metrics, tokens_per_second, gpu_memory_gib}``
    to ``metrics.jsonl``, on the main process only, flushed at once so the UI sees it live."""

    def __init__(self, path: Path):
        self.path = path
        self.last_time = time.time()
        self.last_tokens = 0
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # The rate's first interval starts with the loop, from the tokens seen so far: a resumed run's state holds the
        # tokens before its checkpoint, which counted from 0 (and from the callback's creation, before the model
        # loaded) made its first logged rate a spike.
        self.last_time, self.last_tokens = time.time(), state.num_input_tokens_seen

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.time()
        if "train_loss" in logs:  # the Trainer's closing summary (every log carries train_runtime)
            split = "summary"
        else:
            split = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        row: dict[str, Any] = {"time": round(now, 3), "step": state.global_step, "max_steps": state.max_steps,
                               "split": split}
        # Every number the trainer logs: each objective logs its own (DPO's rewards/*, KTO's kl, GRPO's rewards per
        # function), and its panels (lab.train.methods) name them.
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if split == "train" and "loss" in logs:
            tokens = state.num_input_tokens_seen
            if tokens and now > self.last_time:
                row["tokens_per_second"] = round((tokens - self.last_tokens) / (now - self.last_time), 1)
            self.last_time, self.last_tokens = now, tokens
            if "loss" in row:
                self.last_loss = row["loss"]
        row.update(gpu_memory())
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


def gpu_memory() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 3)}


class TokenCount(TrainerCallback):
    """The Trainer's count of real tokens (``num_input_tokens_seen``, for tokens per second) without the Trainer's
    synchronisation after every micro-batch. The Trainer counts each batch on the GPU and reads the count back at
    once (``.item()``), so the CPU waits for the backward pass before it can queue the next batch's work, and the GPU
    idles while it does (about 3% of an 8B LoRA step on an H200). Here a padding-free batch's tokens are its length
    (metadata: every token is real), and a padded batch's count (its attention mask's sum) stays on the GPU until
    the Trainer is about to log, save or stop."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.pending: list[Any] = []
        trainer._track_num_input_tokens = self.track  # the instance's own, in place of the Trainer's method

    def track(self, inputs: dict[str, Any]) -> None:
        if "attention_mask" in inputs:
            self.pending.append(inputs["attention_mask"].sum())
        elif "input_ids" in inputs:
            self.trainer.state.num_input_tokens_seen += inputs["input_ids"].numel()

    def settle(self, state: Any) -> None:
        if self.pending:
            import torch

            state.num_input_tokens_seen += int(torch.stack(self.pending).sum())
            self.pending.clear()

    def on_step_end(self, args, state, control, **kwargs):
        # the Trainer's flow callback, which runs first, has set these for this step (the last step stops training)
        if control.should_log or control.should_save or control.should_evaluate or control.should_training_stop:
            self.settle(state)

    def on_train_end(self, args, state, control, **kwargs):
        self.settle(state)


class NoCheckpointAtTheEnd(TrainerCallback):
    """Drops the checkpoint the Trainer saves after the last step (by steps) or epoch (by epochs): the worker saves
    the final model right after ``train()``, so that checkpoint writes the model a second time, plus the optimizer's
    state (twice the model's size for AdamW), for a run that is over: about 6 GB and 5 s for a 0.5B full fine-tune,
    inside the trainer's timed loop. Kept: the periodic checkpoints, the one a cancel saves (``GracefulStop`` runs
    after this) and every one when ``load_best_model_at_end`` is on (the Trainer picks the best at saving time)."""

    def on_step_end(self, args, state, control, **kwargs):
        periodic = args.save_strategy == "steps" and state.save_steps and state.global_step % state.save_steps == 0
        if state.global_step >= state.max_steps and not periodic and not args.load_best_model_at_end:
            control.should_save = False
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps and not args.load_best_model_at_end:
            control.should_save = False
        return control


class GracefulStop(TrainerCallback):
    """SIGTERM sets a flag; at the end of the current step the Trainer saves a checkpoint and stops."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._request)

    def _request(self, signum, frame) -> None:
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        # The signal reaches the ranks of a multi-process run at slightly different moments, and all must stop
        # after the same step (saving a checkpoint is a collective under FSDP and ZeRO): stop when any rank has it.
        self.requested = any_rank(self.requested, args.device)
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


def any_rank(flag: bool, device) -> bool:
    """``flag`` or'ed over the ranks of the process group (just ``flag`` in a one-process run)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class ChangeWatch(TrainerCallback):
    """What ``lab.train.viability.unchanged`` judges a run by: a fingerprint of the trainable weights when training
    begins (after the trainer has wrapped, sharded or resumed the model) and the highest learning rate the optimizer
    stepped with (read between the step and the scheduler's, so it is the rate that step used). Every rank keeps
    its own, read locally."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.before: dict[str, tuple[float, float]] = {}
        self.top_lr = 0.0
        self.steps = 0
        self.finished_already = False  # resumed from a checkpoint at the last step: nothing was left to train

    def on_train_begin(self, args, state, control, **kwargs):
        from lab.train.viability import fingerprint

        self.before = fingerprint(self.trainer.model)
        self.finished_already = 0 < state.max_steps <= state.global_step

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.steps += 1
        self.top_lr = max(self.top_lr, max(group["lr"] for group in self.trainer.optimizer.param_groups))

    def verdict(self) -> str | None:
        """Why the model did not change, or None when it did (or when a resumed run's checkpoint was its last step:
        the checkpoint's weights, trained before, are the result)."""
        from lab.train.viability import fingerprint, unchanged

        if self.finished_already and self.steps == 0:
            return None
        return unchanged(self.before, fingerprint(self.trainer.model), self.top_lr, self.steps)
