"""SFT's per-batch metrics kept on the GPU until the trainer logs, so no micro-batch waits on a read-back.

TRL's ``SFTTrainer.compute_loss`` reads its metrics back after every forward pass: ``num_valid > 0``, the entropy's
and the token accuracy's ``.item()``, and the token count's ``.item()``. Each read makes the CPU wait until the GPU
has finished the forward before it may launch the backward, so the GPU idles while the CPU catches up (the profile's
``idle a step, by cause`` names these synchronisations). :func:`lazy_metrics` subclasses the trainer so that, on the
path the lab uses (SFT's plain loss in one process), the same numbers are kept as GPU scalars and read in one go
when the trainer logs. The loss is TRL's, term for term; any other path (a custom loss, label smoothing, a
mixture-of-experts auxiliary loss, several processes) is TRL's own ``compute_loss``.
"""

from __future__ import annotations

from typing import Any

# The metrics TRL's compute_loss appends per micro-batch and its ``log`` averages.
PER_BATCH = ("entropy", "mean_token_accuracy")


def lazy_metrics(base: type) -> type:
    """``base`` (TRL's ``SFTTrainer``) with its per-batch metrics read back at logging time only."""
    import torch

    class LazyMetricsTrainer(base):
        _pending_tokens: Any = None  # tokens counted on the GPU since the last log (padded batches)

        def _lazy(self, return_outputs: bool) -> bool:
            sequence_parallel = getattr(self.accelerator.parallelism_config, "sp_enabled", False)
            return (not return_outputs and self.accelerator.num_processes == 1 and not sequence_parallel
                    and self.compute_loss_func is None and self.label_smoother is None
                    and not self.aux_loss_enabled)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if not self._lazy(return_outputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            per_token_loss = -outputs.log_probs  # zero on ignored positions
            if self.args.loss_type == "dft":
                per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            with torch.no_grad():
                num_valid = outputs.label_mask.sum()
                scored, per = num_valid > 0, num_valid.clamp(min=1)
                zero = torch.zeros((), device=num_valid.device)
                self._metrics[mode]["entropy"].append(torch.where(scored, outputs.entropy.sum() / per, zero))
                self._metrics[mode]["mean_token_accuracy"].append(
                    torch.where(scored, outputs.is_top1.sum() / per, zero))
            if mode == "train":
                if "attention_mask" in inputs:
                    counted = inputs["attention_mask"].sum()
                    self._pending_tokens = counted if self._pending_tokens is None else self._pending_tokens + counted
                elif "position_ids" in inputs:  # padding-free: one row of real tokens, its length known here
                    self._total_train_tokens += inputs["position_ids"].size(1) // self._tp_size
                else:
                    raise ValueError("Expected 'attention_mask' or 'position_ids' in inputs.")
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            self._read_back()
            super().log(logs, start_time)

        def _read_back(self) -> None:
            """The kept GPU scalars as floats, with one synchronisation."""
            kept = [(values, key) for values in self._metrics.values() for key in PER_BATCH if values.get(key)]
            tensors = [v for values, key in kept for v in values[key] if isinstance(v, torch.Tensor)]
            pending = self._pending_tokens
            if not tensors and pending is None:
                return
            read = torch.stack([t.float() for t in tensors] + ([pending.float()] if pending is not None else []))
            numbers = iter(read.tolist())
            for values, key in kept:
                values[key] = [next(numbers) if isinstance(v, torch.Tensor) else v for v in values[key]]
            if pending is not None:
                self._total_train_tokens += int(next(numbers)) // self._tp_size
                self._pending_tokens = None
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

    LazyMetricsTrainer.__name__ = LazyMetricsTrainer.__qualname__ = f"LazyMetrics{base.__name__}"
    return LazyMetricsTrainer
