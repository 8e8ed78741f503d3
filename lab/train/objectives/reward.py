"""Reward model: TRL's ``RewardTrainer`` on chosen/rejected pairs. The model is a sequence classifier with one
output, the reward (``lab.train.loading`` loads it so for an objective whose ``model_kind`` is 'score'); the loss is
-log σ(r_chosen - r_rejected), minus a pair's ``margin`` where the rows carry one. The trainer logs the share of
pairs ranked right (``accuracy``) and the mean reward difference (``margin``); on the held-out split they are
``eval_accuracy`` and ``eval_margin``, evaluated at the last step too so the run ends with its held-out accuracy."""

from __future__ import annotations

from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.train.methods import Build


def config(cfg: TrainConfig, common: dict[str, Any]) -> Any:
    from trl import RewardConfig

    return RewardConfig(**common, max_length=cfg.max_length,
                        center_rewards_coefficient=cfg.reward_center_coefficient or None)


def precheck(cfg: TrainConfig, home: Any) -> None:
    if cfg.reward_center_coefficient < 0:
        raise LabError(f"reward_center_coefficient must be 0 (off) or positive (got {cfg.reward_center_coefficient:g});"
                       " 0.01 is usual.")


def build(b: Build) -> Any:
    from trl import RewardTrainer

    trainer = RewardTrainer(args=config(b.cfg, b.args), **b.trainer_kwargs())
    report_dropped(b, trainer)
    if trainer.args.eval_strategy == "steps":
        trainer.add_callback(evaluate_at_the_end())
    return trainer


def report_dropped(b: Build, trainer: Any) -> None:
    """TRL drops, without a word, pairs whose chosen or rejected conversation is longer than max_length: say how many,
    and refuse a run that kept none."""
    kept = len(trainer.train_dataset)
    dropped = len(b.train_rows) - kept
    if not kept:
        raise LabError(f"Every training pair of {b.cfg.dataset} is longer than max_length ({b.cfg.max_length} tokens) "
                       "once rendered with the chat template, so the reward trainer keeps none; raise max_length.")
    if dropped:
        print(f"[lab] {dropped:,} of {len(b.train_rows):,} training pairs are longer than max_length "
              f"({b.cfg.max_length} tokens) and are left out", flush=True)


def evaluate_at_the_end() -> Any:
    """Evaluating every ``eval_steps`` misses the last step unless it is a multiple of them; the held-out pair
    accuracy the run ends with is what a reward model is judged by, so it is always measured there. (Built here:
    this module is imported by the run's checks, which load no transformers.)"""
    from transformers import TrainerCallback

    class EvaluateAtTheEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_evaluate = True
            return control

    return EvaluateAtTheEnd()
