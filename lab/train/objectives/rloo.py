"""RLOO: TRL's ``RLOOTrainer`` on prompts. Like GRPO (``objectives/grpo.py``, which it builds through: the same
rewards, settings and completions log), but each completion's baseline is the mean reward of the other
completions of its prompt (leave-one-out), and the KL penalty is folded into the reward."""

from __future__ import annotations

from typing import Any

from lab.config import TrainConfig
from lab.train.methods import Build
from lab.train.objectives.grpo import build_with, rl_settings


def config(cfg: TrainConfig, common: dict[str, Any]) -> Any:
    from trl import RLOOConfig

    return RLOOConfig(**{**common, **rl_settings(cfg, common)})


def build(b: Build) -> Any:
    from trl import RLOOTrainer

    return build_with(b, RLOOTrainer, config(b.cfg, b.args))
