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
    from trl import DPOTrainer

    from lab.train.datasets import truncate_prompts

    cfg = b.cfg
    args = config(cfg, b.args)
    train_rows = truncate_prompts(b.train_rows, b.tokenizer, cfg.max_prompt_length)
    eval_rows = truncate_prompts(b.eval_rows, b.tokenizer, cfg.max_prompt_length)
    return DPOTrainer(args=args, **b.trainer_kwargs(train_rows, eval_rows))
