"""Reward models in use: a finished reward run (``run:<id>`` of objective ``reward``), or a folder or hub id of a
sequence classifier with one output, loaded as a ``Scorer`` that gives each answer to a prompt its reward. The
reward eval kind (``lab.eval.reward``), Compare's scorer (``lab.compare``) and GRPO's reward-model reward read
rewards through here.

An answer is scored as the reward trainer saw its pairs: the prompt's messages and the answer as the assistant's
turn, rendered with the reward model's own chat template, the score read at the last token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home

BATCH = 16  # answers scored together
MAX_TOKENS = 2048  # longer conversations keep their last tokens: the score is read at the end
NOT_A_REWARD_MODEL = ("pick a finished reward-model run (objective reward), or a folder or hub id of a "
                      "sequence-classification model with one output")


@dataclass
class Scorer:
    """A loaded reward model. ``score`` takes chat prompts (messages ending with the user's turn) and one answer
    each, and returns their rewards (higher is better), batched, without gradients, on the GPU when there is one."""

    model: Any
    tokenizer: Any
    ref: str  # the model as it was asked for: run:<id>, a path or a hub id

    def score(self, prompts: list[list[dict[str, str]]], completions: list[str]) -> list[float]:
        import torch

        if len(prompts) != len(completions):
            raise LabError(f"Scoring needs one answer per prompt (got {len(prompts)} prompts and "
                           f"{len(completions)} answers).")
        ids = [self.tokens(p, c) for p, c in zip(prompts, completions)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
        rewards = [0.0] * len(ids)
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            batch = self.padded([ids[i] for i in chunk])
            with torch.inference_mode():
                logits = self.model(**batch).logits
            for i, value in zip(chunk, logits[:, 0].float().tolist()):
                rewards[i] = round(value, 4)
        return rewards

    def tokens(self, prompt: list[dict[str, str]], completion: str) -> list[int]:
        """The conversation's token ids as TRL's reward trainer makes them (the chat template over the prompt and
        the answer as the assistant's turn), its last ``MAX_TOKENS`` when longer."""
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        encoded = self.tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}],
                                                     tokenize=True, return_dict=True)
        return list(encoded["input_ids"])[-MAX_TOKENS:]

    def padded(self, rows: list[list[int]]) -> dict[str, Any]:
        """Right-padded, as in training; the classifier reads the last token that is not padding."""
        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.model.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.model.device)
        return {"input_ids": ids, "attention_mask": mask}


def is_reward_model(model_ref: str, home: Home | None = None) -> bool:
    """Whether ``model_ref`` scores answers: a run whose objective loads a scoring model (``model_kind`` 'score'),
    or a folder or hub id holding a sequence classifier with one output (a LoRA folder: one for sequence
    classification). Never raises: anything that cannot be read is no reward model."""
    home = home or lab_home()
    if model_ref.startswith("run:"):
        from lab.train.methods import OBJECTIVES
        from lab.train.runner import get_run

        try:
            objective = get_run(model_ref[4:], home).config.get("objective", "")  # none: a config from before
        except LabError:
            return False
        return objective in OBJECTIVES and OBJECTIVES[objective].model_kind == "score"
    try:
        return scores(model_config(model_ref, home))
    except (LabError, OSError, ValueError, KeyError):
        return False


def model_config(model_ref: str, home: Home) -> dict[str, Any]:
    """The model's config.json (an adapter folder's adapter_config.json), from its folder or the hub."""
    from lab.models import resolve

    path = Path(resolve(model_ref, home)).expanduser()
    for name in ("adapter_config.json", "config.json"):
        if (path / name).is_file():
            return json.loads((path / name).read_text())
    if "/" not in model_ref or path.exists():  # not a hub id (owner/name): nothing to ask the hub for
        raise LabError(f"'{model_ref}' is no model folder here and no hub id (owner/name).")
    from transformers import AutoConfig

    from lab.data.readers import hub_reachable

    hub_reachable(model_ref)  # offline, once and at once: the hub client would retry for about 25 s
    return AutoConfig.from_pretrained(str(path)).to_dict()


def scores(config: dict[str, Any]) -> bool:
    if "peft_type" in config:  # an adapter: trained for sequence classification (its head saved beside it)
        return config.get("task_type") == "SEQ_CLS"
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or 2  # transformers' default: 2
    return labels == 1 and any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def load_scorer(model_ref: str, home: Home | None = None) -> Scorer:
    """The reward model ``model_ref`` loaded for scoring (a LoRA reward run merged into its base), in bf16 on the
    GPU when there is one, else fp32 on the CPU."""
    import torch

    from lab.models import hub_error, load_tokenizer
    from lab.train.loading import resolve_model_path, score_model

    home = home or lab_home()
    if not is_reward_model(model_ref, home):
        raise LabError(f"'{model_ref}' is not a reward model: {NOT_A_REWARD_MODEL}.")
    path = resolve_model_path(model_ref, home)  # a run that did not succeed is refused here
    tokenizer = load_tokenizer(path)
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "device_map": "cuda"} if cuda else {}
    from lab import adapters

    base = adapters.base_of(path)
    try:
        model = score_model(base, tokenizer, **kwargs)
    except OSError as err:
        raise hub_error("reward model", base, err) from None
    model = adapters.apply(model, path)  # restores the trained score head too
    return Scorer(model.eval(), tokenizer, model_ref)
