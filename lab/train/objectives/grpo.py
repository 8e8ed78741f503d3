"""GRPO: TRL's ``GRPOTrainer`` on prompts: it samples ``num_generations`` completions per prompt, scores each with
the run's reward functions (``lab.train.rewards``) and moves the model toward the completions that beat their
group's mean. RLOO (``objectives/rloo.py``) differs only in its trainer and baseline, so it builds through here.

Besides the metrics TRL logs (``rewards/<name>/mean`` and ``/std``, ``reward``, ``reward_std``, ``kl`` when
kl_beta > 0, ``completions/mean_length`` …, all in metrics.jsonl), the run writes a few sampled completions with
their rewards at each logging step to ``completions.jsonl`` (``lab.train.samples.read_completions``); with W&B,
TRL's own completions table goes there too.

Completions are sampled with vLLM colocated in the training process when it is installed and a CUDA GPU is there
(setting ``vllm``); otherwise on a CUDA GPU with the lab's decoder (``lab.decode.generate_static``: a static KV
cache, the one-token step replayed as a CUDA graph), in place of the transformers ``generate`` that TRL calls, which
spends most of a step's time on the host for a small model (bench/grpo_step.py). :func:`fast_sampling` plugs it in
at the one call TRL makes (``unwrapped_model.generate`` inside ``_generate_single_turn``), so TRL still cuts the
completions at the first end of sequence, scores and trains on them as before. Settings the decoder does not
have (top_k, min_p, a repetition penalty, ...) fall back to ``generate``, with the reason in the run's log;
``LAB_FAST_GENERATION=0`` turns it off, ``LAB_FAST_GENERATION=always`` uses it on a CPU too (eagerly; tests).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    from lab.train.datasets import truncate_prompts
    from lab.train.rewards import build_rewards

    funcs, weights = build_rewards(b.cfg, lab_home())
    trainer_class = logging_completions(fast_sampling(base), b.run_dir / COMPLETIONS_FILE, weights)
    # TRL samples after the whole prompt; the lab keeps prompt + completion within max_length, as the memory
    # estimate assumes, by keeping the end of longer prompts.
    room = b.cfg.max_length - b.cfg.max_completion_length
    train, evals = (truncate_prompts(prompt_rows(rows), b.tokenizer, room) for rows in (b.train_rows, b.eval_rows))
    return trainer_class(args=args, reward_funcs=funcs, **b.trainer_kwargs(train, evals))


def prompt_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row with a text answer and meta (the reward functions' columns), so the Dataset's columns agree."""
    return [{"prompt": r["prompt"], "answer": r.get("answer") or "", "meta": r.get("meta") or "{}"} for r in rows]




@dataclass(frozen=True)
class Sampling:
    """What the lab's decoder needs of a generation config: how to choose (temperature 0 = greedy), how far, the
    tokens that end a completion (the decoder stops on the first; TRL cuts at any) and the pad after them."""

    temperature: float
    top_p: float
    max_new_tokens: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int


