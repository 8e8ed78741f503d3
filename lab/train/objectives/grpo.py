"""GRPO: TRL's ``GRPOTrainer`` on prompts: it samples ``num_generations`` completions per prompt, scores each with
the run's reward functions (``lab.train.rewards``) and moves the model toward the completions that beat their
group's mean. RLOO (``objectives/rloo.py``) differs only in its trainer and baseline, so it builds through here.

Besides the metrics TRL logs (``rewards/<name>/mean`` and ``/std``, ``reward``, ``reward_std``, ``kl`` when
kl_beta > 0, ``completions/mean_length`` …, all in metrics.jsonl), the run writes a few sampled completions with
their rewards at each logging step to ``completions.jsonl`` (``lab.train.samples.read_completions``); with W&B, TRL's own
completions table goes there too.

Completions are sampled with transformers' ``generate`` (TRL's default), or with vLLM colocated in the training
process when it is installed and a CUDA GPU is there (setting ``vllm``).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.train.methods import Build
from lab.train.samples import COMPLETIONS_FILE

SAMPLES_PER_LOG = 4  # completions written per logging step: enough to read, small over a long run


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def use_vllm(cfg: TrainConfig, *, cuda: bool) -> bool:
    if cfg.vllm == "on" and not (cuda and vllm_installed()):
        raise LabError("vllm is on, but " + ("vllm is not installed (pip install vllm)" if cuda else
                                             "vLLM needs a CUDA GPU") + "; set vllm to auto or off.")
    return cfg.vllm == "on" or (cfg.vllm == "auto" and cuda and vllm_installed())


def rl_settings(cfg: TrainConfig, common: dict[str, Any]) -> dict[str, Any]:
    """What GRPOConfig and RLOOConfig share: sampling, the KL weight, the rewards' weights, completion logging."""
    from lab.train.rewards import parse

    return {"num_generations": cfg.num_generations, "max_completion_length": cfg.max_completion_length,
            "temperature": cfg.temperature, "beta": cfg.kl_beta,
            "reward_weights": [weight for _, weight in parse(cfg.rewards)],
            # TRL's completions table goes to W&B only with log_completions (which also prints a few to log.txt)
            "log_completions": "wandb" in common["report_to"], "num_completions_to_print": SAMPLES_PER_LOG,
            "use_vllm": use_vllm(cfg, cuda=not common["use_cpu"]), "vllm_mode": "colocate",
            # The trainer counts prompt and completion tokens itself; the Trainer's count finds no input_ids.
            "include_num_input_tokens_seen": "no"}


def config(cfg: TrainConfig, common: dict[str, Any]) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(**{**common, **rl_settings(cfg, common)})


def build(b: Build) -> Any:
    from trl import GRPOTrainer

    return build_with(b, GRPOTrainer, config(b.cfg, b.args))


def build_with(b: Build, base: type, args: Any) -> Any:
    """``base`` (GRPOTrainer or RLOOTrainer) with the run's rewards, writing completions.jsonl as it logs."""
    from lab.home import lab_home
    from lab.train.rewards import build_rewards

    from lab.train.datasets import truncate_prompts

    funcs, weights = build_rewards(b.cfg, lab_home())
    trainer_class = logging_completions(base, b.run_dir / COMPLETIONS_FILE, weights)
    # TRL samples after the whole prompt; the lab keeps prompt + completion within max_length, as the memory
    # estimate assumes, by keeping the end of longer prompts.
    room = b.cfg.max_length - b.cfg.max_completion_length
    train, evals = (truncate_prompts(prompt_rows(rows), b.tokenizer, room) for rows in (b.train_rows, b.eval_rows))
    return trainer_class(args=args, reward_funcs=funcs, **b.trainer_kwargs(train, evals))


def prompt_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row with a text answer and meta (the reward functions' columns), so the Dataset's columns agree."""
    return [{"prompt": r["prompt"], "answer": r.get("answer") or "", "meta": r.get("meta") or "{}"} for r in rows]


def logging_completions(base: type, path: Path, weights: list[float]) -> type:
    """A subclass of TRL's trainer that, at each training log, appends a few of the latest completions with their
    rewards to ``path``. TRL keeps the last generation batch in ``_logs`` (prompt, completion, rewards by
    function) for its own table; this reads the same."""

    class LabTrainer(base):
        written_step = -1

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            step = self.state.global_step
            if self.model.training and self.accelerator.is_main_process and step != self.written_step \
                    and self._logs["prompt"]:
                write_completions(path, step, self._logs, weights)
                self.written_step = step
            super().log(logs, start_time)

    LabTrainer.__name__ = LabTrainer.__qualname__ = f"Lab{base.__name__}"
    return LabTrainer


def write_completions(path: Path, step: int, logs: dict[str, Any], weights: list[float]) -> None:
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    rewards = {name: list(values) for name, values in logs["rewards"].items()}
    n = len(prompts)
    picked = sorted({round(i * (n - 1) / max(1, SAMPLES_PER_LOG - 1)) for i in range(min(n, SAMPLES_PER_LOG))})
    with open(path, "a", encoding="utf-8") as out:
        for i in picked:
            each = {name: finite(values[i]) for name, values in rewards.items()}  # in the rewards' order
            scored = [w * v for w, v in zip(weights, each.values(), strict=True) if v is not None]
            out.write(json.dumps({"step": step, "prompt": message_text(prompts[i]),
                                  "completion": message_text(completions[i]), "rewards": each,
                                  "reward": sum(scored) if scored else None}) + "\n")


def finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def message_text(value: Any) -> str:
    """A prompt or completion as text: the last message's content for a conversation."""
    if isinstance(value, list):
        return str(value[-1].get("content") or "") if value else ""
    return str(value)


def reference(cfg: TrainConfig) -> bool:
    """A frozen copy is held for the KL penalty; an adapter's reference is the base with the adapter off."""
    return cfg.kl_beta > 0 and cfg.adapter == "none"


def precheck(cfg: TrainConfig, home: Any) -> None:
    """GRPO/RLOO settings that cannot work (the rewards chosen, batch vs group size, a user's reward file)."""
    from lab.train.rewards import precheck as check_rewards

    if cfg.max_completion_length >= cfg.max_length:
        raise LabError(f"max_completion_length ({cfg.max_completion_length}) must be below max_length "
                       f"({cfg.max_length}): a prompt and its completion share max_length, so prompts would have no "
                       "room.")
    use_vllm(cfg, cuda=True)  # a vLLM asked for but not installed; the CPU case fails at launch
    check_rewards(cfg, home)
