"""DPO: TRL's ``DPOTrainer`` on chosen/rejected pairs. An adapter's reference is the base with the adapter off;
full-model DPO precomputes the reference log-probabilities unless told otherwise."""

from __future__ import annotations

from typing import Any

from lab.config import TrainConfig
from lab.train.methods import Build


def precompute_reference(cfg: TrainConfig) -> bool:
    """Full-model DPO holds and runs a frozen copy of the model as its reference unless the reference
    log-probabilities are computed once up front; adapters use the base with the adapter switched off."""
    if cfg.precompute_ref_log_probs == "auto":
        return cfg.adapter == "none"
    return cfg.precompute_ref_log_probs == "on"


def reference(cfg: TrainConfig) -> bool:
    """Full-model DPO without precomputed log-probabilities holds a frozen copy of the model."""
    return cfg.adapter == "none" and not precompute_reference(cfg)


def config(cfg: TrainConfig, common: dict[str, Any]) -> Any:
    from trl import DPOConfig

    return DPOConfig(**common, max_length=cfg.max_length, beta=cfg.dpo_beta, loss_type=[cfg.dpo_loss_type],
                     precompute_ref_log_probs=precompute_reference(cfg))


def build(b: Build) -> Any:
    import trl.trainer.dpo_trainer as dpo_module

    from lab.train.datasets import truncate_prompts

    cfg = b.cfg
    args = config(cfg, b.args)
    train_rows = truncate_prompts(b.train_rows, b.tokenizer, cfg.max_prompt_length)
    eval_rows = truncate_prompts(b.eval_rows, b.tokenizer, cfg.max_prompt_length)
    kwargs = b.trainer_kwargs(train_rows, eval_rows)
    trainer_class = timed_reference(dpo_module.DPOTrainer, b.run_dir)
    # TRL keys its cache of reference log-probabilities by a SHA-256 of every weight, copied to the host: seconds
    # for a 0.5B model, a minute for an 8B, on every run. The reference is the model as loaded, before any step, so
    # the files it was loaded from name the same weights (as TRL's hash, blind to the forward's kernels).
    hash_module, dpo_module.hash_module = dpo_module.hash_module, lambda module: weights_fingerprint(cfg, b.model)
    try:
        return trainer_class(args=args, **kwargs)
    finally:
        dpo_module.hash_module = hash_module


def timed_reference(base: type, run_dir: Any) -> type:
    """``base`` (DPOTrainer) whose precomputed reference pass is its own phase of the run's timeline."""
    from lab.train import phases

    class Trainer(base):
        def _precompute_ref_logps(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            if self.accelerator.is_main_process:
                phases.mark(run_dir, "tokenising")
            # TRL keys the cached log-probabilities by the dataset's fingerprint, which its last filter derives from
            # a lambda holding the run's own args (output_dir): new every run. The tokens themselves name it.
            dataset._fingerprint = content_fingerprint(dataset)
            out = super()._precompute_ref_logps(dataset, *args, **kwargs)
            if self.accelerator.is_main_process:
                phases.mark(run_dir, "reference")
            return out

    Trainer.__name__ = Trainer.__qualname__ = base.__name__  # the model card and logs name TRL's trainer
    return Trainer


def content_fingerprint(dataset: Any) -> str:
    """A hash of a dataset's rows (their Arrow IPC serialisation, in order). Not of the Arrow buffers as held: a
    batch's columns are slices whose buffers are a whole cache file's, so hashing those gave two slices of one file
    the same hash and grew with the square of the rows (3 s for 600 DPO pairs); IPC writes a slice's own bytes."""
    import hashlib

    import pyarrow as pa

    digest = hashlib.sha256()
    for batch in dataset.with_format("arrow").iter(batch_size=8192):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_table(batch)
        digest.update(memoryview(sink.getvalue()))
    return digest.hexdigest()[:16]


def weights_fingerprint(cfg: TrainConfig, model: Any) -> str:
    """The model's weights as loaded, named by the files they came from (the base's, and a merged adapter's: path,
    size, modification time), the dtype, and whether its hidden states are cast to 16 bits
    (``lab.train.speed.half_activations``), which changes the reference log-probabilities (by about 0.16 nats of a
    sequence on the 0.5B: docs/benchmarks.md)."""
    import hashlib
    from pathlib import Path

    from lab.home import lab_home
    from lab.train.loading import base_model_path, resolve_model_path
    from lab.train.speed import HALF_ACTIVATIONS

    home = lab_home()
    folders = {Path(resolve_model_path(cfg.model, home)), Path(base_model_path(cfg.model, home))}
    files = sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*")
                   if p.suffix in (".safetensors", ".bin", ".json"))
    half = getattr(model, HALF_ACTIVATIONS, False)
    if not files:  # a hub id's cache, say: TRL's own hash of every weight
        from trl.trainer.utils import hash_module

        return hash_module(model) + ("-half" if half else "")
    digest = hashlib.sha256(f"{model.dtype}|{sum(p.numel() for p in model.parameters())}|{half}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