def sampling_of(model: Any, generation_config: Any) -> tuple[Sampling | None, str]:
    """The settings ``generate`` would sample with (the model's own generation config filling what
    ``generation_config`` leaves unset, as ``generate`` merges them), when the lab's decoder has them all: nothing
    but temperature and top-p between the logits and the choice. Else (None, what the decoder lacks)."""
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    config, _ = model._prepare_generation_config(generation_config)
    eos = config.eos_token_id
    eos_ids = tuple(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if (config.num_beams or 1) > 1 or config.stop_strings or config.max_new_tokens is None \
            or config.pad_token_id is None:
        return None, "beam search, stop strings, or no max_new_tokens / pad token"
    config._eos_token_tensor = torch.tensor(eos_ids) if eos_ids else None  # so min_length / min_new_tokens show
    processors = model._get_logits_processor(config, input_ids_seq_length=1, device="cpu")
    other = [type(p).__name__ for p in processors if not isinstance(p, (TemperatureLogitsWarper, TopPLogitsWarper))]
    if other:
        return None, f"the lab's decoder has temperature and top-p only; these settings add {', '.join(other)}"
    sample = bool(config.do_sample)
    return Sampling(temperature=float(config.temperature) if sample else 0.0,
                    top_p=float(config.top_p) if sample and config.top_p is not None else 1.0,
                    max_new_tokens=int(config.max_new_tokens), eos_token_ids=eos_ids,
                    pad_token_id=int(config.pad_token_id)), ""


def sample_static(model: Any, input_ids: Any, attention_mask: Any, sampling: Sampling) -> Any:
    """What ``generate`` returns for left-padded prompts: their ids, then the completions, ``pad_token_id`` after a
    completion's first end-of-sequence token; sampled by ``lab.decode.generate_static``. Inside, the prompts are
    padded further on the left to a multiple of ``lab.models.PROMPT_BUCKET`` tokens, so the decoder's shapes (its
    static cache, its captured step) repeat from step to step instead of following each batch's longest prompt.
    The model decodes in eval mode (no dropout: a captured step replays fixed kernels) and is put back after."""
    import torch
    import torch.nn.functional as F

    from lab.decode import generate_static
    from lab.models import PROMPT_BUCKET

    extra = -input_ids.shape[1] % PROMPT_BUCKET
    ids = F.pad(input_ids, (extra, 0), value=sampling.pad_token_id)
    mask = F.pad(attention_mask, (extra, 0), value=0)
    was_training = model.training
    model.eval()
    try:
        completion = generate_static(model, ids, mask, max_new_tokens=sampling.max_new_tokens,
                                     eos_token_id=sampling.eos_token_ids[0] if sampling.eos_token_ids else None,
                                     pad_token_id=sampling.pad_token_id, temperature=sampling.temperature,
                                     top_p=sampling.top_p)
    finally:
        model.train(was_training)
    if len(sampling.eos_token_ids) > 1:  # the decoder padded after the first id only
        ends = torch.isin(completion, torch.tensor(sampling.eos_token_ids, device=completion.device))
        completion = completion.masked_fill(ends.cumsum(1) - ends.long() > 0, sampling.pad_token_id)
    return torch.cat([input_ids, completion], dim=1)


@contextmanager
def generating_with_lab(model: Any, sampling: Sampling) -> Iterator[None]:
    """Inside the block, ``model.generate`` (as TRL calls it: the prompts and the generation config it was checked
    with) answers through :func:`sample_static`."""
    def generate(input_ids: Any, attention_mask: Any, generation_config: Any = None) -> Any:
        return sample_static(model, input_ids, attention_mask, sampling)

    model.generate = generate
    try:
        yield
    finally:
        del model.generate


def fast_sampling(base: type) -> type:
    """A subclass of ``base`` (TRL's GRPOTrainer or RLOOTrainer) whose completions come from the lab's decoder where
    it can sample them. TRL calls ``unwrapped_model.generate`` in ``_generate_single_turn``, after turning gradient
    checkpointing off, and cuts and scores what it returns; only that call is replaced. Decided at the first
    generation, with the reason printed once to the run's log."""

    class FastSampling(base):
        lab_sampling: tuple[Sampling | None, str] | None = None

        def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
            model = self.accelerator.unwrap_model(self.model_wrapped)
            if self.lab_sampling is None:
                self.lab_sampling = self.sampling_for(model)
                if self.accelerator.is_main_process:
                    sampling, why = self.lab_sampling
                    print("[lab] sampling completions " + (
                        f"with the lab's decoder (temperature {sampling.temperature:g}, top_p {sampling.top_p:g}, up "
                        f"to {sampling.max_new_tokens} tokens)" if sampling else
                        f"as TRL does (transformers' generate, or vLLM), not with the lab's decoder: {why}"),
                          flush=True)
            sampling = self.lab_sampling[0]
            if sampling is None:
                return super()._generate_single_turn(*args, **kwargs)
            with generating_with_lab(model, sampling):
                return super()._generate_single_turn(*args, **kwargs)

        def sampling_for(self, model: Any) -> tuple[Sampling | None, str]:
            from lab.decode import unsupported
            from lab.models import FAST_GENERATION_ENV

            setting = os.environ.get(FAST_GENERATION_ENV, "1")
            if setting == "0":
                return None, f"{FAST_GENERATION_ENV}=0"
            if self.use_vllm or self.use_transformers_continuous_batching:
                return None, "vLLM (or transformers' continuous batching) samples them"
            if model.device.type != "cuda" and setting != "always":
                return None, (f"the lab's decoder is for CUDA GPUs (on a {model.device.type}: "
                              f"{FAST_GENERATION_ENV}=always uses it anyway)")
            if self.is_fsdp_enabled or self.is_deepspeed_enabled:
                return None, "the weights are sharded (FSDP / DeepSpeed)"
            if self._is_vlm:
                return None, "a vision-language model (its generate takes images)"
            if reason := unsupported(model):
                return None, f"the lab's decoder cannot decode this model: {reason}"
            return sampling_of(model, self.generation_config)

    FastSampling.__name__ = FastSampling.__qualname__ = f"FastSampling{base.__name__}"
    return FastSampling


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
